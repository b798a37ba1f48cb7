"""RabbitMQ's objects as records, for pika (blocking) and aio-pika: deliveries, publishes, confirms.

Per the conventions ``messaging.destination.name`` is the exchange, empty for the default
exchange; the span names and the flow metrics, which need a name, call that one
``amq.default`` (as the broker does). The routing key, the queue (subscription), the
delivery tag and the redelivered flag are the records' ``extra`` attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from tracing import semconv as sc
from tracing.write.records import ClientInfo, Delivery, Extra, Headers, Received

SYSTEM = "rabbitmq"
DEFAULT_EXCHANGE = "amq.default"
ACK = ((sc.RABBITMQ_CONFIRM, "ack"),)
# What every publish to one (exchange, routing key) carries, and the same for deliveries below:
# built once (bounded: a service uses few of them; past the bound they are built each time).
_SEND_STATIC: dict[tuple[Any, Any], Extra] = {}
_STATIC_MAX = 1024
# A publish's two outcomes short of a refusal: built once (a Delivery per publish otherwise).
_CONFIRMED = Delivery(None, None, None, None, True, ACK)
_SENT = Delivery(None, None, None, None, True, ())


def client_info(host: Any = None, port: Any = None) -> ClientInfo:
    return ClientInfo(
        SYSTEM,
        host if isinstance(host, str) and host else None,
        port if isinstance(port, int) and not isinstance(port, bool) else None,
    )


def destination_of(exchange: Any) -> str:
    """The name spans and metrics use for an exchange."""
    return exchange if isinstance(exchange, str) and exchange else DEFAULT_EXCHANGE


def send_extra(exchange: Any, routing_key: Any, message_id: Any, body: Any) -> Extra:
    try:
        extra = _SEND_STATIC[(exchange, routing_key)]
    except (KeyError, TypeError):  # new, or an unhashable value
        extra = _send_static(exchange, routing_key)
        if len(_SEND_STATIC) < _STATIC_MAX:
            try:
                _SEND_STATIC[(exchange, routing_key)] = extra
            except TypeError:
                pass
    if message_id and isinstance(message_id, str):
        extra += ((sc.MESSAGE_ID, message_id),)
    if type(body) is bytes or isinstance(body, bytes | bytearray):
        extra += ((sc.BODY_SIZE, len(body)),)
    return extra


def _send_static(exchange: Any, routing_key: Any) -> Extra:
    extra: list[tuple[str, Any]] = [(sc.RABBITMQ_ROUTING_KEY, str(routing_key))] if routing_key else []
    if not exchange:
        extra.append((sc.DESTINATION_NAME, ""))
    return tuple(extra)


class PikaDelivery(NamedTuple):
    """One message pika handed over: ``(method, properties, body)`` and the queue it came from."""

    queue: str | None
    method: Any  # Basic.Deliver or Basic.GetOk
    properties: Any  # BasicProperties
    body: Any


# What every delivery of one (exchange, routing key, queue) carries: built once, not per
# delivery (bounded: a consumer reads few of them; past the bound they are built each time).
_STATIC: dict[tuple[Any, Any, Any], tuple[str, Extra]] = {}


def _static(exchange: Any, routing_key: Any, queue: Any) -> tuple[str, Extra]:
    extra: list[tuple[str, Any]] = []
    if routing_key:
        extra.append((sc.RABBITMQ_ROUTING_KEY, str(routing_key)))
    if not exchange:
        extra.append((sc.DESTINATION_NAME, ""))
    if isinstance(queue, str) and queue:
        extra.append((sc.SUBSCRIPTION_NAME, queue))
    return destination_of(exchange), tuple(extra)


def _received(
    exchange: Any, routing_key: Any, tag: Any, redelivered: Any, queue: Any, body: Any, ts: Any, mid: Any
) -> Received:
    try:
        destination, static = _STATIC[(exchange, routing_key, queue)]
    except (KeyError, TypeError):  # new, or an unhashable value
        destination, static = _static(exchange, routing_key, queue)
        if len(_STATIC) < _STATIC_MAX:
            try:
                _STATIC[(exchange, routing_key, queue)] = (destination, static)
            except TypeError:
                pass
    extra = static
    if type(tag) is int or isinstance(tag, int):
        extra += ((sc.RABBITMQ_DELIVERY_TAG, tag),)
    if redelivered:
        extra += ((sc.RABBITMQ_REDELIVERED, True),)
    if mid and isinstance(mid, str):
        extra += ((sc.MESSAGE_ID, mid),)
    size = len(body) if isinstance(body, bytes | bytearray) else None
    if ts is None:
        stamped = None
    else:
        if hasattr(ts, "timestamp"):  # aio-pika decodes it to a datetime
            ts = ts.timestamp()
        stamped = int(ts * 1000) if isinstance(ts, int | float) and ts > 0 else None
    return Received(destination, None, None, None, size, False, stamped, extra)


class _Common:
    SYSTEM = SYSTEM

    def client_info(self, config: Mapping[str, Any] | None) -> ClientInfo:
        config = config or {}
        return client_info(config.get("host"), config.get("port"))

    def delivery(self, *report: Any) -> Delivery:
        """A publish's outcome: ``(confirmed,)``; a refusal comes as an exception instead."""
        return _CONFIRMED if report and report[0] else _SENT

    def error_type(self, error: Any) -> str:
        return type(error).__qualname__  # NackError, UnroutableError, DeliveryError, ...

    def header_value(self, value: str) -> Any:
        return value  # AMQP tables take str values


class _Pika(_Common):
    def is_message(self, msg: Any) -> bool:
        return isinstance(msg, PikaDelivery) and msg.method is not None

    def received(self, msg: Any) -> Received:
        method, props = msg.method, msg.properties
        return _received(
            method.exchange,
            method.routing_key,
            method.delivery_tag,
            method.redelivered,
            msg.queue,
            msg.body,
            getattr(props, "timestamp", None),
            getattr(props, "message_id", None),
        )

    def destination(self, msg: Any) -> str:
        return destination_of(msg.method.exchange)

    def headers(self, msg: Any) -> Headers:
        found = getattr(msg.properties, "headers", None)
        return found if isinstance(found, Mapping) else None


class _AioPika(_Common):
    """aio-pika's ``IncomingMessage`` knows no queue: one provider per traced queue names it."""

    def __init__(self, queue: str | None = None) -> None:
        self.queue = queue

    def is_message(self, msg: Any) -> bool:
        return msg is not None and hasattr(msg, "delivery_tag")

    def received(self, msg: Any) -> Received:
        return _received(
            msg.exchange,
            msg.routing_key,
            msg.delivery_tag,
            msg.redelivered,
            self.queue,
            msg.body,
            msg.timestamp,
            msg.message_id,
        )

    def destination(self, msg: Any) -> str:
        return destination_of(msg.exchange)

    def headers(self, msg: Any) -> Headers:
        found = msg.headers
        return found if isinstance(found, Mapping) else None


PIKA = _Pika()
AIO_PIKA = _AioPika()
