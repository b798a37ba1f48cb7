"""The collector's transform/semconv step, against the real collector and the real Prometheus.

Spans carrying older messaging names land in the same series as ours, with the right operation,
topic and consumer group:

- the OpenTelemetry Java agent's default (pre-stable) names: spans built with those attributes
  and names (``{topic} publish`` / ``{topic} process``, ``messaging.operation``,
  ``messaging.kafka.consumer.group``, ``messaging.kafka.message.offset``,
  ``messaging.kafka.destination.partition``, ``messaging.client_id``), parent and child as the
  agent records them;
- the Python contrib instrumentation's pre-1.24 names: the real
  opentelemetry-instrumentation-confluent-kafka 0.66b1 producing and consuming through the
  real broker (tests/contrib_venvs.py), exporting to the collector.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.contrib_venvs import contrib_python
from tests.metrics import live
from tests.metrics.conftest import MetricsStack
from tests.stack import Stack, create_topic, unique_topic

pytestmark = pytest.mark.stack

APP = Path(__file__).resolve().parent.parent / "e2e" / "_contrib_app.py"


def _provider(service: str, endpoint: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    return provider


def _series(expr: str) -> list:
    return live.wait_until(lambda: live.prom_query(expr), timeout=90, what=expr)


def test_java_agent_default_names_are_counted_with_operation_and_group(metrics_stack: MetricsStack) -> None:
    run = uuid.uuid4().hex[:8]
    topic, producer, consumer = f"java-orders-{run}", f"java-api-{run}", f"java-billing-{run}"
    sending, processing = (
        _provider(producer, metrics_stack.otlp_endpoint),
        _provider(consumer, metrics_stack.otlp_endpoint),
    )
    for offset in range(3):
        send = sending.get_tracer("io.opentelemetry.kafka-clients-0.11").start_span(
            f"{topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.operation": "publish",
                "messaging.client_id": "producer-1",
                "messaging.kafka.destination.partition": 0,
                "messaging.kafka.message.offset": offset,
            },
        )
        send.end()
        now = time.time_ns()
        process = processing.get_tracer("io.opentelemetry.kafka-clients-0.11").start_span(
            f"{topic} process",
            kind=SpanKind.CONSUMER,
            context=trace.set_span_in_context(send),
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.operation": "process",
                "messaging.kafka.consumer.group": "billing",
                "messaging.client_id": "consumer-billing-1",
                "messaging.kafka.destination.partition": 0,
                "messaging.kafka.message.offset": offset,
                "kafka.record.queue_time_ms": 12,
            },
            start_time=now,
        )
        process.end(end_time=now + 2_000_000)
    sending.shutdown()
    processing.shutdown()

    _series(
        f'traces_span_metrics_calls_total{{service_name="{producer}", span_name="send {topic}", '
        f'messaging_operation_type="send", messaging_destination_name="{topic}"}}'
    )
    _series(
        f'traces_span_metrics_calls_total{{service_name="{consumer}", span_name="process {topic}", '
        f'messaging_operation_type="process", messaging_consumer_group_name="billing"}}'
    )
    _series(
        f'traces_service_graph_request_total{{client="{producer}", server="{consumer}", '
        f'server_messaging_consumer_group_name="billing", client_messaging_destination_name="{topic}"}}'
    )
    _series(
        f'messaging_publish_to_process_duration_milliseconds_count{{service_name="{consumer}", '
        f'messaging_consumer_group_name="billing", messaging_destination_name="{topic}"}}'
    )


def test_contrib_names_are_counted_with_operation_and_topic(
    real_stack: Stack, metrics_stack: MetricsStack
) -> None:
    python = contrib_python("0.66b1")
    run = uuid.uuid4().hex[:8]
    topic = create_topic(real_stack.kafka_bootstrap, unique_topic("contrib-names"))
    services = {"produce": f"contrib-api-{run}", "consume": f"contrib-billing-{run}"}
    for role, service in services.items():
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "APP_ROLE": role,
            "APP_TOPIC": topic,
            "APP_COUNT": "3",
            "APP_GROUP": "billing",
            "APP_BOOTSTRAP": real_stack.kafka_bootstrap,
            "OTEL_SERVICE_NAME": service,
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "kafka_event_tracing",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": metrics_stack.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        proc = subprocess.run(
            [str(python.parent / "opentelemetry-instrument"), str(python), str(APP)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=str(python.parent),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    _series(
        f'traces_span_metrics_calls_total{{service_name="{services["produce"]}", span_name="send {topic}", '
        f'messaging_operation_type="send", messaging_destination_name="{topic}"}}'
    )
    _series(
        f'traces_span_metrics_calls_total{{service_name="{services["consume"]}", '
        f'span_name="process {topic}", messaging_operation_type="process", '
        f'messaging_destination_name="{topic}"}}'
    )
    _series(
        f'traces_span_metrics_calls_total{{service_name="{services["consume"]}", span_name="recv", '
        f'messaging_operation_type="receive"}}'
    )
