"""asyncio: traced producer and consumer for ``async`` services.

>>> from tracing.aio import TracedAIOConsumer, TracedAIOProducer

The adapters live on the write side (:mod:`tracing.write.aio`); this module is their
public home, beside the synchronous ones in :mod:`tracing`.
"""

from tracing.write.aio import AsyncProcessing, TracedAIOConsumer, TracedAIOProducer

__all__ = ["AsyncProcessing", "TracedAIOConsumer", "TracedAIOProducer"]
