"""``tracing.instrument()`` for RabbitMQ: every channel of a pika ``BlockingConnection`` is traced.

``BlockingConnection.channel()`` returns a :class:`~tracing.rabbitmq.TracedBlockingChannel`
around the client's channel. Nothing is patched when pika is not installed.
"""

from __future__ import annotations

from typing import Any

from tracing.write.clients.rabbitmq import TracedBlockingChannel


def instrument(options: dict[str, Any]) -> dict[tuple[Any, str], Any]:
    """Patch what is installed; returns ``{(owner, name): original}`` for ``uninstrument()``."""
    patched: dict[tuple[Any, str], Any] = {}
    try:
        from pika.adapters.blocking_connection import BlockingConnection
    except ImportError:
        return patched
    original = BlockingConnection.channel
    if getattr(original, "_kafka_event_tracing_original", None) is not None:
        return patched

    def channel(self: Any, channel_number: int | None = None) -> Any:
        return TracedBlockingChannel(original(self, channel_number), **options)

    channel.__doc__ = original.__doc__
    channel._kafka_event_tracing_original = original  # type: ignore[attr-defined]
    BlockingConnection.channel = channel
    patched[(BlockingConnection, "channel")] = original
    return patched
