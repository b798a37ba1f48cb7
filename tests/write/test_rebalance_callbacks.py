"""TracedConsumer's own rebalance callbacks: the user's still run, after run()'s commit; revoked
partitions stop reporting lag at once; run()'s commit modes. (The group behaviour itself is shown
on the real broker in tests/reliability/test_rebalance.py.)"""

from __future__ import annotations

from confluent_kafka import KafkaError, TopicPartition

from tests.write.conftest import consumer_conf
from tests.write.test_consumer import produce
from tests.write.test_run_loop import committed
from tracing import TracedConsumer
from tracing.write.lag import ConsumerLag
from tracing.write.rebalance import CommitAnswers, ConsumerCallbacks


def stats(partitions: dict[int, tuple[int, int]], topic: str = "orders") -> dict:
    """A statistics report: partition -> (high watermark, committed offset), all fetching."""
    return {
        "topics": {
            topic: {
                "partitions": {
                    str(p): {"fetch_state": "active", "hi_offset": hi, "committed_offset": c, "app_offset": c}
                    for p, (hi, c) in partitions.items()
                }
            }
        }
    }


def reported(lag: ConsumerLag) -> set[str]:
    return {attrs["messaging.destination.partition.id"] for attrs, _, _ in lag.observations()}


def test_revoked_partitions_stop_reporting_lag_at_once_and_a_stale_report_does_not_bring_them_back():
    lag = ConsumerLag("inventory")
    lag.update(stats({0: (10, 5), 1: (10, 5)}), 1.0)
    assert reported(lag) == {"0", "1"}
    lag.revoked([TopicPartition("orders", 1)])
    assert reported(lag) == {"0"}
    lag.update(stats({0: (12, 5), 1: (12, 5)}), 2.0)  # made before the revocation
    assert reported(lag) == {"0"}
    lag.assigned([TopicPartition("orders", 1)])
    lag.update(stats({0: (12, 5), 1: (12, 6)}), 3.0)
    assert reported(lag) == {"0", "1"}


class Listener:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def partitions_revoked(self, partitions):
        self.calls.append(("listener revoked", [tp.partition for tp in partitions]))

    def partitions_lost(self, partitions):
        self.calls.append(("listener lost", [tp.partition for tp in partitions]))


def test_the_users_callbacks_run_once_each_after_the_listeners():
    calls: list = []
    callbacks = ConsumerCallbacks(ConsumerLag("g"))
    stop = callbacks.add_listener(Listener(calls))
    assigned, revoked, lost = callbacks.wrap(
        lambda c, ps: calls.append(("user assigned", [tp.partition for tp in ps])),
        lambda c, ps: calls.append(("user revoked", [tp.partition for tp in ps])),
        None,
    )
    parts = [TopicPartition("orders", 0), TopicPartition("orders", 1)]
    assigned(None, parts)
    revoked(None, parts[:1])
    lost(None, parts[1:])  # no on_lost: the user's on_revoke stands in, as librdkafka does
    stop()
    revoked(None, parts)
    assert calls == [
        ("user assigned", [0, 1]),
        ("listener revoked", [0]),
        ("user revoked", [0]),
        ("listener lost", [1]),
        ("user revoked", [1]),
        ("user revoked", [0, 1]),
    ]


def test_commit_answers_count_refusals_as_not_confirmed():
    answers = CommitAnswers()
    answers.take(None, [TopicPartition("orders", 0, 5)])
    assert (answers.answered, answers.last_ok) == (1, True)
    answers.take(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [TopicPartition("orders", 0, 6)])
    assert (answers.answered, answers.last_ok) == (2, False)
    answers.take(KafkaError(KafkaError._NO_OFFSET), [])  # nothing to commit is no failure
    assert (answers.answered, answers.last_ok) == (3, True)


def test_a_consumer_built_from_a_config_follows_its_commit_answers_and_keeps_the_users_on_commit(
    spans, mock_cluster, topic
):
    seen: list = []
    consumer = TracedConsumer(
        consumer_conf(mock_cluster, "inventory", on_commit=lambda err, ps: seen.append(len(ps))),
        tracer_provider=spans.provider,
    )
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    consumer.assign([TopicPartition(topic, 0, 0)])
    handled: list = []
    consumer.run(lambda m: handled.append(m), commit_every=1, stop=lambda: len(handled) >= 3)
    answers = consumer.commit_answers
    assert answers is not None and answers.answered >= 1 and answers.last_ok
    assert seen  # the user's on_commit saw the same answers
    assert committed(mock_cluster, topic, "inventory") == 3
    consumer.close()


def test_commit_after_success_commits_each_message_before_the_next_is_handled(spans, mock_cluster, topic):
    produce(spans, mock_cluster, topic, b"a", b"b", b"c")
    consumer = TracedConsumer(consumer_conf(mock_cluster, "inventory"), tracer_provider=spans.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    offsets_seen: list = []

    def handler(msg):
        offsets_seen.append(committed(mock_cluster, topic, "inventory"))

    consumer.run(handler, commit="after-success", stop=lambda: len(offsets_seen) >= 3)
    assert offsets_seen[1:] == [1, 2]  # each earlier message already committed
    assert committed(mock_cluster, topic, "inventory") == 3
    consumer.close()
