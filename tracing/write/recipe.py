"""The span recipe for each messaging operation: send, process, receive.

Knows OpenTelemetry and the messaging conventions; knows nothing of a client's API
beyond the message accessors (``topic()``, ``partition()``, ...). Adapters call it.

Hot paths on purpose: span names and attribute dicts are precomputed per topic (and
partition), and when the SDK would not record a span anyway (no SDK, or an unsampled
parent under a parent-based sampler) no SDK span is started at all: the context still
flows, with a fresh span id, exactly as the SDK would have propagated it.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import opentelemetry.trace as _trace_api
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

from tracing import semconv as sc
from tracing.version import __version__
from tracing.write.propagation import SPAN_KEY, Extracted, LazySpan

SCOPE = "kafka-event-tracing"  # the instrumentation scope of every tracer and meter
_CONSUMER = SpanKind.CONSUMER
_PRODUCER = SpanKind.PRODUCER
_CLIENT = SpanKind.CLIENT
_RANDOM_TRACE_ID = 0x02  # W3C level 2 flag; the SDK copies it from parent to child
_FLAGS = tuple(TraceFlags(i) for i in range(256))
TS_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE
_MAX_KEY_CHARS = 256
_getrandbits = random.getrandbits
_time_ns = time.time_ns


def key_text(key: Any) -> str | None:
    """A message key as span attribute text (bytes decoded leniently, long keys cut)."""
    if key is None:
        return None
    if type(key) is bytes:
        text = key.decode("utf-8", "backslashreplace")
    elif type(key) is str:
        text = key
    elif isinstance(key, int | float):
        text = str(key)
    else:
        return None  # an object for a serializer: not ours to stringify
    return text if len(text) <= _MAX_KEY_CHARS else text[:_MAX_KEY_CHARS]


def error_type(err: Any) -> str:
    """`error.type` for a KafkaError or an exception (a KafkaException: the error it carries,
    so a failed delivery and a refused produce() of the same cause read alike)."""
    args = getattr(err, "args", None)
    if args and type(err).__name__ == "KafkaException" and hasattr(args[0], "name"):
        err = args[0]
    name = getattr(err, "name", None)
    if callable(name):
        try:
            return str(name())  # KafkaError: e.g. _MSG_TIMED_OUT
        except Exception:
            pass
    return type(err).__qualname__


# Has a global tracer provider been set? `trace.get_tracer_provider()` answers in ~1 µs
# when none is (it looks the environment up every time), on every message of a service
# that runs without an SDK. The API's own ProxyTracer reads this module variable; so do
# we, falling back to the public call if a future API drops it. A provider named in the
# environment is loaded by the public call, so then we always ask it.
_NOT_THERE = object()
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def global_provider_may_be_set() -> bool:
    provider = getattr(_trace_api, "_TRACER_PROVIDER", _NOT_THERE)
    return provider is not None or _PROVIDER_FROM_ENV


def _sdk_counts_every_span() -> bool:
    """The SDK's own span metrics (opt-in) count dropped spans too: then it must see them all."""
    value = os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "")
    return value.strip().lower() == "true"


def _skips_unsampled(sampler: Any, which: str) -> bool:
    """True when a parent-based sampler drops every span of an unsampled parent."""
    try:
        description = sampler.get_description()
    except Exception:
        return False
    return description.startswith("ParentBased{") and f"{which}NotSampled:AlwaysOffSampler" in description


class Telemetry:
    """The OpenTelemetry side of one wrapped client.

    Resolves the tracer lazily (a global provider set after the client was built is
    honoured) and holds the precomputed names and attributes.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        client_id: str | None = None,
        server: tuple[str, int | None] | None = None,
        consumer_group: str | None = None,
    ) -> None:
        self._provider = tracer_provider
        self.resolved_tracer: Tracer | None = None  # with `resolved`, read by the hot paths
        self.resolved = False
        self.skip_remote_unsampled = False
        self.skip_local_unsampled = False
        self._root_ids: _RootIds | None = None  # the root-sampling fast path, when it applies
        self._new_span_id: Any = None
        common = common_attributes(server)
        if client_id:
            common[sc.CLIENT_ID] = client_id
        self.consumer_group = consumer_group
        self._common = common
        self._send: dict[str, tuple[str, dict[str, Any]]] = {}
        self._process: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}

    # -- tracer resolution ----------------------------------------------------
    def tracer(self) -> Tracer | None:
        """The SDK tracer, or None while no SDK is configured (propagation only)."""
        if self.resolved:
            return self.resolved_tracer
        if self._provider is None and not global_provider_may_be_set():
            return None  # no global provider yet: check again next time
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider):
            return None  # no global provider yet: check again next time
        self.resolved = True
        if isinstance(provider, trace.NoOpTracerProvider):
            return None
        self.resolved_tracer = provider.get_tracer(SCOPE, __version__, schema_url=sc.SCHEMA_URL)
        sampler = getattr(provider, "sampler", None)
        if sampler is not None and not _sdk_counts_every_span():
            self.skip_remote_unsampled = _skips_unsampled(sampler, "remoteParent")
            self.skip_local_unsampled = _skips_unsampled(sampler, "localParent")
        # Span ids of skipped children come from the provider's id generator, as the SDK's would.
        id_generator = getattr(provider, "id_generator", None)
        self._new_span_id = getattr(id_generator, "generate_span_id", None) or _random_span_id
        if sampler is not None and not _sdk_counts_every_span():
            self._root_ids = _RootIds.install(self.resolved_tracer, sampler)
        return self.resolved_tracer

    def _unsampled_child(self, parent: SpanContext) -> NonRecordingSpan | None:
        """What the SDK would make under an unsampled parent when its sampler drops those
        children anyway (None when it might not): no SDK span, but the trace id, the
        trace state and a fresh span id flow on."""
        if parent.trace_flags.sampled or not parent.is_valid:
            return None
        if not (self.skip_remote_unsampled if parent.is_remote else self.skip_local_unsampled):
            return None
        flags = _FLAGS[parent.trace_flags & _RANDOM_TRACE_ID]
        child = SpanContext(parent.trace_id, self._new_span_id(), False, flags, parent.trace_state)
        return NonRecordingSpan(child)

    def skipped_child(self, traceparent: bytes) -> NonRecordingSpan | None:
        """:meth:`_unsampled_child` for a plain, valid ``traceparent``, without parsing it;
        None when the SDK might record the child (sampled parent, or a sampler that may)."""
        if not self.skip_remote_unsampled or traceparent[54] in _ODD_HEX:  # the sampled bit
            return None
        return _SkippedChild(traceparent, self._new_span_id)

    # -- send -----------------------------------------------------------------
    def _send_recipe(self, topic: str) -> tuple[str, dict[str, Any]]:
        recipe = self._send.get(topic)
        if recipe is None:
            attrs = dict(self._common)
            attrs[sc.OPERATION_NAME] = "send"
            attrs[sc.OPERATION_TYPE] = "send"
            attrs[sc.DESTINATION_NAME] = topic
            recipe = self._send[topic] = ("send " + topic, attrs)
        return recipe

    def start_send(
        self,
        tracer: Tracer,
        topic: str,
        key: Any,
        partition: Any,
        tombstone: bool,
        context: Context | None = None,
    ) -> Span:
        """Start the PRODUCER span of one produce call (ended by the delivery report).

        ``context``: the current context, when the caller has it already.
        """
        ctx = context if context is not None else context_api.get_current()
        if self.skip_local_unsampled or self.skip_remote_unsampled or self._root_ids is not None:
            parent = trace.get_current_span(ctx).get_span_context()
            if parent.is_valid:
                skipped = self._unsampled_child(parent)
                if skipped is not None:
                    return skipped
            elif self._root_ids is not None:
                root = self._root_ids.unsampled_root()
                if root is not None:
                    return root
        name, base = self._send_recipe(topic)
        attrs = base.copy()
        if key is not None:
            text = key_text(key)
            if text is not None:
                attrs[sc.KAFKA_KEY] = text
        if partition is not None and partition >= 0:
            attrs[sc.PARTITION] = str(partition)
        if tombstone:
            attrs[sc.KAFKA_TOMBSTONE] = True
        # Positional and with the context we hold: the SDK then skips looking it up again.
        return tracer.start_span(name, ctx, _PRODUCER, attrs)

    @staticmethod
    def end_send(span: Span, err: Any, msg: Any) -> None:
        """End a send span from its delivery report: partition, offset, or the error."""
        if msg is not None:
            # Two set_attribute calls: set_attributes({...}) costs more for two values
            # (the SDK then cleans the dict as a whole, through ABC instance checks).
            partition = msg.partition()
            if partition is not None and partition >= 0:
                span.set_attribute(sc.PARTITION, str(partition))
            offset = msg.offset()
            if offset is not None and offset >= 0:
                span.set_attribute(sc.KAFKA_OFFSET, offset)
        if err is not None:
            span.set_attribute(sc.ERROR_TYPE, error_type(err))
            span.set_status(Status(StatusCode.ERROR, str(err)))
        span.end()

    @staticmethod
    def fail(span: Span, exc: BaseException) -> None:
        """Mark a span failed by an exception (recorded as an event) and end it."""
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute(sc.ERROR_TYPE, error_type(exc))
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()

    # -- process --------------------------------------------------------------
    def _process_recipe(self, topic: str, partition: int) -> tuple[str, dict[str, Any]]:
        recipe = self._process.get((topic, partition))
        if recipe is None:
            attrs = dict(self._common)
            attrs[sc.OPERATION_NAME] = "process"
            attrs[sc.OPERATION_TYPE] = "process"
            attrs[sc.DESTINATION_NAME] = topic
            if partition is not None and partition >= 0:
                attrs[sc.PARTITION] = str(partition)
            if self.consumer_group:
                attrs[sc.CONSUMER_GROUP] = self.consumer_group
            recipe = self._process[(topic, partition)] = ("process " + topic, attrs)
        return recipe

    def start_process(
        self, tracer: Tracer, msg: Any, extracted: Extracted | None, link_only: bool
    ) -> tuple[Span, Context | None]:
        """Start the CONSUMER span for one message; returns it and the context to make current.

        Parent: the producer's context from the headers (plus a link to it), unless
        ``link_only``, which starts a new trace that only links to the producer.
        """
        if extracted is not None:
            producer = extracted.span_context
            if not link_only:
                parent_ctx: Context | None = extracted.context
                if self.skip_remote_unsampled:
                    skipped = self._unsampled_child(producer)
                    if skipped is not None:
                        return skipped, _with_span(parent_ctx, skipped)
            else:
                parent_ctx = Context()  # a new trace; incoming baggage and sampled flag ignored
            links: Sequence[Link] = (Link(producer),)
        else:
            parent_ctx = context_api.get_current()  # the ambient context, if any
            links = ()
        topic = msg.topic()
        name, base = self._process_recipe(topic, msg.partition())
        attrs = base.copy()
        offset = msg.offset()
        if offset is not None:
            attrs[sc.KAFKA_OFFSET] = offset
        key = msg.key()
        if key is not None:
            text = key_text(key)
            if text is not None:
                attrs[sc.KAFKA_KEY] = text
        value = msg.value()
        if value is None:
            attrs[sc.KAFKA_TOMBSTONE] = True
        else:
            try:
                attrs[sc.BODY_SIZE] = len(value)
            except TypeError:
                pass  # a deserialized object has no byte size
        ts_type, ts = msg.timestamp()
        now = _time_ns()
        if ts_type != TS_NOT_AVAILABLE and ts > 0:
            attrs[sc.QUEUE_TIME_MS] = max(0, now // 1_000_000 - ts)
        span = tracer.start_span(name, parent_ctx, _CONSUMER, attrs, links, now)
        return span, _with_span(parent_ctx, span)

    # -- receive (batches) ----------------------------------------------------
    def receive_span(
        self, tracer: Tracer, messages: Sequence[Any], started_ns: int, extract: Any, link_limit: int
    ) -> None:
        """Record one CLIENT span for a ``consume()`` call that returned messages.

        One link per message that carries a context (at most ``link_limit``), with the
        message's partition and offset on the link.
        """
        topics = {m.topic() for m in messages if m.error() is None}
        if not topics:
            return
        attrs: dict[str, Any] = dict(self._common)
        attrs[sc.OPERATION_NAME] = "receive"
        attrs[sc.OPERATION_TYPE] = "receive"
        attrs[sc.BATCH_COUNT] = len(messages)
        if self.consumer_group:
            attrs[sc.CONSUMER_GROUP] = self.consumer_group
        if len(topics) == 1:
            topic = next(iter(topics))
            attrs[sc.DESTINATION_NAME] = topic
            name = "receive " + topic
        else:
            name = "receive"
        links: list[Link] = []
        for m in messages:
            if len(links) >= link_limit:
                break
            if m.error() is not None:
                continue
            extracted = extract(m.headers())
            if extracted is not None:
                links.append(
                    Link(
                        extracted.span_context,
                        {
                            sc.DESTINATION_NAME: m.topic(),
                            sc.PARTITION: str(m.partition()),
                            sc.KAFKA_OFFSET: m.offset(),
                        },
                    )
                )
        span = tracer.start_span(name, None, _CLIENT, attrs, links, started_ns)
        span.end()


class _SkippedChild(LazySpan):
    """The span the SDK would make under an unsampled remote parent that its sampler drops,
    built only when read (see :class:`LazySpan`): from a valid version-00 ``traceparent``
    alone (no ``tracestate``), the parent's trace id, a fresh span id, the parent's
    random-trace-id flag, not sampled, not remote.
    """

    def __init__(self, traceparent: bytes, new_span_id: Any) -> None:
        super().__init__(traceparent)
        self._new_span_id = new_span_id

    def _build(self, tp: bytes) -> SpanContext:
        flags = _FLAGS[int(tp[53:55], 16) & _RANDOM_TRACE_ID]
        return SpanContext(int(tp[3:35], 16), self._new_span_id(), False, flags)


_ODD_HEX = frozenset(b"13579bdf")


class _RootIds:
    """The root decision of ``ParentBased(TraceIdRatioBased(r))``, made before the SDK.

    The SDK draws a root span's trace id and samples on it alone (``trace_id & limit <
    bound``). We draw the trace id from the same generator and decide the same way: a
    dropped root (99 % at r = 1 %) then costs a span context instead of a trip through
    the SDK, with exactly the ids, flags and trace state the SDK would give it. A kept
    root is handed to the SDK with that very trace id (preloaded into our tracer's id
    generator), so the SDK's own decision, on the same id, agrees: the sampled share
    stays exactly r.
    """

    __slots__ = (
        "_inner",
        "_bound",
        "_local",
        "_tracer",
        "_new_trace_id",
        "_new_span_id",
        "_flags",
        "_enabled",
    )

    _DESCRIPTION = re.compile(r"ParentBased\{root:TraceIdRatioBased\{([0-9.eE+-]+)\},")

    def __init__(self, tracer: Any, inner: Any, bound: int) -> None:
        self._tracer = tracer
        self._inner = inner
        self._bound = bound
        self._local = threading.local()
        # Looked up once: this runs for every root send.
        self._new_trace_id = inner.generate_trace_id
        self._new_span_id = inner.generate_span_id
        self._flags = _FLAGS[_RANDOM_TRACE_ID] if self.is_trace_id_random() else _FLAGS[0]
        self._enabled = getattr(tracer, "_is_enabled", None)

    @classmethod
    def install(cls, tracer: Any, sampler: Any) -> _RootIds | None:
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
            return preloaded
        return self._inner.generate_trace_id()

    def generate_span_id(self) -> int:
        return self._inner.generate_span_id()

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


_TRACE_ID_LIMIT = (1 << 64) - 1


def _random_span_id() -> int:
    return _getrandbits(64) or 1


def _with_span(context: Context | None, span: Span) -> Context:
    """``trace.set_span_in_context(span, context)`` in one dict build (same result)."""
    if context is None:
        return trace.set_span_in_context(span)  # derived from the current context
    values = dict(context)
    values[SPAN_KEY] = span
    return Context(values)


def link_limit(provider: Any) -> int:
    """The SDK's per-span link limit (``OTEL_SPAN_LINK_COUNT_LIMIT``, default 128)."""
    limits = getattr(provider, "_span_limits", None)
    value = getattr(limits, "max_links", None)
    return int(value) if isinstance(value, int) and value >= 0 else 128


def common_attributes(server: tuple[str, int | None] | None) -> dict[str, Any]:
    """``messaging.system`` and the server attributes every span and metric of a client carries."""
    common: dict[str, Any] = {sc.SYSTEM: "kafka"}
    if server is not None:
        common[sc.SERVER_ADDRESS] = server[0]
        if server[1] is not None:
            common[sc.SERVER_PORT] = server[1]
    return common


def server_of(config: Mapping[str, Any] | None) -> tuple[str, int | None] | None:
    """(address, port) of the first bootstrap server in a client config."""
    if not config:
        return None
    servers = config.get("bootstrap.servers") or config.get("bootstrap_servers")
    if not servers or not isinstance(servers, str):
        return None
    first = servers.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, None
    host = host.strip("[]")
    return (host, int(port)) if port.isdigit() else (first, None)
