"""``tracing.instrument()`` for RabbitMQ: every channel of a pika ``BlockingConnection``, and
every channel of an aio-pika ``Connection``/``RobustConnection``, is traced.

``BlockingConnection.channel()`` returns a :class:`~tracing.rabbitmq.TracedBlockingChannel`
around the client's channel; aio-pika's ``connection.channel()`` returns a
:class:`~tracing.rabbitmq.aio.TracedChannel` around the channel it makes, which opens as the
client's does (``await connection.channel()``, ``async with connection.channel() as ch``)
and hands out traced exchanges and queues. Nothing is patched for a client that is not
installed.
"""

from __future__ import annotations

import sys
from typing import Any

_MARK = "_kafka_event_tracing_original"


def _patch(owner: Any, wrapper: Any, options: dict[str, Any], client: str) -> dict[tuple[Any, str], Any]:
    original = owner.__dict__.get("channel")
    if original is None or getattr(original, _MARK, None) is not None:
        return {}

    def channel(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The client's own channels stay raw: aio-pika's RobustConnection.channel() calls
        # Connection.channel(), its queue iterators and pools open channels of their own.
        if sys._getframe(1).f_globals.get("__name__", "").startswith(client):
            return original(self, *args, **kwargs)
        return wrapper(original(self, *args, **kwargs), **options)

    channel.__doc__ = original.__doc__
    channel.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(channel, _MARK, original)
    owner.channel = channel
    return {(owner, "channel"): original}


def instrument(options: dict[str, Any]) -> dict[tuple[Any, str], Any]:
    """Patch what is installed; returns ``{(owner, name): original}`` for ``uninstrument()``."""
    patched: dict[tuple[Any, str], Any] = {}
    try:
        from pika.adapters.blocking_connection import BlockingConnection
    except ImportError:
        pass
    else:
        from tracing.write.clients.rabbitmq import TracedBlockingChannel

        patched.update(_patch(BlockingConnection, TracedBlockingChannel, options, "pika."))
    try:
        from aio_pika.connection import Connection
        from aio_pika.robust_connection import RobustConnection
    except ImportError:
        return patched
    from tracing.write.clients.rabbitmq_aio import TracedChannel

    for owner in (Connection, RobustConnection):  # RobustConnection defines its own channel()
        patched.update(_patch(owner, TracedChannel, options, "aio_pika."))
    return patched
