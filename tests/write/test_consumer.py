"""TracedConsumer: one process span per message, parented on the producer, in every style."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from opentelemetry import baggage, context, trace
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from tests.write.conftest import Spans, assign_all, consumer_conf, poll_n
from tracing import TracedConsumer, TracedProducer
from tracing.write.propagation import parse_traceparent


def produce(spans: Spans, bootstrap: str, topic: str, *values, headers=None, key=b"k", partition=0):
    producer = TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=spans.provider)
    for value in values:
        producer.produce(topic, value, key=key, partition=partition, headers=headers)
    producer.flush(10)
    return producer


def consumer_for(
    spans: Spans, bootstrap: str, topic: str, group: str = "inventory", **options
) -> TracedConsumer:
    consumer = TracedConsumer(consumer_conf(bootstrap, group), tracer_provider=spans.provider, **options)
    assign_all(consumer, topic)
    return consumer


def raw_produce(bootstrap: str, topic: str, value, headers, partition=0):
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value, partition=partition, headers=headers)
    producer.flush(10)


def test_poll_continues_the_producers_trace_as_parent_and_link(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"order")
    consumer = consumer_for(spans, mock_cluster, topic)
    poll_n(consumer, 1)
    consumer.close()
    send = spans.one(f"send {topic}")
    process = spans.one(f"process {topic}")
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]


def test_process_span_attributes_follow_the_conventions(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"12345", key=b"order-9", partition=3)
    consumer = consumer_for(spans, mock_cluster, topic)
    poll_n(consumer, 1)
    consumer.close()
    attrs = dict(spans.one(f"process {topic}").attributes)
    queue_ms = attrs.pop("kafka.record.queue_time_ms")
    assert 0 <= queue_ms < 60_000
    host, port = mock_cluster.split(":")
    assert attrs == {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 0,
        "messaging.kafka.message.key": "order-9",
        "messaging.consumer.group.name": "inventory",
        "messaging.message.body.size": 5,
        "server.address": host,
        "server.port": int(port),
    }


def test_the_polled_messages_span_is_current_so_app_spans_and_sends_are_its_children(
    spans, mock_cluster, topic
):
    produce(spans, mock_cluster, topic, b"order")
    consumer = consumer_for(spans, mock_cluster, topic)
    downstream = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    poll_n(consumer, 1)
    with spans.tracer.start_as_current_span("reserve stock"):
        pass
    downstream.produce(topic + "-next", b"stock.reserved")
    downstream.flush(10)
    consumer.close()
    process = spans.one(f"process {topic}")
    assert spans.one("reserve stock").parent.span_id == process.context.span_id
    next_send = spans.one(f"send {topic}-next")
    assert next_send.parent.span_id == process.context.span_id
    assert next_send.context.trace_id == spans.one(f"send {topic}").context.trace_id


def test_the_process_span_ends_at_the_next_poll_and_context_is_restored(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b")
    consumer = consumer_for(spans, mock_cluster, topic)
    before = trace.get_current_span()
    poll_n(consumer, 1)
    assert spans.named(f"process {topic}") == []
    poll_n(consumer, 1)
    assert len(spans.named(f"process {topic}")) == 1
    consumer.close()
    assert len(spans.named(f"process {topic}")) == 2
    assert trace.get_current_span() is before


def test_process_block_after_poll_gives_exactly_one_span(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a")
    consumer = consumer_for(spans, mock_cluster, topic)
    (msg,) = poll_n(consumer, 1)
    with consumer.process(msg) as span:
        assert trace.get_current_span() is span
    assert len(spans.named(f"process {topic}")) == 1  # ended by the block, not later
    assert consumer.poll(0.1) is None
    consumer.close()
    assert len(spans.named(f"process {topic}")) == 1


def test_an_exception_in_the_process_block_is_recorded_and_reraised_unchanged(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a")
    consumer = consumer_for(spans, mock_cluster, topic)
    (msg,) = poll_n(consumer, 1)
    error = LookupError("no such sku")
    with pytest.raises(LookupError) as caught:
        with consumer.process(msg):
            raise error
    assert caught.value is error
    consumer.close()
    span = spans.one(f"process {topic}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "LookupError"
    assert [e.name for e in span.events] == ["exception"]


def test_consume_records_a_receive_span_with_links_and_process_blocks_give_one_span_each(
    spans, mock_cluster, topic
):
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    consumer = consumer_for(spans, mock_cluster, topic)
    messages = []
    for _ in range(50):
        messages += consumer.consume(10, 0.2)
        if len(messages) >= 3:
            break
    assert len(messages) == 3
    for msg in messages:
        with consumer.process(msg):
            pass
    consumer.close()
    receives = spans.named(f"receive {topic}")
    assert sum(r.attributes["messaging.batch.message_count"] for r in receives) == 3
    assert all(r.kind is SpanKind.CLIENT for r in receives)
    sends = {s.context.span_id for s in spans.named(f"send {topic}")}
    assert {link.context.span_id for r in receives for link in r.links} == sends
    processes = spans.named(f"process {topic}")
    assert len(processes) == 3
    assert {p.parent.span_id for p in processes} == sends


def test_a_tombstone_gets_a_process_span(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, None)
    consumer = consumer_for(spans, mock_cluster, topic)
    (msg,) = poll_n(consumer, 1)
    assert msg.value() is None
    consumer.close()
    assert spans.one(f"process {topic}").attributes["messaging.kafka.message.tombstone"] is True


def test_link_only_trust_starts_a_new_trace_linked_to_the_producer(spans, mock_cluster, topic):
    token = context.attach(baggage.set_baggage("tenant", "evil"))
    try:
        produce(spans, mock_cluster, topic, b"a")
    finally:
        context.detach(token)
    consumer = consumer_for(spans, mock_cluster, topic, trust="link")
    poll_n(consumer, 1)
    assert baggage.get_baggage("tenant") is None  # untrusted baggage is dropped
    consumer.close()
    send = spans.one(f"send {topic}")
    process = spans.one(f"process {topic}")
    assert process.parent is None
    assert process.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]


def test_trust_can_be_set_per_topic(spans, mock_cluster, topic):
    partner = topic + "-partner"  # not named: the "*" fallback applies to it
    produce(spans, mock_cluster, topic, b"a")
    produce(spans, mock_cluster, partner, b"b")
    consumer = consumer_for(spans, mock_cluster, topic, trust={topic: "parent", "*": "link"})
    consumer.assign([TopicPartition(t, p, 0) for t in (topic, partner) for p in range(4)])
    poll_n(consumer, 2)
    consumer.close()
    trusted_send, trusted = spans.one(f"send {topic}"), spans.one(f"process {topic}")
    assert trusted.parent.span_id == trusted_send.context.span_id
    assert trusted.context.trace_id == trusted_send.context.trace_id
    partner_send, linked = spans.one(f"send {partner}"), spans.one(f"process {partner}")
    assert linked.parent is None  # the fallback: a new trace, only linked to the producer
    assert linked.context.trace_id != partner_send.context.trace_id
    assert [link.context.span_id for link in linked.links] == [partner_send.context.span_id]
    with pytest.raises(ValueError):
        TracedConsumer(consumer_conf(mock_cluster), trust="sometimes")


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", b"\xff\xfe\x00garbage")],
        [("traceparent", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01")],
        [("traceparent", b"x" * 20_000), ("tracestate", b"\x80" * 9000), ("baggage", b"\xff" * 9000)],
        [("traceparent", None), ("", b"empty key"), ("baggage", None)],
        [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")] * 5,
    ],
)
def test_hostile_headers_never_break_the_message(spans, mock_cluster, topic, headers):
    raw_produce(mock_cluster, topic, b"payload \x00\xff", headers)
    consumer = consumer_for(spans, mock_cluster, topic)
    (msg,) = poll_n(consumer, 1)
    assert msg.value() == b"payload \x00\xff"
    assert msg.headers() == [(k, v) for k, v in headers]
    with consumer.process(msg):
        pass
    consumer.close()
    assert len(spans.named(f"process {topic}")) == 1


def test_without_an_sdk_a_send_while_processing_carries_the_incoming_trace(mock_cluster, topic):
    traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    raw_produce(mock_cluster, topic, b"a", [("traceparent", traceparent)])
    consumer = TracedConsumer(consumer_conf(mock_cluster), tracer_provider=NoOpTracerProvider())
    assign_all(consumer, topic)
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=NoOpTracerProvider())
    poll_n(consumer, 1)
    producer.produce(topic + "-next", b"b", partition=0)
    producer.flush(10)
    consumer.close()
    reader = Consumer(consumer_conf(mock_cluster, "reader"))
    assign_all(reader, topic + "-next")
    (msg,) = poll_n(reader, 1)
    reader.close()
    assert (
        parse_traceparent(dict(msg.headers())["traceparent"]).trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    )


def test_an_unsampled_parent_is_respected_and_still_propagated(mock_cluster, topic):
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    spans = Spans(sampler=ParentBased(TraceIdRatioBased(1.0)))
    traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    raw_produce(mock_cluster, topic, b"a", [("traceparent", traceparent)])
    consumer = consumer_for(spans, mock_cluster, topic)
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    poll_n(consumer, 1)
    current = trace.get_current_span().get_span_context()
    producer.produce(topic + "-next", b"b", partition=0)
    producer.flush(10)
    consumer.close()
    assert spans.finished() == []
    assert current.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736 and not current.trace_flags.sampled
    reader = Consumer(consumer_conf(mock_cluster, "reader"))
    assign_all(reader, topic + "-next")
    (msg,) = poll_n(reader, 1)
    reader.close()
    sent = parse_traceparent(dict(msg.headers())["traceparent"])
    assert sent.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736 and not sent.trace_flags.sampled


def test_close_ends_the_open_span_and_passes_through(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a")
    raw = Consumer(consumer_conf(mock_cluster))
    consumer = TracedConsumer(raw, tracer_provider=spans.provider, client_config={"group.id": "points"})
    assert consumer.wrapped is raw
    assign_all(consumer, topic)
    assert len(consumer.assignment()) == 4
    poll_n(consumer, 1)
    consumer.close()
    assert spans.one(f"process {topic}").attributes["messaging.consumer.group.name"] == "points"


def test_a_poll_from_another_thread_ends_the_span_without_corrupting_context(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b")
    consumer = consumer_for(spans, mock_cluster, topic)
    errors = []

    def run(step):
        try:
            step()
        except Exception as exc:  # reported below
            errors.append(exc)

    # The first message's span is opened in one thread and ended by a poll in another.
    for step in (lambda: poll_n(consumer, 1), lambda: (poll_n(consumer, 1), consumer.close())):
        thread = threading.Thread(target=run, args=(step,))
        thread.start()
        thread.join(30)
    assert errors == []
    assert len(spans.named(f"process {topic}")) == 2
    assert not trace.get_current_span().get_span_context().is_valid
