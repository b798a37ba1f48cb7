"""A RabbitMQ publisher or consumer as a contrib user writes it, run under ``opentelemetry-instrument``.

Used by test_rabbitmq_contrib_coexistence.py in a venv holding opentelemetry-instrumentation-pika
(or -aio-pika) beside this project. Spans go to stdout (``OTEL_TRACES_EXPORTER=console``);
stderr carries the log lines and, first, the order in which the instrumentors' entry points
are loaded.

APP_CLIENT: pika | aio-pika.  APP_ROLE: publish | consume.  The publisher declares the
exchange and a durable queue bound to it, then publishes APP_COUNT messages (publisher
confirms on); the consumer takes APP_COUNT from the queue with a callback (pika's
``basic_consume``, aio-pika's ``queue.consume``), acks each and deletes the queue.
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import entry_points
from typing import Any

CLIENT = os.environ["APP_CLIENT"]
ROLE = os.environ["APP_ROLE"]
URL = os.environ["APP_URL"]
EXCHANGE = os.environ["APP_EXCHANGE"]
QUEUE = os.environ["APP_QUEUE"]
COUNT = int(os.environ["APP_COUNT"])
TIMEOUT = 120.0

names = [ep.name for ep in entry_points(group="opentelemetry_instrumentor")]
print(
    "entry point order: " + ",".join(n for n in names if n in ("pika", "aio-pika", "kafka_event_tracing")),
    file=sys.stderr,
    flush=True,
)


def carried(headers: dict[str, Any] | None) -> None:
    """What the application sees of the trace context the message carries."""
    print(f"traceparent: {'traceparent' in (headers or {})}", file=sys.stderr, flush=True)


def run_pika() -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    if ROLE == "publish":
        channel.exchange_declare(EXCHANGE, "direct")
        channel.queue_declare(QUEUE, durable=True)
        channel.queue_bind(QUEUE, EXCHANGE, routing_key="orders")
        channel.confirm_delivery()
        for i in range(COUNT):
            channel.basic_publish(EXCHANGE, "orders", f"message {i}".encode())
    else:
        handled: list[bytes] = []

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            carried(properties.headers)
            handled.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(handled) == COUNT:
                ch.stop_consuming()

        channel.basic_consume(QUEUE, on_message)
        connection.call_later(TIMEOUT, channel.stop_consuming)
        channel.start_consuming()
        if len(handled) != COUNT:
            sys.exit(f"only {len(handled)} of {COUNT} messages handled")
        channel.queue_delete(QUEUE)
    connection.close()


async def run_aio_pika() -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.DIRECT)
        queue = await channel.declare_queue(QUEUE, durable=True)
        if ROLE == "publish":
            await queue.bind(exchange, routing_key="orders")
            for i in range(COUNT):
                await exchange.publish(aio_pika.Message(f"message {i}".encode()), routing_key="orders")
            return
        done = asyncio.Event()
        handled: list[bytes] = []

        async def on_message(message: Any) -> None:
            async with message.process():
                carried(message.headers)
                handled.append(message.body)
                if len(handled) == COUNT:
                    done.set()

        tag = await queue.consume(on_message)
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT)
        except TimeoutError:
            sys.exit(f"only {len(handled)} of {COUNT} messages handled")
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)


if CLIENT == "pika":
    run_pika()
else:
    asyncio.run(run_aio_pika())
