"""asyncio clients of confluent-kafka: the same spans and propagation for ``async`` services.

- ``TracedAIOConsumer`` wraps ``confluent_kafka.aio.AIOConsumer`` (or builds one from a
  config): ``await consumer.poll()`` opens the message's process span in the calling
  task; ``async with consumer.process(msg):`` covers exactly a block.
- ``TracedAIOProducer``: ``await producer.produce(...)`` returns a future of the
  delivered message, like ``AIOProducer``. confluent-kafka's ``AIOProducer`` batches
  messages without headers (it refuses ``headers=``), so it cannot carry trace context;
  this client produces through a :class:`TracedProducer` instead, which librdkafka
  batches just the same, and serves delivery reports from a background thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing.write.clients.producer import TracedProducer
from tracing.write.lag import ConsumerLag, with_lag_statistics
from tracing.write.operations import PARENT, ProcessOperation
from tracing.write.propagation import report_internal_error
from tracing.write.providers import confluent
from tracing.write.tracker import OpenProcessing, ProcessBlock, in_flight

if TYPE_CHECKING:
    from confluent_kafka.aio import AIOConsumer

    _AIOConsumerBase = AIOConsumer  # the client's methods, for type checkers
else:
    _AIOConsumerBase = object

_time_ns = time.time_ns


class TracedAIOConsumer(_AIOConsumerBase):
    """Wraps ``confluent_kafka.aio.AIOConsumer``; the spans and options of
    :class:`~tracing.TracedConsumer`.

    >>> consumer = TracedAIOConsumer({"bootstrap.servers": "127.0.0.1:19092", "group.id": "points"})
    >>> await consumer.subscribe(["orders"])
    >>> async for msg in consumer.messages():
    ...     async with consumer.process(msg):
    ...         await add_points(msg)

    Each task has its own open span: ``await consumer.poll()`` in one task never ends
    the span of a message another task is handling. A message handed to a new task
    (``asyncio.create_task(handle(msg))``, with ``async with consumer.process(msg)``
    inside) keeps the one process span poll() opened for it. Every other
    ``AIOConsumer`` method is passed through, awaitable as before.

    Built inside a running event loop (as ``AIOConsumer`` must be). For a timeout
    around ``poll()`` use ``async with asyncio.timeout(t):`` rather than
    ``asyncio.wait_for``: before Python 3.12 ``wait_for`` runs the poll in a task of
    its own, where the message's span would open and end at once.
    """

    def __init__(
        self,
        conf_or_consumer: Mapping[str, Any] | Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
        meter_provider: Any = None,
        client_config: Mapping[str, Any] | None = None,
        _client_class: Any = None,
    ) -> None:
        config = (conf_or_consumer if isinstance(conf_or_consumer, Mapping) else client_config) or {}
        operation = ProcessOperation(
            confluent,
            confluent.client_info(config),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
            trust=trust,
            baggage_keys=baggage_keys,
        )
        self.lag: ConsumerLag | None = None
        consumer: Any
        if isinstance(conf_or_consumer, Mapping):
            from confluent_kafka.aio import AIOConsumer

            self.lag = ConsumerLag(config.get("group.id"), register=operation.flow.track_lag)
            enable = operation.flow.instruments() is not None
            conf = with_lag_statistics(config, self.lag, enable=enable, asynchronous=True)
            consumer = (_client_class or AIOConsumer)(conf)
        else:
            consumer = conf_or_consumer
        self._client = consumer
        self.client_config: Mapping[str, Any] = config
        self.tracer_provider = tracer_provider
        self._spans = OpenProcessing(operation, per_task=True)

    @property
    def wrapped(self) -> Any:
        """The ``AIOConsumer`` underneath."""
        return self._client

    async def poll(self, *args: Any, **kwargs: Any) -> Any:
        """As ``AIOConsumer.poll``; the message's process span is made current in this task."""
        spans = self._spans
        previous = spans.hand_over() if spans.open else None
        if previous is None:
            msg = await self._client.poll(*args, **kwargs)
        else:
            # The previous message's processing ends now, unless a task created to handle
            # it claims it while this one waits for the next message.
            ended_at = _time_ns()
            try:
                msg = await self._client.poll(*args, **kwargs)
            finally:
                spans.handed_over(previous, ended_at)
        if msg is not None and msg.error() is None:
            spans.polled(msg)
        return msg

    async def messages(self, timeout: float = 1.0) -> AsyncIterator[Any]:
        """``async for msg in consumer.messages():`` — each message, its span current.

        Polls with ``timeout`` until the loop is left. Informational events (such as
        partition EOF) are skipped; a fatal client error raises ``KafkaException``.
        """
        while True:
            msg = await self.poll(timeout)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.fatal():
                    from confluent_kafka import KafkaException

                    raise KafkaException(err)
                continue
            yield msg

    async def consume(self, *args: Any, **kwargs: Any) -> Any:
        """As ``AIOConsumer.consume``; one ``receive`` span linking to each message."""
        self._spans.end_own()
        started = _time_ns()
        messages = await self._client.consume(*args, **kwargs)
        if messages:
            self._spans.operation.received_batch(messages, started)
        return messages

    def process(self, msg: Any) -> ProcessBlock:
        """The message's process span for an ``async with`` (or ``with``) block."""
        return self._spans.block(msg)

    async def close(self, *args: Any, **kwargs: Any) -> Any:
        """End the open process spans, then close the consumer."""
        self._spans.end_all(in_flight())
        if self.lag is not None:
            self.lag.clear()
        return await self._client.close(*args, **kwargs)

    if not TYPE_CHECKING:  # type checkers see the client's own methods (the base class)

        def __getattr__(self, name):
            return getattr(self._client, name)

    async def __aenter__(self) -> TracedAIOConsumer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"TracedAIOConsumer({self._client!r})"


class _Settle:
    """Resolves one produce()'s future from its delivery report (in the event loop)."""

    __slots__ = ("future", "user_callback")

    def __init__(self, future: asyncio.Future[Any], user_callback: Any) -> None:
        self.future = future
        self.user_callback = user_callback

    def __call__(self, err: Any, msg: Any) -> None:
        future = self.future
        if self.user_callback is not None:
            try:
                self.user_callback(err, msg)
            except Exception as exc:  # the app's callback must not hide the delivery
                if not future.done():
                    future.set_exception(exc)
                return
        if future.done():
            return
        if err is not None:
            from confluent_kafka import KafkaException

            future.set_exception(KafkaException(err))
        else:
            future.set_result(msg)


class TracedAIOProducer:
    """asyncio producer with trace context in every message.

    >>> producer = TracedAIOProducer({"bootstrap.servers": "127.0.0.1:19092"})
    >>> delivered = await producer.produce("orders", b"{}", key=b"order-1")
    >>> msg = await delivered          # the delivered message, or KafkaException
    >>> await producer.close()

    Args:
        conf_or_producer: a config dict, a ``Producer`` or a ``TracedProducer``.
        tracer_provider, propagator, meter_provider: as for :class:`TracedProducer`.
        poll_interval: how often the background thread serves delivery reports.
    """

    YIELD_EVERY = 64

    def __init__(
        self,
        conf_or_producer: Mapping[str, Any] | Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        meter_provider: Any = None,
        poll_interval: float = 0.05,
    ) -> None:
        if type(conf_or_producer).__name__ == "AIOProducer":
            raise TypeError(
                "AIOProducer batches messages without headers, so it cannot carry trace context: "
                "pass its config dict to TracedAIOProducer instead"
            )
        if isinstance(conf_or_producer, TracedProducer):
            self._producer = conf_or_producer
        else:
            self._producer = TracedProducer(
                conf_or_producer,
                tracer_provider=tracer_provider,
                propagator=propagator,
                meter_provider=meter_provider,
            )
        self._poll_interval = poll_interval
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None
        # Delivery reports wait here for their event loop, which settles them in batches:
        # one wake-up of the loop per batch, not per message.
        self._reports: dict[Any, deque[tuple[_Settle, Any, Any]]] = {}
        self._wake_pending: set[Any] = set()
        self._since_yield = 0

    @property
    def wrapped(self) -> TracedProducer:
        """The traced synchronous producer underneath."""
        return self._producer

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._serve_reports, name="kafka-delivery-reports", daemon=True
            )
            self._poller.start()

    def _serve_reports(self) -> None:
        while not self._closed.is_set():
            try:
                self._producer.poll(self._poll_interval)
            except Exception:
                report_internal_error("a delivery callback raised in the report thread")

    async def produce(
        self, topic: str, value: Any = None, key: Any = None, *args: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """Queue a message; returns a future resolved with the delivered message.

        Same parameters as ``Producer.produce``; an ``on_delivery`` callback is called
        in the event loop. ``BufferError`` (queue full) is raised as by the client.
        librdkafka's produce never blocks, so neither does this; every
        ``YIELD_EVERY`` messages it lets the loop run other tasks, so that a tight
        produce loop cannot starve them.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        user_callback = kwargs.pop("on_delivery", None) or kwargs.pop("callback", None)
        settle = _Settle(future, user_callback)
        reports = self._reports.get(loop)
        if reports is None:
            reports = self._reports[loop] = deque()

        def report(err: Any, msg: Any) -> None:  # runs in the report thread
            reports.append((settle, err, msg))
            if loop not in self._wake_pending:
                self._wake_pending.add(loop)
                try:
                    loop.call_soon_threadsafe(self._settle_reports, loop)
                except RuntimeError:  # the loop is closed: nobody waits for the future
                    self._wake_pending.discard(loop)

        self._ensure_poller()
        kwargs["on_delivery"] = report
        self._producer.produce(topic, value, key, *args, **kwargs)
        self._since_yield += 1
        if self._since_yield >= self.YIELD_EVERY:
            self._since_yield = 0
            await asyncio.sleep(0)
        return future

    def _settle_reports(self, loop: Any) -> None:
        """In the event loop: settle every delivery reported so far."""
        self._wake_pending.discard(loop)  # first: a report arriving from now on wakes us again
        reports = self._reports.get(loop)
        while reports:
            settle, err, msg = reports.popleft()
            settle(err, msg)

    async def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports now (they are also served in the background)."""
        return await asyncio.get_running_loop().run_in_executor(None, self._producer.poll, timeout)

    async def flush(self, timeout: float = -1) -> int:
        """Wait for every queued message's delivery report."""
        return await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, timeout)

    async def close(self) -> None:
        """Flush, then stop the report thread."""
        await self.flush()
        self._closed.set()
        if self._poller is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._poller.join, 5)

    def __len__(self) -> int:
        return len(self._producer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def __aenter__(self) -> TracedAIOProducer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
