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
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from tracing.write.consumer import Processing, TracedConsumer, _Open
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

    _asynchronous = True

    @staticmethod
    def _client_class() -> Any:
        from confluent_kafka.aio import AIOConsumer

        return AIOConsumer

    def __init__(self, conf_or_consumer: Mapping[str, Any] | Any, **options: Any) -> None:
        super().__init__(conf_or_consumer, **options)
        self._opens: dict[Any, _Open] = {}  # task -> the span its last poll opened
        self._handing_over: list[_Open] = []  # spans another task may still claim
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()

    _owner = staticmethod(asyncio.current_task)

    async def poll(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """As ``AIOConsumer.poll``; the message's process span is made current in this task."""
        task = asyncio.current_task()
        previous = self._opens.pop(task, None)
        if previous is None:
            return self._opened_in(task, await self._consumer.poll(*args, **kwargs))
        # The previous message's span ends now, unless a task created to handle it
        # claims it while this one waits for the next message (its first step runs
        # before the poll below returns): then that task's block ends it.
        ended_at = time.time_ns()
        previous.detach()
        handing = self._handing_over
        handing.append(previous)
        try:
            msg = await self._consumer.poll(*args, **kwargs)
        finally:
            handing.remove(previous)
            if not previous.claimed:
                self._end(previous, None, ended_at)
        return self._opened_in(task, msg)

    def _opened_in(self, task: Any, msg: Any) -> Any:
        if msg is None or msg.error() is not None:
            return msg
        try:
            opened = self._start(msg, True)
        except Exception:
            report_internal_error("could not start a process span")
            return msg
        if opened is not None and task is not None:
            self._opens[task] = opened
            if task not in self._watched:
                # A task that ends without polling again ends its span, failed if it failed.
                self._watched.add(task)
                task.add_done_callback(self._task_done)
        return msg

    def _task_done(self, task: Any) -> None:
        opened = self._opens.pop(task, None)
        if opened is None or opened.claimed:
            return
        exc: BaseException | None
        if task.cancelled():
            exc = asyncio.CancelledError()
        else:
            exc = task.exception()
        self._end(opened, exc, None)

    def _claim(self, msg: Any) -> _Open | None:
        for opened in self._opens.values():
            if opened.msg is msg and not opened.claimed:
                opened.claimed = True
                return opened
        for opened in self._handing_over:
            if opened.msg is msg and not opened.claimed:
                opened.claimed = True
                return opened
        return None

    @staticmethod
    def _end(opened: _Open, exc: BaseException | None, end_time: int | None) -> None:
        try:
            opened.end(exc, end_time)
        except Exception:
            report_internal_error("could not end a process span")

    def _end_open(self) -> None:
        """End every task's open span (close, consume)."""
        task = asyncio.current_task()
        for owner, opened in list(self._opens.items()):
            if owner is task:
                opened.detach()
            if not opened.claimed:
                self._end(opened, None, None)
        self._opens.clear()

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

    async def consume(self, *args: Any, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        """As ``AIOConsumer.consume``; one ``receive`` span linking to each message."""
        opened = self._opens.pop(asyncio.current_task(), None)
        if opened is not None:
            opened.detach()
            if not opened.claimed:
                self._end(opened, None, None)
        started = time.time_ns()
        messages = await self._consumer.consume(*args, **kwargs)
        self._after_consume(messages, started)
        return messages

    def process(self, msg: Any) -> AsyncProcessing:
        """The message's process span for an ``async with`` (or ``with``) block."""
        return AsyncProcessing(self, msg)

    async def close(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """End the open process spans, then close the consumer."""
        self._end_open()
        if self.lag is not None:
            self.lag.clear()
        return await self._consumer.close(*args, **kwargs)

    def run(self, handler: Any, **options: Any) -> Any:
        raise NotImplementedError(
            "run() is for the synchronous consumer; use `async for msg in consumer.messages()` "
            "with `async with consumer.process(msg)` instead"
        )

    def __repr__(self) -> str:
        return f"TracedAIOConsumer({self._consumer!r})"

    async def __aenter__(self) -> TracedAIOConsumer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


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

    def __init__(
        self,
        conf_or_producer: Mapping[str, Any] | Any,
        *,
        tracer_provider: Any = None,
        propagator: Any = None,
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
        self._producer.produce(topic, value, key, *args, on_delivery=report, **kwargs)
        self._since_yield += 1
        if self._since_yield >= self.YIELD_EVERY:
            self._since_yield = 0
            await asyncio.sleep(0)
        return future

    YIELD_EVERY = 64

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
