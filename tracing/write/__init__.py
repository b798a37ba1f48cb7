"""Write side: what runs inside a service.

- ``propagation`` — trace context in and out of message headers;
- ``records`` — plain values of what a client knows (client info, a send, a received
  message, a delivery): the seam between a client library and the recipe;
- ``recipe`` — the span of each operation (send, process, receive) from those records;
- ``metrics`` — the flow metrics, from the same records;
- ``operations`` — the send and the process lifecycles, and the containment of every
  instrumentation failure;
- ``tracker`` — which message each thread or task is processing (claim, hand-over, end);
- ``providers/<client>`` — a client library's objects as records (~100 lines each:
  confluent-kafka, aiokafka, RabbitMQ's pika and aio-pika);
- ``clients/<client>`` — thin, typed wrappers with the client's exact signatures;
- ``otel`` — the one module that reads OpenTelemetry's internals (and the fast span path);
- ``otlp`` — the spans' OTLP encoding for the exporter ``configure()`` builds;
- ``contrib`` — beside the OpenTelemetry contrib instrumentation, each message traced once;
- ``loop`` + ``rebalance`` — the managed at-least-once processing loop and its commits;
  ``lag`` — consumer lag gauges.
"""
