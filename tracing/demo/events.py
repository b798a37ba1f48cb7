"""The demo's events: a small JSON envelope, and the topics they travel on.

Every event carries its own id (``event_id``, what consumers deduplicate by), its ``type``
(what consumers dispatch on) and a ``payload``. ``attempt`` counts deliveries to a handler
that retries (the notification service's retry topic).

>>> event = Event.new("order.created", {"order_id": "o-1"})
>>> Event.decode(event.encode()) == event
True
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Event:
    """One domain event as it travels through Kafka (JSON, UTF-8)."""

    type: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 1

    @classmethod
    def new(cls, type: str, payload: dict[str, Any]) -> Event:
        """A new event with a fresh id."""
        return cls(type=type, payload=payload)

    def encode(self) -> bytes:
        """The message value."""
        doc = {"event_id": self.event_id, "type": self.type, "attempt": self.attempt, "payload": self.payload}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Event:
        """Parse a message value; raises ``ValueError`` for anything that is not an event."""
        if value is None:
            raise ValueError("empty message (tombstone): not an event")
        try:
            doc = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a JSON event: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str) or not doc.get("event_id"):
            raise ValueError("not an event: 'type' and 'event_id' are required")
        payload = doc.get("payload")
        return cls(
            type=doc["type"],
            payload=payload if isinstance(payload, dict) else {},
            event_id=str(doc["event_id"]),
            attempt=int(doc.get("attempt") or 1),
        )

    def retry(self) -> Event:
        """The same event (same id), one attempt further."""
        return replace(self, attempt=self.attempt + 1)


@dataclass(frozen=True)
class Topics:
    """The demo's topic names; a ``prefix`` keeps runs that share a broker apart."""

    prefix: str = ""

    @property
    def orders(self) -> str:
        """``order.created``, ``order.cancelled`` (order-service)."""
        return self.prefix + "orders"

    @property
    def stock(self) -> str:
        """``stock.reserved``, ``stock.rejected`` (inventory-service)."""
        return self.prefix + "stock"

    @property
    def users(self) -> str:
        """``user.registered`` (user-service)."""
        return self.prefix + "users"

    @property
    def sms_retry(self) -> str:
        """SMS sends that failed once (notification-service, to itself)."""
        return self.prefix + "notifications.retry"

    def all(self) -> list[str]:
        return [self.orders, self.stock, self.users, self.sms_retry]
