"""aiokafka's objects as records: ``ConsumerRecord``, ``RecordMetadata``, send futures."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from tracing.write.providers import confluent
from tracing.write.records import NOT_SETTLED, ClientInfo, Delivery, Headers, Received

SYSTEM = "kafka"


def settings_of(client: Any) -> dict[str, Any]:
    """A client's servers, client id and group, in confluent-kafka's spelling.

    aiokafka has no public accessor for them, so they are read from the client's
    attributes; a client without them only means spans without those attributes.
    """
    network = getattr(client, "client", None) or getattr(client, "_client", None)
    servers = getattr(network, "_bootstrap_servers", None)
    if isinstance(servers, list | tuple):
        servers = ",".join(servers)
    return {
        "bootstrap.servers": servers if isinstance(servers, str) else None,
        "client.id": getattr(network, "_client_id", None),
        "group.id": getattr(client, "_group_id", None),
    }


def client_info(config: Mapping[str, Any] | None) -> ClientInfo:
    """The settings :func:`settings_of` read, as confluent-kafka's provider reads its config."""
    return confluent.client_info(config)


def is_message(record: Any) -> bool:
    return record is not None  # aiokafka raises errors instead of returning them


def received(record: Any) -> Received:
    value = record.value
    size = None
    if value is not None:
        try:
            size = len(value)
        except TypeError:
            pass  # a deserialized object has no byte size
    ts = record.timestamp
    return Received(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        size,
        value is None,
        ts if ts is not None and ts > 0 else None,
    )


def destination(record: Any) -> str:
    topic: str = record.topic
    return topic


def headers(record: Any) -> Headers:
    found: Headers = record.headers
    return found


def delivery(delivered: asyncio.Future[Any]) -> Delivery:
    """A send's future once it resolved: ``RecordMetadata``, the error, or cancelled."""
    if delivered.cancelled():
        return NOT_SETTLED  # the app stopped waiting; aiokafka may still send it
    err = delivered.exception()
    if err is not None:
        return Delivery(None, None, error_type(err), str(err) or type(err).__name__)
    metadata = delivered.result()
    return Delivery(getattr(metadata, "partition", None), getattr(metadata, "offset", None), None)


def error_type(error: Any) -> str:
    return confluent.error_type(error)  # the same rule: a client error's own name, else its class


def header_value(value: str) -> Any:
    return value.encode()  # aiokafka sends header values as given: bytes
