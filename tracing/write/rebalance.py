"""The consumer's own rebalance and commit callbacks, with the user's still called.

``TracedConsumer.subscribe`` installs these wrappers around the user's ``on_assign``,
``on_revoke`` and ``on_lost``: partitions revoked or lost stop feeding the lag gauges at
once, then each :class:`PartitionListener` (the managed loop commits what it handled for
a revoked partition here), then the user's callback runs — once per call librdkafka
makes, after the commit. A consumer built from a config also reports the answers to its
asynchronous commits (``on_commit``, the user's own still called), which the managed loop
needs to bound what a crash delivers again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, TopicPartition

from tracing.write.lag import ConsumerLag

RebalanceCallback = Callable[[Any, list[TopicPartition]], None]
CommitCallback = Callable[[Any, list[TopicPartition]], None]


class PartitionListener(Protocol):
    """Told when partitions go away, before the user's own callback runs."""

    def partitions_revoked(self, partitions: list[TopicPartition]) -> None: ...

    def partitions_lost(self, partitions: list[TopicPartition]) -> None: ...


class CommitAnswers:
    """How many asynchronous commits the broker answered, and whether the last one went through."""

    __slots__ = ("answered", "last_ok")

    def __init__(self) -> None:
        self.answered = 0
        self.last_ok = True

    def take(self, error: Any, partitions: list[TopicPartition]) -> None:
        failed = error is not None and error.code() != KafkaError._NO_OFFSET
        if not failed:
            failed = any(tp.error is not None for tp in partitions or ())
        self.last_ok = not failed
        self.answered += 1


class ConsumerCallbacks:
    """The callbacks a ``TracedConsumer`` gives librdkafka, chaining the user's."""

    def __init__(self, lag: ConsumerLag | None) -> None:
        self._lag = lag
        self._listeners: list[PartitionListener] = []
        # None: the client was built elsewhere, its commit answers cannot be followed.
        self.commit_answers: CommitAnswers | None = None

    def with_commit_answers(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with an ``on_commit`` that counts the answers, then calls the user's."""
        answers = self.commit_answers = CommitAnswers()
        user: CommitCallback | None = config.get("on_commit")

        def on_commit(error: Any, partitions: list[TopicPartition]) -> None:
            answers.take(error, partitions)
            if user is not None:
                user(error, partitions)

        return {**config, "on_commit": on_commit}

    def add_listener(self, listener: PartitionListener) -> Callable[[], None]:
        """Follow revocations until the returned function is called."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def wrap(
        self,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
        on_lost: RebalanceCallback | None,
    ) -> tuple[RebalanceCallback, RebalanceCallback, RebalanceCallback]:
        """The three callbacks to subscribe with."""
        lag = self._lag
        listeners = self._listeners

        def assigned(consumer: Any, partitions: list[TopicPartition]) -> None:
            if lag is not None:
                lag.assigned(partitions)
            if on_assign is not None:
                on_assign(consumer, partitions)

        def revoked(consumer: Any, partitions: list[TopicPartition]) -> None:
            if lag is not None:
                lag.revoked(partitions)
            for listener in list(listeners):
                listener.partitions_revoked(partitions)
            if on_revoke is not None:
                on_revoke(consumer, partitions)

        def lost(consumer: Any, partitions: list[TopicPartition]) -> None:
            if lag is not None:
                lag.revoked(partitions)
            for listener in list(listeners):
                listener.partitions_lost(partitions)
            # As librdkafka does without an on_lost: the revoke callback stands in for it.
            fallback = on_lost if on_lost is not None else on_revoke
            if fallback is not None:
                fallback(consumer, partitions)

        return assigned, revoked, lost
