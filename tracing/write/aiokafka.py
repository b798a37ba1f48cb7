"""aiokafka adapters: the spans and propagation of the confluent-kafka adapters, for aiokafka.

- ``TracedAIOKafkaProducer`` wraps ``aiokafka.AIOKafkaProducer``: ``await send(...)``
  returns the client's future of ``RecordMetadata``; the send span ends when it resolves.
- ``TracedAIOKafkaConsumer`` wraps ``aiokafka.AIOKafkaConsumer``: ``await getone()`` and
  ``async for`` open the record's process span in the calling task, ``getmany()``
  records one receive span, ``async with consumer.process(record):`` covers a block.

Thin on purpose: the per-task span bookkeeping is :class:`~tracing.write.aio.TracedAIOConsumer`'s,
reached through a small object that makes an ``AIOKafkaConsumer`` look like the client
it expects; records reach the span recipe through :class:`RecordView`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanContext, TracerProvider

from tracing.write.aio import AsyncProcessing, TracedAIOConsumer
from tracing.write.consumer import PARENT, _Open
from tracing.write.metrics import CHAIN_HEADER, FlowMetrics
from tracing.write.propagation import Propagation, replace_headers, report_internal_error
from tracing.write.recipe import Telemetry, error_type, server_of

_get_current = context_api.get_current
# aiokafka's timestamp types (0 create time, 1 log-append time) as confluent-kafka numbers
# them (1, 2; 0 is "not available"), which the recipe reads.
_TIMESTAMP_TYPES = (1, 2)
_NO_TIMESTAMP = (0, -1)


class RecordView:
    """A read-only view giving an aiokafka record the accessors the span recipe reads.

    The recipe reads confluent-kafka's methods (``topic()``, ``timestamp()``, ...);
    aiokafka's ``ConsumerRecord`` and ``RecordMetadata`` have attributes of the same
    names. Nothing is copied.

    >>> view = RecordView(record)        # an aiokafka ConsumerRecord
    >>> view.topic(), view.timestamp()
    ('orders', (1, 1767225600000))
    """

    __slots__ = ("record",)

    def __init__(self, record: Any) -> None:
        self.record = record

    def topic(self) -> str:
        return self.record.topic

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def key(self) -> Any:
        return self.record.key

    def value(self) -> Any:
        return self.record.value

    def headers(self) -> Any:
        return self.record.headers

    def timestamp(self) -> tuple[int, int]:
        record = self.record
        ts = record.timestamp
        if ts is None or ts < 0:
            return _NO_TIMESTAMP
        kind = record.timestamp_type
        return (_TIMESTAMP_TYPES[kind], ts) if kind in (0, 1) else _NO_TIMESTAMP

    @staticmethod
    def error() -> None:
        """aiokafka raises errors instead of returning them as messages."""
        return None


def _client_settings(client: Any) -> dict[str, Any]:
    """The settings spans name (servers, client id, group) in confluent-kafka's spelling.

    aiokafka has no public accessor for them, so they are read from the client's
    attributes; a client without them only means spans without those attributes.
    """
    try:
        network = getattr(client, "client", None) or getattr(client, "_client", None)
        servers = getattr(network, "_bootstrap_servers", None)
        if isinstance(servers, list | tuple):
            servers = ",".join(servers)
        return {
            "bootstrap.servers": servers if isinstance(servers, str) else None,
            "client.id": getattr(network, "_client_id", None),
            "group.id": getattr(client, "_group_id", None),
        }
    except Exception:
        report_internal_error("could not read the client's settings")
        return {}


# ----------------------------------------------------------------------------
# Producer
# ----------------------------------------------------------------------------
def _end_send(span: Span, delivered: asyncio.Future[Any]) -> None:
    """End a send span when aiokafka's delivery future resolves."""
    try:
        if delivered.cancelled():
            # The app stopped waiting; aiokafka still sends the message, the outcome is unknown.
            span.end()
            return
        err = delivered.exception()
        if err is not None:
            Telemetry.end_send(span, err, None)
        else:
            Telemetry.end_send(span, None, RecordView(delivered.result()))
    except Exception:
        report_internal_error("could not record a delivery")


def _count_send(
    flow: FlowMetrics, instruments: Any, topic: str, started: int, delivered: asyncio.Future[Any]
) -> None:
    """Count one send in the flow metrics when aiokafka's delivery future resolves."""
    try:
        if delivered.cancelled():
            return  # the outcome is unknown: neither sent nor failed
        err = delivered.exception()
        partition = None if err is not None else getattr(delivered.result(), "partition", None)
        flow.sent(instruments, topic, partition, error_type(err) if err is not None else None, started)
    except Exception:
        report_internal_error("could not record a delivery in the metrics")


class TracedAIOKafkaProducer:
    """Wraps an ``aiokafka.AIOKafkaProducer``; every message carries its send span's context.

    ``send()`` records a ``send {topic}`` PRODUCER span, injects its context into the
    headers (replacing any trace headers, never appending; the caller's list is not
    modified) and ends the span when the returned future resolves, with the partition
    and offset, or the error. Everything else is the wrapped producer's.

    >>> producer = TracedAIOKafkaProducer(AIOKafkaProducer(bootstrap_servers="127.0.0.1:19092"))
    >>> await producer.start()
    >>> delivered = await producer.send("orders", b'{"id": 1}', key=b"order-1")
    >>> metadata = await delivered          # RecordMetadata, or the client's exception
    >>> await producer.stop()

    Args:
        producer: the ``AIOKafkaProducer``.
        tracer_provider: defaults to the global one.
        propagator: defaults to the global one (``OTEL_PROPAGATORS``).
        meter_provider: for the flow metrics; defaults to the global one (none: no metrics).
    """

    def __init__(
        self,
        producer: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        meter_provider: Any = None,
    ) -> None:
        self._producer = producer
        self._propagation = Propagation(propagator)
        settings = _client_settings(producer)
        self._telemetry = Telemetry(
            tracer_provider, client_id=settings.get("client.id"), server=server_of(settings)
        )
        self._flow = FlowMetrics(meter_provider, server=server_of(settings))

    @property
    def wrapped(self) -> Any:
        """The aiokafka producer underneath."""
        return self._producer

    async def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """As ``AIOKafkaProducer.send``: a future of the message's ``RecordMetadata``, traced."""
        ctx = _get_current()
        span: Span | None = None
        sent_headers = headers
        started = time.time_ns()
        instruments = None
        try:
            instruments = self._flow.instruments()
            chain = None
            if instruments is not None:
                chain = (CHAIN_HEADER, self._flow.chain_to_send(ctx, topic).encode())
            tracer = self._telemetry.tracer()
            if tracer is not None:
                span = self._telemetry.start_send(tracer, topic, key, partition, value is None, ctx)
                carried = span.get_span_context()
            else:
                # No SDK: no span, but an incoming context (say, of the record being
                # processed) still flows downstream.
                carried = trace.get_current_span(ctx).get_span_context()
            if carried.is_valid:
                sent_headers = self._inject(headers, carried, ctx, chain)
            elif chain is not None:
                sent_headers = replace_headers(headers, [chain])
        except Exception:
            report_internal_error("could not trace a send")
            sent_headers = headers
        try:
            delivered = await self._producer.send(
                topic,
                value=value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=sent_headers,
            )
        except BaseException as exc:  # refused, or the send itself cancelled: nothing is sent
            if span is not None:
                Telemetry.fail(span, exc)
            if instruments is not None and isinstance(exc, Exception):
                self._flow.sent(instruments, topic, partition, error_type(exc), started)
            raise
        if span is not None and span.is_recording():  # no callback for a span nobody records
            delivered.add_done_callback(partial(_end_send, span))
        if instruments is not None:
            delivered.add_done_callback(partial(_count_send, self._flow, instruments, topic, started))
        return delivered

    async def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Iterable[tuple[str, bytes]] | None = None,
    ) -> Any:
        """As ``AIOKafkaProducer.send_and_wait``: the ``RecordMetadata``, traced."""
        delivered = await self.send(topic, value, key, partition, timestamp_ms, headers)
        return await delivered

    def _inject(self, headers: Any, span_context: SpanContext, ctx: Context, extra: Any = None) -> Any:
        """The caller's headers with the trace headers replaced; aiokafka wants bytes values."""
        carried = self._propagation.inject(None, span_context, ctx, extra)
        if not carried:
            return headers
        encoded = [(k, v.encode() if type(v) is str else v) for k, v in carried]
        return replace_headers(headers, encoded)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def __aenter__(self) -> TracedAIOKafkaProducer:
        await self._producer.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._producer.__aexit__(*exc)

    def __repr__(self) -> str:
        return f"TracedAIOKafkaProducer({self._producer!r})"


# ----------------------------------------------------------------------------
# Consumer
# ----------------------------------------------------------------------------
class _Batch:
    """A ``getmany()`` result as the flat message sequence the receive span reads.

    Views are made only when the sequence is read, that is only when there is an SDK.
    """

    __slots__ = ("records",)

    def __init__(self, records: dict[Any, list[Any]]) -> None:
        self.records = records

    def __len__(self) -> int:
        return sum(map(len, self.records.values()))

    def __iter__(self) -> Iterator[RecordView]:
        for records in self.records.values():
            for record in records:
                yield RecordView(record)


class _ConfluentShaped:
    """An ``AIOKafkaConsumer`` through the calls :class:`TracedAIOConsumer` makes."""

    __slots__ = ("consumer", "handing_over")

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.handing_over: list[Any] = []  # the spans' hand-over list, once they are built

    async def poll(self, *partitions: Any, iterating: bool = False) -> RecordView:
        consumer = self.consumer
        if self.handing_over:
            # aiokafka returns a prefetched record without suspending; a task just handed
            # the previous record must get its first step now, to claim that record's span.
            await asyncio.sleep(0)
        # __anext__ is aiokafka's own loop: it skips oversized records and ends the
        # iteration once the consumer is stopped.
        record = await (consumer.__anext__() if iterating else consumer.getone(*partitions))
        return RecordView(record)

    async def consume(self, *partitions: Any, **kwargs: Any) -> _Batch:
        return _Batch(await self.consumer.getmany(*partitions, **kwargs))

    async def close(self) -> None:
        await self.consumer.stop()


class _RecordSpans(TracedAIOConsumer):
    """TracedAIOConsumer's per-task spans over record views; the app holds the records."""

    def __init__(self, calls: _ConfluentShaped, **options: Any) -> None:
        super().__init__(calls, **options)
        calls.handing_over = self._handing_over

    def _start(self, msg: Any, polled: bool = False) -> _Open | None:
        # From getone (a view already) or from process(record) (the app's record).
        return super()._start(msg if type(msg) is RecordView else RecordView(msg), polled)

    def _claim(self, msg: Any) -> _Open | None:
        # process(record) gets the app's record; the open spans hold views of records.
        for opened in (*self._opens.values(), *self._handing_over):
            view = opened.msg
            if view.record is msg:
                return super()._claim(view)
        return None


class TracedAIOKafkaConsumer:
    """Wraps an ``aiokafka.AIOKafkaConsumer``; each record continues its producer's trace.

    One ``process {topic}`` span per record, as with the confluent-kafka consumers:
    ``await getone()`` (and ``async for``) opens it in the calling task, where it stays
    current until that task's next ``getone``; ``async with consumer.process(record):``
    covers exactly a block (taking over the span ``getone`` opened). ``getmany()``
    records one ``receive`` span with a link per record. Each task has its own open
    span, and a record handed to a new task keeps its span, as with
    :class:`~tracing.write.aio.TracedAIOConsumer`. For a time limit on ``getone()`` use
    ``async with asyncio.timeout(t):``: before Python 3.12 ``asyncio.wait_for`` runs it
    in a task of its own, where the span would open (and end with that task).

    >>> consumer = TracedAIOKafkaConsumer(
    ...     AIOKafkaConsumer("orders", bootstrap_servers="127.0.0.1:19092", group_id="points")
    ... )
    >>> await consumer.start()
    >>> async for record in consumer:
    ...     async with consumer.process(record):
    ...         await add_points(record)

    Args:
        consumer: the ``AIOKafkaConsumer``.
        tracer_provider: defaults to the global one.
        propagator: defaults to the global one (``OTEL_PROPAGATORS``).
        trust: ``"parent"`` (default) or ``"link"``, or a mapping per topic; as for
            :class:`~tracing.write.consumer.TracedConsumer`.
        baggage_keys: only these incoming baggage keys are kept (default: all).
        meter_provider: for the flow metrics (counts, durations, queue time, chain
            duration; aiokafka has no statistics, so no lag); default: the global one.
    """

    def __init__(
        self,
        consumer: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
        meter_provider: Any = None,
    ) -> None:
        self._consumer = consumer
        self._spans = _RecordSpans(
            _ConfluentShaped(consumer),
            tracer_provider=tracer_provider,
            propagator=propagator,
            trust=trust,
            baggage_keys=baggage_keys,
            meter_provider=meter_provider,
            client_config=_client_settings(consumer),
        )

    @property
    def wrapped(self) -> Any:
        """The aiokafka consumer underneath."""
        return self._consumer

    async def getone(self, *partitions: Any) -> Any:
        """As ``AIOKafkaConsumer.getone``; the record's process span is made current in this task."""
        view = await self._spans.poll(*partitions)
        return view.record

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        """As ``AIOKafkaConsumer.getmany``; one ``receive`` span linking to each record.

        Handle each record inside ``async with consumer.process(record):`` to give it its
        own process span.
        """
        batch = await self._spans.consume(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        return batch.records  # type: ignore[attr-defined]

    def __aiter__(self) -> TracedAIOKafkaConsumer:
        self._consumer.__aiter__()  # raises ConsumerStoppedError once stopped, as the client does
        return self

    async def __anext__(self) -> Any:
        view = await self._spans.poll(iterating=True)
        return view.record

    def process(self, record: Any) -> AsyncProcessing:
        """The record's process span for an ``async with`` (or ``with``) block."""
        return self._spans.process(record)

    async def stop(self) -> None:
        """End the open process spans, then stop the consumer."""
        await self._spans.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    async def __aenter__(self) -> TracedAIOKafkaConsumer:
        await self._consumer.__aenter__()  # starts it
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"TracedAIOKafkaConsumer({self._consumer!r})"
