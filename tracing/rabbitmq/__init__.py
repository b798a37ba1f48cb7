"""RabbitMQ: one trace per event chain for pika (blocking connection) services.

>>> from tracing.rabbitmq import TracedBlockingChannel
>>> channel = TracedBlockingChannel(pika.BlockingConnection(params).channel())

aio-pika: :mod:`tracing.rabbitmq.aio`. ``tracing.instrument()`` traces the channels of
every pika ``BlockingConnection`` (and aio-pika's exchanges and queues) without this.
The wrappers live on the write side (:mod:`tracing.write.clients.rabbitmq`), on the same
send and process operations as the Kafka ones; pika itself is only needed to use them.
"""

from tracing.write.clients.rabbitmq import TracedBlockingChannel
from tracing.write.tracker import ProcessBlock

__all__ = ["ProcessBlock", "TracedBlockingChannel"]
