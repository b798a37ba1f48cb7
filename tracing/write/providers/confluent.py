"""confluent-kafka's objects as records: ``Message``, ``KafkaError``, delivery callbacks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import methodcaller
from typing import Any

from tracing.write.recipe import server_of
from tracing.write.records import ClientInfo, Delivery, Headers, Received

SYSTEM = "kafka"
_TS_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE


def client_info(config: Mapping[str, Any] | None) -> ClientInfo:
    config = config or {}
    address, port = server_of(config)
    client_id = config.get("client.id")
    group = config.get("group.id")
    return ClientInfo(
        SYSTEM,
        address,
        port,
        client_id if isinstance(client_id, str) else None,
        group if isinstance(group, str) else None,
    )


def is_message(msg: Any) -> bool:
    return msg is not None and msg.error() is None


def received(msg: Any) -> Received:
    value = msg.value()
    size = None
    if value is not None:
        try:
            size = len(value)
        except TypeError:
            pass  # a deserialized object has no byte size
    ts_type, ts = msg.timestamp()
    return Received(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        size,
        value is None,
        ts if ts_type != _TS_NOT_AVAILABLE and ts > 0 else None,
    )


def destination(msg: Any) -> str:
    topic: str = msg.topic()
    return topic


# msg.headers(), called from C: no Python frame for every polled message.
headers: Callable[[Any], Headers] = methodcaller("headers")


def delivery(err: Any, msg: Any) -> Delivery:
    """A delivery callback's ``(err, msg)``."""
    partition = offset = None
    if msg is not None:
        partition = msg.partition()
        offset = msg.offset()
    if err is None:
        return Delivery(partition, offset, None)
    return Delivery(partition, offset, error_type(err), str(err))


def error_type(error: Any) -> str:
    """A ``KafkaError``'s name (``_MSG_TIMED_OUT``); a ``KafkaException`` by the error it
    carries, so a failed delivery and a refused produce() of one cause read alike; any
    other exception by its class."""
    args = getattr(error, "args", None)
    if args and type(error).__name__ == "KafkaException" and hasattr(args[0], "name"):
        error = args[0]
    name = getattr(error, "name", None)
    if callable(name):
        try:
            return str(name())
        except Exception:
            pass
    return type(error).__qualname__


def header_value(value: str) -> Any:
    return value  # the client encodes str values as UTF-8
