"""TracedProducer behaves exactly like confluent-kafka's Producer, and records send spans."""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import KafkaError, Producer, SerializingProducer
from confluent_kafka.serialization import StringSerializer
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from tests.write.conftest import Spans
from tracing import TracedProducer
from tracing.write.propagation import parse_traceparent


def traced(spans: Spans, bootstrap: str, **conf) -> TracedProducer:
    return TracedProducer(
        {"bootstrap.servers": bootstrap, "client.id": "orders-api", **conf}, tracer_provider=spans.provider
    )


def test_send_span_has_the_conventional_name_kind_and_attributes(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster)
    producer.produce(topic, b"{}", key=b"order-1", partition=2)
    producer.flush(10)
    span = spans.one(f"send {topic}")
    assert span.kind is SpanKind.PRODUCER
    attrs = dict(span.attributes)
    host, port = mock_cluster.split(":")
    assert attrs == {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": "2",
        "messaging.kafka.message.key": "order-1",
        "messaging.kafka.offset": 0,
        "messaging.client.id": "orders-api",
        "server.address": host,
        "server.port": int(port),
    }


def test_send_span_ends_at_the_delivery_report_with_partition_and_offset(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster)
    producer.produce(topic, b"a", partition=1)
    producer.produce(topic, b"b", partition=1)
    assert spans.named(f"send {topic}") == []  # nothing ended before delivery
    producer.flush(10)
    sent = spans.named(f"send {topic}")
    assert sorted(s.attributes["messaging.kafka.offset"] for s in sent) == [0, 1]
    assert {s.attributes["messaging.destination.partition.id"] for s in sent} == {"1"}


def test_the_users_delivery_callback_is_called_once_with_the_same_arguments(spans, mock_cluster, topic):
    calls = []
    producer = traced(spans, mock_cluster)
    producer.produce(topic, b"x", on_delivery=lambda err, msg: calls.append((err, msg.value(), msg.offset())))
    producer.produce(
        topic, b"y", partition=0, callback=lambda err, msg: calls.append((err, msg.value(), msg.offset()))
    )
    producer.flush(10)
    assert sorted(c[1] for c in calls) == [b"x", b"y"]
    assert all(c[0] is None for c in calls)


def test_positional_arguments_follow_the_clients_signature(spans, mock_cluster, topic):
    calls = []
    producer = traced(spans, mock_cluster)
    # produce(topic, value, key, partition, callback)
    producer.produce(
        topic, b"value", b"key", 3, lambda err, msg: calls.append((msg.key(), msg.value(), msg.partition()))
    )
    producer.flush(10)
    assert calls == [(b"key", b"value", 3)]
    assert spans.one(f"send {topic}").attributes["messaging.kafka.message.key"] == "key"


def test_the_message_carries_the_send_spans_context(spans, mock_cluster, topic):
    seen = []
    producer = traced(spans, mock_cluster)
    producer.produce(topic, b"x", headers=[("a", b"1")], on_delivery=lambda err, msg: seen.append(msg))
    producer.flush(10)
    span = spans.one(f"send {topic}")
    # delivery reports carry no headers; read the message back to check what was written
    from confluent_kafka import Consumer

    from tests.write.conftest import assign_all, consumer_conf, poll_n

    consumer = Consumer(consumer_conf(mock_cluster))
    assign_all(consumer, topic)
    (msg,) = poll_n(consumer, 1)
    consumer.close()
    headers = msg.headers()
    assert [k for k, _ in headers] == ["a", "traceparent"]
    sc = parse_traceparent(headers[1][1])
    assert (sc.trace_id, sc.span_id) == (span.context.trace_id, span.context.span_id)


def test_a_delivery_error_marks_the_send_span_failed(spans, topic):
    errors = []
    # Nothing listens on port 1: the message times out and the report carries the error.
    producer = TracedProducer(
        {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300, "log_level": 0},
        tracer_provider=spans.provider,
    )
    producer.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert len(errors) == 1 and errors[0] is not None
    span = spans.one(f"send {topic}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == errors[0].name() == "_MSG_TIMED_OUT"


def test_buffer_error_reaches_the_caller_unchanged(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster, **{"queue.buffering.max.messages": 1})
    producer.produce(topic, b"first")
    with pytest.raises(BufferError):
        producer.produce(topic, b"second")
    producer.flush(10)
    failed = [s for s in spans.named(f"send {topic}") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "BufferError"


def test_a_tombstone_gets_a_span_flagged_as_tombstone(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster)
    producer.produce(topic, None, key=b"order-1")
    producer.flush(10)
    assert spans.one(f"send {topic}").attributes["messaging.kafka.message.tombstone"] is True


def test_a_send_inside_a_span_is_its_child(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster)
    with spans.tracer.start_as_current_span("POST /orders") as parent:
        producer.produce(topic, b"x")
    producer.flush(10)
    send = spans.one(f"send {topic}")
    assert send.parent.span_id == parent.get_span_context().span_id
    assert send.context.trace_id == parent.get_span_context().trace_id


def test_everything_else_passes_through_to_the_wrapped_producer(spans, mock_cluster, topic):
    raw = Producer({"bootstrap.servers": mock_cluster})
    producer = TracedProducer(raw, tracer_provider=spans.provider)
    assert producer.wrapped is raw
    assert mock_cluster.split(":")[1] in str(producer.list_topics(timeout=5).brokers)
    producer.produce(topic, b"x")
    assert len(producer) == 1
    producer.purge()
    assert producer.poll(1) == 1  # the purged message's report
    assert len(producer) == 0
    assert producer.flush(1) == 0


def test_a_serializing_producer_keeps_its_own_argument_order(spans, mock_cluster, topic):
    raw = SerializingProducer(
        {
            "bootstrap.servers": mock_cluster,
            "key.serializer": StringSerializer(),
            "value.serializer": StringSerializer(),
        }
    )
    producer = TracedProducer(raw, tracer_provider=spans.provider)
    delivered = []
    producer.produce(
        topic, "order-7", "payload", on_delivery=lambda err, msg: delivered.append((msg.key(), msg.value()))
    )
    producer.flush(10)
    assert delivered == [(b"order-7", b"payload")]
    assert spans.one(f"send {topic}").attributes["messaging.kafka.message.key"] == "order-7"


def test_without_an_sdk_context_still_flows_downstream(mock_cluster, topic):
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=NoOpTracerProvider())
    incoming = trace.SpanContext(0xABC, 0xDEF, True, trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(incoming)):
        producer.produce(topic, b"x", headers={"a": b"1"})
    producer.flush(10)
    from confluent_kafka import Consumer

    from tests.write.conftest import assign_all, consumer_conf, poll_n

    consumer = Consumer(consumer_conf(mock_cluster))
    assign_all(consumer, topic)
    (msg,) = poll_n(consumer, 1)
    consumer.close()
    sc = parse_traceparent(dict(msg.headers())["traceparent"])
    assert sc.trace_id == 0xABC


def test_a_failing_user_callback_surfaces_from_flush_as_with_the_raw_client(spans, mock_cluster, topic):
    producer = traced(spans, mock_cluster)

    def boom(err, msg):
        raise RuntimeError("app bug")

    producer.produce(topic, b"x", on_delivery=boom)
    with pytest.raises(RuntimeError, match="app bug"):
        producer.flush(10)
    assert len(spans.named(f"send {topic}")) == 1  # the span ended before the app's callback ran


def test_kafkaerror_type_names_are_recorded():
    from tracing.write.providers.confluent import error_type

    assert error_type(KafkaError(KafkaError._MSG_TIMED_OUT)) == "_MSG_TIMED_OUT"
    assert error_type(ValueError("x")) == "ValueError"


def test_a_header_key_that_would_crash_the_client_is_a_clean_exception():
    # confluent-kafka itself crashes the interpreter on this key: check in a separate process.
    script = (
        "import tracing\n"
        "p = tracing.TracedProducer({'test.mock.num.brokers': 1})\n"
        "for headers in ([('\\ud800', b'x')], {'ok': b'1', '\\udcff': b'y'}):\n"
        "    try:\n"
        "        p.produce('orders', b'v', headers=headers)\n"
        "    except UnicodeEncodeError as exc:\n"
        "        print('refused:', exc.reason)\n"
        "p.produce('orders', b'v', headers=[('caf\\u00e9', b'ok')])\n"
        "print('delivered:', p.flush(10) == 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["refused: surrogates not allowed"] * 2 + ["delivered: True"]
