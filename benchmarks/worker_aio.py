"""The asyncio phases of a measurement: libraries ``aio-raw`` and ``aio-ours``.

- ``aio-raw``: ``confluent_kafka.aio.AIOProducer`` / ``AIOConsumer`` as they come. The
  raw producer refuses ``headers=``, which is why this library's asyncio producer
  produces through a (traced) ``Producer`` instead; raw sends here carry no headers.
- ``aio-ours``: ``TracedAIOProducer`` / ``TracedAIOConsumer`` (``tracing.aio``).

The phases mirror the synchronous ones in :mod:`benchmarks.worker`:

- ``produce``: ``fut = await producer.produce(...)`` N times (no ambient span), then
  ``await flush()`` and every future awaited: delivered, not just queued;
- ``poll``: ``msg = await consumer.poll(1.0)`` over N pre-produced messages;
- ``process``: the same, each handled inside ``async with consumer.process(msg)`` (ours)
  or simply after ``poll()`` (raw).

While a phase runs, a ticker task sleeps 5 ms at a time and records how late the event
loop woke it: the worst delay is the loop lag the client's work caused other tasks
(an HTTP handler, a heartbeat) in the same loop. Each timed run has its own event loop
and fresh clients.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from benchmarks.worker import IDLE_LIMIT_S, KEYS, PARTITIONS, PREFETCH_WAIT_S, VALUE, Broker, _handle, _idle

TICK_S = 0.005


class LoopLag:
    """A ticker task in the measured loop: the worst delay past its 5 ms sleeps.

    ``stop()`` marks the end of the measured span (no await, so it costs the timed
    region nothing); a tick still asleep then counts only up to that moment, so the
    untimed clean-up after it does not show as lag.
    """

    def __init__(self) -> None:
        self.max_s = 0.0
        self._stopped_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Due at once: a phase that never yields delays even the ticker's first step.
        self._task = loop.create_task(self._tick(loop.time()))

    async def _tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            woke = loop.time()
            if self._stopped_at is not None:
                woke = min(woke, self._stopped_at)
            self.max_s = max(self.max_s, woke - due)
            if self._stopped_at is not None:
                return
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)

    def stop(self) -> None:
        self._stopped_at = asyncio.get_running_loop().time()

    async def finish(self) -> None:
        if self._task is not None:
            await self._task


async def _produce(library: str, bootstrap: str, topic: str, n: int, provider: Any) -> tuple[float, LoopLag]:
    conf = {"bootstrap.servers": bootstrap}
    if library == "aio-raw":
        from confluent_kafka.aio import AIOProducer

        producer: Any = AIOProducer(conf)
    else:
        from tracing.aio import TracedAIOProducer

        producer = TracedAIOProducer(conf)
    produce = producer.produce
    # Warm-up: metadata, connection, per-topic caches. The raw producer buffers up to
    # 1000 messages or a second, so flush before waiting for the future.
    warm = await produce(topic, VALUE, KEYS[0])
    await producer.flush()
    await warm
    keys = KEYS
    futures = []
    append = futures.append
    lag = LoopLag()
    lag.start()
    start = time.perf_counter()
    for i in range(n):
        try:
            append(await produce(topic, VALUE, keys[i & 63]))
        except BufferError:  # ours, local queue full: the report thread drains it meanwhile
            append(await _produce_later(produce, topic, keys[i & 63]))
    await producer.flush()
    delivered = await asyncio.gather(*futures)  # raises on any failed delivery
    lag.stop()
    if provider is not None:
        provider.force_flush()
    elapsed = time.perf_counter() - start
    await lag.finish()
    await producer.close()
    if len(delivered) != n:
        raise RuntimeError(f"produce: {len(delivered)} of {n} delivered")
    return elapsed, lag


async def _produce_later(produce: Any, topic: str, key: bytes) -> Any:
    while True:
        await asyncio.sleep(0.01)
        try:
            return await produce(topic, VALUE, key)
        except BufferError:
            continue


async def _consume(
    library: str, broker: Broker, topic: str, n: int, provider: Any, style: str, group: str
) -> tuple[float, LoopLag]:
    from confluent_kafka.aio import AIOConsumer

    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer: Any = AIOConsumer(dict(conf))
    # assign() before wrapping, as in the synchronous phases: no group join.
    await consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    if library == "aio-ours":
        from tracing.aio import TracedAIOConsumer

        consumer = TracedAIOConsumer(consumer, client_config=conf)
    poll = consumer.poll
    _handle(await _poll_one(poll))
    await asyncio.sleep(PREFETCH_WAIT_S[broker.kind])  # let librdkafka prefetch the rest
    handle = _handle
    got = 1
    idle_since = None
    lag = LoopLag()
    lag.start()
    start = time.perf_counter()
    if style == "process" and library == "aio-ours":
        process = consumer.process
        while got < n:
            msg = await poll(1.0)
            if msg is None or msg.error() is not None:
                idle_since = _idle(idle_since, msg)
                continue
            async with process(msg):
                handle(msg)
            got += 1
    else:
        while got < n:
            msg = await poll(1.0)
            if msg is None or msg.error() is not None:
                idle_since = _idle(idle_since, msg)
                continue
            handle(msg)
            got += 1
    lag.stop()
    if provider is not None:
        provider.force_flush()
    elapsed = time.perf_counter() - start
    await lag.finish()
    await consumer.close()
    return elapsed, lag


async def _poll_one(poll: Any) -> Any:
    deadline = time.monotonic() + IDLE_LIMIT_S * 2
    while time.monotonic() < deadline:
        msg = await poll(1.0)
        if msg is not None and msg.error() is None:
            return msg
    raise RuntimeError("consume: no message arrived")


def run_phase(
    phase: str, library: str, broker: Broker, topic: str, n: int, provider: Any, group: str
) -> tuple[float, float]:
    """One timed run in a fresh event loop: (seconds, worst loop lag in seconds)."""
    if phase == "produce":
        seconds, lag = asyncio.run(_produce(library, broker.bootstrap, topic, n, provider))
    else:
        seconds, lag = asyncio.run(_consume(library, broker, topic, n, provider, phase, group))
    return seconds, lag.max_s
