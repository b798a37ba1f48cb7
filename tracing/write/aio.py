"""asyncio adapters: the same spans and propagation for ``async`` services.

- ``TracedAIOConsumer`` wraps ``confluent_kafka.aio.AIOConsumer`` (or builds one from a
  config): ``await consumer.poll()`` opens the message's process span in the calling
  task; ``async with consumer.process(msg):`` covers exactly a block.
- ``TracedAIOProducer``: ``await producer.produce(...)`` returns a future of the
  delivered message, like ``AIOProducer``. confluent-kafka's ``AIOProducer`` batches
  messages without headers (it refuses ``headers=``), so it cannot carry trace context;
  this adapter produces through a (traced) ``Producer`` instead, which librdkafka
  batches just the same, and serves delivery reports from a background thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from tracing.write.consumer import Processing, TracedConsumer
from tracing.write.producer import TracedProducer
from tracing.write.propagation import report_internal_error


class AsyncProcessing(Processing):
    """``async with consumer.process(msg) as span:`` (plain ``with`` works too)."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)


class TracedAIOConsumer(TracedConsumer):
    """Wraps ``confluent_kafka.aio.AIOConsumer``; the spans and options of :class:`TracedConsumer`.

    >>> consumer = TracedAIOConsumer({"bootstrap.servers": "127.0.0.1:19092", "group.id": "points"})
    >>> await consumer.subscribe(["orders"])
    >>> msg = await consumer.poll(1.0)
    >>> async with consumer.process(msg):
    ...     await add_points(msg)

    Built inside a running event loop (as ``AIOConsumer`` must be).
    """

    def __init__(self, conf_or_consumer: Mapping[str, Any] | Any, **options: Any) -> None:
        if isinstance(conf_or_consumer, Mapping):
            from confluent_kafka.aio import AIOConsumer

            options.setdefault("client_config", dict(conf_or_consumer))
            conf_or_consumer = AIOConsumer(dict(conf_or_consumer))
        super().__init__(conf_or_consumer, **options)

    async def poll(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """As ``AIOConsumer.poll``; the message's process span is made current in this task."""
        if self._open is not None:
            self._end_open()
        return self._polled(await self._consumer.poll(*args, **kwargs))

    async def consume(self, *args: Any, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        """As ``AIOConsumer.consume``; one ``receive`` span linking to each message."""
        started = self._before_consume()
        messages = await self._consumer.consume(*args, **kwargs)
        self._after_consume(messages, started)
        return messages

    def process(self, msg: Any) -> AsyncProcessing:
        """The message's process span for an ``async with`` (or ``with``) block."""
        return AsyncProcessing(self, msg)

    async def close(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """End the open process span, then close the consumer."""
        if self._open is not None:
            self._end_open()
        return await self._consumer.close(*args, **kwargs)

    def run(self, handler: Any, **options: Any) -> Any:
        raise NotImplementedError(
            "run() is for the synchronous consumer; loop over poll() and process() instead"
        )

    async def __aenter__(self) -> TracedAIOConsumer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class TracedAIOProducer:
    """asyncio producer with trace context in every message.

    >>> producer = TracedAIOProducer({"bootstrap.servers": "127.0.0.1:19092"})
    >>> delivered = await producer.produce("orders", b"{}", key=b"order-1")
    >>> msg = await delivered          # the delivered message, or KafkaException
    >>> await producer.close()

    Args:
        conf_or_producer: a config dict, a ``Producer`` or a ``TracedProducer``.
        tracer_provider, propagator: as for :class:`TracedProducer`.
        poll_interval: how often the background thread serves delivery reports.
    """

    def __init__(
        self,
        conf_or_producer: Mapping[str, Any] | Any,
        *,
        tracer_provider: Any = None,
        propagator: Any = None,
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
                conf_or_producer, tracer_provider=tracer_provider, propagator=propagator
            )
        self._poll_interval = poll_interval
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

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
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        user_callback = kwargs.pop("on_delivery", None) or kwargs.pop("callback", None)

        def settle(err: Any, msg: Any) -> None:
            if user_callback is not None:
                try:
                    user_callback(err, msg)
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

        def report(err: Any, msg: Any) -> None:  # runs in the report thread
            loop.call_soon_threadsafe(settle, err, msg)

        self._ensure_poller()
        self._producer.produce(topic, value, key, *args, on_delivery=report, **kwargs)
        return future

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
