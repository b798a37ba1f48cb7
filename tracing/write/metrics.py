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
from bisect import bisect_left, bisect_right
from functools import reduce
from operator import add as _add
from typing import Any, NamedTuple

from opentelemetry import context as context_api
from opentelemetry import metrics

from tracing import semconv as sc
from tracing.version import __version__
from tracing.write import otel
from tracing.write.propagation import last_header
from tracing.write.recipe import CHAIN_KEY, SCOPE, common_attributes
from tracing.write.records import ClientInfo, Headers, Received

CHAIN_HEADER = "eventchain"
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
# A message appends its values to their series' pending lists (one C call each: no lock,
# no Python frame); they are folded into the aggregates at collection, or by the client
# that has handed this many messages since its last fold (so a long export interval
# cannot grow them).
FOLD_EVERY = 1024


class Chain(NamedTuple):
    """Where a message's chain began (ms since the epoch) and the topics it went through."""

    start_ms: int
    path: str

    def onward(self, topic: str) -> Chain:
        """The chain a message sent to ``topic`` from here carries."""
        return Chain(self.start_ms, extend_path(self.path, topic))

    def header(self) -> str:
        return f"1;{self.start_ms};{self.path}"


# Chain(start_ms, path) without the named tuple's Python-level __new__ (a third of the
# chain reading's cost): the hot paths build one per message.
_tuple_new = tuple.__new__


def _chain(start_ms: int, path: str) -> Chain:
    return _tuple_new(Chain, (start_ms, path))


def extend_path(path: str, topic: str) -> str:
    """``path>topic``, keeping the first and the newest hops when it grows past MAX_HOPS."""
    hops = path.split(">")
    hops.append(topic)
    if len(hops) > MAX_HOPS:
        hops = [hops[0], "..", *hops[-(MAX_HOPS - 2) :]]
    return ">".join(hops)


def parse_chain(value: Any, now_ms: int | None = None) -> Chain | None:
    """The chain in an ``eventchain`` header value; None when absent or malformed (or
    begun more than a minute after ``now_ms``, by default the clock now)."""
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
    if now_ms is None:
        now_ms = _time_ns() // 1_000_000
    if start_ms > now_ms + _FUTURE_SLACK_MS:
        return None
    path = match.group(2).decode()
    if path.count(">") >= MAX_HOPS or "" in path.split(">"):
        return None
    return Chain(start_ms, path)


class Count:
    """One counter series: the cumulative count of one attribute set.

    ``add(n)`` appends to ``pending`` (atomic, whichever thread calls it); :meth:`fold`
    moves what is pending into ``value`` under the tally's lock.
    """

    __slots__ = ("attributes", "value", "pending", "add")

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes
        self.value = 0
        self.pending: list[int] = []
        self.add = self.pending.append

    def fold(self) -> None:
        """Only under the tally's lock: two folds must not take the same pending values."""
        pending = self.pending
        n = len(pending)
        if n:
            taken = pending[:n]
            del pending[:n]  # values appended meanwhile lie past n: kept for the next fold
            self.value += sum(taken)


class _Tally:
    """Cumulative counts per attribute set, shared by every client of one meter provider."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[tuple[Any, ...], Count] = {}

    def cell(self, attrs: dict[str, Any]) -> Count:
        """The series of an attribute set (``cell.add()`` counts one)."""
        key = tuple(sorted(attrs.items()))
        with self._lock:
            found = self._cells.get(key)
            if found is None:
                found = self._cells[key] = Count(dict(attrs))
        return found

    def fold(self) -> None:
        with self._lock:
            for cell in self._cells.values():
                cell.fold()

    def observe(self, options: Any) -> list[metrics.Observation]:
        with self._lock:
            for cell in self._cells.values():
                cell.fold()
            return [metrics.Observation(cell.value, cell.attributes) for cell in self._cells.values()]


class _SdkSeries:
    """One series of an SDK histogram: ``add(amount)`` records it with its attribute set."""

    __slots__ = ("_record", "attributes")

    def __init__(self, histogram: Any, attributes: dict[str, Any]) -> None:
        self._record = histogram.record
        self.attributes = attributes

    def add(self, amount: float) -> None:
        self._record(amount, self.attributes)


def series_of(histogram: Any, attributes: dict[str, Any]) -> Series | _SdkSeries:
    """The series of ``histogram`` for ``attributes``, to record into without a lookup."""
    if type(histogram) is LocalHistogram:
        return histogram.series(attributes)
    return _SdkSeries(histogram, attributes)


class Instruments:
    """The instruments of one meter provider (created once: the SDK warns on repeats).

    ``local``: for a MeterProvider built by :func:`tracing.configure`, the histograms are
    aggregated here (:class:`PreAggregated`) and handed to its exporter whole at each
    export, instead of one SDK ``record()`` per message.
    """

    def __init__(self, meter: metrics.Meter, local: PreAggregated | None = None) -> None:
        histogram = meter.create_histogram if local is None else local.histogram
        self.local = local
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

    def fold(self) -> None:
        """Fold every value pending in this provider's series into its aggregates."""
        self.sent.fold()
        self.consumed.fold()
        if self.local is not None:
            for histogram in self.local.histograms:
                histogram.fold()

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


class Series:
    """One histogram series, kept as the SDK's explicit-bucket aggregation keeps it:
    cumulative bucket counts, min and max; the sum of each interval is folded into the
    total at collection, in the SDK's order (so the floating-point total is the same).

    ``add(amount)`` appends to ``pending``; :meth:`fold` (under the histogram's lock)
    aggregates what is pending, in the order it was added: the same counts, sum, min and
    max as one SDK ``record()`` per value.
    """

    __slots__ = ("attributes", "bounds", "counts", "sum", "min", "max", "total_sum", "pending", "add")

    def __init__(self, attributes: dict[str, Any], bounds: tuple[float, ...]) -> None:
        self.attributes = attributes
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        self.total_sum: float = 0
        self.pending: list[float] = []
        self.add = self.pending.append

    def fold(self) -> None:
        """Only under the histogram's lock: two folds must not take the same pending values."""
        pending = self.pending
        n = len(pending)
        if not n:
            return
        values = pending[:n]
        del pending[:n]  # values appended meanwhile lie past n: kept for the next fold
        counts, bounds = self.counts, self.bounds
        if n < 8:
            for value in values:
                counts[bisect_left(bounds, value)] += 1
        else:
            # The SDK's bucket of v is bisect_left(bounds, v): bucket i holds the values
            # in (bounds[i-1], bounds[i]]; counted over the sorted values, per bound.
            ordered = sorted(values)
            below = 0
            for i, bound in enumerate(bounds):
                upto = bisect_right(ordered, bound, below)
                counts[i] += upto - below
                below = upto
            counts[-1] += n - below
        self.sum = reduce(_add, values, self.sum)  # left to right, as one += per value
        low, high = min(values), max(values)  # the first of equals, as a strict < or > keeps
        if low < self.min:
            self.min = low
        if high > self.max:
            self.max = high


class LocalHistogram:
    """A histogram with the SDK's semantics (explicit buckets, min/max, cumulative),
    recorded here without an SDK call; its points are read at collection."""

    __slots__ = ("name", "unit", "description", "boundaries", "_series", "_lock", "_start")

    def __init__(
        self, name: str, unit: str, description: str, boundaries: tuple[float, ...], start: int
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.boundaries = tuple(float(b) for b in boundaries)
        self._series: dict[tuple[Any, ...], Series] = {}
        self._lock = threading.Lock()
        self._start = start

    def series(self, attributes: dict[str, Any]) -> Series:
        """The series of an attribute set; the hot paths keep it and call its ``record()``."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._series.get(key)
            if found is None:
                found = self._series[key] = Series(dict(attributes), self.boundaries)
        return found

    def record(self, amount: float, attributes: dict[str, Any]) -> None:
        """As the SDK's ``Histogram.record()``."""
        self.series(attributes).add(amount)

    def fold(self) -> None:
        with self._lock:
            for series in self._series.values():
                series.fold()

    def collect(self, now: int) -> list[Any]:
        """Cumulative points, folded exactly as the SDK folds an interval into its totals."""
        from opentelemetry.sdk.metrics.export import HistogramDataPoint

        points = []
        with self._lock:
            for series in self._series.values():
                series.fold()
                count = sum(series.counts)
                if not count:
                    continue  # looked up, not yet recorded: the SDK has no such series either
                series.total_sum = series.sum + series.total_sum
                series.sum = 0
                points.append(
                    HistogramDataPoint(
                        attributes=series.attributes,
                        start_time_unix_nano=self._start,
                        time_unix_nano=now,
                        count=count,
                        sum=series.total_sum,
                        bucket_counts=tuple(series.counts),
                        explicit_bounds=self.boundaries,
                        min=series.min,
                        max=series.max,
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


# The fast chain reader's caches (per client) stop growing here: past it, a header's path
# is checked each time (a loop or a hostile producer cannot grow memory).
_CACHE_MAX = 1024
_VALID_PATH = re.compile(rb"[a-zA-Z0-9._\->]{1,500}")


class _Consuming:
    """What a consumer records for one (topic, partition), bound at its first message:
    the ``add`` of its series."""

    __slots__ = ("polled", "queue_time")

    def __init__(self, polled: Any, queue_time: Any) -> None:
        self.polled = polled
        self.queue_time = queue_time


class FlowMetrics:
    """The metric side of one wrapped client.

    Each series (a counter's or a histogram's, per attribute set) is looked up once and
    its ``add`` kept per (topic, partition, outcome): a message costs a dict lookup and one
    list append per value. Aggregation waits for collection, or for the fold every
    ``FOLD_EVERY`` messages.
    """

    def __init__(self, client: ClientInfo, meter_provider: Any = None, *, max_paths: int = MAX_PATHS) -> None:
        self.provider = meter_provider
        # Public for the hot paths, which read them instead of calling instruments().
        self.resolved_instruments: Instruments | None = None
        self.resolved = False
        self._system = client.system
        self._common = common_attributes(client)
        self.consumer_group = client.consumer_group
        self._max_paths = max_paths
        self._paths: dict[str, Any] = {}  # the paths reported (at most max_paths): their series' add
        self._other: Any = None  # the series of OTHER_PATH
        self._consuming: dict[tuple[str, int | None], _Consuming] = {}
        self._sending: dict[tuple[str, int | None, str | None], tuple[Any, Any]] = {}
        self._processed: dict[tuple[str, int | None, str | None], Any] = {}
        self._batched: dict[tuple[str, int | None, str], Any] = {}
        self._header_paths: dict[bytes, str] = {}  # a header's path as text; "" when not valid
        self._onward: dict[tuple[str, str], str] = {}  # (path, topic) -> the path sent on
        # The last chain begun by a send: (ms, topic, header), one immutable tuple read and
        # replaced whole (sends within one millisecond to one topic carry the same header).
        self._begun: tuple[int, str, str] = (-1, "", "")
        self._unfolded = 0  # messages since this client last folded the pending values

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

    # -- attribute sets (built once per series) ---------------------------------
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

    def _grouped(self, key: str, value: str) -> dict[str, Any]:
        attrs = {sc.SYSTEM: self._system, key: value}
        if self.consumer_group:
            attrs[sc.CONSUMER_GROUP] = self.consumer_group
        return attrs

    # -- send -------------------------------------------------------------------
    def chain_to_send(self, ctx: context_api.Context | None, topic: str, now_ns: int) -> str:
        """The ``eventchain`` header of a message produced at ``now_ns`` to ``topic``."""
        chain = ctx.get(CHAIN_KEY) if ctx is not None else None
        if not isinstance(chain, Chain):  # a chain begins here: once per millisecond and topic
            ms = now_ns // 1_000_000
            begun = self._begun
            if begun[0] == ms and begun[1] == topic:
                return begun[2]
            header = f"1;{ms};{topic}"
            self._begun = (ms, topic, header)
            return header
        path = chain.path
        onward = self._onward.get((path, topic))
        if onward is None:
            onward = extend_path(path, topic)
            if len(self._onward) < _CACHE_MAX:
                self._onward[(path, topic)] = onward
        return f"1;{chain.start_ms};{onward}"

    def sent(
        self,
        instruments: Instruments,
        topic: str,
        partition: int | None,
        error_type: str | None,
        started_ns: int,
    ) -> None:
        """One produce's outcome, from its delivery report."""
        found = self._sending.get((topic, partition, error_type))
        if found is None:
            attrs = self._with_error(self._base("send", topic, partition), error_type)
            timed = dict(attrs)
            timed[sc.OPERATION_TYPE] = "send"
            found = self._sending[(topic, partition, error_type)] = (
                instruments.sent.cell(attrs).add,
                series_of(instruments.operation, timed).add,
            )
        found[0](1)
        took = _time_ns() - started_ns
        found[1](took / 1e9 if took > 0 else 0.0)
        self._unfolded += 1  # not atomic: a lost increment only delays the fold
        if self._unfolded >= FOLD_EVERY:
            self._fold(instruments)

    def _fold(self, instruments: Instruments) -> None:
        self._unfolded = 0
        instruments.fold()

    # -- consume ----------------------------------------------------------------
    def consumed(self, instruments: Instruments, received: Received, operation: str = "consume") -> None:
        """One message handed to the application by a batch receive (:meth:`processing`
        counts a polled one)."""
        key = (received.destination, received.partition, operation)
        count = self._batched.get(key)
        if count is None:
            count = self._batched[key] = instruments.consumed.cell(
                self._base(operation, received.destination, received.partition)
            ).add
        count(1)
        self._unfolded += 1
        if self._unfolded >= FOLD_EVERY:
            self._fold(instruments)

    def _consuming_of(self, instruments: Instruments, topic: str, partition: int | None) -> _Consuming:
        found = self._consuming[(topic, partition)] = _Consuming(
            instruments.consumed.cell(self._base("poll", topic, partition)).add,
            series_of(instruments.queue_time, self._grouped(sc.DESTINATION_NAME, topic)).add,
        )
        self._process_series(instruments, topic, partition, None)  # bound now, not at the first end
        return found

    def processing(
        self,
        instruments: Instruments,
        received: Received,
        headers: Headers,
        trusted: bool,
        now_ns: int,
        polled: bool = False,
    ) -> Chain:
        """Record the queue time and chain duration of a message whose processing starts
        (and count it as consumed when ``polled``: the client just handed it to the app).

        Returns the chain the processing carries on (a new one from the record's
        timestamp when the header is absent, malformed, or from an untrusted topic).
        """
        topic = received.destination
        state = self._consuming.get((topic, received.partition))
        if state is None:
            state = self._consuming_of(instruments, topic, received.partition)
        if polled:
            state.polled(1)
        now_ms = now_ns // 1_000_000
        ts = received.timestamp_ms
        if ts is not None:
            waited = now_ms - ts
            state.queue_time(waited / 1000 if waited > 0 else 0.0)
        chain = self.chain_in(last_header(headers, CHAIN_HEADER), now_ms) if trusted and headers else None
        if chain is None:
            chain = _chain(ts if ts is not None else now_ms, topic)
        add = self._paths.get(chain.path)
        if add is None:
            add = self._path_series(instruments, chain.path)
        waited = now_ms - chain.start_ms
        add(waited / 1000 if waited > 0 else 0.0)
        self._unfolded += 1
        if self._unfolded >= FOLD_EVERY:
            self._fold(instruments)
        return chain

    def _path_series(self, instruments: Instruments, path: str) -> Any:
        """The chain duration's series of a path not seen yet: its own while fewer than
        ``max_paths`` are reported, else the one of ``_OTHER``."""
        if len(self._paths) < self._max_paths:
            found = self._paths[path] = series_of(instruments.chain, self._grouped(sc.CHAIN_PATH, path)).add
            return found
        if self._other is None:
            self._other = series_of(instruments.chain, self._grouped(sc.CHAIN_PATH, OTHER_PATH)).add
        return self._other

    def chain_in(self, value: Any, now_ms: int) -> Chain | None:
        """:func:`parse_chain`, with each distinct path checked once."""
        if type(value) is not bytes:
            if type(value) is not str or not value.isascii():
                return None
            value = value.encode()
        if len(value) > _MAX_CHAIN_LEN:
            return None
        parts = value.split(b";")
        if len(parts) != 3 or parts[0] != b"1":
            return None
        start = parts[1]
        if not 0 < len(start) <= 15 or not start.isdigit():
            return None
        start_ms = int(start)
        if start_ms > now_ms + _FUTURE_SLACK_MS:
            return None
        raw = parts[2]
        path = self._header_paths.get(raw)
        if path is None:
            path = _checked_path(raw) or ""  # "": not a path
            if len(self._header_paths) < _CACHE_MAX:
                self._header_paths[raw] = path
        return _chain(start_ms, path) if path else None

    def _process_series(
        self, instruments: Instruments, topic: str, partition: int | None, error_type: str | None
    ) -> Any:
        found = self._processed.get((topic, partition, error_type))
        if found is None:
            attrs = self._with_error(self._base("process", topic, partition), error_type)
            found = series_of(instruments.process, attrs).add
            self._processed[(topic, partition, error_type)] = found
        return found

    def processed(
        self,
        instruments: Instruments,
        received: Received,
        started_ns: int,
        end_ns: int,
        error_type: str | None,
    ) -> None:
        """The duration of one message's processing, with ``error.type`` when it failed."""
        found = self._processed.get((received.destination, received.partition, error_type))
        if found is None:
            found = self._process_series(instruments, received.destination, received.partition, error_type)
        took = end_ns - started_ns
        found(took / 1e9 if took > 0 else 0.0)


def _checked_path(raw: bytes) -> str | None:
    """A header's path as text; None unless the topics ``>``-joined, at most MAX_HOPS."""
    if _VALID_PATH.fullmatch(raw) is None:
        return None
    path = raw.decode()
    if path.count(">") >= MAX_HOPS or "" in path.split(">"):
        return None
    return path
