"""The span recipe for each messaging operation: send, process, receive.

Knows OpenTelemetry and the messaging conventions, and reads only the plain records of
:mod:`tracing.write.records`: no client type appears here. The operations
(:mod:`tracing.write.operations`) call it; they own the order and the containment.

Hot paths on purpose: span names and attribute dicts are precomputed per destination
(and partition), and when the SDK would not record a span anyway (no SDK, or an
unsampled parent under a parent-based sampler) no SDK span is started at all: the
context still flows, with a fresh span id, exactly as the SDK would have propagated it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
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
from tracing.write import otel
from tracing.write.propagation import SPAN_KEY, Extracted, LazySpan
from tracing.write.records import ClientInfo, Delivery, Received, Send

SCOPE = "kafka-event-tracing"  # the instrumentation scope of every tracer and meter
# Where a processing's context carries its event chain (tracing.write.metrics.Chain) for
# the sends made while handling the message.
CHAIN_KEY = context_api.create_key("eventchain")
_CONSUMER = SpanKind.CONSUMER
_PRODUCER = SpanKind.PRODUCER
_CLIENT = SpanKind.CLIENT
_RANDOM_TRACE_ID = 0x02  # W3C level 2 flag; the SDK copies it from parent to child
_FLAGS = tuple(TraceFlags(i) for i in range(256))
_MAX_KEY_CHARS = 256
_MAX_STATUS = 1024
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


def common_attributes(client: ClientInfo) -> dict[str, Any]:
    """``messaging.system`` and the server attributes every span and metric of a client carries."""
    common: dict[str, Any] = {sc.SYSTEM: client.system}
    if client.server_address is not None:
        common[sc.SERVER_ADDRESS] = client.server_address
        if client.server_port is not None:
            common[sc.SERVER_PORT] = client.server_port
    return common


def mark_failed(span: Span, error_type: str, description: str, exc: BaseException | None = None) -> None:
    """The one way a span is marked failed: ``error.type``, ERROR status, the exception
    as an event when there is one. Does not end the span."""
    if span.is_recording():
        if exc is not None:
            span.record_exception(exc)
        span.set_attribute(sc.ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, description[:_MAX_STATUS]))


def describe(exc: BaseException) -> str:
    """An exception as a status description."""
    return f"{type(exc).__name__}: {exc}"


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
    return bool(
        description.startswith("ParentBased{") and f"{which}NotSampled:AlwaysOffSampler" in description
    )


class Telemetry:
    """The span side of one wrapped client.

    Resolves the tracer lazily (a global provider set after the client was built is
    honoured) and holds the precomputed names and attributes.
    """

    def __init__(self, client: ClientInfo, tracer_provider: TracerProvider | None = None) -> None:
        self.provider = tracer_provider
        self.resolved_tracer: Tracer | None = None  # with `resolved`, read by the hot paths
        self.resolved = False
        self.skip_remote_unsampled = False
        self.skip_local_unsampled = False
        self.links_per_span = 128
        self._root_ids: otel.RootIds | None = None  # the root-sampling fast path, when it applies
        self._fast: otel.FastSpans | None = None  # the fast span path, when it applies
        self._new_span_id: Callable[[], int] = _random_span_id
        self.client = client
        self._common = common_attributes(client)
        if client.client_id:
            self._common[sc.CLIENT_ID] = client.client_id
        self._send: dict[str, tuple[str, dict[str, Any]]] = {}
        self._process: dict[tuple[str, int | None], tuple[str, dict[str, Any]]] = {}

    # -- tracer resolution ----------------------------------------------------
    def tracer(self) -> Tracer | None:
        """The SDK tracer, or None while no SDK is configured (propagation only)."""
        if self.resolved:
            return self.resolved_tracer
        if self.provider is None and not otel.tracer_provider_may_be_set():
            return None  # no global provider yet: check again next time
        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        if otel.is_proxy_tracer_provider(provider):
            return None  # no global provider yet: check again next time
        self.resolved = True
        if otel.is_noop_tracer_provider(provider):
            return None
        tracer = provider.get_tracer(SCOPE, __version__, schema_url=sc.SCHEMA_URL)
        self.links_per_span = otel.link_limit(provider)
        sampler = otel.sampler_of(provider)
        if sampler is not None and not _sdk_counts_every_span():
            self.skip_remote_unsampled = _skips_unsampled(sampler, "remoteParent")
            self.skip_local_unsampled = _skips_unsampled(sampler, "localParent")
            self._root_ids = otel.RootIds.install(tracer, sampler)
        # Span ids of skipped children come from the provider's id generator, as the SDK's would.
        self._new_span_id = otel.span_id_generator(provider) or _random_span_id
        self._fast = otel.FastSpans.install(provider, tracer)  # after RootIds: it reads the id generator
        self.resolved_tracer = tracer
        return tracer

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
    def skipped_send(self, ctx: Context) -> NonRecordingSpan | None:
        """The span of a send the sampler drops anyway, made without the SDK; None when
        the SDK must decide (then :meth:`start_send`)."""
        if self.skip_local_unsampled or self.skip_remote_unsampled or self._root_ids is not None:
            if ctx.get(SPAN_KEY) is None:  # no parent: a root (what follows, sooner)
                return self._root_ids.unsampled_root() if self._root_ids is not None else None
            parent = trace.get_current_span(ctx).get_span_context()
            if parent.is_valid:
                return self._unsampled_child(parent)
            if self._root_ids is not None:
                return self._root_ids.unsampled_root()
        return None

    def _send_recipe(self, destination: str) -> tuple[str, dict[str, Any]]:
        recipe = self._send.get(destination)
        if recipe is None:
            attrs = dict(self._common)
            attrs[sc.OPERATION_NAME] = "send"
            attrs[sc.OPERATION_TYPE] = "send"
            attrs[sc.DESTINATION_NAME] = destination
            recipe = self._send[destination] = ("send " + destination, attrs)
        return recipe

    def start_send(self, tracer: Tracer, send: Send, ctx: Context) -> Span:
        """Start the PRODUCER span of one send (ended by :meth:`end_send`)."""
        name, base = self._send_recipe(send.destination)
        attrs = base.copy()
        if send.key is not None:
            text = key_text(send.key)
            if text is not None:
                attrs[sc.KAFKA_KEY] = text
        partition = send.partition
        if partition is not None and partition >= 0:
            attrs[sc.PARTITION] = str(partition)
        if send.tombstone:
            attrs[sc.KAFKA_TOMBSTONE] = True
        if send.extra:  # system-specific attributes (RabbitMQ's routing key, ...), added last
            attrs.update(send.extra)
        fast = self._fast
        if fast is not None:
            span = fast.start(name, ctx, _PRODUCER, attrs, (), None)
            if span is not None:
                return span  # type: ignore[no-any-return]
        # Positional and with the context we hold: the SDK then skips looking it up again.
        return tracer.start_span(name, ctx, _PRODUCER, attrs)

    def end_send(self, span: Span, delivery: Delivery) -> None:
        """End a send span from its delivery: partition, offset, or the error."""
        fast = self._fast
        partition = delivery.partition
        if partition is not None and partition >= 0:
            if fast is not None:
                fast.set_known(span, sc.PARTITION, str(partition))
            else:
                span.set_attribute(sc.PARTITION, str(partition))
        offset = delivery.offset
        if offset is not None and offset >= 0:
            if fast is not None:
                fast.set_known(span, sc.KAFKA_OFFSET, offset)
            else:
                span.set_attribute(sc.KAFKA_OFFSET, offset)
        if delivery.extra:
            span.set_attributes(dict(delivery.extra))
        if delivery.error is not None:
            mark_failed(span, delivery.error, delivery.message or delivery.error)
        span.end()

    # -- process --------------------------------------------------------------
    def _process_recipe(self, destination: str, partition: int | None) -> tuple[str, dict[str, Any]]:
        recipe = self._process.get((destination, partition))
        if recipe is None:
            attrs = dict(self._common)
            attrs[sc.OPERATION_NAME] = "process"
            attrs[sc.OPERATION_TYPE] = "process"
            attrs[sc.DESTINATION_NAME] = destination
            if partition is not None and partition >= 0:
                attrs[sc.PARTITION] = str(partition)
            if self.client.consumer_group:
                attrs[sc.CONSUMER_GROUP] = self.client.consumer_group
            recipe = self._process[(destination, partition)] = ("process " + destination, attrs)
        return recipe

    def start_process(
        self,
        tracer: Tracer,
        received: Received,
        extracted: Extracted | None,
        link_only: bool,
        now_ns: int,
        chain: Any = None,
    ) -> tuple[Span, Context]:
        """Start the CONSUMER span for one message; returns it and the context to make current
        (carrying ``chain`` under :data:`CHAIN_KEY` when given: one context built, not two).

        Parent: the producer's context from the headers (plus a link to it), unless
        ``link_only``, which starts a new trace that only links to the producer.
        """
        parent_ctx: Context | None
        if extracted is not None:
            producer = extracted.span_context
            if not link_only:
                parent_ctx = extracted.context
                if self.skip_remote_unsampled and not producer.trace_flags & 0x01:
                    skipped = self._unsampled_child(producer)
                    if skipped is not None:
                        return skipped, with_span(parent_ctx, skipped, chain)
            else:
                parent_ctx = Context()  # a new trace; incoming baggage and sampled flag ignored
            links: Sequence[Link] = (Link(producer),)
        else:
            parent_ctx = context_api.get_current()  # the ambient context, if any
            links = ()
        name, base = self._process_recipe(received.destination, received.partition)
        attrs = base.copy()
        if received.offset is not None:
            attrs[sc.KAFKA_OFFSET] = received.offset
        if received.key is not None:
            text = key_text(received.key)
            if text is not None:
                attrs[sc.KAFKA_KEY] = text
        if received.tombstone:
            attrs[sc.KAFKA_TOMBSTONE] = True
        elif received.body_size is not None:
            attrs[sc.BODY_SIZE] = received.body_size
        if received.timestamp_ms is not None:
            attrs[sc.QUEUE_TIME_MS] = max(0, now_ns // 1_000_000 - received.timestamp_ms)
        if received.extra:  # system-specific attributes (RabbitMQ's delivery tag, queue, ...)
            attrs.update(received.extra)
        fast = self._fast
        span = fast.start(name, parent_ctx, _CONSUMER, attrs, links, now_ns) if fast is not None else None
        if span is None:
            span = tracer.start_span(name, parent_ctx, _CONSUMER, attrs, links, now_ns)
        return span, with_span(parent_ctx, span, chain)

    # -- receive (batches) ----------------------------------------------------
    def receive_span(
        self, tracer: Tracer, batch: Sequence[tuple[Received, Extracted | None]], started_ns: int
    ) -> None:
        """Record one CLIENT span for a batch receive that returned messages.

        One link per message that carries a context (at most the SDK's link limit),
        with the message's partition and offset on the link.
        """
        if not batch:
            return
        destinations = {received.destination for received, _ in batch}
        attrs: dict[str, Any] = dict(self._common)
        attrs[sc.OPERATION_NAME] = "receive"
        attrs[sc.OPERATION_TYPE] = "receive"
        attrs[sc.BATCH_COUNT] = len(batch)
        if self.client.consumer_group:
            attrs[sc.CONSUMER_GROUP] = self.client.consumer_group
        if len(destinations) == 1:
            destination = next(iter(destinations))
            attrs[sc.DESTINATION_NAME] = destination
            name = "receive " + destination
        else:
            name = "receive"
        links: list[Link] = []
        for received, extracted in batch:
            if len(links) >= self.links_per_span:
                break
            if extracted is not None:
                link_attrs: dict[str, Any] = {sc.DESTINATION_NAME: received.destination}
                if received.partition is not None:
                    link_attrs[sc.PARTITION] = str(received.partition)
                if received.offset is not None:
                    link_attrs[sc.KAFKA_OFFSET] = received.offset
                links.append(Link(extracted.span_context, link_attrs))
        span = tracer.start_span(name, None, _CLIENT, attrs, links, started_ns)
        span.end()


class _SkippedChild(LazySpan):
    """The span the SDK would make under an unsampled remote parent that its sampler drops,
    built only when read (see :class:`LazySpan`): from a valid version-00 ``traceparent``
    alone (no ``tracestate``), the parent's trace id, a fresh span id, the parent's
    random-trace-id flag, not sampled, not remote.
    """

    def __init__(self, traceparent: bytes, new_span_id: Callable[[], int]) -> None:
        super().__init__(traceparent)
        self._new_span_id = new_span_id

    def _build(self, tp: bytes) -> SpanContext:
        flags = _FLAGS[int(tp[53:55], 16) & _RANDOM_TRACE_ID]
        return SpanContext(int(tp[3:35], 16), self._new_span_id(), False, flags)


_ODD_HEX = frozenset(b"13579bdf")


def _random_span_id() -> int:
    return _getrandbits(64) or 1


def with_span(context: Context | None, span: Span, chain: Any = None) -> Context:
    """``trace.set_span_in_context(span, context)`` in one dict build (same result), with
    the flow metrics' ``chain`` under :data:`CHAIN_KEY` when given."""
    if context is None:
        context = context_api.get_current()
    values = dict(context)
    values[SPAN_KEY] = span
    if chain is not None:
        values[CHAIN_KEY] = chain
    return Context(values)


def server_of(config: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """(address, port) of the first bootstrap server in a client config; (None, None) if unknown."""
    if not config:
        return None, None
    servers = config.get("bootstrap.servers") or config.get("bootstrap_servers")
    if not servers or not isinstance(servers, str):
        return None, None
    first = servers.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, None
    host = host.strip("[]")
    return (host, int(port)) if port.isdigit() else (first, None)
