"""At least once, on the real broker: a failed message is never committed past, never lost.

The managed loop (``TracedConsumer.run``) commits a message only once its handler
succeeded. Without a dead-letter topic a failure stops the loop uncommitted, so the
next consumer of the group gets that message again; with one, the message moves there
with its trace context and the error, and the loop goes on.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import tracing
from tests import stack
from tests.reliability.support import Deadline, ExceptionCount, jaeger_spans, record_figures
from tracing.write.propagation import last_header, parse_traceparent


@pytest.fixture
def provider(real_stack):
    """Spans of this test go to the real Jaeger (not installed globally)."""
    provider = tracing.configure(
        f"reliability-alo-{uuid.uuid4().hex[:8]}", endpoint=real_stack.otlp_endpoint, set_global=False
    )
    yield provider
    provider.shutdown()


# How long a managed loop may take to get where a test expects it (normally a second or two).
RUN_TIMEOUT = 60


def consumer_conf(bootstrap: str, group: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }


def produce(bootstrap, provider, topic, values, **kwargs):
    producer = tracing.TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=provider)
    for value in values:
        producer.produce(topic, value, key=b"order-" + value, **kwargs)
    assert producer.flush(30) == 0


def committed(bootstrap: str, topic: str, group: str) -> int:
    reader = Consumer(consumer_conf(bootstrap, group))
    (tp,) = reader.committed([TopicPartition(topic, 0)], timeout=10)
    reader.close()
    return tp.offset


def test_a_failed_message_is_not_committed_and_the_next_consumer_of_the_group_gets_it(real_stack, provider):
    bootstrap = real_stack.kafka_bootstrap
    topic = stack.create_topic(bootstrap, stack.unique_topic("alo"))
    group = f"alo-{uuid.uuid4().hex[:8]}"
    values = [str(i).encode() for i in range(10)]
    caught = ExceptionCount()  # besides the handler's own error, which run() re-raises by design
    first_handled: list[bytes] = []  # every message the first consumer's handler was called with
    first_ok: list[bytes] = []  # ... and those it handled without an error
    again: list[bytes] = []
    figures: dict = {"messages_tried": len(values)}
    try:
        with caught.watch():
            produce(bootstrap, provider, topic, values)

        def fails_on_4(msg):
            first_handled.append(msg.value())
            if msg.value() == b"4":
                raise ValueError("cannot reserve stock for order 4")
            first_ok.append(msg.value())

        first = tracing.TracedConsumer(consumer_conf(bootstrap, group), tracer_provider=provider)
        first.subscribe([topic])
        first_stop = Deadline(RUN_TIMEOUT)
        with caught.watch(), pytest.raises(ValueError, match="order 4"):
            first.run(fails_on_4, stop=first_stop, handle_signals=False)
        with caught.watch():
            first.close()
        assert first_ok == values[:4] and first_handled == values[:5]
        assert committed(bootstrap, topic, group) == 4  # not past the failed message

        fresh = tracing.TracedConsumer(consumer_conf(bootstrap, group), tracer_provider=provider)
        fresh.subscribe([topic])
        fresh_stop = Deadline(RUN_TIMEOUT, lambda: len(again) >= 6)
        with caught.watch():
            stats = fresh.run(lambda m: again.append(m.value()), stop=fresh_stop, handle_signals=False)
            fresh.close()
        figures["processed_by_second_consumer"] = stats.processed
        assert not fresh_stop.expired, f"the second consumer got {again} within {RUN_TIMEOUT}s"
        assert again == values[4:]  # the failed message first, then the rest
        assert committed(bootstrap, topic, group) == 10
    finally:
        figures["messages_lost"] = len(set(values) - set(first_ok) - set(again))
        # what the second consumer got that the first one had already been given
        figures["redelivered_after_failure"] = sum(1 for v in again if v in first_handled)
        figures["exceptions"] = len(caught)
        record_figures("at_least_once_redelivery", figures)
    assert figures["redelivered_after_failure"] == 1
    assert figures["exceptions"] == 0 and figures["messages_lost"] == 0


def test_with_a_dead_letter_topic_the_failed_message_moves_there_with_its_trace_and_error(
    real_stack, provider
):
    bootstrap = real_stack.kafka_bootstrap
    topic = stack.create_topic(bootstrap, stack.unique_topic("alo-dlq"))
    dlq = stack.create_topic(bootstrap, topic + ".dlq")
    group = f"alo-{uuid.uuid4().hex[:8]}"
    values = [str(i).encode() for i in range(5)]
    caught = ExceptionCount()
    ok: list[bytes] = []
    dead_lettered: list[bytes] = []  # what a reader of the dead-letter topic finds there
    figures: dict = {"messages_tried": len(values)}
    try:
        with caught.watch():
            produce(bootstrap, provider, topic, values, headers=[("tenant", b"acme")])
        poison_context = []

        def fails_on_2(msg):
            if msg.value() == b"2":
                poison_context.append(parse_traceparent(last_header(msg.headers(), "traceparent")))
                raise ValueError("cannot reserve stock for order 2")
            ok.append(msg.value())

        consumer = tracing.TracedConsumer(consumer_conf(bootstrap, group), tracer_provider=provider)
        consumer.subscribe([topic])
        stop = Deadline(RUN_TIMEOUT, lambda: len(ok) >= 4)
        with caught.watch():
            stats = consumer.run(
                fails_on_2, retries=1, backoff=0.05, dead_letter_topic=dlq, stop=stop, handle_signals=False
            )
            consumer.close()
        figures["dead_lettered"] = stats.dead_lettered
        assert not stop.expired, f"handled {ok} within {RUN_TIMEOUT}s"
        assert ok == [b"0", b"1", b"3", b"4"] and stats.dead_lettered == 1
        assert committed(bootstrap, topic, group) == 5  # the loop went on past the dead-lettered one

        # Whoever reads the dead-letter topic continues the same trace.
        reader = tracing.TracedConsumer(consumer_conf(bootstrap, f"{group}-dlq"), tracer_provider=provider)
        reader.assign([TopicPartition(dlq, 0, 0)])
        msg = None
        with caught.watch():
            for _ in range(60):
                msg = reader.poll(0.5)
                if msg is not None and msg.error() is None:
                    break
        assert msg is not None and msg.error() is None, "nothing on the dead-letter topic"
        dead_lettered.append(msg.value())
        with caught.watch():
            with reader.process(msg):
                pass
            reader.close()

        assert (msg.key(), msg.value()) == (b"order-2", b"2")
        headers = {k: v for k, v in msg.headers()}
        assert headers["tenant"] == b"acme"
        assert headers["dlq.original.topic"] == topic.encode()
        assert headers["dlq.original.partition"] == b"0"
        assert headers["dlq.original.offset"] == b"2"
        assert headers["dlq.consumer.group"] == group.encode()
        assert headers["dlq.error.type"] == b"ValueError"
        assert headers["dlq.error.message"] == b"cannot reserve stock for order 2"
        assert headers["dlq.attempts"] == b"2"
        original, retried = poison_context  # tried twice: retries=1
        assert retried == original
        carried = parse_traceparent(headers["traceparent"])
        assert carried.trace_id == original.trace_id and carried.span_id != original.span_id

        provider.force_flush()
        names = {f"send {topic}", f"process {topic}", f"send {dlq}", f"process {dlq}"}
        spans = jaeger_spans(format(original.trace_id, "032x"), names)
        assert set(spans) == names
        failed = spans[f"process {topic}"]
        tags = {t["key"]: t["value"] for t in failed["tags"]}
        assert tags["error"] is True and tags["error.type"] == "ValueError"
        assert [log["fields"][0]["value"] for log in failed["logs"]].count("retry") == 1
        assert stack.span_parent_id(spans[f"send {dlq}"]) == failed["spanID"]
    finally:
        figures["messages_lost"] = len(set(values) - set(ok) - set(dead_lettered))
        figures["exceptions"] = len(caught)
        record_figures("at_least_once_dead_letter", figures)
    assert figures["exceptions"] == 0 and figures["messages_lost"] == 0


# -- the managed loop's commits when the coordinator is not there (mock cluster) ----------


class FlakyCommits(tracing.TracedConsumer):
    """Commits fail with the given errors first, as a restarting broker makes them fail."""

    def __init__(self, *args, errors=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.errors = list(errors)
        self.calls = 0

    def commit(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0), "Commit failed"))
        return self.wrapped.commit(*args, **kwargs)


def mock_loop(mock_cluster, errors, n=3):
    topic = f"flaky-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = tracing.TracedProducer({"bootstrap.servers": mock_cluster})
    for i in range(n):
        producer.produce(topic, str(i).encode(), partition=0)
    assert producer.flush(10) == 0
    consumer = FlakyCommits(consumer_conf(mock_cluster, group), errors=errors)
    consumer.assign([TopicPartition(topic, 0, 0)])
    return topic, group, consumer


def test_a_commit_the_coordinator_cannot_take_yet_goes_with_the_next_one(mock_cluster):
    load = KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    topic, group, consumer = mock_loop(mock_cluster, [load, KafkaError._TRANSPORT])
    seen = []
    stop = Deadline(RUN_TIMEOUT, lambda: len(seen) >= 3)
    stats = consumer.run(seen.append, stop=stop, handle_signals=False)
    consumer.close()
    assert not stop.expired, f"got {len(seen)} of 3 messages within {RUN_TIMEOUT}s"
    assert [m.value() for m in seen] == [b"0", b"1", b"2"]
    assert stats.processed == 3 and stats.commits_deferred == 2
    assert committed(mock_cluster, topic, group) == 3


def test_a_commit_still_failing_when_the_loop_ends_is_retried_before_it_returns(mock_cluster):
    load = KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    topic, group, consumer = mock_loop(mock_cluster, [load] * 4, n=2)
    seen = []
    stop = Deadline(RUN_TIMEOUT, lambda: len(seen) >= 2)
    stats = consumer.run(seen.append, stop=stop, handle_signals=False)
    consumer.close()
    assert not stop.expired, f"got {len(seen)} of 2 messages within {RUN_TIMEOUT}s"
    assert stats.commits_deferred == 4
    assert committed(mock_cluster, topic, group) == 2


def test_a_commit_refused_for_good_stops_the_loop(mock_cluster):
    _, _, consumer = mock_loop(mock_cluster, [KafkaError.GROUP_AUTHORIZATION_FAILED] * 10, n=1)
    with pytest.raises(KafkaException, match="GROUP_AUTHORIZATION_FAILED"):
        consumer.run(lambda m: None, stop=Deadline(RUN_TIMEOUT), handle_signals=False)
    consumer.close()
