"""Consumer lag from librdkafka's statistics: never a broker call on the hot path.

librdkafka reports, every ``statistics.interval.ms``, each assigned partition's high
watermark and the group's committed (and the app's consumed) offset. From those:

- ``kafka.consumer.lag`` ({message}): high watermark minus the committed offset (the
  consumed position when nothing is committed yet), as Kafka's own tools count it;
- ``kafka.consumer.time_lag`` (s): how long ago the next unprocessed record was
  written, estimated from when each high watermark was first seen (interpolated
  between reports); 0 when the consumer is caught up.

A partition revoked or lost in a rebalance stops reporting at once (not at the next
report), and a report made before the revocation cannot bring it back until it is
assigned again.

The user's own ``stats_cb`` is still called with every report.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from tracing import semconv as sc
from tracing.write.propagation import report_internal_error

STATS_INTERVAL_MS = 5000  # when metrics are on and the config sets none
_HISTORY = 120  # watermark samples kept per partition (10 minutes at the default interval)


class _Partition:
    __slots__ = ("lag", "position", "history")

    def __init__(self) -> None:
        self.lag = -1
        self.position = -1
        self.history: deque[tuple[int, float]] = deque(maxlen=_HISTORY)  # (high watermark, first seen)


class ConsumerLag:
    """Per-partition lag of one consumer, kept from its statistics reports."""

    def __init__(
        self, consumer_group: str | None, register: Callable[[ConsumerLag], bool] | None = None
    ) -> None:
        self.consumer_group = consumer_group
        self.user_callback: Callable[[str], Any] | None = None
        # Called with each report until it accepts: the gauges observe registered trackers.
        self._register = register
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._revoked: set[tuple[str, int]] = set()  # taken away since their last assignment
        self._lock = threading.Lock()

    def _take(self, stats_json: str) -> None:
        try:
            self.update(json.loads(stats_json), time.time())
            if self._register is not None and self._register(self):
                self._register = None
        except Exception:
            report_internal_error("could not read librdkafka statistics")

    def stats_cb(self, stats_json: str) -> None:
        """The ``stats_cb`` given to librdkafka."""
        self._take(stats_json)
        if self.user_callback is not None:
            self.user_callback(stats_json)

    async def async_stats_cb(self, stats_json: str) -> None:
        """The ``stats_cb`` given to ``AIOConsumer`` (which awaits its callbacks)."""
        self._take(stats_json)
        if self.user_callback is not None:
            await self.user_callback(stats_json)

    def update(self, stats: Mapping[str, Any], now: float) -> None:
        """Take one statistics report (parsed)."""
        seen: set[tuple[str, int]] = set()
        with self._lock:
            for topic, topic_stats in (stats.get("topics") or {}).items():
                for pid, p in (topic_stats.get("partitions") or {}).items():
                    partition = int(pid)
                    if partition < 0 or p.get("fetch_state") in (None, "none", "stopped"):
                        continue  # librdkafka's internal partition, or one not assigned to us
                    high = p.get("hi_offset", -1)
                    committed = p.get("committed_offset", -1)
                    consumed = p.get("app_offset", -1)
                    position = committed if committed >= 0 else consumed
                    if high < 0 or position < 0:
                        continue
                    key = (topic, partition)
                    if key in self._revoked:
                        continue  # a report from before the rebalance
                    state = self._partitions.get(key)
                    if state is None:
                        state = self._partitions[key] = _Partition()
                    if not state.history or state.history[-1][0] != high:
                        state.history.append((high, now))
                    state.lag = max(0, high - position)
                    state.position = position
                    seen.add(key)
            for gone in set(self._partitions) - seen:
                del self._partitions[gone]  # revoked: no stale series

    def assigned(self, partitions: Iterable[Any]) -> None:
        """Partitions (``TopicPartition``) given to the consumer: their reports count again."""
        with self._lock:
            self._revoked.difference_update((tp.topic, tp.partition) for tp in partitions)

    def revoked(self, partitions: Iterable[Any]) -> None:
        """Partitions taken away (revoked or lost): they stop reporting now."""
        with self._lock:
            for tp in partitions:
                key = (tp.topic, tp.partition)
                self._revoked.add(key)
                self._partitions.pop(key, None)

    def clear(self) -> None:
        """Forget every partition (the consumer closed: nothing is assigned)."""
        with self._lock:
            self._partitions.clear()

    def observations(self, now: float | None = None) -> Iterator[tuple[dict[str, Any], int, float]]:
        """(attributes, lag in messages, lag in seconds) per partition."""
        now = time.time() if now is None else now
        with self._lock:
            items = [(key, p.lag, p.position, list(p.history)) for key, p in self._partitions.items()]
        for (topic, partition), lag, position, history in items:
            attrs: dict[str, Any] = {
                sc.SYSTEM: "kafka",
                sc.DESTINATION_NAME: topic,
                sc.PARTITION: str(partition),
            }
            if self.consumer_group:
                attrs[sc.CONSUMER_GROUP] = self.consumer_group
            yield attrs, lag, _time_lag(lag, position, history, now)


def _time_lag(lag: int, position: int, history: list[tuple[int, float]], now: float) -> float:
    """Seconds since the record at ``position`` (the next unprocessed one) was written."""
    if lag <= 0 or not history:
        return 0.0
    before_high, before_time = history[0]
    if before_high > position:
        return max(0.0, now - before_time)  # older than what we have seen: at least this
    for high, seen in history[1:]:
        if high > position:
            # The record appeared between the two reports: interpolate by offset.
            share = (position - before_high + 1) / (high - before_high)
            return max(0.0, now - (before_time + share * (seen - before_time)))
        before_high, before_time = high, seen
    return 0.0


def with_lag_statistics(
    config: Mapping[str, Any], lag: ConsumerLag, *, enable: bool, asynchronous: bool = False
) -> dict[str, Any]:
    """A copy of a consumer config whose statistics also feed ``lag``.

    ``enable``: turn statistics on (every STATS_INTERVAL_MS) if the config leaves them
    off. ``asynchronous``: for ``AIOConsumer``, whose callbacks are coroutines.
    """
    out = dict(config)
    interval = out.get("statistics.interval.ms")
    if not interval:
        if not enable:
            return out
        out["statistics.interval.ms"] = STATS_INTERVAL_MS
    lag.user_callback = out.get("stats_cb")
    out["stats_cb"] = lag.async_stats_cb if asynchronous else lag.stats_cb
    return out
