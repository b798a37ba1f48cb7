"""Process B of the stack smoke test: consume the message and record a child process span.

Reads KET_KAFKA_BOOTSTRAP, KET_OTLP_ENDPOINT, SMOKE_TOPIC and SMOKE_SERVICE; prints one
JSON line with the span's ids.
"""

import json
import os
import time
import uuid

from confluent_kafka import Consumer
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

topic = os.environ["SMOKE_TOPIC"]
provider = TracerProvider(resource=Resource.create({"service.name": os.environ["SMOKE_SERVICE"]}))
provider.add_span_processor(
    BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["KET_OTLP_ENDPOINT"], insecure=True))
)
tracer = provider.get_tracer("stack-smoke")

consumer = Consumer(
    {
        "bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"],
        "group.id": f"smoke-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
consumer.subscribe([topic])
msg = None
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    polled = consumer.poll(1.0)
    if polled is None:
        continue
    if polled.error():
        raise SystemExit(f"consume error: {polled.error()}")
    msg = polled
    break
if msg is None:
    raise SystemExit(f"no message on {topic} within 60s")

carrier = {k: v.decode() for k, v in (msg.headers() or []) if v is not None}
parent = TraceContextTextMapPropagator().extract(carrier)
with tracer.start_as_current_span(f"process {topic}", context=parent, kind=trace.SpanKind.CONSUMER) as span:
    span.set_attribute("messaging.kafka.offset", msg.offset())
    ctx = span.get_span_context()
consumer.close()
provider.shutdown()
print(
    json.dumps(
        {
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "received_traceparent": carrier.get("traceparent"),
        }
    )
)
