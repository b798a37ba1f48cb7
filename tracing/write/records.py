"""Plain values of what a client knows: the seam between a client library and the recipe.

A provider (``tracing.write.providers.<client>``) turns a client's own objects into these;
the recipe, the flow metrics and the operations read nothing else. None of them names
a client type, so a broker is added by writing a provider, not by touching the recipe.

Per-message records are named tuples: immutable, and built in one allocation on paths
that run for every message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

# Message headers as the clients hand them over: a list of (key, value) pairs (a key
# may repeat), a mapping, or None.
Headers = Sequence[tuple[str, Any]] | Mapping[str, Any] | None
# System-specific span attributes a provider fills (RabbitMQ's routing key, delivery tag,
# queue, redelivered flag), as (name, value) pairs the recipe adds last (so they may
# override a generic one); empty for Kafka, whose attributes have fields of their own.
Extra = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What every span and metric of one client carries."""

    system: str  # messaging.system: "kafka", "rabbitmq", ...
    server_address: str | None = None
    server_port: int | None = None
    client_id: str | None = None
    consumer_group: str | None = None


class Send(NamedTuple):
    """One message the app asked to send."""

    destination: str
    key: Any = None  # the key as given: bytes, str, a number, or an object for a serializer
    partition: int | None = None
    tombstone: bool = False
    extra: Extra = ()


class Received(NamedTuple):
    """One message handed to the app."""

    destination: str
    partition: int | None
    offset: int | None
    key: Any
    body_size: int | None  # None when the body is an object (already deserialized)
    tombstone: bool
    timestamp_ms: int | None  # when the broker or producer stamped it; None if unknown
    extra: Extra = ()


class Delivery(NamedTuple):
    """The outcome of one send, as the client reported it."""

    partition: int | None
    offset: int | None
    error: str | None  # error.type, named by the provider; None when delivered
    message: str | None = None  # the error's description
    settled: bool = True  # False: the outcome is unknown (the app stopped waiting)
    extra: Extra = ()  # e.g. a publisher confirm


NOT_SETTLED = Delivery(None, None, None, None, False)
