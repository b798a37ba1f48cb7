"""Flow metrics: counted for EVERY message, whatever the trace sampling.

- the messaging conventions' metrics: ``messaging.client.sent.messages``,
  ``messaging.client.consumed.messages``, ``messaging.client.operation.duration`` (send:
  ``produce()`` to its delivery report), ``messaging.process.duration``;
- ``kafka.record.queue_time``: seconds from a record's timestamp to the start of its
  processing, per topic and consumer group;
- ``eventchain.chain.duration``: seconds since the message's chain began, per path
  (``orders>stock``), from the ``eventchain`` header each message carries.

Recorded only when a MeterProvider is configured (given, or the global one); without
one, each message costs one module attribute check.

The ``eventchain`` header is ``1;{start, ms since the epoch};{topics so far, ">"-joined}``,
written like trace context: replaced, never appended. A chain begins at the first
produce of a service with metrics on (or, for a message without a usable header, at
that record's timestamp); every produce while processing a message carries the chain
on with its own topic added. At most ``MAX_HOPS`` topics are kept (the first, ``..``,
the newest) and each client reports at most ``max_paths`` distinct paths (then
``_OTHER``), so a loop or a hostile header cannot blow up the series count.
"""

from __future__ import annotations

import math
import re
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry import context as context_api
from opentelemetry import metrics

from tracing import semconv as sc
from tracing.version import __version__
from tracing.write import otel
from tracing.write.propagation import last_header
from tracing.write.recipe import SCOPE, common_attributes
from tracing.write.records import ClientInfo, Headers, Received

CHAIN_HEADER = "eventchain"
CHAIN_KEY = context_api.create_key("eventchain")
MAX_HOPS = 8
MAX_PATHS = 100
OTHER_PATH = "_OTHER"
_MAX_CHAIN_LEN = 512
# Kafka topic names are [a-zA-Z0-9._-]; ">" joins them; ".." marks dropped middle hops.
_VALID_CHAIN = re.compile(rb"1;([0-9]{1,15});([a-zA-Z0-9._\->]{1,500})")
# The conventions' advice for messaging durations; chains and queues wait longer.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
WAIT_BUCKETS = DURATION_BUCKETS + (30.0, 60.0, 300.0, 900.0, 3600.0)
# A chain may begin on another host: a clock a little ahead must not read as negative.
_FUTURE_SLACK_MS = 60_000
_time_ns = time.time_ns


class Chain(NamedTuple):
    """Where a message's chain began (ms since the epoch) and the topics it went through."""

    start_ms: int
    path: str

    def onward(self, topic: str) -> Chain:
        """The chain a message sent to ``topic`` from here carries."""
        return Chain(self.start_ms, extend_path(self.path, topic))

    def header(self) -> str:
        return f"1;{self.start_ms};{self.path}"


def extend_path(path: str, topic: str) -> str:
    """``path>topic``, keeping the first and the newest hops when it grows past MAX_HOPS."""
    hops = path.split(">")
    hops.append(topic)
    if len(hops) > MAX_HOPS:
        hops = [hops[0], "..", *hops[-(MAX_HOPS - 2) :]]
    return ">".join(hops)


def parse_chain(value: Any) -> Chain | None:
    """The chain in an ``eventchain`` header value; None when absent or malformed."""
    if value is None:
        return None
    if type(value) is str:
        if not value.isascii():
            return None
        value = value.encode()
    elif type(value) is not bytes:
        return None
    if len(value) > _MAX_CHAIN_LEN:
        return None
    match = _VALID_CHAIN.fullmatch(value)
    if match is None:
        return None
    start_ms = int(match.group(1))
    if start_ms > _time_ns() // 1_000_000 + _FUTURE_SLACK_MS:
        return None
    path = match.group(2).decode()
    if path.count(">") >= MAX_HOPS or "" in path.split(">"):
        return None
    return Chain(start_ms, path)


class _Tally:
    """Cumulative counts per attribute set, shared by every client of one meter provider."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[Any, ...], tuple[dict[str, Any], list[int]]] = {}

    def cell(self, attrs: dict[str, Any]) -> list[int]:
        """The counter cell of an attribute set (a one-item list: ``cell[0]``)."""
        key = tuple(sorted(attrs.items()))
        with self._lock:
            found = self._cells.get(key)
            if found is None:
                found = self._cells[key] = (dict(attrs), [0])
        return found[1]

    def add(self, cell: list[int]) -> None:
        with self._lock:  # two threads may report deliveries at once
            cell[0] += 1

    def observe(self, options: Any) -> list[metrics.Observation]:
        with self._lock:
            return [metrics.Observation(cell[0], attrs) for attrs, cell in self._cells.values()]


class Instruments:
    """The instruments of one meter provider (created once: the SDK warns on repeats).

    ``local``: for a MeterProvider built by :func:`tracing.configure`, the histograms are
    aggregated here (:class:`PreAggregated`) and handed to its exporter whole at each
    export, instead of one SDK ``record()`` per message.
    """

    def __init__(self, meter: metrics.Meter, local: PreAggregated | None = None) -> None:
        histogram = meter.create_histogram if local is None else local.histogram
        self.lags: weakref.WeakSet[Any] = weakref.WeakSet()  # ConsumerLag of live consumers
        meter.create_observable_gauge(
            "kafka.consumer.lag",
            [self._observe_lag],
            "{message}",
            "Messages in a partition not yet committed (or consumed) by the consumer group.",
        )
        meter.create_observable_gauge(
            "kafka.consumer.time_lag",
            [self._observe_time_lag],
            "s",
            "How long ago the next record the consumer group has not processed was written.",
        )
        # The two counters are counted here, per attribute set, and observed at collection:
        # an SDK counter's add() costs ~10 µs per message, an increment here a fraction of one.
        self.sent = _Tally()
        self.consumed = _Tally()
        meter.create_observable_counter(
            "messaging.client.sent.messages",
            [self.sent.observe],
            "{message}",
            "Messages the producer attempted to send.",
        )
        meter.create_observable_counter(
            "messaging.client.consumed.messages",
            [self.consumed.observe],
            "{message}",
            "Messages handed to the application.",
        )
        self.operation = histogram(
            "messaging.client.operation.duration",
            "s",
            "Duration of a messaging operation: for send, from produce() to its delivery report.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.process = histogram(
            "messaging.process.duration",
            "s",
            "Duration of processing one message.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.queue_time = histogram(
            "kafka.record.queue_time",
            "s",
            "Time from a record's timestamp to the start of its processing.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        self.chain = histogram(
            "eventchain.chain.duration",
            "s",
            "Time from the start of a message's event chain to the start of its processing.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )

    def _observe_lag(self, options: Any) -> list[metrics.Observation]:
        return [
            metrics.Observation(lag, attrs) for t in list(self.lags) for attrs, lag, _ in t.observations()
        ]

    def _observe_time_lag(self, options: Any) -> list[metrics.Observation]:
        return [metrics.Observation(s, attrs) for t in list(self.lags) for attrs, _, s in t.observations()]


_instruments: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_instruments_lock = threading.Lock()


def instruments_of(provider: Any) -> Instruments:
    with _instruments_lock:
        found = _instruments.get(provider)
        if found is None:
            meter = provider.get_meter(SCOPE, __version__, schema_url=sc.SCHEMA_URL)
            found = _instruments[provider] = Instruments(meter, _preaggregated.get(provider))
        return found


# ----------------------------------------------------------------------------
# Histograms aggregated in place, for the MeterProviders configure() builds
# ----------------------------------------------------------------------------
_preaggregated: weakref.WeakKeyDictionary[Any, PreAggregated] = weakref.WeakKeyDictionary()


class _Series:
    """One histogram series, kept as the SDK's explicit-bucket aggregation keeps it."""

    __slots__ = ("attributes", "counts", "sum", "min", "max", "total", "total_sum", "total_min", "total_max")

    def __init__(self, attributes: dict[str, Any], buckets: int) -> None:
        self.attributes = attributes
        self.counts: list[int] | None = None  # since the last collection
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        self.total: list[int] | None = None  # cumulative, folded in at each collection
        self.total_sum: float = 0
        self.total_min = math.inf
        self.total_max = -math.inf


class LocalHistogram:
    """A histogram with the SDK's semantics (explicit buckets, min/max, cumulative),
    recorded here without an SDK call; its points are read at collection."""

    __slots__ = ("name", "unit", "description", "boundaries", "_series", "_by_id", "_lock", "_start")

    def __init__(
        self, name: str, unit: str, description: str, boundaries: tuple[float, ...], start: int
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.boundaries = tuple(float(b) for b in boundaries)
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._by_id: dict[int, tuple[dict[str, Any], _Series]] = {}  # the cached attribute dicts
        self._lock = threading.Lock()
        self._start = start

    def record(self, amount: float, attributes: dict[str, Any]) -> None:
        found = self._by_id.get(id(attributes))
        if found is None or found[0] is not attributes:
            found = self._series_of(attributes)
        series = found[1]
        with self._lock:
            counts = series.counts
            if counts is None:
                counts = series.counts = [0] * (len(self.boundaries) + 1)
            series.sum += amount
            if amount < series.min:
                series.min = amount
            if amount > series.max:
                series.max = amount
            counts[bisect_left(self.boundaries, amount)] += 1

    def _series_of(self, attributes: dict[str, Any]) -> tuple[dict[str, Any], _Series]:
        key = tuple(sorted(attributes.items()))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(dict(attributes), len(self.boundaries) + 1)
            found = self._by_id[id(attributes)] = (attributes, series)  # holds the dict: its id stays its own
        return found

    def collect(self, now: int) -> list[Any]:
        """Cumulative points, folded exactly as the SDK folds an interval into its totals."""
        from opentelemetry.sdk.metrics.export import HistogramDataPoint

        points = []
        with self._lock:
            for series in self._series.values():
                counts = series.counts or [0] * (len(self.boundaries) + 1)
                total = series.total or [0] * (len(self.boundaries) + 1)
                series.total = [c + t for c, t in zip(counts, total, strict=True)]
                series.total_min = min(series.min, series.total_min)
                series.total_max = max(series.max, series.total_max)
                series.total_sum = series.sum + series.total_sum
                series.counts, series.sum, series.min, series.max = None, 0, math.inf, -math.inf
                points.append(
                    HistogramDataPoint(
                        attributes=series.attributes,
                        start_time_unix_nano=self._start,
                        time_unix_nano=now,
                        count=sum(series.total),
                        sum=series.total_sum,
                        bucket_counts=tuple(series.total),
                        explicit_bounds=self.boundaries,
                        min=series.total_min,
                        max=series.total_max,
                    )
                )
        return points


class PreAggregated:
    """The flow metrics' histograms of one MeterProvider, aggregated in place."""

    def __init__(self) -> None:
        self.start = _time_ns()
        self.histograms: list[LocalHistogram] = []

    def histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: tuple[float, ...] = DURATION_BUCKETS,
    ) -> LocalHistogram:
        found = LocalHistogram(name, unit, description, explicit_bucket_boundaries_advisory, self.start)
        self.histograms.append(found)
        return found

    def merged_into(self, data: Any) -> Any:
        """``data`` (the SDK's MetricsData of one collection) with these histograms added
        to this library's scope, as the SDK would have exported them."""
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            Metric,
            MetricsData,
            ResourceMetrics,
            ScopeMetrics,
        )
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        now = _time_ns()
        extra = []
        for histogram in self.histograms:
            points = histogram.collect(now)
            if points:
                data_ = Histogram(
                    data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
                )
                extra.append(Metric(histogram.name, histogram.description, histogram.unit, data_))
        if not extra or not data.resource_metrics:
            return data
        first, *rest = data.resource_metrics
        scopes = list(first.scope_metrics)
        for i, scope_metrics in enumerate(scopes):
            if scope_metrics.scope.name == SCOPE:
                scopes[i] = ScopeMetrics(
                    scope_metrics.scope, [*scope_metrics.metrics, *extra], scope_metrics.schema_url
                )
                break
        else:
            scope = InstrumentationScope(SCOPE, __version__, sc.SCHEMA_URL)
            scopes.append(ScopeMetrics(scope, extra, sc.SCHEMA_URL))
        return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


def preaggregate(provider: Any, aggregated: PreAggregated) -> None:
    """Have the flow metrics of ``provider`` aggregate their histograms in ``aggregated``
    (before any client resolves its instruments)."""
    _preaggregated[provider] = aggregated


class FlowMetrics:
    """The metric side of one wrapped client: precomputed attribute sets per topic."""

    def __init__(self, client: ClientInfo, meter_provider: Any = None, *, max_paths: int = MAX_PATHS) -> None:
        self.provider = meter_provider
        # Public for the hot paths, which read them instead of calling instruments().
        self.resolved_instruments: Instruments | None = None
        self.resolved = False
        self._system = client.system
        self._common = common_attributes(client)
        self.consumer_group = client.consumer_group
        self._max_paths = max_paths
        self._paths: set[str] = set()
        self._attrs: dict[Any, Any] = {}  # per key: attributes, or (counter cell, attributes)

    def instruments(self) -> Instruments | None:
        """The instruments, or None while no MeterProvider is configured."""
        if self.resolved:
            return self.resolved_instruments
        if self.provider is None and not otel.meter_provider_may_be_set():
            return None  # check again next time: a provider may be set later
        provider = self.provider if self.provider is not None else metrics.get_meter_provider()
        if otel.is_placeholder_meter_provider(provider):
            return None
        self.resolved = True
        if otel.is_noop_meter_provider(provider):
            return None
        self.resolved_instruments = instruments_of(provider)
        return self.resolved_instruments

    def track_lag(self, lag: Any) -> bool:
        """Have the lag gauges observe ``lag``; False while no MeterProvider is configured."""
        instruments = self.instruments()
        if instruments is None:
            return False
        instruments.lags.add(lag)
        return True

    # -- attribute sets (cached: the SDK keys its series by them) ---------------
    def _attributes(self, key: tuple[Any, ...], build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] | None = self._attrs.get(key)
        if found is None:
            found = self._attrs[key] = build()
        return found

    def _base(self, operation: str, topic: str, partition: int | None) -> dict[str, Any]:
        attrs = dict(self._common)
        attrs[sc.OPERATION_NAME] = operation
        attrs[sc.DESTINATION_NAME] = topic
        if partition is not None and partition >= 0:
            attrs[sc.PARTITION] = str(partition)
        if self.consumer_group and operation != "send":
            attrs[sc.CONSUMER_GROUP] = self.consumer_group
        return attrs

    def _with_error(self, attrs: dict[str, Any], error_type: str | None) -> dict[str, Any]:
        if error_type is None:
            return attrs
        attrs = dict(attrs)
        attrs[sc.ERROR_TYPE] = error_type
        return attrs

    # -- send -------------------------------------------------------------------
    def chain_to_send(self, ctx: context_api.Context | None, topic: str) -> str:
        """The ``eventchain`` header of a message produced now to ``topic``."""
        chain = ctx.get(CHAIN_KEY) if ctx is not None else None
        if not isinstance(chain, Chain):
            return f"1;{_time_ns() // 1_000_000};{topic}"
        return chain.onward(topic).header()

    def sent(
        self,
        instruments: Instruments,
        topic: str,
        partition: int | None,
        error_type: str | None,
        started_ns: int,
    ) -> None:
        """One produce's outcome, from its delivery report."""
        key = ("send", topic, partition, error_type)
        found = self._attrs.get(key)
        if found is None:
            attrs = self._with_error(self._base("send", topic, partition), error_type)
            timed = dict(attrs)
            timed[sc.OPERATION_TYPE] = "send"
            found = self._attrs[key] = (instruments.sent.cell(attrs), timed)
        cell, timed = found
        instruments.sent.add(cell)
        instruments.operation.record((_time_ns() - started_ns) / 1e9, timed)

    # -- consume ----------------------------------------------------------------
    def consumed(self, instruments: Instruments, received: Received, operation: str = "poll") -> None:
        """One message handed to the application."""
        topic = received.destination
        partition = received.partition
        key = (operation, topic, partition)
        cell = self._attrs.get(key)
        if cell is None:
            cell = self._attrs[key] = instruments.consumed.cell(self._base(operation, topic, partition))
        instruments.consumed.add(cell)

    def processing(
        self, instruments: Instruments, received: Received, headers: Headers, trusted: bool, now_ns: int
    ) -> Chain:
        """Record the queue time and chain duration of a message whose processing starts.

        Returns the chain the processing carries on (a new one from the record's
        timestamp when the header is absent, malformed, or from an untrusted topic).
        """
        topic = received.destination
        now_ms = now_ns // 1_000_000
        ts = received.timestamp_ms
        group_attrs = self._attributes(("wait", topic), lambda: self._wait_attributes(topic))
        if ts is not None:
            instruments.queue_time.record(max(0, now_ms - ts) / 1000, group_attrs)
        chain = parse_chain(last_header(headers, CHAIN_HEADER)) if trusted and headers else None
        if chain is None:
            chain = Chain(ts if ts is not None else now_ms, topic)
        path = chain.path
        if path not in self._paths:
            if len(self._paths) >= self._max_paths:
                path = OTHER_PATH
            else:
                self._paths.add(path)
        attrs = self._attributes(("chain", path), lambda: self._chain_attributes(path))
        instruments.chain.record(max(0, now_ms - chain.start_ms) / 1000, attrs)
        return chain

    def _wait_attributes(self, topic: str) -> dict[str, Any]:
        attrs = {sc.SYSTEM: self._system, sc.DESTINATION_NAME: topic}
        if self.consumer_group:
            attrs[sc.CONSUMER_GROUP] = self.consumer_group
        return attrs

    def _chain_attributes(self, path: str) -> dict[str, Any]:
        attrs = {sc.SYSTEM: self._system, sc.CHAIN_PATH: path}
        if self.consumer_group:
            attrs[sc.CONSUMER_GROUP] = self.consumer_group
        return attrs

    def processed(
        self,
        instruments: Instruments,
        received: Received,
        started_ns: int,
        end_ns: int,
        error_type: str | None,
    ) -> None:
        """The duration of one message's processing, with ``error.type`` when it failed."""
        topic = received.destination
        partition = received.partition
        key = ("process", topic, partition, error_type)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._attrs[key] = self._with_error(self._base("process", topic, partition), error_type)
        instruments.process.record(max(0, end_ns - started_ns) / 1e9, attrs)
