"""Failures inside the instrumentation never reach the app, and OTEL_PROPAGATORS is honoured."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from opentelemetry.propagators.textmap import TextMapPropagator

from tests.write.conftest import assign_all, consumer_conf, poll_n
from tracing import TracedConsumer, TracedProducer


class BrokenPropagator(TextMapPropagator):
    def extract(self, carrier, context=None, getter=None):
        raise RuntimeError("propagator bug")

    def inject(self, carrier, context=None, setter=None):
        raise RuntimeError("propagator bug")

    @property
    def fields(self):
        raise RuntimeError("propagator bug")


def test_a_broken_propagator_never_costs_a_message(spans, mock_cluster, topic):
    producer = TracedProducer(
        {"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider, propagator=BrokenPropagator()
    )
    delivered = []
    producer.produce(
        topic,
        b"order",
        headers=[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        on_delivery=lambda e, m: delivered.append(e),
    )
    producer.flush(10)
    assert delivered == [None]
    consumer = TracedConsumer(
        consumer_conf(mock_cluster), tracer_provider=spans.provider, propagator=BrokenPropagator()
    )
    assign_all(consumer, topic)
    (msg,) = poll_n(consumer, 1)
    with consumer.process(msg):
        pass
    consumer.close()
    assert msg.value() == b"order"
    assert len(spans.named(f"process {topic}")) == 1


class BrokenSpanProcessor:
    def on_start(self, span, parent_context=None):
        raise RuntimeError("processor bug")

    def on_end(self, span):
        raise RuntimeError("processor bug")

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_a_broken_span_processor_never_costs_a_message(spans, mock_cluster, topic):
    spans.provider.add_span_processor(BrokenSpanProcessor())
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    delivered = []
    producer.produce(topic, b"order", on_delivery=lambda e, m: delivered.append(e))
    producer.flush(10)
    consumer = TracedConsumer(consumer_conf(mock_cluster), tracer_provider=spans.provider)
    assign_all(consumer, topic)
    (msg,) = poll_n(consumer, 1)
    consumer.close()
    assert delivered == [None] and msg.value() == b"order"


def test_otel_propagators_selects_the_header_format():
    script = textwrap.dedent(
        """
        import tracing
        from opentelemetry.sdk.trace import TracerProvider
        from confluent_kafka import Consumer, TopicPartition
        p = tracing.TracedProducer({"test.mock.num.brokers": 1}, tracer_provider=TracerProvider())
        b = next(iter(p.list_topics(timeout=10).brokers.values()))
        p.produce("orders", b"x", partition=0)
        p.flush(10)
        c = Consumer({"bootstrap.servers": f"{b.host}:{b.port}", "group.id": "g"})
        c.assign([TopicPartition("orders", 0, 0)])
        msg = None
        for _ in range(100):
            msg = c.poll(0.2)
            if msg is not None:
                break
        print(sorted(k for k, _ in msg.headers()))
        """
    )
    env = {"OTEL_PROPAGATORS": "b3multi", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['x-b3-sampled', 'x-b3-spanid', 'x-b3-traceid']"


def test_with_no_global_provider_context_flows_and_a_provider_set_later_is_used():
    script = textwrap.dedent(
        """
        import time
        from confluent_kafka import Consumer, Producer, TopicPartition
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import tracing

        owner = Producer({"test.mock.num.brokers": 1})
        b = next(iter(owner.list_topics(timeout=10).brokers.values()))
        conf = {"bootstrap.servers": f"{b.host}:{b.port}"}
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        owner.produce("in", b"a", partition=0, headers=[("traceparent", tp)])
        owner.flush(10)

        def first(consumer):
            for _ in range(100):
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    return msg

        consumer = tracing.TracedConsumer({**conf, "group.id": "g"})   # no provider anywhere
        consumer.assign([TopicPartition("in", 0, 0)])
        producer = tracing.TracedProducer(conf)
        first(consumer)
        producer.produce("out", b"b", partition=0)
        producer.flush(10)
        consumer.close()
        reader = Consumer({**conf, "group.id": "r"})
        reader.assign([TopicPartition("out", 0, 0)])
        print("carried:", dict(first(reader).headers())["traceparent"][3:35].decode())

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)          # set after the clients were built
        producer.produce("out", b"c", partition=0)
        producer.flush(10)
        print("recorded:", [s.name for s in exporter.get_finished_spans()])
        """
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["carried: 4bf92f3577b34da6a3ce929d0e0e4736", "recorded: ['send out']"]
