"""asyncio: traced producers and consumers for ``async`` services.

>>> from tracing.aio import TracedAIOConsumer, TracedAIOProducer          # confluent_kafka.aio
>>> from tracing.aio import TracedAIOKafkaConsumer, TracedAIOKafkaProducer  # aiokafka

The adapters live on the write side (:mod:`tracing.write.aio`,
:mod:`tracing.write.aiokafka`), on the same span recipe as the synchronous ones; this
module is their public home. aiokafka itself is only needed to use its adapters.
"""

from tracing.write.aio import AsyncProcessing, TracedAIOConsumer, TracedAIOProducer
from tracing.write.aiokafka import TracedAIOKafkaConsumer, TracedAIOKafkaProducer

__all__ = [
    "AsyncProcessing",
    "TracedAIOConsumer",
    "TracedAIOKafkaConsumer",
    "TracedAIOKafkaProducer",
    "TracedAIOProducer",
]
