"""Process A of the stack smoke test: produce one message under a send span.

Deliberately uses only confluent-kafka and the OpenTelemetry SDK (not this project's
code), so it checks the stack itself. Reads KET_KAFKA_BOOTSTRAP, KET_OTLP_ENDPOINT,
SMOKE_TOPIC and SMOKE_SERVICE; prints one JSON line with the span's ids.
"""

import json
import os

from confluent_kafka import Producer
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

producer = Producer({"bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"]})
errors = []
with tracer.start_as_current_span(f"send {topic}", kind=trace.SpanKind.PRODUCER) as span:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    producer.produce(
        topic,
        value=b"smoke",
        headers=[(k, v.encode()) for k, v in carrier.items()],
        on_delivery=lambda err, _msg: errors.append(err) if err else None,
    )
    remaining = producer.flush(20)
    ctx = span.get_span_context()

provider.shutdown()  # flushes the span to the collector
if remaining or errors:
    raise SystemExit(f"delivery failed: remaining={remaining} errors={errors}")
print(
    json.dumps(
        {
            "trace_id": f"{ctx.trace_id:032x}",
            "span_id": f"{ctx.span_id:016x}",
            "traceparent": carrier["traceparent"],
        }
    )
)
