"""kafka-event-tracing: one OpenTelemetry trace per Kafka event chain.

Write side (inside your services)::

    import tracing
    tracing.configure("order-service")
    producer = tracing.TracedProducer({"bootstrap.servers": "127.0.0.1:19092"})

or ``tracing.instrument()`` before the app builds its clients, and change nothing.
Read side: the ``eventchain`` command (``python -m tracing``).
"""

from tracing.instrumentation import instrument, uninstrument
from tracing.sdk import configure
from tracing.version import __version__
from tracing.write.clients.aio import TracedAIOConsumer, TracedAIOProducer
from tracing.write.clients.consumer import TracedConsumer
from tracing.write.clients.producer import TracedProducer
from tracing.write.propagation import extract_context, inject_context

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
