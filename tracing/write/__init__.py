"""Write side: what runs inside a service.

- ``propagation`` — trace context in and out of Kafka headers;
- ``recipe`` — the span for each operation (send, process, receive);
- ``producer``/``consumer``/``aio`` — thin adapters per confluent-kafka client;
- ``loop`` — the managed at-least-once processing loop.
"""
