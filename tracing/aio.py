"""asyncio: traced producers and consumers for ``async`` services.

>>> from tracing.aio import TracedAIOConsumer, TracedAIOProducer          # confluent_kafka.aio
>>> from tracing.aio import TracedAIOKafkaConsumer, TracedAIOKafkaProducer  # aiokafka

The clients live on the write side (:mod:`tracing.write.clients.aio`,
:mod:`tracing.write.clients.aiokafka`), on the same send and process operations as the
synchronous ones; this module is their public home. aiokafka itself is only needed to
use its clients.
"""

from tracing.write.clients.aio import TracedAIOConsumer, TracedAIOProducer
from tracing.write.clients.aiokafka import TracedAIOKafkaConsumer, TracedAIOKafkaProducer
from tracing.write.tracker import ProcessBlock

AsyncProcessing = ProcessBlock  # what ``process(msg)`` returns: ``async with`` and ``with`` both work

__all__ = [
    "AsyncProcessing",
    "ProcessBlock",
    "TracedAIOConsumer",
    "TracedAIOKafkaConsumer",
    "TracedAIOKafkaProducer",
    "TracedAIOProducer",
]
