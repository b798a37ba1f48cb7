"""One service of the mixed RabbitMQ + Kafka chain test: ``python _rabbitmq_service.py ROLE ...``.

    order-service EXCHANGE
        under a "POST /orders" SERVER span, publishes order.created to the RabbitMQ exchange
        (pika, publisher confirms on); prints the trace id.
    notification-service QUEUE TOPIC
        pika ``basic_consume`` on the queue bound to that exchange: the first delivery is
        nacked back to the queue, the broker's redelivery is handled: one message onto the
        Kafka topic, then acked.
    points-service TOPIC LEDGER_QUEUE
        Kafka ``process(msg)``; inside it, aio-pika publishes to the default exchange with
        the ledger queue as routing key.
    ledger-service LEDGER_QUEUE
        aio-pika ``queue.iterator()`` + ``message.process()``.

Each exports over OTLP gRPC to the real Jaeger via tracing.configure(). The test declares
the exchange, queues and topic before any service starts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from confluent_kafka import TopicPartition
from opentelemetry import trace

import tracing

DEADLINE_S = 60
role, args = sys.argv[1], sys.argv[2:]
provider = tracing.configure(role, endpoint=os.environ["KET_OTLP_ENDPOINT"])
amqp_url = os.environ["KET_RABBITMQ_URL"]
kafka = {"bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"], "client.id": role}


def pika_channel():  # noqa: ANN201
    import pika

    from tracing.rabbitmq import TracedBlockingChannel

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    return connection, TracedBlockingChannel(connection.channel())


def order_service(exchange: str) -> None:
    import pika

    connection, channel = pika_channel()
    channel.confirm_delivery()
    tracer = trace.get_tracer("order-api")
    with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER) as span:
        channel.basic_publish(
            exchange, "order.created", b'{"order_id": 42}', pika.BasicProperties(message_id="order-42")
        )
    connection.close()
    print(format(span.get_span_context().trace_id, "032x"))


def notification_service(queue: str, topic: str) -> None:
    connection, channel = pika_channel()
    producer = tracing.TracedProducer(kafka)
    done = []

    def on_message(ch, method, properties, body) -> None:  # noqa: ANN001
        if not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)  # "SMS gateway busy": back to the queue
            return
        producer.produce(topic, body, key=b"order-42")
        assert producer.flush(30) == 0
        ch.basic_ack(method.delivery_tag)
        done.append(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    deadline = time.monotonic() + DEADLINE_S
    while not done and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.5)
    connection.close()
    if not done:
        sys.exit(f"{role}: no redelivery on {queue} within {DEADLINE_S}s")


async def publish_to_queue(queue: str, body: bytes) -> None:
    import aio_pika

    from tracing.rabbitmq.aio import TracedChannel

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = TracedChannel(await connection.channel())
        await channel.default_exchange.publish(aio_pika.Message(body, message_id="order-42"), queue)


def points_service(topic: str, ledger_queue: str) -> None:
    consumer = tracing.TracedConsumer({**kafka, "group.id": "points", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            with consumer.process(msg):
                asyncio.run(publish_to_queue(ledger_queue, msg.value()))
            break
    else:
        sys.exit(f"{role}: no message on {topic} within {DEADLINE_S}s")
    consumer.close()


async def ledger_service(queue_name: str) -> None:
    import aio_pika

    from tracing.rabbitmq.aio import TracedChannel

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = TracedChannel(await connection.channel())
        queue = await channel.get_queue(queue_name)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    await asyncio.sleep(0.005)  # "book the points"
                break


if role == "order-service":
    order_service(*args)
elif role == "notification-service":
    notification_service(*args)
elif role == "points-service":
    points_service(*args)
elif role == "ledger-service":
    asyncio.run(asyncio.wait_for(ledger_service(*args), DEADLINE_S))
provider.shutdown()
