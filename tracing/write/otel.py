"""The one module that reads OpenTelemetry's internals, each with a public fallback.

The hot paths run for every message of a service, often without any SDK configured.
The public API answers some questions slowly (``get_tracer_provider()`` reads the
environment on each call while none is set) or not at all (an SDK provider's link
limit). Each internal read here has a public fallback taken when a release changes
it; :data:`FOUND` records which reads work, and ``tests/write/test_otel_internals.py``
fails when a supported release changes one, so a silent slowdown cannot ship.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import opentelemetry.metrics._internal as _metrics_internal
import opentelemetry.trace as _trace_api
from opentelemetry import context as context_api
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_MISSING = object()

# Which internal reads work with the installed release (tests assert every one does).
FOUND: dict[str, bool] = {
    "trace._TRACER_PROVIDER": hasattr(_trace_api, "_TRACER_PROVIDER"),
    "metrics._METER_PROVIDER": hasattr(_metrics_internal, "_METER_PROVIDER"),
    "metrics._ProxyMeterProvider": isinstance(getattr(_metrics_internal, "_ProxyMeterProvider", None), type),
    "context._RUNTIME_CONTEXT": False,  # set below
    "propagate._HTTP_TEXT_FORMAT": hasattr(propagate, "_HTTP_TEXT_FORMAT"),
    "CompositePropagator._propagators": False,  # set below
}

# Providers named in the environment are loaded by the API's public calls only: then
# the hot paths always ask through those calls.
TRACER_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
METER_PROVIDER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ


# -- is a global provider set? --------------------------------------------------
def tracer_provider_may_be_set() -> bool:
    """False only when no global TracerProvider can be set: a dict lookup instead of
    ``get_tracer_provider()``, which reads the environment every time while none is."""
    provider = getattr(_trace_api, "_TRACER_PROVIDER", _MISSING)
    return provider is not None or TRACER_PROVIDER_FROM_ENV


def meter_provider_may_be_set() -> bool:
    """As :func:`tracer_provider_may_be_set`, for the global MeterProvider."""
    provider = getattr(_metrics_internal, "_METER_PROVIDER", _MISSING)
    return provider is not None or METER_PROVIDER_FROM_ENV


def any_provider_may_be_set() -> bool:
    """Either of the two, in one call: asked for every polled message of a service without an SDK."""
    return (
        getattr(_trace_api, "_TRACER_PROVIDER", _MISSING) is not None
        or getattr(_metrics_internal, "_METER_PROVIDER", _MISSING) is not None
        or TRACER_PROVIDER_FROM_ENV
        or METER_PROVIDER_FROM_ENV
    )


_PROXY_METER_PROVIDER: Any = getattr(_metrics_internal, "_ProxyMeterProvider", None)
_PROXY_METER_TYPE: type = _PROXY_METER_PROVIDER if isinstance(_PROXY_METER_PROVIDER, type) else type(None)


def is_placeholder_meter_provider(provider: Any) -> bool:
    """True for the API's stand-in returned before a MeterProvider is set (or a no-op)."""
    if isinstance(provider, _PROXY_METER_TYPE):
        return True
    return type(provider).__name__ == "_ProxyMeterProvider"  # a release that moved the class


def is_noop_meter_provider(provider: Any) -> bool:
    return isinstance(provider, metrics.NoOpMeterProvider)


# -- attach ---------------------------------------------------------------------
def _attach_function() -> Callable[[Context], object]:
    """``context.attach``, or the contextvar's own ``set`` that it calls in the default
    runtime: the same token, two Python calls fewer for every polled message."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(var) is contextvars.ContextVar:
        FOUND["context._RUNTIME_CONTEXT"] = True
        setter: Callable[[Context], object] = var.set
        return setter
    return context_api.attach


attach = _attach_function()


def detach(token: object) -> None:
    """Undo an :func:`attach`, if this is the context (thread, task) that made it.

    A contextvar token can only be reset where it was set; from elsewhere the context is
    left alone rather than corrupted, and nothing is said: it is how the app chose to
    use the client, not an error.
    """
    if type(token) is contextvars.Token:
        try:
            token.var.reset(token)
        except (ValueError, RuntimeError):  # another context's token, or one already used
            pass
    else:  # a custom OTEL_PYTHON_CONTEXT runtime
        context_api.detach(token)  # type: ignore[arg-type]


# -- propagators ----------------------------------------------------------------
def global_textmap() -> TextMapPropagator:
    """The global propagator, read without a call when possible."""
    found = getattr(propagate, "_HTTP_TEXT_FORMAT", None)
    return found if found is not None else propagate.get_global_textmap()


def propagator_parts(propagator: TextMapPropagator) -> list[Any]:
    """The propagators a composite one runs, in order (itself when it is not composite)."""
    if not isinstance(propagator, CompositePropagator):
        return [propagator]
    parts = getattr(propagator, "_propagators", None)
    if isinstance(parts, list | tuple):
        return list(parts)
    return [propagator]  # unknown layout: treated as a custom propagator (the generic path)


def _check_composite() -> bool:
    return isinstance(getattr(CompositePropagator([]), "_propagators", None), list | tuple)


FOUND["CompositePropagator._propagators"] = _check_composite()


# -- SDK span limits ------------------------------------------------------------
def link_limit(provider: Any) -> int:
    """The SDK's per-span link limit (``OTEL_SPAN_LINK_COUNT_LIMIT``, default 128)."""
    limits = getattr(provider, "_span_limits", None)
    value = getattr(limits, "max_links", None)
    if isinstance(value, int) and value >= 0:
        return value
    env = os.environ.get("OTEL_SPAN_LINK_COUNT_LIMIT", "")
    return int(env) if env.isdigit() else 128


# -- the root decision of ParentBased(TraceIdRatioBased) ------------------------
_RANDOM_TRACE_ID = 0x02  # W3C level 2 flag
_FLAGS = tuple(TraceFlags(i) for i in range(256))
_TRACE_ID_LIMIT = (1 << 64) - 1


class RootIds:
    """The root decision of ``ParentBased(TraceIdRatioBased(r))``, made before the SDK.

    The SDK draws a root span's trace id and samples on it alone (``trace_id & limit <
    bound``). We draw the trace id from the same generator and decide the same way: a
    dropped root (99 % at r = 1 %) then costs a span context instead of a trip through
    the SDK, with exactly the ids, flags and trace state the SDK would give it. A kept
    root is handed to the SDK with that very trace id (preloaded into our tracer's id
    generator), so the SDK's own decision, on the same id, agrees: the sampled share
    stays exactly r. Reads the SDK tracer's ``id_generator``, ``sampler`` and
    ``_is_enabled``; without them the fast path is simply not installed.
    """

    __slots__ = ("_inner", "_bound", "_local", "_new_trace_id", "_new_span_id", "_flags", "_enabled")

    _DESCRIPTION = re.compile(r"ParentBased\{root:TraceIdRatioBased\{([0-9.eE+-]+)\},")

    def __init__(self, tracer: Any, inner: Any, bound: int) -> None:
        self._inner = inner
        self._bound = bound
        self._local = threading.local()
        self._new_trace_id = inner.generate_trace_id
        self._new_span_id = inner.generate_span_id
        self._flags = _FLAGS[_RANDOM_TRACE_ID] if self.is_trace_id_random() else _FLAGS[0]
        self._enabled = getattr(tracer, "_is_enabled", None)

    @classmethod
    def install(cls, tracer: Any, sampler: Any) -> RootIds | None:
        """Wrap our own tracer's id generator, if the sampler and the SDK allow it."""
        try:
            match = cls._DESCRIPTION.match(sampler.get_description())
            inner = getattr(tracer, "id_generator", None)
            if match is None or inner is None or getattr(tracer, "sampler", None) is not sampler:
                return None
            from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

            ids = cls(tracer, inner, TraceIdRatioBased.get_bound_for_rate(float(match.group(1))))
            tracer.id_generator = ids  # only the tracer of this library's scope
            return ids
        except Exception:
            return None

    # The id generator interface, for the SDK.
    def generate_trace_id(self) -> int:
        preloaded = getattr(self._local, "trace_id", None)
        if preloaded is not None:
            self._local.trace_id = None
            return int(preloaded)
        return int(self._inner.generate_trace_id())

    def generate_span_id(self) -> int:
        return int(self._inner.generate_span_id())

    def is_trace_id_random(self) -> bool:
        check = getattr(self._inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False

    def unsampled_root(self) -> NonRecordingSpan | None:
        """The SDK's span for a root it drops; None when it would keep it (it makes that one)."""
        enabled = self._enabled
        if enabled is not None and not enabled():
            return None  # a disabled tracer: the SDK's own answer
        trace_id = self._new_trace_id()
        if trace_id & _TRACE_ID_LIMIT < self._bound:
            self._local.trace_id = trace_id  # the SDK's next root takes this id
            return None
        return NonRecordingSpan(SpanContext(trace_id, self._new_span_id(), False, self._flags))


def sampler_of(provider: Any) -> Any:
    """An SDK TracerProvider's sampler (public attribute), or None."""
    return getattr(provider, "sampler", None)


def span_id_generator(provider: Any) -> Callable[[], int] | None:
    """An SDK TracerProvider's span id generator (public attribute), or None."""
    return getattr(getattr(provider, "id_generator", None), "generate_span_id", None)


def is_proxy_tracer_provider(provider: Any) -> bool:
    return isinstance(provider, trace.ProxyTracerProvider)


def is_noop_tracer_provider(provider: Any) -> bool:
    return isinstance(provider, trace.NoOpTracerProvider)
