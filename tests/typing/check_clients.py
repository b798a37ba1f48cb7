"""Checked by mypy in CI (`make typecheck`), not run: the wrappers keep their clients'
signatures visible. Each `type: ignore` below must be needed (--warn-unused-ignores):
a wrapper whose pass-through decays to Any fails the check."""

from __future__ import annotations

from confluent_kafka import Consumer, Message, Producer

from tracing import TracedConsumer, TracedProducer
from tracing.aio import TracedAIOConsumer


def plain(consumer: Consumer, producer: Producer) -> None:
    consumer.subscribe(123)  # type: ignore[arg-type]
    producer.produce(7)  # type: ignore[arg-type]


def wrapped(consumer: TracedConsumer, producer: TracedProducer) -> None:
    consumer.subscribe(123)  # type: ignore[arg-type]
    consumer.subscribe(["orders"])
    consumer.commit(asynchronous=False)
    producer.produce(7)  # type: ignore[arg-type]
    producer.produce("orders", b"v", key=b"k", headers=[("h", b"1")])
    left: int = producer.flush(1.0)
    del left


def a_wrapped_client_is_its_client(consumer: TracedConsumer) -> Consumer:
    return consumer  # handed to code written for the client, it type-checks


def an_asyncio_consumer_is_not_a_sync_one(consumer: TracedAIOConsumer) -> TracedConsumer:
    return consumer  # type: ignore[return-value]


async def asyncio_poll(consumer: TracedAIOConsumer) -> Message | None:
    msg: Message | None = await consumer.poll(1.0)
    return msg
