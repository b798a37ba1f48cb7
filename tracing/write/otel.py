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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import opentelemetry.metrics._internal as _metrics_internal
import opentelemetry.trace as _trace_api
from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_MISSING = object()
# The context key of the current span, found through the public API.
_SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))

# Which internal reads work with the installed release (tests assert every one does).
FOUND: dict[str, bool] = {
    "trace._TRACER_PROVIDER": hasattr(_trace_api, "_TRACER_PROVIDER"),
    "metrics._METER_PROVIDER": hasattr(_metrics_internal, "_METER_PROVIDER"),
    "metrics._ProxyMeterProvider": isinstance(getattr(_metrics_internal, "_ProxyMeterProvider", None), type),
    "context._RUNTIME_CONTEXT": False,  # set below
    "propagate._HTTP_TEXT_FORMAT": False,  # set when the propagators are loaded
    "CompositePropagator._propagators": False,  # set below
}

# Providers named in the environment are loaded by the API's public calls only: then
# the hot paths always ask through those calls.
TRACER_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
METER_PROVIDER_FROM_ENV = "OTEL_PYTHON_METER_PROVIDER" in os.environ


# -- is a global provider set? --------------------------------------------------
# Each has a public fallback for a release without the variable (the public call is
# then made); the fast versions below replace them when the variables are there.
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


GENERIC = (tracer_provider_may_be_set, meter_provider_may_be_set, any_provider_may_be_set)


# The same answers with plain attribute reads, when the release has the variables and no
# provider is named in the environment: these run for every message of a service without an SDK.
# True when those reads answer (then a hot path may make them itself, without the call).
PROVIDERS_READ_PLAINLY = (
    FOUND["trace._TRACER_PROVIDER"]
    and FOUND["metrics._METER_PROVIDER"]
    and not (TRACER_PROVIDER_FROM_ENV or METER_PROVIDER_FROM_ENV)
)
if PROVIDERS_READ_PLAINLY:

    def tracer_provider_may_be_set() -> bool:  # noqa: F811
        return _trace_api._TRACER_PROVIDER is not None

    def meter_provider_may_be_set() -> bool:  # noqa: F811
        return _metrics_internal._METER_PROVIDER is not None

    def any_provider_may_be_set() -> bool:  # noqa: F811
        return _trace_api._TRACER_PROVIDER is not None or _metrics_internal._METER_PROVIDER is not None


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


def _current_function() -> Callable[[], Context]:
    """``context.get_current``, or the contextvar's own ``get`` that it calls in the default
    runtime (the variable's default is the empty Context): the same Context, two Python
    calls fewer for every send."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(var) is contextvars.ContextVar:
        getter: Callable[[], Context] = var.get
        return getter
    return context_api.get_current


current_context = _current_function()


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
class MissingPropagatorError(ValueError):
    """``OTEL_PROPAGATORS`` names a propagator that is not installed."""


# Propagators this project's extras install, by their OTEL_PROPAGATORS name.
_PROPAGATOR_EXTRAS = {"b3": "b3", "b3multi": "b3", "jaeger": "jaeger"}
_propagate: Any = None  # opentelemetry.propagate, imported on first use


def missing_propagator_message() -> str:
    """One line: which propagator named in ``OTEL_PROPAGATORS`` is missing, and how to get it."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in os.environ.get("OTEL_PROPAGATORS", "").split(",") if n.strip()]
    installed = {ep.name for ep in entry_points(group="opentelemetry_propagator")}
    missing = [n for n in names if n not in installed] or names or ["?"]
    name = missing[0]
    extra = _PROPAGATOR_EXTRAS.get(name)
    fix = f"pip install 'kafka-event-tracing[{extra}]'" if extra else "install the package providing it"
    return f"OTEL_PROPAGATORS names {name!r}, which is not installed: {fix} (or take it out of the variable)"


def load_propagators() -> Any:
    """``opentelemetry.propagate``, which builds the propagators of ``OTEL_PROPAGATORS``
    when first imported: done on first use (``configure()``, a wrapper), not at import."""
    global _propagate
    if _propagate is None:
        try:
            from opentelemetry import propagate
        except ValueError:  # the API's message names no remedy, and comes with a long traceback
            raise MissingPropagatorError(missing_propagator_message()) from None
        FOUND["propagate._HTTP_TEXT_FORMAT"] = hasattr(propagate, "_HTTP_TEXT_FORMAT")
        _propagate = propagate
    return _propagate


def global_textmap() -> TextMapPropagator:
    """The global propagator, read without a call when possible."""
    propagate = _propagate if _propagate is not None else load_propagators()
    found = getattr(propagate, "_HTTP_TEXT_FORMAT", None)
    return found if found is not None else propagate.get_global_textmap()  # type: ignore[no-any-return]


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


# -- the fast span path ---------------------------------------------------------
# The SDK's own span, built without the SDK's per-span validation: our attributes are
# known to be valid (str, int, bool values; non-empty str keys) and are checked against
# the provider's span limits; everything else (sampler, ids, flags, span processors'
# on_start/on_end, the span's own methods) is the SDK's. Taken only on the SDK versions
# the suite compares it on (tests/write/test_fast_span.py), and never when
# KET_FAST_SPANS=false.
_FAST_SPAN_SDK_VERSIONS = ("1.45.",)


def _sdk_version() -> str:
    try:
        from opentelemetry.sdk.version import __version__ as version

        return str(version)
    except Exception:
        return ""


def fast_spans_wanted() -> bool:
    value = os.environ.get("KET_FAST_SPANS", "true").strip().lower()
    return value not in ("false", "0", "no", "off")


def _known_attributes(
    bounded_class: Any, values: dict[str, Any], maxlen: int | None, max_value_len: int | None, immutable: bool
) -> Any:
    """The SDK's ``BoundedAttributes`` as its constructor makes it from ``values``, for values known
    to be valid and within the limits (nothing to clean, drop or cut)."""
    bounded = bounded_class.__new__(bounded_class)
    bounded._dict = values
    bounded.maxlen = maxlen
    bounded.dropped = 0
    bounded.max_value_len = max_value_len
    bounded._lock = threading.Lock()
    bounded._immutable = immutable
    return bounded


_EVENT_PARTS: tuple[Any, Any, Any] | None | bool = False  # False: not looked up yet


def _event_parts() -> tuple[Any, Any, Any] | None:
    """(the SDK's span class, Event, BoundedAttributes) where the fast event applies, else None."""
    global _EVENT_PARTS
    if _EVENT_PARTS is False:
        _EVENT_PARTS = None
        if fast_spans_wanted() and _sdk_version().startswith(_FAST_SPAN_SDK_VERSIONS):
            try:
                from opentelemetry.attributes import BoundedAttributes
                from opentelemetry.sdk.trace import Event, _Span

                _EVENT_PARTS = (_Span, Event, BoundedAttributes)
            except Exception:
                pass
    return _EVENT_PARTS  # type: ignore[return-value]


_PLAIN_VALUES = (int, str, bool)


def add_known_event(span: Any, name: str, attributes: dict[str, Any]) -> None:
    """``span.add_event(name, attributes)`` for plain values (ints, bools, str, always valid): the
    SDK's own event without its validation, for an SDK span of a supported version (a settlement
    event per consumed message is otherwise a fifth of a consumer's tracing cost). Whatever the SDK
    would cut, drop or warn about (over the limits, an ended span), and any other span, goes
    through ``add_event`` itself. ``KET_FAST_SPANS=false`` turns it off with the fast spans."""
    parts = _event_parts()
    if type(span) is PendingSpan:
        if parts is not None and _add_pending_event(span, parts, name, attributes):
            return
        span = span.sdk_span()
    if (
        parts is None
        or type(span) is not parts[0]
        or not all(type(value) in _PLAIN_VALUES for value in attributes.values())
    ):
        span.add_event(name, attributes)
        return
    limits = span._limits
    maxlen, length = limits.max_event_attributes, limits.max_attribute_length
    if (maxlen is not None and len(attributes) > maxlen) or (
        length is not None and any(type(v) is str and len(v) > length for v in attributes.values())
    ):
        span.add_event(name, attributes)
        return
    event = parts[1](name, _known_attributes(parts[2], dict(attributes), maxlen, length, True))
    with span._lock:
        if span._end_time is None:
            span._events.append(event)
            return
    span.add_event(name, attributes)  # ended: the SDK says so


def _add_pending_event(
    span: PendingSpan, parts: tuple[Any, Any, Any], name: str, attributes: dict[str, Any]
) -> bool:
    """:func:`add_known_event` on a pending span; False when the SDK's span must add it."""
    if not all(type(value) in _PLAIN_VALUES for value in attributes.values()):
        return False
    limits = span._paths._limits
    maxlen, length = limits.max_event_attributes, limits.max_attribute_length
    if (maxlen is not None and len(attributes) > maxlen) or (
        length is not None and any(type(v) is str and len(v) > length for v in attributes.values())
    ):
        return False
    event = parts[1](name, _known_attributes(parts[2], dict(attributes), maxlen, length, True))
    return span.add_known_event(event)


def sampling_rules(sampler: Any) -> tuple[Any, ...]:
    """How the sampler decides for a root, then under a remote sampled, remote unsampled, local
    sampled and local unsampled parent: ``(recording, sampled)`` for the SDK's static samplers
    (``ALWAYS_ON``/``ALWAYS_OFF``), the ratio's bound for its ``TraceIdRatioBased`` (sampled when
    ``trace_id & (2**64 - 1) < bound``), None where only a call to the sampler can tell (any
    other sampler, subclasses included). Neither SDK sampler changes a recorded span's
    attributes, and both return the parent's trace state."""
    try:
        from opentelemetry.sdk.trace.sampling import ParentBased, StaticSampler, TraceIdRatioBased

        def rule(each: Any) -> Any:
            if type(each) is StaticSampler:
                decision = each._decision
                return (bool(decision.is_recording()), bool(decision.is_sampled()))  # type: ignore[no-untyped-call]
            if type(each) is TraceIdRatioBased and each.TRACE_ID_LIMIT == _TRACE_ID_LIMIT:
                return int(each.bound)
            return None

        if type(sampler) is ParentBased:
            delegates = (
                sampler._root,
                sampler._remote_parent_sampled,
                sampler._remote_parent_not_sampled,
                sampler._local_parent_sampled,
                sampler._local_parent_not_sampled,
            )
            return tuple(rule(each) for each in delegates)
        return (rule(sampler),) * 5
    except Exception:
        return (None,) * 5


class FastSpans:
    """Starts SDK spans for one SDK tracer, exactly as ``tracer.start_span`` would.

    :meth:`start` returns None when it cannot vouch for the result (a sampler that adds
    or changes attributes, limits our attributes would hit, a disabled tracer): the
    caller then takes the SDK's own path for that span.
    """

    __slots__ = (
        "_tracer",
        "_sampler",
        "_processor",
        "_new_span_id",
        "_new_trace_id",
        "_random_roots",
        "_limits",
        "_max_attributes",
        "_max_length",
        "_max_link_attributes",
        "_max_links",
        "_max_events",
        "_resource",
        "_info",
        "_scope",
        "_enabled",
        "_span_class",
        "_unset",
        "_bounded",
        "_bounded_list",
        "_lock",
        "_readable_class",
        "_plain_types",
        "_multi_plain",
        "_checked",
        "_plain",
        "_no_events",
        "_no_links",
        "_rules",
        "_no_link_attributes",
    )

    def __init__(self, tracer: Any) -> None:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor, _Span
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.util import BoundedList
        from opentelemetry.trace import Status, StatusCode

        limits = tracer._span_limits
        self._tracer = tracer
        self._sampler = tracer.sampler
        self._processor = tracer.span_processor
        self._new_span_id = tracer.id_generator.generate_span_id
        self._new_trace_id = tracer.id_generator.generate_trace_id
        self._random_roots = bool(tracer.id_generator.is_trace_id_random())
        self._limits = limits
        self._max_attributes = limits.max_span_attributes
        self._max_length = limits.max_span_attribute_length
        self._max_link_attributes = limits.max_link_attributes
        self._max_links = limits.max_links
        self._max_events = limits.max_events
        self._resource = tracer.resource
        self._info = tracer.instrumentation_info
        self._scope = tracer._instrumentation_scope
        self._enabled = tracer._is_enabled
        self._span_class: Any = _Span
        self._unset = Status(StatusCode.UNSET)
        self._bounded: Any = BoundedAttributes
        self._bounded_list = BoundedList
        self._lock = threading.Lock
        self._readable_class: Any = ReadableSpan
        self._plain_types = (BatchSpanProcessor, SimpleSpanProcessor)
        self._multi_plain = type(self._processor) is SynchronousMultiSpanProcessor
        self._checked: Any = _MISSING
        self._plain = False
        self._no_events: Any = BoundedList(self._max_events)
        self._rules = sampling_rules(self._sampler)
        self._no_link_attributes = self._attributes({}, self._max_link_attributes, True)
        self._no_links: Any = BoundedList(self._max_links)

    @classmethod
    def install(cls, provider: Any, tracer: Any) -> FastSpans | None:
        """For an SDK tracer of a supported SDK version; None otherwise."""
        if not fast_spans_wanted() or not _sdk_version().startswith(_FAST_SPAN_SDK_VERSIONS):
            return None
        try:
            from opentelemetry.sdk.trace import Tracer as SdkTracer
            from opentelemetry.sdk.trace import TracerProvider as SdkProvider

            if type(provider) is not SdkProvider or type(tracer) is not SdkTracer:
                return None
            if type(tracer._tracer_metrics).__name__ != "NoOpTracerMetrics":
                return None  # the SDK's own span metrics count each span: let it see them
            return cls(tracer)
        except Exception:
            return None

    def _attributes(self, values: dict[str, Any], maxlen: int | None, immutable: bool) -> Any:
        length = self._max_length if not immutable else self._limits.max_attribute_length
        return _known_attributes(self._bounded, values, maxlen, length, immutable)

    def _within_limits(self, attributes: dict[str, Any]) -> bool:
        maxlen = self._max_attributes
        if maxlen is not None and len(attributes) > maxlen:
            return False
        length = self._max_length
        if length is not None:
            for value in attributes.values():
                if type(value) is str and len(value) > length:
                    return False
        return True

    def start(
        self,
        name: str,
        context: Context | None,
        kind: Any,
        attributes: dict[str, Any],
        links: Any,
        start_time: int | None,
    ) -> Any:
        if not self._enabled() or not self._within_limits(attributes):
            return None
        for link in links:
            if link.attributes or not link.context.is_valid:
                return None  # links with attributes: the SDK bounds them itself
        # No span in the context given: a root, without asking the API (which then answers INVALID_SPAN).
        found = context.get(_SPAN_KEY) if context is not None else _MISSING
        parent: SpanContext | None
        if found is None:
            parent = None
        elif isinstance(found, trace.Span):  # what get_current_span(context) would return
            parent = found.get_span_context()
        else:
            parent = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._new_trace_id()
            random_trace_id = self._random_roots
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        if parent is None:
            rule = self._rules[0]
        elif parent.is_remote:
            rule = self._rules[1 if parent.trace_flags & 0x01 else 2]
        else:
            rule = self._rules[3 if parent.trace_flags & 0x01 else 4]
        if rule is not None:  # the SDK's static or ratio sampler: its decision, made as it makes it
            if type(rule) is int:
                recording = sampled = trace_id & _TRACE_ID_LIMIT < rule
            else:
                recording, sampled = rule
            trace_state = parent.trace_state if parent is not None else None
        else:
            result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision = result.decision
            recording = decision.is_recording()
            if recording and result.attributes != attributes:
                # The sampler added or changed attributes: the SDK's own path for this span.
                return self._tracer.start_span(name, context, kind, attributes, links, start_time)
            sampled = decision.is_sampled()
            trace_state = result.trace_state
        flags = 0x01 if sampled else 0x00
        if random_trace_id:
            flags |= _RANDOM_TRACE_ID
        span_context = SpanContext(trace_id, self._new_span_id(), False, _FLAGS[flags], trace_state)
        if not recording:
            return NonRecordingSpan(span_context)
        started = start_time if start_time is not None else time.time_ns()
        if self._processors_plain():
            # No processor looks at a span before it ends: the SDK's span object is made
            # only if something asks for it (PendingSpan), the finished span directly.
            return PendingSpan(self, name, span_context, kind, parent, started, attributes, links)
        span = self.sdk_span(name, span_context, kind, parent, started, attributes, links, [], None)
        self._processor.on_start(span, parent_context=context)
        return span

    def _processors_plain(self) -> bool:
        """True while every registered span processor is the SDK's Batch or Simple one (their
        ``on_start`` and ``_on_ending`` do nothing; ``on_end`` takes the finished span)."""
        registered = getattr(self._processor, "_span_processors", None)
        if registered is not self._checked:  # processors added since: look again
            self._checked = registered
            self._plain = self._multi_plain and all(type(p) in self._plain_types for p in registered or ())
        return self._plain

    def sdk_span(
        self,
        name: str,
        span_context: SpanContext,
        kind: Any,
        parent: SpanContext | None,
        started: int,
        attributes: dict[str, Any],
        links: Any,
        events: list[Any],
        ended: int | None,
    ) -> Any:
        """The SDK's span object with these fields, as its constructor and ``start`` make it
        (and ``end``, when ``ended``), without calling any processor."""
        span = self._span_class.__new__(self._span_class)
        # ReadableSpan's fields, then Span's, as their constructors set them.
        span._name = name
        span._context = span_context
        span._kind = kind
        span._instrumentation_info = self._info
        span._instrumentation_scope = self._scope
        span._parent = parent
        span._start_time = started
        span._end_time = ended
        span._resource = self._resource
        span._status = self._unset
        span._sampler = self._sampler
        span._trace_config = None
        span._record_exception = True
        span._set_status_on_exception = True
        span._span_processor = self._processor
        span._limits = self._limits
        span._lock = self._lock()
        span._attributes = self._attributes(attributes, self._max_attributes, ended is not None)
        span._events = (
            self._bounded_list.from_seq(self._max_events, events)
            if events
            else self._bounded_list(self._max_events)
        )
        if links:
            for link in links:
                link._attributes = self._attributes({}, self._max_link_attributes, True)
        # from_seq() of nothing is the empty list itself: made directly for the common send.
        span._links = (
            self._bounded_list.from_seq(self._max_links, links)
            if links
            else self._bounded_list(self._max_links)
        )
        span._record_end_metrics = None
        return span

    def _links_of(self, links: Any) -> Any:
        """``BoundedList.from_seq(max_links, links)``, its fields set directly."""
        bounded: Any = self._bounded_list.__new__(self._bounded_list)
        maxlen = self._max_links
        bounded.dropped = max(0, len(links) - maxlen) if maxlen is not None else 0
        bounded._dq = deque(links, maxlen)
        bounded._lock = self._lock()
        return bounded

    def finish(self, pending: PendingSpan) -> None:
        """Hand the processors the finished span the SDK's ``end()`` would hand them."""
        readable = self._readable_class.__new__(self._readable_class)
        readable._name = pending._name
        readable._context = pending._context
        readable._kind = pending._kind
        readable._instrumentation_info = self._info
        readable._instrumentation_scope = self._scope
        readable._parent = pending._parent
        readable._start_time = pending._start_time
        readable._end_time = pending._end_time
        readable._attributes = self._attributes(pending._values, self._max_attributes, True)
        events = pending._events
        # A finished span's lists are only read from here on: the empty ones are shared.
        readable._events = (
            self._bounded_list.from_seq(self._max_events, events) if events else self._no_events
        )
        links = pending._links
        if links:
            no_attributes = self._no_link_attributes  # empty and immutable: one for all
            for link in links:
                link._attributes = no_attributes
            readable._links = self._links_of(links)
        else:
            readable._links = self._no_links
        readable._resource = self._resource
        readable._status = self._unset
        # SynchronousMultiSpanProcessor.on_end, without its frame: each processor registered now.
        for processor in self._processor._span_processors:
            processor.on_end(readable)

    def set_known(self, span: Any, key: str, value: int | str) -> None:
        """``span.set_attribute(key, value)`` for a value known to be valid (an int, or a
        str): the SDK's own result without its validation. Anything the SDK would warn
        about or drop (an ended span, a full or zero-size attribute dict, a str over the
        length limit) goes through ``set_attribute`` itself."""
        if type(span) is PendingSpan:
            if span.set_known(key, value):
                return
            span = span.sdk_span()
        attributes: Any = getattr(span, "_attributes", None)
        if (
            type(attributes) is not self._bounded
            or span._end_time is not None
            or attributes._immutable
            or (type(value) is str and self._max_length is not None and len(value) > self._max_length)
        ):
            span.set_attribute(key, value)
            return
        values = attributes._dict
        maxlen = attributes.maxlen
        if key in values:
            del values[key]
        elif maxlen is not None and len(values) >= maxlen:
            span.set_attribute(key, value)
            return
        values[key] = value


class PendingSpan(trace.Span):
    """A span of this library's, started and not yet ended, held as its fields.

    The SDK's span object costs a lock, two bounded lists and the copy ``end()`` makes for the
    processors; with only the SDK's Batch and Simple processors registered, nothing looks at
    it before it ends. So the common operation (started, a few known attributes, ended) makes
    only the finished span the processors receive (:meth:`FastSpans.finish`). Anything else
    asked of it (an app's ``set_attribute`` on the current span, an exception, a status, a
    property of the SDK's span) first makes the SDK's span object with the same fields,
    which answers from then on: what the app sees is the SDK's behaviour, warnings included.
    """

    __slots__ = (
        "_paths",
        "_name",
        "_context",
        "_kind",
        "_parent",
        "_start_time",
        "_end_time",
        "_values",
        "_links",
        "_events",
        "_sdk",
    )

    def __init__(
        self,
        paths: FastSpans,
        name: str,
        context: SpanContext,
        kind: Any,
        parent: SpanContext | None,
        started: int,
        values: dict[str, Any],
        links: Any,
    ) -> None:
        self._paths = paths
        self._name = name
        self._context = context
        self._kind = kind
        self._parent = parent
        self._start_time = started
        self._end_time: int | None = None
        self._values = values
        self._links = links
        self._events: list[Any] = []
        self._sdk: Any = None

    def sdk_span(self) -> Any:
        """The SDK's span object for this span (made once; after ``end``, an ended one)."""
        sdk = self._sdk
        if sdk is None:
            sdk = self._sdk = self._paths.sdk_span(
                self._name,
                self._context,
                self._kind,
                self._parent,
                self._start_time,
                self._values,
                self._links,
                self._events,
                self._end_time,
            )
        return sdk

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        sdk = self._sdk
        return self._end_time is None if sdk is None else bool(sdk.is_recording())

    def end(self, end_time: int | None = None) -> None:
        if self._sdk is not None or self._end_time is not None:
            self.sdk_span().end(end_time)  # the SDK's own end (or its warning when ended)
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        self._paths.finish(self)

    def set_known(self, key: str, value: int | str) -> bool:
        """Set an attribute whose value is known valid and within the limits; False when the
        SDK must (already its object, ended, the dict full, a str over the length limit)."""
        if self._sdk is not None or self._end_time is not None:
            return False
        paths = self._paths
        values = self._values
        if type(value) is str and paths._max_length is not None and len(value) > paths._max_length:
            return False
        if key in values:
            del values[key]  # re-inserted last, as BoundedAttributes does
        elif paths._max_attributes is not None and len(values) >= paths._max_attributes:
            return False
        values[key] = value
        return True

    def add_known_event(self, event: Any) -> bool:
        """Append an event built for this span's limits; False when the SDK must add it."""
        if self._sdk is not None or self._end_time is not None:
            return False
        maxlen = self._paths._max_events
        if maxlen is not None and len(self._events) >= maxlen:
            return False
        self._events.append(event)
        return True

    # The rest of the Span API: the SDK's span object answers.
    def set_attributes(self, attributes: Any) -> None:
        self.sdk_span().set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self.sdk_span().set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.sdk_span().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        self.sdk_span().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.sdk_span().update_name(name)

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.sdk_span().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.sdk_span().record_exception(exception, attributes, timestamp, escaped)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_val is None and self._sdk is None:
            self.end()
        else:
            self.sdk_span().__exit__(exc_type, exc_val, exc_tb)

    def __getattr__(self, name: str) -> Any:
        # Only for what the slots and methods above do not have: the SDK span's properties
        # (name, attributes, events, ...) and anything else a caller reads from it.
        if name.startswith("__") or name in PendingSpan.__slots__:
            raise AttributeError(name)
        return getattr(self.sdk_span(), name)

    def __repr__(self) -> str:
        return f'PendingSpan(name="{self._name}", context={self._context})'


# -- metric exporters -----------------------------------------------------------
def exporter_preferences(exporter: Any) -> tuple[Any, Any]:
    """A MetricExporter's preferred temporality and aggregation, to wrap it faithfully
    (the SDK's reader reads them from these attributes; no public accessor exists)."""
    return getattr(exporter, "_preferred_temporality", None), getattr(
        exporter, "_preferred_aggregation", None
    )


def histograms_are_cumulative(exporter: Any) -> bool:
    """Whether ``exporter`` wants histograms cumulative (the default; then the flow
    metrics' histograms can be aggregated in place and merged at export)."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    temporality, aggregation = exporter_preferences(exporter)
    if aggregation and aggregation.get(Histogram) is not None:
        from opentelemetry.sdk.metrics.view import DefaultAggregation, ExplicitBucketHistogramAggregation

        if not isinstance(aggregation[Histogram], DefaultAggregation | ExplicitBucketHistogramAggregation):
            return False
    return temporality is None or temporality.get(Histogram, AggregationTemporality.CUMULATIVE) is (
        AggregationTemporality.CUMULATIVE
    )


def collect_even_when_empty(reader: Any, resource: Any) -> bool:
    """Have a registered MetricReader hand its exporter an empty collection instead of
    none, so that metrics merged in at export (the flow metrics' histograms) are exported
    even when the SDK itself collected nothing. False when the reader's layout is not the
    one known here (then the caller records through the SDK instead)."""
    collect = getattr(reader, "_collect", None)
    if collect is None or not callable(collect):
        return False
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics

    def collect_or_empty(reader_: Any, *args: Any, **kwargs: Any) -> Any:
        found = collect(reader_, *args, **kwargs)
        if found is None:
            return MetricsData([ResourceMetrics(resource, [], resource.schema_url)])
        return found

    reader._collect = collect_or_empty
    return True


# -- span export ----------------------------------------------------------------
_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def with_fast_encoding(exporter: Any) -> bool:
    """Have the gRPC OTLP span exporter send what :class:`tracing.write.otlp.SpanEncoder`
    writes (the bytes its own encoder would serialise, several times cheaper) as they are:
    its ``_translate_data`` is the one step that turns spans into the request, and its stub
    (``_stub``, rebuilt on reconnection) sends that request; the stub here is the generated
    one's method with the bytes passed through instead of a message serialised. False
    (exporter unchanged) for any other exporter."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    except ImportError:
        return False
    if (
        type(exporter) is not OTLPSpanExporter
        or not callable(getattr(exporter, "_translate_data", None))
        or not hasattr(exporter, "_stub")
        or getattr(exporter, "_channel", None) is None
    ):
        return False
    from tracing.write.otlp import SpanEncoder

    class BytesStub:
        """The TraceService stub, taking the request already serialised."""

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(
                _EXPORT_METHOD,
                request_serializer=None,  # the request is bytes already
                response_deserializer=ExportTraceServiceResponse.FromString,
                _registered_method=True,
            )

    exporter._translate_data = SpanEncoder().encode  # type: ignore[method-assign,assignment]
    exporter._stub = BytesStub
    exporter._client = BytesStub(exporter._channel)  # type: ignore[assignment]
    return True
