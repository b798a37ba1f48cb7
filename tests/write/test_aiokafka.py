"""aiokafka adapters: the same spans and W3C propagation as the confluent-kafka adapters.

aiokafka talks to librdkafka's mock cluster, so most tests use it; a broker-side
delivery failure needs the real broker (the mock accepts any message size).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, StatusCode
from opentelemetry.trace import TracerProvider as ApiTracerProvider

from tests.write.test_aio_tasks import onward_parents_are_own_process_spans
from tracing.aio import TracedAIOKafkaConsumer, TracedAIOKafkaProducer
from tracing.write.propagation import format_traceparent

KEYS = [f"order-{i}".encode() for i in range(10)]


@asynccontextmanager
async def traced_producer(bootstrap, provider, **client_options):
    producer = TracedAIOKafkaProducer(
        AIOKafkaProducer(bootstrap_servers=bootstrap, **client_options), tracer_provider=provider
    )
    async with producer:
        yield producer


@asynccontextmanager
async def traced_consumer(bootstrap, provider, topic, group="test-group"):
    """Reads partition 0 of ``topic`` from the start."""
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer = TracedAIOKafkaConsumer(client, tracer_provider=provider)
    async with consumer:
        consumer.assign([TopicPartition(topic, 0)])
        yield consumer


async def seed(spans, bootstrap, topic, keys=KEYS):
    """One traced send per key, all to partition 0, each under its own request span."""
    async with traced_producer(bootstrap, spans.provider) as producer:
        futures = []
        for key in keys:
            with spans.tracer.start_as_current_span("POST /orders"):
                futures.append(await producer.send(topic, b"order", key=key, partition=0))
        await asyncio.gather(*futures)


async def next_record(consumer, timeout: float = 15):
    # Not asyncio.wait_for: before Python 3.12 it runs getone() in a task of its own,
    # where the record's span would be current (and end with that task), not here.
    async with asyncio.timeout(timeout):
        return await consumer.getone()


def test_a_sent_record_is_processed_in_the_senders_trace(spans, mock_cluster, topic):
    async def scenario():
        async with traced_producer(mock_cluster, spans.provider) as producer:
            with spans.tracer.start_as_current_span("POST /orders"):
                delivered = await producer.send(topic, b"order", key=b"order-1", partition=0)
            metadata = await asyncio.wait_for(delivered, 15)
        assert isinstance(metadata, RecordMetadata) and metadata.offset == 0
        async with traced_consumer(mock_cluster, spans.provider, topic, group="points") as consumer:
            record = await next_record(consumer)
            assert isinstance(record, ConsumerRecord) and record.value == b"order"
            current = trace.get_current_span()
            async with consumer.process(record) as span:
                assert span is current  # the block took over the span getone() opened

    asyncio.run(scenario())
    root = spans.one("POST /orders")
    send = spans.one(f"send {topic}")
    process = spans.one(f"process {topic}")
    assert send.parent.span_id == root.context.span_id
    assert send.kind is trace.SpanKind.PRODUCER
    assert send.attributes["messaging.destination.partition.id"] == "0"
    assert send.attributes["messaging.kafka.offset"] == 0
    assert send.attributes["messaging.kafka.message.key"] == "order-1"
    host, port = mock_cluster.rsplit(":", 1)
    assert (send.attributes["server.address"], send.attributes["server.port"]) == (host, int(port))
    assert process.kind is trace.SpanKind.CONSUMER
    assert process.context.trace_id == root.context.trace_id
    assert process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert process.attributes["messaging.consumer.group.name"] == "points"
    assert process.attributes["messaging.kafka.offset"] == 0
    assert process.attributes["kafka.record.queue_time_ms"] >= 0  # the record's create time was read


def test_send_and_wait_returns_the_metadata_and_ends_the_send_span(spans, mock_cluster, topic):
    async def scenario():
        async with traced_producer(mock_cluster, spans.provider) as producer:
            return await producer.send_and_wait(topic, b"x", partition=0)

    metadata = asyncio.run(scenario())
    assert isinstance(metadata, RecordMetadata)
    assert spans.one(f"send {topic}").attributes["messaging.kafka.offset"] == metadata.offset


def test_trace_headers_are_replaced_and_the_callers_list_is_left_alone(spans, mock_cluster, topic):
    stale = f"00-{'1' * 32}-{'2' * 16}-01".encode()
    headers = [("event-type", b"order.created"), ("traceparent", stale)]
    before = list(headers)

    async def scenario():
        async with traced_producer(mock_cluster, spans.provider) as producer:
            for _ in range(2):  # one header list reused for several sends
                await (await producer.send(topic, b"x", partition=0, headers=headers))
        assert headers == before
        async with traced_consumer(mock_cluster, spans.provider, topic) as consumer:
            return [await next_record(consumer) for _ in range(2)]

    records = asyncio.run(scenario())
    sends = sorted(spans.named(f"send {topic}"), key=lambda s: s.attributes["messaging.kafka.offset"])
    for record, send in zip(records, sends, strict=True):
        values = dict(record.headers)
        assert [key for key, _ in record.headers].count("traceparent") == 1
        assert values["traceparent"] == format_traceparent(send.context).encode()
        assert values["event-type"] == b"order.created"


@pytest.mark.parametrize("style", ["process block", "drop-in"])
def test_tasks_sharing_a_consumer_each_send_onward_under_their_own_process_span(
    spans, mock_cluster, topic, style
):
    onward = topic + "-stock"

    async def scenario():
        await seed(spans, mock_cluster, topic)
        handled: list[bytes] = []
        async with (
            traced_consumer(mock_cluster, spans.provider, topic, group="inventory") as consumer,
            traced_producer(mock_cluster, spans.provider) as producer,
        ):

            async def handle(record, delay: float) -> None:
                await asyncio.sleep(delay)  # the other workers fetch and send meanwhile
                await producer.send(onward, b"reserved", key=record.key, partition=0)

            async def worker(delay: float) -> None:
                async for record in consumer:
                    if style == "process block":
                        async with consumer.process(record):
                            await handle(record, delay)
                    else:  # the span getone() opened stays current in this task
                        await handle(record, delay)
                    handled.append(record.key)
                    if len(handled) >= len(KEYS):
                        return

            workers = [asyncio.create_task(worker(d)) for d in (0.011, 0.003)]
            done, pending = await asyncio.wait(workers, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await producer.flush()
        assert sorted(handled) == sorted(KEYS)

    asyncio.run(scenario())
    assert len(spans.named(f"process {topic}")) == len(KEYS)
    onward_parents_are_own_process_spans(spans, topic, onward, len(KEYS))


def test_a_record_handed_to_a_new_task_keeps_the_span_getone_opened(spans, mock_cluster, topic):
    onward = topic + "-notify"

    async def scenario():
        await seed(spans, mock_cluster, topic)
        async with (
            traced_consumer(mock_cluster, spans.provider, topic, group="notification") as consumer,
            traced_producer(mock_cluster, spans.provider) as producer,
        ):

            async def handle(record, delay: float) -> None:
                async with consumer.process(record):
                    await asyncio.sleep(delay)  # still running while the dispatcher fetches on
                    await producer.send(onward, b"sms", key=record.key, partition=0)

            handlers = []
            async for record in consumer:
                handlers.append(asyncio.create_task(handle(record, 0.05 - 0.004 * len(handlers))))
                if len(handlers) == len(KEYS):
                    break
            await asyncio.gather(*handlers)

    asyncio.run(scenario())
    assert len(spans.named(f"process {topic}")) == len(KEYS)  # the span getone opened, not a second one
    onward_parents_are_own_process_spans(spans, topic, onward, len(KEYS))


def test_a_rejected_delivery_ends_the_send_span_failed(spans, real_stack, topic):
    async def scenario():
        # Allowed by the client, refused by the broker (message.max.bytes is about 1 MB).
        async with traced_producer(
            real_stack.kafka_bootstrap, spans.provider, max_request_size=8_000_000
        ) as producer:
            delivered = await producer.send(topic, b"x" * 2_000_000, partition=0)
            with pytest.raises(MessageSizeTooLargeError):
                await asyncio.wait_for(delivered, 30)

    asyncio.run(scenario())
    send = spans.one(f"send {topic}")
    assert send.end_time is not None
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes["error.type"] == "MessageSizeTooLargeError"
    assert "messaging.kafka.offset" not in send.attributes


def test_a_malformed_traceparent_starts_a_new_trace_and_keeps_the_record(spans, mock_cluster, topic):
    async def scenario():
        async with AIOKafkaProducer(bootstrap_servers=mock_cluster) as raw:
            await raw.send_and_wait(
                topic, b"order", partition=0, headers=[("traceparent", b"00-not-a-trace")]
            )
        async with traced_consumer(mock_cluster, spans.provider, topic) as consumer:
            record = await next_record(consumer)
            async with consumer.process(record):
                pass
        return record

    record = asyncio.run(scenario())
    assert record.value == b"order"
    process = spans.one(f"process {topic}")
    assert process.parent is None
    assert list(process.links) == []


def test_getmany_records_one_receive_span_linking_each_record(spans, mock_cluster, topic):
    keys = KEYS[:3]

    async def scenario():
        await seed(spans, mock_cluster, topic, keys)
        got = []
        async with traced_consumer(mock_cluster, spans.provider, topic) as consumer:
            while len(got) < len(keys):
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 15)
                assert all(type(tp) is TopicPartition for tp in batches)
                got.extend(record for records in batches.values() for record in records)
            assert spans.named(f"process {topic}") == []  # getmany alone opens no process span
            for record in got:
                async with consumer.process(record):
                    pass
        return got

    got = asyncio.run(scenario())
    assert [record.key for record in got] == keys
    receives = spans.named(f"receive {topic}")
    assert receives and all(r.kind is trace.SpanKind.CLIENT for r in receives)
    linked = {link.context.span_id for r in receives for link in r.links}
    assert linked == {s.context.span_id for s in spans.named(f"send {topic}")}
    assert sum(r.attributes["messaging.batch.message_count"] for r in receives) == len(keys)
    processes = spans.named(f"process {topic}")
    assert len(processes) == len(keys)
    assert {p.parent.span_id for p in processes} == linked


def test_a_failing_process_block_marks_its_span_failed_and_reraises(spans, mock_cluster, topic):
    async def scenario():
        await seed(spans, mock_cluster, topic, KEYS[:1])
        async with traced_consumer(mock_cluster, spans.provider, topic) as consumer:
            record = await next_record(consumer)
            with pytest.raises(KeyError):
                async with consumer.process(record):
                    raise KeyError("sku")

    asyncio.run(scenario())
    process = spans.one(f"process {topic}")
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes["error.type"] == "KeyError"


def test_without_an_sdk_the_incoming_context_flows_onward(mock_cluster, topic):
    onward = topic + "-onward"
    incoming = f"00-{'a' * 32}-{'b' * 16}-01".encode()

    async def scenario():
        async with AIOKafkaProducer(bootstrap_servers=mock_cluster) as raw:
            await raw.send_and_wait(topic, b"order", partition=0, headers=[("traceparent", incoming)])
        no_sdk = NoOpTracerProvider()
        async with (
            traced_consumer(mock_cluster, no_sdk, topic) as consumer,
            traced_producer(mock_cluster, no_sdk) as producer,
        ):
            await next_record(consumer)  # its context is now current in this task
            await producer.send_and_wait(onward, b"reserved", partition=0)
        async with traced_consumer(mock_cluster, no_sdk, onward) as consumer:
            return await next_record(consumer)

    record = asyncio.run(scenario())
    assert dict(record.headers)["traceparent"] == incoming


class _BrokenTracer:
    def start_span(self, *args, **kwargs):
        raise RuntimeError("a broken SDK")


class _BrokenProvider(ApiTracerProvider):
    def get_tracer(self, *args, **kwargs):
        return _BrokenTracer()


def test_a_broken_instrumentation_never_breaks_send_or_getone(mock_cluster, topic):
    async def scenario():
        async with traced_producer(mock_cluster, _BrokenProvider()) as producer:
            metadata = await producer.send_and_wait(topic, b"order", partition=0, headers=[("a", b"1")])
        async with traced_consumer(mock_cluster, _BrokenProvider(), topic) as consumer:
            record = await next_record(consumer)
        return metadata, record

    metadata, record = asyncio.run(scenario())
    assert metadata.offset == 0
    assert (record.value, list(record.headers)) == (b"order", [("a", b"1")])


def test_flow_metrics_count_aiokafka_sends_and_records_and_carry_the_chain(mock_cluster, topic):
    from tests.write.test_flow_metrics import Metrics
    from tracing.write.metrics import parse_chain

    meters = Metrics()
    onward = topic + "-stock"

    async def scenario():
        producer = TracedAIOKafkaProducer(
            AIOKafkaProducer(bootstrap_servers=mock_cluster), meter_provider=meters.provider
        )
        client = AIOKafkaConsumer(
            bootstrap_servers=mock_cluster, group_id="inventory", auto_offset_reset="earliest"
        )
        consumer = TracedAIOKafkaConsumer(client, meter_provider=meters.provider)
        async with producer, consumer:
            for key in KEYS[:3]:
                await producer.send_and_wait(topic, b"order", key=key, partition=0)
            consumer.assign([TopicPartition(topic, 0)])
            for _ in range(3):
                record = await next_record(consumer)
                async with consumer.process(record):
                    await producer.send_and_wait(onward, b"reserved", key=record.key, partition=0)
            return dict(record.headers)

    headers = asyncio.run(scenario())
    assert parse_chain(headers["eventchain"]).path == topic  # the chain began at the first send
    sent = {
        p.attributes["messaging.destination.name"]: p.value
        for p in meters.points("messaging.client.sent.messages")
    }
    assert sent == {topic: 3, onward: 3}
    assert meters.total("messaging.client.consumed.messages") == 3
    assert meters.total("messaging.process.duration") == 3
    (chain,) = meters.points("eventchain.chain.duration")
    assert (
        chain.attributes["eventchain.path"] == topic
        and chain.attributes["messaging.consumer.group.name"] == "inventory"
    )
