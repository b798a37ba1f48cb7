"""The event-chain demo: six small services that trace their Kafka events with this library.

``python -m tracing.demo`` runs them in one process on librdkafka's in-process mock cluster and
prints the event chains; ``python -m tracing.demo --live`` runs each as its own process against
a real broker and Jaeger and reads the chains back from Jaeger. Each service also runs on its own:
``python -m tracing.demo.services.order --help``.
"""
