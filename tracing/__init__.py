"""kafka-event-tracing: one OpenTelemetry trace per Kafka event chain.

Write side (inside your services)::

    import tracing
    tracing.configure("order-service")
    producer = tracing.TracedProducer({"bootstrap.servers": "127.0.0.1:19092"})

or ``tracing.instrument()`` before the app builds its clients, and change nothing.
Read side: the ``eventchain`` command (``python -m tracing``).

The names below are loaded on first use: ``import tracing`` alone loads neither the
OpenTelemetry SDK nor the propagators (``configure()`` and the wrappers do), so the
``eventchain`` command and an app that only imports the package stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracing.version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads them
    from tracing.instrumentation import instrument, uninstrument
    from tracing.sdk import configure
    from tracing.write.clients.aio import TracedAIOConsumer, TracedAIOProducer
    from tracing.write.clients.consumer import TracedConsumer
    from tracing.write.clients.producer import TracedProducer
    from tracing.write.propagation import extract_context, inject_context

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "TracedAIOConsumer": "tracing.write.clients.aio",
    "TracedAIOProducer": "tracing.write.clients.aio",
    "TracedConsumer": "tracing.write.clients.consumer",
    "TracedProducer": "tracing.write.clients.producer",
    "configure": "tracing.sdk",
    "extract_context": "tracing.write.propagation",
    "inject_context": "tracing.write.propagation",
    "instrument": "tracing.instrumentation",
    "uninstrument": "tracing.instrumentation",
}

__all__ = [
    "TracedAIOConsumer",
    "TracedAIOProducer",
    "TracedConsumer",
    "TracedProducer",
    "__version__",
    "configure",
    "extract_context",
    "inject_context",
    "instrument",
    "uninstrument",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # loaded once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
