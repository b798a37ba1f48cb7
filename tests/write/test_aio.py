"""asyncio adapters: the same trace across tasks, process spans current in the calling task."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaException, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from tests.write.conftest import consumer_conf
from tracing.aio import TracedAIOConsumer, TracedAIOProducer


async def poll_one(consumer, timeout=15.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        msg = await consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            return msg
    raise AssertionError("no message")


def test_async_produce_and_consume_make_one_trace(spans, mock_cluster, topic):
    async def scenario():
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        with spans.tracer.start_as_current_span("POST /orders"):
            delivered = await producer.produce(topic, b"order", b"k", partition=0)
        msg = await asyncio.wait_for(delivered, 15)
        assert msg.offset() == 0
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster, "points"), tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        got = await poll_one(consumer)
        current = trace.get_current_span()
        async with consumer.process(got) as span:
            assert span is current  # the block took over the span poll() opened
            await asyncio.sleep(0)
        await consumer.close()
        await producer.close()

    asyncio.run(scenario())
    root = spans.one("POST /orders")
    send = spans.one(f"send {topic}")
    process = spans.one(f"process {topic}")
    assert send.parent.span_id == root.context.span_id
    assert process.parent.span_id == send.context.span_id
    assert process.attributes["messaging.consumer.group.name"] == "points"


def test_async_process_block_records_exceptions(spans, mock_cluster, topic):
    async def scenario():
        producer = TracedAIOProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
        await (await producer.produce(topic, b"x", partition=0))
        consumer = TracedAIOConsumer(consumer_conf(mock_cluster), tracer_provider=spans.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        msg = await poll_one(consumer)
        with pytest.raises(KeyError):
            async with consumer.process(msg):
                raise KeyError("sku")
        await consumer.close()
        await producer.close()

    asyncio.run(scenario())
    assert spans.one(f"process {topic}").status.status_code is StatusCode.ERROR


def test_a_failed_async_delivery_raises_from_the_future(spans, mock_cluster, topic):
    async def scenario():
        producer = TracedAIOProducer(
            {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300, "log_level": 0},
            tracer_provider=spans.provider,
        )
        delivered = await producer.produce(topic, b"x")
        with pytest.raises(KafkaException):
            await asyncio.wait_for(delivered, 15)
        await producer.close()

    asyncio.run(scenario())
    assert spans.one(f"send {topic}").status.status_code is StatusCode.ERROR


def test_an_aioproducer_is_refused_with_the_reason(mock_cluster):
    from confluent_kafka.aio import AIOProducer

    async def scenario():
        aio = AIOProducer({"bootstrap.servers": mock_cluster})
        try:
            with pytest.raises(TypeError, match="without headers"):
                TracedAIOProducer(aio)
        finally:
            await aio.close()

    asyncio.run(scenario())


def test_instrument_traces_aioconsumer_once_in_the_calling_task(spans, mock_cluster, topic):
    import confluent_kafka.aio

    import tracing

    async def scenario():
        tracing.instrument(tracer_provider=spans.provider)
        try:
            producer = confluent_kafka.aio.AIOProducer({"bootstrap.servers": mock_cluster})
            await (await producer.produce(topic, b"x", partition=0))
            await producer.close()
            consumer = confluent_kafka.aio.AIOConsumer(consumer_conf(mock_cluster, "recommendation"))
            assert isinstance(consumer, TracedAIOConsumer)
            assert not isinstance(
                consumer.wrapped._consumer, tracing.TracedConsumer
            )  # the inner client stays raw
            await consumer.assign([TopicPartition(topic, 0, 0)])
            await poll_one(consumer)
            await consumer.close()
        finally:
            tracing.uninstrument()

    asyncio.run(scenario())
    process = spans.one(f"process {topic}")
    assert process.parent.span_id == spans.one(f"send {topic}").context.span_id
    assert process.attributes["messaging.consumer.group.name"] == "recommendation"
