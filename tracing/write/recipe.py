"""The span recipe for each messaging operation: send, process, receive.

Knows OpenTelemetry and the messaging conventions; knows nothing of a client's API
beyond the message accessors (``topic()``, ``partition()``, ...). Adapters call it.

Hot paths on purpose: span names and attribute dicts are precomputed per topic (and
partition), and when the SDK would not record a span anyway (no SDK, or an unsampled
parent under a parent-based sampler) no SDK span is started at all: the context still
flows, with a fresh span id, exactly as the SDK would have propagated it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

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
from tracing.write.propagation import Extracted

_SCOPE = "kafka-event-tracing"
_CONSUMER = SpanKind.CONSUMER
_PRODUCER = SpanKind.PRODUCER
_CLIENT = SpanKind.CLIENT
_UNSAMPLED = TraceFlags(0)
_TS_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE
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


def _error_type(err: Any) -> str:
    """`error.type` for a KafkaError or an exception."""
    name = getattr(err, "name", None)
    if callable(name):
        try:
            return str(name())  # KafkaError: e.g. _MSG_TIMED_OUT
        except Exception:
            pass
    return type(err).__qualname__


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
        self._tracer: Tracer | None = None
        self._resolved = False
        self.skip_remote_unsampled = False
        self.skip_local_unsampled = False
        common: dict[str, Any] = {sc.SYSTEM: "kafka"}
        if client_id:
            common[sc.CLIENT_ID] = client_id
        if server is not None:
            common[sc.SERVER_ADDRESS] = server[0]
            if server[1] is not None:
                common[sc.SERVER_PORT] = server[1]
        self.consumer_group = consumer_group
        self._common = common
        self._send: dict[str, tuple[str, dict[str, Any]]] = {}
        self._process: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}

    # -- tracer resolution ----------------------------------------------------
    def tracer(self) -> Tracer | None:
        """The SDK tracer, or None while no SDK is configured (propagation only)."""
        if self._resolved:
            return self._tracer
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider):
            return None  # no global provider yet: check again next time
        self._resolved = True
        if isinstance(provider, trace.NoOpTracerProvider):
            return None
        self._tracer = provider.get_tracer(_SCOPE, __version__, schema_url=sc.SCHEMA_URL)
        sampler = getattr(provider, "sampler", None)
        if sampler is not None:
            self.skip_remote_unsampled = _skips_unsampled(sampler, "remoteParent")
            self.skip_local_unsampled = _skips_unsampled(sampler, "localParent")
        return self._tracer

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

    def start_send(self, tracer: Tracer, topic: str, key: Any, partition: Any, tombstone: bool) -> Span:
        """Start the PRODUCER span of one produce call (ended by the delivery report)."""
        parent = trace.get_current_span()
        parent_context = parent.get_span_context()
        if self.skip_local_unsampled and parent_context.is_valid and not parent_context.trace_flags.sampled:
            return _unsampled_child(parent_context)
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
        return tracer.start_span(name, kind=_PRODUCER, attributes=attrs)

    @staticmethod
    def end_send(span: Span, err: Any, msg: Any) -> None:
        """End a send span from its delivery report: partition, offset, or the error."""
        if msg is not None:
            partition = msg.partition()
            if partition is not None and partition >= 0:
                span.set_attribute(sc.PARTITION, str(partition))
            offset = msg.offset()
            if offset is not None and offset >= 0:
                span.set_attribute(sc.KAFKA_OFFSET, offset)
        if err is not None:
            span.set_attribute(sc.ERROR_TYPE, _error_type(err))
            span.set_status(Status(StatusCode.ERROR, str(err)))
        span.end()

    @staticmethod
    def fail(span: Span, exc: BaseException) -> None:
        """Mark a span failed by an exception (recorded as an event) and end it."""
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute(sc.ERROR_TYPE, _error_type(exc))
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
                if self.skip_remote_unsampled and not producer.trace_flags.sampled:
                    span = _unsampled_child(producer)
                    return span, trace.set_span_in_context(span, extracted.context)
                parent_ctx: Context | None = extracted.context
            else:
                parent_ctx = Context()  # a new trace; incoming baggage and sampled flag ignored
            links: Sequence[Link] = (Link(producer),)
        else:
            parent_ctx = None  # the ambient context, if any
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
        if ts_type != _TS_NOT_AVAILABLE and ts > 0:
            attrs[sc.QUEUE_TIME_MS] = max(0, now // 1_000_000 - ts)
        span = tracer.start_span(name, parent_ctx, _CONSUMER, attrs, links, now)
        return span, trace.set_span_in_context(span, parent_ctx)

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


def _unsampled_child(parent: SpanContext) -> NonRecordingSpan:
    """What the SDK would make under an unsampled parent with a parent-based sampler."""
    return NonRecordingSpan(
        SpanContext(parent.trace_id, _getrandbits(64) or 1, False, _UNSAMPLED, parent.trace_state)
    )


def link_limit(provider: Any) -> int:
    """The SDK's per-span link limit (``OTEL_SPAN_LINK_COUNT_LIMIT``, default 128)."""
    limits = getattr(provider, "_span_limits", None)
    value = getattr(limits, "max_links", None)
    return int(value) if isinstance(value, int) and value >= 0 else 128


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
