"""aiokafka clients: the spans and propagation of the confluent-kafka clients, for aiokafka.

- ``TracedAIOKafkaProducer`` wraps ``aiokafka.AIOKafkaProducer``: ``await send(...)``
  returns the client's future of ``RecordMetadata``; the send span ends when it resolves.
- ``TracedAIOKafkaConsumer`` wraps ``aiokafka.AIOKafkaConsumer``: ``await getone()`` and
  ``async for`` open the record's process span in the calling task, ``getmany()``
  records one receive span, ``async with consumer.process(record):`` covers a block.

The records reach the operations through :mod:`tracing.write.providers.aiokafka`; the
per-task bookkeeping is the same :class:`~tracing.write.tracker.OpenProcessing` the
confluent-kafka asyncio consumer uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing.write.operations import PARENT, ProcessOperation, SendOperation
from tracing.write.propagation import report_internal_error
from tracing.write.providers import aiokafka as provider
from tracing.write.tracker import OpenProcessing, ProcessBlock, in_flight

_get_current = context_api.get_current
_time_ns = time.time_ns


def _settings(client: Any) -> dict[str, Any]:
    try:
        return provider.settings_of(client)
    except Exception:
        report_internal_error("could not read the client's settings")
        return {}


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
        self._sends = SendOperation(
            provider,
            provider.client_info(_settings(producer)),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
        )

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
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """As ``AIOKafkaProducer.send``: a future of the message's ``RecordMetadata``, traced."""
        ctx = _get_current()
        plan = self._sends.prepare(ctx)
        sent_headers: Any = headers
        sending = None
        if plan is not None:
            sent_headers, sending = self._sends.start(
                plan, topic, key, partition, value is None, headers, ctx
            )
        try:
            delivered: asyncio.Future[Any] = await self._producer.send(
                topic,
                value=value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=sent_headers,
            )
        except BaseException as exc:  # refused, or the send itself cancelled: nothing is sent
            if sending is not None:
                sending.refused(exc, partition)
            raise
        if sending is not None:
            delivered.add_done_callback(sending)
        return delivered

    async def send_and_wait(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        """As ``AIOKafkaProducer.send_and_wait``: the ``RecordMetadata``, traced."""
        delivered = await self.send(topic, value, key, partition, timestamp_ms, headers)
        return await delivered

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def __aenter__(self) -> TracedAIOKafkaProducer:
        await self._producer.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._producer.__aexit__(*exc)

    def __repr__(self) -> str:
        return f"TracedAIOKafkaProducer({self._producer!r})"


class TracedAIOKafkaConsumer:
    """Wraps an ``aiokafka.AIOKafkaConsumer``; each record continues its producer's trace.

    One ``process {topic}`` span per record, as with the confluent-kafka consumers:
    ``await getone()`` (and ``async for``) opens it in the calling task, where it stays
    current until that task's next ``getone``; ``async with consumer.process(record):``
    covers exactly a block (taking over the span ``getone`` opened). ``getmany()``
    records one ``receive`` span with a link per record. Each task has its own open
    span, and a record handed to a new task keeps its span. For a time limit on
    ``getone()`` use ``async with asyncio.timeout(t):``: before Python 3.12
    ``asyncio.wait_for`` runs it in a task of its own, where the span would open (and
    end with that task).

    >>> consumer = TracedAIOKafkaConsumer(
    ...     AIOKafkaConsumer("orders", bootstrap_servers="127.0.0.1:19092", group_id="points")
    ... )
    >>> await consumer.start()
    >>> async for record in consumer:
    ...     async with consumer.process(record):
    ...         await add_points(record)

    Args:
        consumer: the ``AIOKafkaConsumer``.
        tracer_provider, propagator, trust, baggage_keys, meter_provider: as for
            :class:`~tracing.TracedConsumer` (aiokafka has no statistics, so no lag gauges).
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
        self.tracer_provider = tracer_provider
        operation = ProcessOperation(
            provider,
            provider.client_info(_settings(consumer)),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
            trust=trust,
            baggage_keys=baggage_keys,
        )
        self._spans = OpenProcessing(operation, per_task=True)

    @property
    def wrapped(self) -> Any:
        """The aiokafka consumer underneath."""
        return self._consumer

    async def _next(self, partitions: tuple[Any, ...], iterating: bool) -> Any:
        spans = self._spans
        consumer = self._consumer
        previous = spans.hand_over() if spans.open else None
        # __anext__ is aiokafka's own loop: it skips oversized records and ends the
        # iteration once the consumer is stopped.
        fetch = consumer.__anext__ if iterating else consumer.getone
        if previous is None:
            record = await fetch(*partitions)
        else:
            ended_at = _time_ns()
            try:
                # aiokafka returns a prefetched record without suspending; a task just
                # handed the previous record must get its first step now, to claim it.
                await asyncio.sleep(0)
                record = await fetch(*partitions)
            finally:
                spans.handed_over(previous, ended_at)
        spans.polled(record)
        return record

    async def getone(self, *partitions: Any) -> Any:
        """As ``AIOKafkaConsumer.getone``; the record's process span is made current in this task."""
        return await self._next(partitions, False)

    async def getmany(self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        """As ``AIOKafkaConsumer.getmany``; one ``receive`` span linking to each record.

        Handle each record inside ``async with consumer.process(record):`` to give it its
        own process span.
        """
        self._spans.end_own()
        started = _time_ns()
        batches = await self._consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if batches:
            self._spans.operation.received_batch(
                [record for records in batches.values() for record in records], started
            )
        return batches

    def __aiter__(self) -> TracedAIOKafkaConsumer:
        self._consumer.__aiter__()  # raises ConsumerStoppedError once stopped, as the client does
        return self

    async def __anext__(self) -> Any:
        return await self._next((), True)

    def process(self, record: Any) -> ProcessBlock:
        """The record's process span for an ``async with`` (or ``with``) block."""
        return self._spans.block(record)

    async def stop(self) -> None:
        """End the open process spans, then stop the consumer."""
        self._spans.end_all(in_flight())
        await self._consumer.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    async def __aenter__(self) -> TracedAIOKafkaConsumer:
        await self._consumer.__aenter__()  # starts it
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"TracedAIOKafkaConsumer({self._consumer!r})"
