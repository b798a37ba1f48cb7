"""The managed loop: commit after success, retries, dead-letter topic, clean stop."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.trace import StatusCode

from tests.write.conftest import assign_all, consumer_conf, poll_n
from tests.write.test_consumer import produce
from tracing import TracedConsumer, TracedProducer
from tracing.write.propagation import parse_traceparent


def loop_consumer(spans, bootstrap, topic, group="inventory"):
    consumer = TracedConsumer(consumer_conf(bootstrap, group), tracer_provider=spans.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def committed(bootstrap, topic, group):
    reader = Consumer(consumer_conf(bootstrap, group))
    (tp,) = reader.committed([TopicPartition(topic, 0)], timeout=10)
    reader.close()
    return tp.offset


def stop_after(n):
    seen = []
    return seen, (lambda: len(seen) >= n)


def test_each_message_is_committed_after_its_handler_succeeds(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    seen, done = stop_after(3)
    stats = loop_consumer(spans, mock_cluster, topic).run(lambda m: seen.append(m.value()), stop=done)
    assert seen == [b"a", b"b", b"c"]
    assert stats.processed == 3 and stats.failed == 0
    assert committed(mock_cluster, topic, "inventory") == 3
    assert len(spans.named(f"process {topic}")) == 3


def test_a_failing_message_is_not_committed_and_a_fresh_consumer_gets_it_again(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"ok", b"poison", b"later")

    def handler(msg):
        if msg.value() == b"poison":
            raise ValueError("cannot parse order")

    with pytest.raises(ValueError, match="cannot parse order"):
        loop_consumer(spans, mock_cluster, topic).run(handler)
    assert committed(mock_cluster, topic, "inventory") == 1  # only "ok"
    again = Consumer(consumer_conf(mock_cluster, "inventory"))
    again.assign([TopicPartition(topic, 0, 1)])  # resume from the committed offset
    (msg,) = poll_n(again, 1)
    again.close()
    assert msg.value() == b"poison"
    failed = [s for s in spans.named(f"process {topic}") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "ValueError"


def test_retries_are_events_and_a_later_success_commits(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"flaky")
    calls = []

    def handler(msg):
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("sms gateway")

    stats = loop_consumer(spans, mock_cluster, topic).run(
        handler, retries=2, backoff=0.01, stop=lambda: len(calls) >= 3
    )
    assert stats.processed == 1 and stats.retries == 2
    span = spans.one(f"process {topic}")
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert span.status.status_code is not StatusCode.ERROR
    assert committed(mock_cluster, topic, "inventory") == 1


def test_a_dead_lettered_message_keeps_its_payload_headers_and_trace(spans, mock_cluster, topic):
    dlq_topic = topic + ".dlq"
    produce(spans, mock_cluster, topic, b"\x00poison\xff", headers=[("tenant", b"acme")], key=b"order-13")
    dlq_producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    stats = loop_consumer(spans, mock_cluster, topic).run(
        lambda m: 1 / 0,
        retries=1,
        backoff=0.01,
        dead_letter_topic=dlq_topic,
        dead_letter_producer=dlq_producer,
        stop=lambda: bool(spans.named(f"send {dlq_topic}")),
    )
    assert stats.dead_lettered == 1
    assert committed(mock_cluster, topic, "inventory") == 1
    reader = Consumer(consumer_conf(mock_cluster, "reader"))
    assign_all(reader, dlq_topic)
    (msg,) = poll_n(reader, 1)
    reader.close()
    assert (msg.key(), msg.value()) == (b"order-13", b"\x00poison\xff")
    headers = dict(msg.headers())
    assert headers["tenant"] == b"acme"
    assert headers["dlq.original.topic"] == topic.encode()
    assert headers["dlq.original.offset"] == b"0"
    assert headers["dlq.error.type"] == b"ZeroDivisionError"
    assert headers["dlq.attempts"] == b"2"
    original_send = spans.one(f"send {topic}")
    failed = spans.one(f"process {topic}")
    dlq_send = spans.one(f"send {dlq_topic}")
    assert failed.status.status_code is StatusCode.ERROR
    assert dlq_send.parent.span_id == failed.context.span_id
    assert parse_traceparent(headers["traceparent"]).trace_id == original_send.context.trace_id


def test_sigterm_lets_the_in_flight_message_finish_and_commit(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    seen = []

    def handler(msg):
        if not seen:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while this message is in flight
        seen.append(msg.value())

    before = signal.getsignal(signal.SIGTERM)
    stats = loop_consumer(spans, mock_cluster, topic).run(handler)
    assert stats.stopped_by == "SIGTERM"
    assert seen == [b"a"]
    assert committed(mock_cluster, topic, "inventory") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_event_from_another_thread_ends_the_loop(spans, mock_cluster, topic):
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    stats = loop_consumer(spans, mock_cluster, topic).run(lambda m: None, stop=stop)
    assert stats.stopped_by == "stop" and stats.processed == 0


def test_auto_commit_is_refused_with_a_clear_message(spans, mock_cluster, topic):
    consumer = TracedConsumer(
        consumer_conf(mock_cluster, **{"enable.auto.commit": True}), tracer_provider=spans.provider
    )
    with pytest.raises(ValueError, match="enable.auto.commit"):
        consumer.run(lambda m: None)


def test_a_commit_interval_commits_what_was_handled_when_the_loop_ends(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    seen = []

    def handler(msg):
        seen.append(msg.value())
        if len(seen) == 2:  # nothing committed yet within the interval
            assert committed(mock_cluster, topic, "inventory") < 0

    stats = loop_consumer(spans, mock_cluster, topic).run(
        handler, commit_interval=60, stop=lambda: len(seen) >= 3
    )
    assert stats.processed == 3
    assert committed(mock_cluster, topic, "inventory") == 3
