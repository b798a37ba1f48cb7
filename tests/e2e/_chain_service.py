"""One service of the three-process chain test: `python _chain_service.py ROLE IN_TOPIC OUT_TOPIC`.

order-service publishes under a SERVER span; inventory-service consumes in the drop-in
style and publishes on; notification-service consumes with `process(msg)`.
Each exports over OTLP gRPC to the real Jaeger via tracing.configure().
"""

import os
import sys
import time

from confluent_kafka import TopicPartition
from opentelemetry import trace

import tracing

role, in_topic, out_topic = sys.argv[1], sys.argv[2], sys.argv[3]
bootstrap = os.environ["KET_KAFKA_BOOTSTRAP"]
provider = tracing.configure(role, endpoint=os.environ["KET_OTLP_ENDPOINT"])
conf = {"bootstrap.servers": bootstrap, "client.id": role}


def consumer(group):
    c = tracing.TracedConsumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(in_topic, 0, 0)])
    return c


def first_message(c, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            return msg
    sys.exit(f"{role}: no message on {in_topic} within {timeout}s")


if role == "order-service":
    producer = tracing.TracedProducer(conf)
    tracer = trace.get_tracer("order-api")
    with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER) as span:
        producer.produce(out_topic, b'{"order_id": 42}', key=b"order-42")
    assert producer.flush(30) == 0
    print(format(span.get_span_context().trace_id, "032x"))
elif role == "inventory-service":
    c = consumer("inventory")
    first_message(c)  # drop-in: its process span is current now
    producer = tracing.TracedProducer(conf)
    producer.produce(out_topic, b'{"order_id": 42, "reserved": true}', key=b"order-42")
    assert producer.flush(30) == 0
    c.close()
elif role == "notification-service":
    c = consumer("notification")
    msg = first_message(c)
    with c.process(msg):
        time.sleep(0.01)  # "send the SMS"
    c.close()
provider.shutdown()
