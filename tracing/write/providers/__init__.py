"""Providers: one short module per client library, turning its objects into records.

A provider answers what the recipe and the operations need to know of a client and
nothing more: its settings (:class:`~tracing.write.records.ClientInfo`), a received
message (:class:`~tracing.write.records.Received` and its headers), a delivery report
(:class:`~tracing.write.records.Delivery`) and the name of its errors (``error.type``).
``messaging.system`` is the provider's ``SYSTEM``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tracing.write.records import ClientInfo, Delivery, Headers, Received


class Provider(Protocol):
    """What the operations ask of a client library."""

    SYSTEM: str

    def client_info(self, config: Mapping[str, Any] | None) -> ClientInfo:
        """The client's settings as spans and metrics name them."""
        ...

    def is_message(self, msg: Any) -> bool:
        """Whether ``msg`` is a message for the app (not a timeout's None, not an error event)."""
        ...

    def received(self, msg: Any) -> Received:
        """A received message as a record."""
        ...

    def destination(self, msg: Any) -> str:
        """Where a received message came from (read alone on the cheap paths)."""
        ...

    def headers(self, msg: Any) -> Headers:
        """A received message's headers."""
        ...

    def delivery(self, *report: Any) -> Delivery:
        """A delivery report, in the shape the client reports it, as a record."""
        ...

    def error_type(self, error: Any) -> str:
        """``error.type`` of a client error or an exception: one name for spans and metrics."""
        ...

    def header_value(self, value: str) -> Any:
        """A trace header value as the client wants it written."""
        ...
