"""A producer or a consumer as a contrib user writes it, run under ``opentelemetry-instrument``.

Used by test_contrib_coexistence.py in a venv holding opentelemetry-instrumentation-confluent-kafka
beside this project. Spans go to stdout (``OTEL_TRACES_EXPORTER=console``); stderr carries the
log lines and, first, the order in which the two instrumentors' entry points are loaded.

APP_ROLE: produce | consume.  APP_MODE: how the app builds its clients:
  plain     ``confluent_kafka.Producer(conf)``: whatever instrumentation is active traces it
  proxied   ``TracedProducer(ConfluentKafkaInstrumentor.instrument_producer(Producer(conf)))``
  subclass  contrib instrumented in code, then ``TracedProducer(confluent_kafka.Producer(conf))``
            (an ``AutoInstrumentedProducer``)
  code      ``ConfluentKafkaInstrumentor().instrument()`` then ``tracing.instrument()`` in code
"""

from __future__ import annotations

import os
import sys
import time
from importlib.metadata import entry_points
from typing import Any

ROLE = os.environ["APP_ROLE"]
MODE = os.environ.get("APP_MODE", "plain")
TOPIC = os.environ["APP_TOPIC"]
COUNT = int(os.environ["APP_COUNT"])
BOOTSTRAP = os.environ["APP_BOOTSTRAP"]

names = [ep.name for ep in entry_points(group="opentelemetry_instrumentor")]
print(
    "entry point order: " + ",".join(n for n in names if n in ("confluent_kafka", "kafka_event_tracing")),
    file=sys.stderr,
    flush=True,
)


def contrib() -> Any:
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    return ConfluentKafkaInstrumentor


def build(kind: str, conf: dict[str, Any]) -> Any:
    import confluent_kafka

    if MODE == "code":
        import tracing

        contrib()().instrument()
        tracing.instrument()
    if MODE == "subclass":
        contrib()().instrument()
    cls = getattr(confluent_kafka, kind)  # looked up now, as an app importing it late would
    if MODE == "proxied":
        from tracing import TracedConsumer, TracedProducer

        if kind == "Producer":
            return TracedProducer(contrib().instrument_producer(cls(conf)), client_config=conf)
        return TracedConsumer(contrib().instrument_consumer(cls(conf)), client_config=conf)
    if MODE == "subclass":
        from tracing import TracedConsumer, TracedProducer

        wrapper = TracedProducer if kind == "Producer" else TracedConsumer
        return wrapper(cls(conf), client_config=conf)
    return cls(conf)


if ROLE == "produce":
    producer = build("Producer", {"bootstrap.servers": BOOTSTRAP})
    for i in range(COUNT):
        producer.produce(TOPIC, f"message {i}".encode(), key=f"key-{i}".encode())
    if producer.flush(60) != 0:
        sys.exit("messages not delivered")
else:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = build(
        "Consumer",
        {"bootstrap.servers": BOOTSTRAP, "group.id": os.environ["APP_GROUP"], "enable.auto.commit": False},
    )
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    received = 0
    deadline = time.monotonic() + 120
    while received < COUNT:
        if time.monotonic() > deadline:
            sys.exit(f"only {received} of {COUNT} messages received")
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        received += 1
        # Anything that reads the message's headers shows how many trace contexts it carries.
        carried = [k for k, _ in (msg.headers() or []) if k == "traceparent"]
        print(f"traceparent headers: {len(carried)}", file=sys.stderr, flush=True)
    consumer.close()
