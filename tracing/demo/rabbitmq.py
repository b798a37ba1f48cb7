"""The demo's RabbitMQ hop: order-service publishes ``order.created`` to the ``order-events`` exchange,
notification-service consumes it from its ``notifications`` queue ("order received" SMS), while
inventory and points keep reading ``order.created`` from Kafka. One order is then ONE trace
across both brokers.

Only the services run as processes use it (``--amqp URL``; ``make demo-live`` passes the local
stack's RabbitMQ); without it, and in the embedded demo, every hop stays on Kafka.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from tracing.demo.events import Event

ROUTING_KEY = "order.created"


def exchange_name(prefix: str) -> str:
    return f"{prefix}order-events"


def queue_name(prefix: str) -> str:
    return f"{prefix}notifications"


def _connect(url: str) -> Any:
    import pika

    return pika.BlockingConnection(pika.URLParameters(url))


class AmqpPublisher:
    """Publishes events to one exchange with publisher confirms (one connection per publish: the
    HTTP front answers from several threads and pika's connections are not shared across them)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.exchange = exchange_name(prefix)
        connection = _connect(url)
        try:
            connection.channel().exchange_declare(self.exchange, "topic")
        finally:
            connection.close()

    def publish(self, event: Event, routing_key: str = ROUTING_KEY) -> None:
        import pika

        from tracing.rabbitmq import TracedBlockingChannel

        connection = _connect(self.url)
        try:
            channel = TracedBlockingChannel(connection.channel())
            channel.confirm_delivery()
            properties = pika.BasicProperties(message_id=event.event_id, content_type="application/json")
            channel.basic_publish(self.exchange, routing_key, event.encode(), properties)
        finally:
            connection.close()


class AmqpConsumer:
    """Consumes one queue bound to the exchange in a thread of its own; each delivery is handled
    inside its process span and acked afterwards (a failed handler marks the span, the SMS
    retry is the handler's business, as on Kafka)."""

    def __init__(
        self,
        url: str,
        prefix: str,
        handle: Callable[[Event], None],
        log: logging.Logger,
        attributes: Callable[[Event], dict[str, Any]],
    ) -> None:
        self.url = url
        self.exchange = exchange_name(prefix)
        self.queue = queue_name(prefix)
        self.handle = handle
        self.log = log
        self.attributes = attributes
        self.stop = threading.Event()
        connection = _connect(url)  # declared before the service says it is ready
        try:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, "topic")
            channel.queue_declare(self.queue)
            channel.queue_bind(self.queue, self.exchange, "order.#")
        finally:
            connection.close()
        self.thread = threading.Thread(target=self._run, name="amqp-consumer", daemon=True)

    def start(self) -> AmqpConsumer:
        self.thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        from tracing.rabbitmq import TracedBlockingChannel

        connection = _connect(self.url)
        channel = TracedBlockingChannel(connection.channel())

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            span = trace.get_current_span()
            try:
                event = Event.decode(body)
                span.set_attributes(self.attributes(event))
                self.handle(event)
            except Exception as exc:
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                self.log.warning("%s from %s failed: %s", self.queue, self.exchange, exc)
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(self.queue, on_message)
        self.log.info("consuming RabbitMQ queue %s (exchange %s)", self.queue, self.exchange)
        try:
            while not self.stop.is_set():
                connection.process_data_events(time_limit=0.2)
        finally:
            connection.close()
