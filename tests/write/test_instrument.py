"""instrument(): existing confluent-kafka code is traced without edits; uninstrument() undoes it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import confluent_kafka

import tracing
from tests.write.conftest import assign_all, consumer_conf, poll_n


def test_instrument_patches_and_uninstrument_restores(spans, mock_cluster, topic):
    original = confluent_kafka.Producer
    tracing.instrument(tracer_provider=spans.provider)
    try:
        tracing.instrument()  # idempotent
        from confluent_kafka import Consumer, Producer

        producer = Producer({"bootstrap.servers": mock_cluster})
        assert isinstance(producer, tracing.TracedProducer)
        assert isinstance(producer, confluent_kafka.Producer)
        producer.produce(topic, b"x", partition=0)
        producer.flush(10)
        consumer = Consumer(consumer_conf(mock_cluster, "points"))
        assign_all(consumer, topic)
        poll_n(consumer, 1)
        consumer.close()
    finally:
        tracing.uninstrument()
    assert confluent_kafka.Producer is original
    send = spans.one(f"send {topic}")
    process = spans.one(f"process {topic}")
    assert process.parent.span_id == send.context.span_id
    assert process.attributes["messaging.consumer.group.name"] == "points"


def test_the_serializing_clients_are_patched_too(spans, mock_cluster, topic):
    from confluent_kafka.serialization import StringDeserializer, StringSerializer

    tracing.instrument(tracer_provider=spans.provider)
    try:
        producer = confluent_kafka.SerializingProducer(
            {"bootstrap.servers": mock_cluster, "value.serializer": StringSerializer()}
        )
        producer.produce(topic, key=None, value="hello", partition=1)
        producer.flush(10)
        consumer = confluent_kafka.DeserializingConsumer(
            {**consumer_conf(mock_cluster), "value.deserializer": StringDeserializer()}
        )
        assign_all(consumer, topic)
        (msg,) = poll_n(consumer, 1)
        consumer.close()
    finally:
        tracing.uninstrument()
    assert msg.value() == "hello"
    assert spans.one(f"process {topic}").parent.span_id == spans.one(f"send {topic}").context.span_id


def test_an_entry_point_lets_opentelemetry_instrument_find_the_library():
    points = importlib.metadata.entry_points(group="opentelemetry_instrumentor")
    ours = [p for p in points if p.value.startswith("tracing.")]
    assert [p.name for p in ours] == ["kafka_event_tracing"]
    instrumentor = ours[0].load()()
    instrumentor.instrument()
    try:
        assert instrumentor.is_instrumented_by_opentelemetry
    finally:
        instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_an_unedited_app_is_traced_when_instrumented_before_it_imports(tmp_path):
    script = textwrap.dedent(
        """
        import tracing
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider(); provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracing.instrument()
        # --- the unedited app ---
        from confluent_kafka import Producer
        p = Producer({"test.mock.num.brokers": 1})
        p.produce("orders", b"x")
        p.flush(10)
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['send orders']"


def test_opentelemetry_instrument_picks_the_library_up(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import tracing
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            exporter = InMemorySpanExporter()  # to read the spans back
            provider = tracing.configure("app", exporter=exporter)
            # --- the unedited app ---
            from confluent_kafka import Producer
            p = Producer({"test.mock.num.brokers": 1})
            p.produce("orders", b"x")
            p.flush(10)
            provider.force_flush()
            print(sorted({s.name for s in exporter.get_finished_spans()}))
            """
        )
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    out = subprocess.run(
        [str(bin_dir / "opentelemetry-instrument"), sys.executable, str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['send orders']"
