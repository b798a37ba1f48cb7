"""asyncio: concurrent tasks each see their own process span; cancellation; a loop never blocked."""

from __future__ import annotations

import asyncio

from confluent_kafka import TopicPartition
from opentelemetry.trace import StatusCode

from tests.write.conftest import consumer_conf
from tracing.aio import TracedAIOConsumer, TracedAIOProducer

KEYS = [f"order-{i}".encode() for i in range(12)]


async def seed(spans, bootstrap, topic, keys=KEYS):
    """One traced send per key, all to partition 0, each under its own request span."""
    async with TracedAIOProducer(
        {"bootstrap.servers": bootstrap}, tracer_provider=spans.provider
    ) as producer:
        futures = []
        for key in keys:
            with spans.tracer.start_as_current_span("POST /orders"):
                futures.append(await producer.produce(topic, b"order", key, partition=0))
        await asyncio.gather(*futures)


def onward_parents_are_own_process_spans(spans, source: str, onward: str, expected: int) -> None:
    """Every onward send's parent is the process span of the message with the same key,
    still open when the send started."""
    processes = spans.named(f"process {source}")
    assert len(processes) == expected  # one process span per message, no duplicates
    process_by_key = {s.attributes["messaging.kafka.message.key"]: s for s in processes}
    assert len(process_by_key) == expected
    sends = spans.named(f"send {onward}")
    assert len(sends) == expected
    for send in sends:
        own = process_by_key[send.attributes["messaging.kafka.message.key"]]
        assert send.parent is not None and send.parent.span_id == own.context.span_id
        assert send.context.trace_id == own.context.trace_id
        assert own.end_time >= send.start_time, "another task ended this task's span"


def test_tasks_sharing_a_consumer_each_produce_under_their_own_process_span(spans, mock_cluster, topic):
    onward = topic + "-stock"

    async def scenario():
        await seed(spans, mock_cluster, topic)
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster, "inventory"), tracer_provider=spans.provider)
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        handled: list[bytes] = []

        async def worker(delay: float) -> None:
            async for msg in consumer.messages(timeout=0.2):
                async with consumer.process(msg):
                    await asyncio.sleep(delay)  # the other workers poll and produce meanwhile
                    await producer.produce(onward, b"reserved", msg.key(), partition=0)
                handled.append(msg.key())
                if len(handled) >= len(KEYS):
                    return

        workers = [asyncio.create_task(worker(d)) for d in (0.01, 0.003, 0.007)]
        done, pending = await asyncio.wait(workers, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await producer.flush()
        await producer.close()
        await consumer.close()
        assert sorted(handled) == sorted(KEYS)

    asyncio.run(scenario())
    onward_parents_are_own_process_spans(spans, topic, onward, len(KEYS))


def test_a_message_handed_to_a_new_task_keeps_the_span_poll_opened(spans, mock_cluster, topic):
    onward = topic + "-notify"

    async def scenario():
        await seed(spans, mock_cluster, topic)
        consumer = TracedAIOConsumer(
            consumer_conf(mock_cluster, "notification"), tracer_provider=spans.provider
        )
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])

        async def handle(msg, delay):
            async with consumer.process(msg):
                await asyncio.sleep(delay)  # still running while the dispatcher polls on
                await producer.produce(onward, b"sms", msg.key(), partition=0)

        handlers = []
        async for msg in consumer.messages(timeout=0.2):
            handlers.append(asyncio.create_task(handle(msg, 0.06 - 0.004 * len(handlers))))
            if len(handlers) == len(KEYS):
                break
        await asyncio.gather(*handlers)
        await producer.close()
        await consumer.close()

    asyncio.run(scenario())
    onward_parents_are_own_process_spans(spans, topic, onward, len(KEYS))
    for process in spans.named(f"process {topic}"):
        assert process.end_time - process.start_time >= 0.01e9  # it covered the handler's work


def test_drop_in_polling_in_several_tasks_keeps_each_tasks_span(spans, mock_cluster, topic):
    onward = topic + "-points"

    async def scenario():
        await seed(spans, mock_cluster, topic)
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster, "points"), tracer_provider=spans.provider)
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        remaining = len(KEYS)

        async def worker(delay: float):
            nonlocal remaining
            while remaining > 0:
                msg = await consumer.poll(0.2)  # no process() block: the span poll opened is current
                if msg is None or msg.error() is not None:
                    continue
                remaining -= 1
                await asyncio.sleep(delay)  # the others poll meanwhile
                await producer.produce(onward, b"points", msg.key(), partition=0)

        await asyncio.wait_for(asyncio.gather(worker(0.002), worker(0.011), worker(0.017)), 30)
        await producer.close()
        await consumer.close()

    asyncio.run(scenario())
    onward_parents_are_own_process_spans(spans, topic, onward, len(KEYS))


def test_cancelling_a_task_mid_processing_fails_its_span(spans, mock_cluster, topic):
    async def scenario():
        await seed(spans, mock_cluster, topic, keys=[b"order-1", b"order-2"])
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster), tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        started = asyncio.Event()

        async def slow_handler(msg):
            async with consumer.process(msg):
                started.set()
                await asyncio.sleep(30)

        async def drop_in_handler():
            await consumer.poll(5)  # its span stays open while the task waits
            started.set()
            await asyncio.sleep(30)

        for handler in (lambda msg: slow_handler(msg), None):
            started.clear()
            if handler is not None:
                msg = None
                while msg is None or msg.error() is not None:
                    msg = await consumer.poll(1)
                task = asyncio.create_task(handler(msg))
            else:
                task = asyncio.create_task(drop_in_handler())
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await consumer.close()

    asyncio.run(scenario())
    processes = spans.named(f"process {topic}")
    assert len(processes) == 2
    for span in processes:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "CancelledError"


def test_messages_skips_partition_eof_and_yields_records(spans, mock_cluster, topic):
    async def scenario():
        await seed(spans, mock_cluster, topic, keys=[b"a", b"b"])
        conf = consumer_conf(mock_cluster, "eof", **{"enable.partition.eof": True})
        consumer = TracedAIOConsumer(conf, tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        async for msg in consumer.messages(timeout=0.2):
            assert msg.error() is None
            got.append(msg.key())
            if len(got) == 2:
                break
        await consumer.close()
        return got

    assert asyncio.run(scenario()) == [b"a", b"b"]
    assert len(spans.named(f"process {topic}")) == 2


MANY = 20_000


class Turns:
    """Another task that takes every turn the event loop gives it, counting them."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = False

    async def _spin(self) -> None:
        while not self._stop:
            self.count += 1
            await asyncio.sleep(0)

    async def during(self, work):
        task = asyncio.create_task(self._spin())
        await asyncio.sleep(0)  # the spinner is on the loop before the work starts
        try:
            return await work()
        finally:
            self._stop = True
            await task


def test_waiting_for_messages_and_deliveries_never_blocks_the_loop(spans, mock_cluster, topic):
    async def scenario():
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster), tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic + "-empty", 0, 0)])
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        idle = Turns()

        async def idle_poll():
            assert await consumer.poll(1.0) is None

        await idle.during(idle_poll)
        busy = Turns()
        seen_at: list[int] = []  # the other task's turn count at each produce

        async def produce_many():
            # A tight produce loop, as a batch job writes: other tasks must still run.
            futures = []
            for i in range(MANY):
                seen_at.append(busy.count)
                futures.append(await producer.produce(topic, b"x" * 100, b"k%d" % (i % 64)))
            delivered = await asyncio.gather(*futures)
            assert len(delivered) == MANY

        await busy.during(produce_many)
        await producer.close()
        await consumer.close()
        return idle.count, seen_at

    idle_turns, seen_at = asyncio.run(scenario())
    # A one-second poll runs off the loop: the other task kept getting turns through it.
    assert idle_turns > 100
    # The longest run of sends with no turn for anyone else: at most YIELD_EVERY.
    longest = run = 1
    for before, after in zip(seen_at, seen_at[1:], strict=False):
        run = run + 1 if after == before else 1
        longest = max(longest, run)
    assert longest <= TracedAIOProducer.YIELD_EVERY
    assert len(spans.named(f"send {topic}")) == MANY
