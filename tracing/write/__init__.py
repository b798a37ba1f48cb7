"""Write side: what runs inside a service.

- ``propagation`` — trace context in and out of message headers;
- ``records`` — plain values of what a client knows (client info, a send, a received
  message, a delivery): the seam between a client library and the recipe;
- ``recipe`` — the span of each operation (send, process, receive) from those records;
- ``metrics`` — the flow metrics, from the same records;
- ``operations`` — the send and the process lifecycles, and the containment of every
  instrumentation failure;
- ``tracker`` — which message each thread or task is processing (claim, hand-over, end);
- ``providers/<client>`` — a client library's objects as records (~100 lines each);
- ``clients/<client>`` — thin, typed wrappers with the client's exact signatures;
- ``otel`` — the one module that reads OpenTelemetry's internals;
- ``loop`` — the managed at-least-once processing loop; ``lag`` — consumer lag gauges.
"""
