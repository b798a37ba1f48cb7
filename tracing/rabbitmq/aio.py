"""aio-pika: traced channels, exchanges and queues for ``async`` services.

>>> from tracing.rabbitmq.aio import TracedChannel
>>> channel = TracedChannel(await connection.channel())
>>> exchange = await channel.declare_exchange("orders", aio_pika.ExchangeType.TOPIC)
"""

from tracing.write.clients.rabbitmq_aio import TracedChannel, TracedExchange, TracedQueue, TracedQueueIterator
from tracing.write.tracker import ProcessBlock

__all__ = ["ProcessBlock", "TracedChannel", "TracedExchange", "TracedQueue", "TracedQueueIterator"]
