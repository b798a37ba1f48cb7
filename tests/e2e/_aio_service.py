"""The two services of the asyncio end-to-end test: ``python _aio_service.py ROLE ...``.

    order-service OUT_TOPIC COUNT
        COUNT orders through a TracedAIOProducer, each under its own root span
        ("POST /orders", a distinct trace); prints one JSON line {key: trace id}.
    inventory-service MODE IN_TOPIC OUT_TOPIC COUNT
        consumes COUNT orders with one TracedAIOConsumer and produces one stock message
        per order with one TracedAIOProducer, several messages in flight at once:
          workers    WORKERS tasks share the consumer, each `async for` + `async with process(msg)`;
          drop-in    WORKERS tasks share the consumer, `await poll()` only (no process block);
          dispatcher one task polls and create_task()s a handler per message.
        Prints one JSON line: how many messages were in flight together at most.

Concurrency is forced, not hoped for: every handler waits at a barrier while holding its
message, so the process spans of several messages are open at the same time, and then
the handlers produce in the reverse order of their arrival. An onward send that picked
up the wrong task's span would land in another order's trace.

Each exports over OTLP gRPC to the real Jaeger via tracing.configure().
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from confluent_kafka import TopicPartition
from opentelemetry import trace

import tracing
from tracing.aio import TracedAIOConsumer, TracedAIOProducer

WORKERS = 3
DEADLINE_S = 60  # the whole service; the test's own timeout is longer

bootstrap = os.environ["KET_KAFKA_BOOTSTRAP"]


def stagger(position: int, size: int) -> float:
    """Later arrivals produce first: 4 ms steps, enough to reorder, short enough to be cheap."""
    return (size - 1 - position) * 0.004


async def order_service(out_topic: str, count: int) -> dict[str, str]:
    tracer = trace.get_tracer("order-api")
    trace_ids: dict[str, str] = {}
    async with TracedAIOProducer({"bootstrap.servers": bootstrap, "client.id": "order-service"}) as producer:
        futures = []
        for i in range(count):
            key = f"order-{i}"
            with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER) as span:
                futures.append(await producer.produce(out_topic, json.dumps({"order_id": i}).encode(), key))
            trace_ids[key] = format(span.get_span_context().trace_id, "032x")
        await asyncio.gather(*futures)
    return trace_ids


class InFlight:
    """Counts messages being handled at once; a barrier makes ``size`` of them overlap."""

    def __init__(self, size: int) -> None:
        self.barrier = asyncio.Barrier(size)
        self.now = 0
        self.most = 0

    async def hold(self) -> int:
        """Wait until ``size`` handlers hold a message; this one's arrival position."""
        self.now += 1
        self.most = max(self.most, self.now)
        return await self.barrier.wait()

    def release(self) -> None:
        self.now -= 1


async def inventory_service(mode: str, in_topic: str, out_topic: str, count: int) -> int:
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": "inventory-service",
        "group.id": "inventory",
        "enable.auto.commit": False,
    }
    consumer = TracedAIOConsumer(conf)
    producer = TracedAIOProducer({"bootstrap.servers": bootstrap, "client.id": "inventory-service"})
    # assign(), not subscribe(): no group rebalance to wait for.
    await consumer.assign([TopicPartition(in_topic, 0, 0)])

    async def reserve(msg, flight: InFlight, size: int) -> None:
        """The handler's work with the message's span current: wait for the others, then send on."""
        position = await flight.hold()
        await asyncio.sleep(stagger(position, size))
        delivered = await producer.produce(out_topic, b'{"reserved": true}', msg.key())
        await delivered  # at-least-once: the order counts as handled once stock is written
        flight.release()

    if mode in ("workers", "drop-in"):
        if count % WORKERS:
            sys.exit(f"inventory-service: COUNT must be a multiple of {WORKERS} in mode {mode}")
        flight = InFlight(WORKERS)  # every round, each worker holds one message

        async def worker() -> None:
            handled = 0
            if mode == "workers":
                async for msg in consumer.messages(timeout=0.5):
                    async with consumer.process(msg):
                        await reserve(msg, flight, WORKERS)
                    handled += 1
                    if handled == count // WORKERS:
                        return
            else:
                while handled < count // WORKERS:
                    msg = await consumer.poll(0.5)  # its span is current in this task until the next poll
                    if msg is None or msg.error() is not None:
                        continue
                    await reserve(msg, flight, WORKERS)
                    handled += 1

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    elif mode == "dispatcher":
        flight = InFlight(count)  # every handler holds its message until all have theirs

        async def handle(msg) -> None:
            async with consumer.process(msg):
                await reserve(msg, flight, count)

        handlers = []
        async for msg in consumer.messages(timeout=0.5):
            handlers.append(asyncio.create_task(handle(msg)))
            if len(handlers) == count:
                break
        await asyncio.gather(*handlers)
    else:
        sys.exit(f"inventory-service: unknown mode {mode!r}")
    await producer.close()
    await consumer.close()
    return flight.most


def main(argv: list[str]) -> None:
    role = argv[1]
    provider = tracing.configure(role, endpoint=os.environ["KET_OTLP_ENDPOINT"])
    try:
        if role == "order-service":
            out_topic, count = argv[2], int(argv[3])
            result: object = asyncio.run(asyncio.wait_for(order_service(out_topic, count), DEADLINE_S))
        elif role == "inventory-service":
            mode, in_topic, out_topic, count = argv[2], argv[3], argv[4], int(argv[5])
            most = asyncio.run(
                asyncio.wait_for(inventory_service(mode, in_topic, out_topic, count), DEADLINE_S)
            )
            result = {"most_in_flight": most}
        else:
            sys.exit(f"unknown role {role!r}")
    finally:
        # Every span reaches Jaeger before the test looks for it.
        provider.force_flush()
        provider.shutdown()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
