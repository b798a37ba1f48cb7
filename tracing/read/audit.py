"""Audit many event chains at once: ordering, duplicates, unconsumed events, failures, sagas, paths.

A tree shows one chain; the problems that make event-driven systems hard show only across many.
:class:`Auditor` reads spans one at a time, in one pass, in file order (not time order), and keeps
no span: what it holds is per group, topic, partition and key (offsets processed, as ranges; each
key's order), plus what happened within the window, ``--grace`` of the stream's clock (the records
of traces not yet settled, sends waiting for their processings, messages waiting to be ordered).
Memory follows the traffic's rate and its keys, not the length of the stream. Whatever arrived too
late to be judged is counted in the notes. Pure functions over spans, no I/O: loading and rendering
are the other modules' business.

>>> report = audit(iter_file("spans.jsonl"), AuditOptions(sagas=(parse_saga("orders:shipped"),)))
...                                                                       # doctest: +SKIP
>>> report.duplicates, report.unconsumed                                  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import fnmatch
import heapq
import math
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tracing.read.audit_facts import AuditFacts, audit_facts
from tracing.read.model import PROCESS, RECEIVE, SEND, Span

__all__ = [
    "FINDING_KINDS",
    "Audit",
    "AuditOptions",
    "Auditor",
    "DeadLetter",
    "Duplicate",
    "Failure",
    "OrderingViolation",
    "PathLatency",
    "SagaOutcome",
    "SagaRule",
    "StuckSaga",
    "Unconsumed",
    "audit",
    "audit_of_facts",
    "failing",
    "parse_saga",
]

DEFAULT_GRACE_S = 60.0
DEFAULT_DLQ = ("*.dlq", "*.DLT")
DEFAULT_RETRY = ("*retry*",)
FINDING_KINDS = ("ordering", "duplicates", "unconsumed", "failures", "stuck")
"""What ``--fail-on`` may name."""
# Paths are named as the flow metrics name them: at most this many topics, the middle dropped.
MAX_PATH_HOPS = 8
# How far up a send's parents to look for the process span it was made in.
_MAX_ANCESTRY = 64


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SagaStep:
    """One step of a saga rule: a topic, an event type, or ``TOPIC/TYPE`` (both must match)."""

    topic: str | None
    event_type: str | None

    def matches(self, topic: str | None, event_type: str | None) -> bool:
        if self.topic is not None and self.event_type is not None:
            return topic == self.topic and event_type == self.event_type
        name = self.topic if self.topic is not None else self.event_type
        return name is not None and (topic == name or event_type == name)

    def __str__(self) -> str:
        return "/".join(p for p in (self.topic, self.event_type) if p is not None)


@dataclass(frozen=True)
class SagaRule:
    """``START:END[:COMPENSATION]``: a chain that reached START must reach END or COMPENSATION."""

    text: str
    start: SagaStep
    end: SagaStep
    compensation: SagaStep | None = None


def parse_saga(text: str) -> SagaRule:
    """Read a ``--saga`` rule; raises ``ValueError`` saying what a rule looks like.

    Each step is a topic or an event type (matched against the topic and the event type a
    service records, ``cloudevents.event_type`` or ``app.event.type``), or ``TOPIC/TYPE`` for both.
    Kafka topic names cannot hold ``:`` or ``/``, so neither is ambiguous.

    >>> rule = parse_saga("order.created:stock.reserved:order.cancelled")
    >>> str(rule.start), str(rule.compensation)
    ('order.created', 'order.cancelled')
    """
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not all(p.strip() for p in parts):
        raise ValueError(
            f"{text!r} is not a saga rule: try START:END[:COMPENSATION], each a topic, an event type "
            "or TOPIC/TYPE (e.g. order.created:order.confirmed:order.cancelled)"
        )
    steps = []
    for part in parts:
        topic, slash, event_type = part.strip().partition("/")
        if slash and not (topic and event_type):
            raise ValueError(f"{part!r} in saga rule {text!r} is not TOPIC/TYPE: try orders/order.created")
        steps.append(SagaStep(topic, event_type) if slash else SagaStep(topic, None))
    return SagaRule(text, steps[0], steps[1], steps[2] if len(steps) == 3 else None)


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how.

    ``since_ns``/``until_ns`` bound the window by span start. A send counts as unconsumed, and a
    saga as stuck, only once ``grace_s`` has passed by ``horizon_ns`` (the moment the data is
    judged at: by default ``until_ns``, else the end of the latest span read). ``topics`` (glob
    patterns) keeps only messaging spans on matching topics. A message on a ``retry`` topic sent
    while processing another message stands for that message processed again; a send to a
    ``dlq`` topic made while processing a message dead-letters it.
    """

    since_ns: int | None = None
    until_ns: int | None = None
    horizon_ns: int | None = None
    grace_s: float = DEFAULT_GRACE_S
    sagas: Sequence[SagaRule] = ()
    dlq: Sequence[str] = DEFAULT_DLQ
    retry: Sequence[str] = DEFAULT_RETRY
    topics: Sequence[str] = ()


# --- findings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderingViolation:
    """Two events of one key, processed by one group in the opposite order to the one they were
    produced in: ``first_trace_id`` was produced first, ``second_trace_id`` was processed first."""

    group: str
    topic: str
    key: str
    first_trace_id: str
    second_trace_id: str


@dataclass(frozen=True)
class Duplicate:
    """One message (topic, partition, offset) processed ``times`` times by one group."""

    group: str
    topic: str
    partition: int | None
    offset: int | None
    times: int
    trace_id: str


@dataclass(frozen=True)
class Unconsumed:
    """A send to a topic the group consumed in the window, never processed by that group in time."""

    group: str
    topic: str
    partition: int | None
    offset: int | None
    trace_id: str


@dataclass(frozen=True)
class Failure:
    """Failed processings of one group and topic with one error type."""

    group: str | None
    topic: str | None
    error_type: str
    count: int
    retried: int
    """Of those, messages processed again afterwards (redelivered, or sent to a retry topic)."""
    dead_lettered: int
    """Of those, messages sent to a dead-letter topic."""


@dataclass(frozen=True)
class DeadLetter:
    """A send to a dead-letter topic made while processing a message of ``topic``."""

    topic: str | None
    dlq_topic: str
    trace_id: str


@dataclass(frozen=True)
class SagaOutcome:
    """How the chains that reached a rule's START ended."""

    rule: str
    started: int
    finished: int
    compensated: int
    stuck: int
    pending: int
    """Neither finished nor compensated, but still within the grace period."""

    @property
    def compensated_share(self) -> float:
        return self.compensated / self.started if self.started else 0.0


@dataclass(frozen=True)
class StuckSaga:
    rule: str
    trace_id: str


@dataclass(frozen=True)
class HopWait:
    topic: str
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class PathLatency:
    """Start of the chain (its first send) to the start of processing, for one path and group."""

    path: str
    group: str | None
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    hops: list[HopWait]
    """How long events waited in each topic of the path (send ended -> processing started)."""


@dataclass
class Audit:
    """Everything an audit found, and what it could not check (``notes``, counted)."""

    window_start_ns: int | None
    window_end_ns: int | None
    spans: int
    traces: int
    ordering_violations: list[OrderingViolation] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    processings: int = 0
    """Processings with a group and a message identity: what the duplicate rate is a share of."""
    unconsumed: list[Unconsumed] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    dead_lettered: list[DeadLetter] = field(default_factory=list)
    sagas: list[SagaOutcome] = field(default_factory=list)
    stuck_sagas: list[StuckSaga] = field(default_factory=list)
    paths: list[PathLatency] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def extra_deliveries(self) -> int:
        return sum(d.times - 1 for d in self.duplicates)

    @property
    def duplicate_rate(self) -> float:
        """Processings that repeated an earlier one, as a share of all processings."""
        return self.extra_deliveries / self.processings if self.processings else 0.0

    def counts(self) -> dict[str, int]:
        """Findings per ``--fail-on`` kind."""
        return {
            "ordering": len(self.ordering_violations),
            "duplicates": len(self.duplicates),
            "unconsumed": len(self.unconsumed),
            "failures": sum(f.count for f in self.failures),
            "stuck": len(self.stuck_sagas),
        }


def failing(report: Audit, fail_on: Iterable[str], max_duplicate_rate: float | None = None) -> list[str]:
    """Why the audit should fail a CI step: the ``fail_on`` kinds with findings, and a duplicate rate
    above ``max_duplicate_rate``. Empty when it passes.

    >>> failing(Audit(None, None, 0, 0), ["ordering", "stuck"])
    []
    """
    counts = report.counts()
    reasons = [f"{counts[k]:,} {k}" for k in fail_on if counts[k]]
    if max_duplicate_rate is not None and report.duplicate_rate > max_duplicate_rate:
        reasons.append(f"duplicate rate {report.duplicate_rate:.2%} above {max_duplicate_rate:.2%}")
    return reasons


# --- the streaming pass -------------------------------------------------------------------------
#
# One pass, state bounded by the traffic's keys and the window, not by the length of the stream:
#
# - The stream's clock is the latest span end read so far. Spans arrive in file order, not time
#   order; ``--grace`` is also the reorder tolerance (the window, W): a span may come up to W after
#   spans that ended later than it and still be judged as if it had come in time.
# - A trace's spans are held (as small records: ids, topic, partition, offset, key, group, times)
#   until it has settled: no span of it for W on the clock. Then the joins inside the trace are
#   made (the send a processing processes, the processing a send was made in, retries, dead letters,
#   paths, sagas) and the records dropped. A span of a trace that settled already starts it anew,
#   joined only with what comes after it: counted (``late``).
# - Per group, topic and partition, the offsets processed, as ranges (a consumer's offsets are
#   dense, so a few ranges each): what duplicates and unconsumed sends are read from.
# - A send waits for its processings while within grace + 2W of the clock, then is judged and
#   dropped; sends without an offset are matched by span id against the processings of that time.
# - Each message's chosen processing waits, ordered by its start, until it is 2W behind the clock,
#   then goes through its group, topic and key's order state: per partition, the highest offset and
#   the latest production processed so far. One that comes after later processings of its key were
#   judged cannot be ordered: counted, not judged.


class _Send:
    __slots__ = ("span_id", "trace_id", "topic", "partition", "offset", "start", "end", "parent", "failed")

    def __init__(self, f: AuditFacts) -> None:
        self.trace_id, self.span_id, self.parent, self.start, self.end = f[0], f[1], f[2], f[3], f[4]
        self.topic, self.partition, self.offset = f[6], f[7], f[8]
        self.failed = f[12] is not None


class _Process:
    __slots__ = (
        "span_id",
        "trace_id",
        "send",
        "parents",
        "group",
        "topic",
        "partition",
        "offset",
        "key",
        "start",
        "queue_ms",
        "error_type",
        "first",
    )

    def __init__(self, f: AuditFacts) -> None:
        self.trace_id, self.span_id, self.start = f[0], f[1], f[3]
        # The send this processes: the parent, else a linked span (a link-only consumer).
        self.parents = (f[2], *f[13]) if f[2] else f[13]
        self.topic, self.partition, self.offset, self.group, self.key = f[6], f[7], f[8], f[9], f[10]
        self.queue_ms, self.error_type = f[11], f[12]
        self.first = False
        """The first processing of its offset by its group read in this pass."""
        self.send: _Send | None = None
        """The send it processes, once its trace settles (found by :class:`_TraceJoins`)."""


class _Trace:
    """A trace's records, held until the trace settles."""

    __slots__ = ("last", "sends", "processes", "parents", "sagas")

    def __init__(self) -> None:
        self.last = 0
        self.sends: dict[str, _Send] = {}
        self.processes: list[_Process] = []
        self.parents: dict[str, str] = {}  # other spans: span id -> parent id (to find a send's processing)
        # Per rule [earliest START, END seen, COMPENSATION seen], once a step of a rule was seen.
        self.sagas: list[list[int | bool | None]] | None = None

    def __len__(self) -> int:
        return len(self.sends) + len(self.processes) + len(self.parents)


def _matches(topic: str | None, patterns: Sequence[str]) -> bool:
    return topic is not None and any(fnmatch.fnmatchcase(topic, p) for p in patterns)


class _TopicPatterns:
    """Glob patterns, each topic matched against them once (a window has few topics, many spans)."""

    __slots__ = ("patterns", "known")

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self.known: dict[str, bool] = {}

    def __call__(self, topic: str | None) -> bool:
        if topic is None:
            return False
        hit = self.known.get(topic)
        if hit is None:
            hit = self.known[topic] = _matches(topic, self.patterns)
        return hit


class OffsetRanges:
    """A set of offsets kept as sorted, disjoint ``[start, end)`` ranges: a consumer processes a
    partition's offsets in order, so its offsets take a few ranges however many there are.

    >>> done = OffsetRanges()
    >>> [done.add(o) for o in (3, 4, 5, 9, 4)], len(done), 7 in done, 9 in done
    ([True, True, True, True, False], 2, False, True)
    """

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, offset: int) -> bool:
        """Add ``offset``; False when it was in the set already."""
        starts, ends = self.starts, self.ends
        if ends and ends[-1] == offset:  # the common case: the next offset of the last range
            ends[-1] = offset + 1
            return True
        index = bisect.bisect_right(starts, offset) - 1
        if index >= 0 and offset < ends[index]:
            return False
        joins_left = index >= 0 and ends[index] == offset
        joins_right = index + 1 < len(starts) and starts[index + 1] == offset + 1
        if joins_left and joins_right:
            ends[index] = ends[index + 1]
            del starts[index + 1], ends[index + 1]
        elif joins_left:
            ends[index] = offset + 1
        elif joins_right:
            starts[index + 1] = offset
        else:
            starts.insert(index + 1, offset)
            ends.insert(index + 1, offset + 1)
        return True

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        index = bisect.bisect_right(self.starts, offset) - 1
        return index >= 0 and offset < self.ends[index]

    def __len__(self) -> int:
        """The number of ranges (what the set costs), not of offsets."""
        return len(self.starts)


# A group first seen on a topic after some of its sends were judged is checked against them at the
# end, where its processed offsets surround them: the trace ids of this many judged sends are kept
# for it (a fixed cost of a few MB, whatever the stream's length or the window).
JUDGED_MEMO = 65_536

# Percentiles: exact up to this many samples per path (or hop), then read from a histogram whose
# buckets are 2 % wide, each counted at its middle (within 1 %).
EXACT_SAMPLES = 1024
_BUCKET_BASE = 1.02
_PER_LOG = 1 / math.log(_BUCKET_BASE)
_MIDDLES: dict[int, float] = {}  # bucket index -> its middle, worked out once
# Samples appended before they are folded into the histogram: fewer than EXACT_SAMPLES, so a
# series never holds more values than it did before its histogram began.
FOLD_EVERY = 512


class _Quantiles:
    """Samples of one latency: kept while few, a log-bucket histogram once many.

    Samples are appended and folded into the histogram a batch at a time (:data:`FOLD_EVERY`):
    the same buckets as one at a time, at a fraction of the cost per sample."""

    __slots__ = ("values", "buckets", "folded", "limit")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.buckets: dict[float, int] | None = None
        self.folded = 0  # samples in the buckets
        self.limit = EXACT_SAMPLES

    def add(self, value: float) -> None:
        values = self.values
        values.append(value)
        if len(values) > self.limit:
            self._fold()

    @property
    def count(self) -> int:
        return self.folded + len(self.values)

    def _fold(self) -> None:
        buckets = self.buckets
        if buckets is None:
            buckets = self.buckets = {}
            self.limit = FOLD_EVERY
        values, self.values = self.values, []
        self.folded += len(values)
        positive = [v for v in values if v > 0]
        if len(positive) < len(values):
            for value in values:
                if value <= 0:
                    middle = 0.0 if value == 0 else -_middle(math.floor(math.log(-value) * _PER_LOG))
                    buckets[middle] = buckets.get(middle, 0) + 1
        # floor(log(v) / log(1.02)) for every sample, counted per index, without a Python-level loop.
        for index, count in Counter(map(math.floor, map(_PER_LOG.__mul__, map(math.log, positive)))).items():
            middle = _middle(index)
            buckets[middle] = buckets.get(middle, 0) + count

    def percentile(self, percent: int) -> float:
        """Nearest rank, as :func:`_percentile`."""
        if self.buckets is None:
            self.values.sort()
            return _percentile(self.values, percent)
        if self.values:
            self._fold()
        rank = max(1, -(-self.folded * percent // 100))
        seen = 0
        for middle in sorted(self.buckets):
            seen += self.buckets[middle]
            if seen >= rank:
                return middle
        return 0.0

    def __len__(self) -> int:
        return len(self.values) + (len(self.buckets) if self.buckets is not None else 0)


def _middle(index: int) -> float:
    """The middle of a histogram bucket, worked out once per index."""
    middle = _MIDDLES.get(index)
    if middle is None:
        middle = _MIDDLES[index] = _BUCKET_BASE ** (index + 0.5)
    return middle


class _KeyOrder:
    """One group's order state for one topic and key: per partition, the highest offset and the
    latest production processed so far, each with its trace."""

    __slots__ = ("last", "top")

    def __init__(self, start: int) -> None:
        self.last = start  # the latest processing start judged
        self.top: dict[int | None, tuple[int | None, str | None, int | None, str | None]] = {}


_Ident = tuple[object, ...]
"""A message: (group, topic, partition, offset), or without an offset (group, "send", the send's
span id, topic, partition, offset); told apart by length, as a topic may be named "send"."""
_BY_SEND = 6
# An ordering event: (processing start, sequence, group, topic, key, partition, offset, produced, trace)
_Event = tuple[int, int, str, str, str, "int | None", "int | None", "int | None", str]


class Auditor:
    """Reads spans one at a time (:meth:`add`), in one pass, then says what it found (:meth:`result`).

    What it holds is bounded by the traffic's groups, topics, partitions and keys and by what
    happens within the window (``grace_s``), not by the number of spans: :attr:`held` counts it.
    """

    def __init__(self, options: AuditOptions | None = None) -> None:
        o = self.options = options or AuditOptions()
        self.on_topics = _TopicPatterns(o.topics)
        self._on_some_topics = bool(o.topics)
        self._windowed = o.since_ns is not None or o.until_ns is not None
        self._sagas = bool(o.sagas)
        self.is_retry = _TopicPatterns(o.retry)
        self.is_dlq = _TopicPatterns(o.dlq)
        self.grace_ns = int(o.grace_s * 1e9)
        self.window_ns = self.grace_ns  # the reorder tolerance, and how long a quiet trace is held
        self.hold_ns = self.grace_ns + 2 * self.window_ns  # how long a send waits for processings
        self._step = max(self.window_ns // 16, 1_000_000)
        self._next_check: int | None = None
        self.spans = 0
        self.traces = 0
        self.first_ns: int | None = None
        self.clock: int | None = None
        """The stream's clock: the latest span end read so far."""
        # Held until settled, judged or past the window.
        self.open: OrderedDict[str, _Trace] = OrderedDict()  # least recently read first
        self.pending: OrderedDict[str, _Send] = OrderedDict()  # sends waiting for processings
        self.by_parent: OrderedDict[tuple[str, str], int] = OrderedDict()  # (group, parent) -> start
        self.send_runs: OrderedDict[tuple[str, str], int] = OrderedDict()  # offset-less messages
        self.failed_waiting: OrderedDict[_Ident, tuple[tuple[str | None, str | None, str], int]] = (
            OrderedDict()
        )
        self.events: list[_Event] = []  # a heap by processing start
        self._sequence = 0
        # Per group, topic, partition, key: what a stream of any length leaves.
        self.consumers: dict[str, set[str]] = {}
        self.consumer_order: dict[str, tuple[str, ...]] = {}  # the same groups, sorted
        self.judged_sends: dict[str, int] = {}
        # The last JUDGED_MEMO sends judged with an offset: (topic, partition, offset) -> (trace id,
        # judged how many sends in); and groups first seen on a topic after sends of it were judged.
        self.judged: OrderedDict[tuple[str, int, int], tuple[str, int]] = OrderedDict()
        self.judged_count = 0
        self.joined_late: dict[str, list[tuple[str, int]]] = {}
        self.processed: dict[tuple[str, str, int], OffsetRanges] = {}
        self.order: dict[tuple[str, str, str], _KeyOrder] = {}
        self.path_latency: dict[tuple[str, str | None], tuple[_Quantiles, list[_Quantiles]]] = {}
        self.failure_counts: dict[tuple[str | None, str | None, str], list[int]] = {}
        self.saga_counts = [[0, 0, 0] for _ in o.sagas]  # started, finished, compensated
        # Findings (each a line of the report).
        self.duplicates: dict[_Ident, tuple[int, str]] = {}  # ident -> (times, trace id)
        self.unconsumed: list[Unconsumed] = []
        self.dead_lettered: list[DeadLetter] = []
        self.ordering_violations: list[OrderingViolation] = []
        self.unfinished: list[tuple[int, str, int]] = []  # (rule, trace, START) judged at the end
        # What could not be checked, counted.
        self.outside = self.filtered = self.receives = self.late = 0
        self.processings = self.unknown = self.no_group = 0
        self.no_key = self.no_order = self.unordered = 0
        self.send_pending = self.send_failed = self.unwatched = self.group_late = self.late_found = 0

    # Reading ---------------------------------------------------------------------------------

    def add(self, span: Span) -> None:
        """Take one span into account."""
        self.add_facts(audit_facts(span))

    def add_facts(self, f: AuditFacts) -> None:
        """Take one span into account, as its :data:`AuditFacts` (what a file is read as)."""
        # This runs once per span of the stream: the common case reads locals, not the options.
        trace_id, span_id, parent, start, end, role, topic = f[:7]
        if self._windowed:
            since, until = self.options.since_ns, self.options.until_ns
            if (since is not None and start < since) or (until is not None and start > until):
                self.outside += 1
                return
        if self._on_some_topics and role is not None and not self.on_topics(topic):
            self.filtered += 1
            return
        self.spans += 1
        if self.first_ns is None or start < self.first_ns:
            self.first_ns = start
        clock = self.clock
        if clock is None or end > clock:
            clock = self.clock = end
        elif end + self.window_ns < clock:
            self.late += 1
        trace = self.open.get(trace_id)
        if trace is None:
            trace = self.open[trace_id] = _Trace()
            self.traces += 1
        else:
            self.open.move_to_end(trace_id)
        if end > trace.last:
            trace.last = end
        if role == SEND:
            trace.sends[span_id] = self.pending[span_id] = _Send(f)
        elif role == PROCESS:
            self._process(trace, _Process(f))
        else:
            if role == RECEIVE:
                self.receives += 1
            if parent is not None:
                trace.parents[span_id] = parent
        if self._sagas and role is not None:
            self._saga_step(trace, f)
        if self._next_check is None or clock >= self._next_check:
            self._next_check = clock + self._step
            self._advance(clock)

    def _process(self, trace: _Trace, p: _Process) -> None:
        trace.processes.append(p)
        group, topic = p.group, p.topic
        if group is None:
            self.no_group += 1
            return
        if topic is not None:
            groups = self.consumers.get(topic)
            if groups is None or group not in groups:
                self._new_consumer(topic, group)
        by_parent, start = self.by_parent, p.start
        for parent in p.parents:
            by_parent[(group, parent)] = start
        partition, offset = p.partition, p.offset
        if topic is not None and partition is not None and offset is not None:
            self.processings += 1
            where = (group, topic, partition)
            done = self.processed.get(where)
            if done is None:
                done = self.processed[where] = OffsetRanges()
            ends = done.ends
            if ends and ends[-1] == offset:  # OffsetRanges.add's common case, inline
                ends[-1] = offset + 1
                p.first = True
            elif done.add(offset):
                p.first = True
            else:
                self._repeat((group, topic, partition, offset), p.trace_id)

    def _new_consumer(self, topic: str, group: str) -> None:
        groups = self.consumers.get(topic)
        if groups is None:
            groups = self.consumers[topic] = set()
        groups.add(group)
        self.consumer_order[topic] = tuple(sorted(groups))
        before = self.judged_sends.get(topic, 0)
        if before:
            self.group_late += before
            self.joined_late.setdefault(topic, []).append((group, self.judged_count))

    def _repeat(self, ident: _Ident, trace_id: str) -> None:
        times, first = self.duplicates.get(ident, (1, trace_id))
        self.duplicates[ident] = (times + 1, first)

    def _saga_step(self, trace: _Trace, f: AuditFacts) -> None:
        topic, event_type, start = f[6], f[14], f[3]
        rules = self.options.sagas
        for index, rule in enumerate(rules):
            hits = (
                rule.start.matches(topic, event_type),
                rule.end.matches(topic, event_type),
                rule.compensation is not None and rule.compensation.matches(topic, event_type),
            )
            if not any(hits):
                continue
            if trace.sagas is None:
                trace.sagas = [[None, False, False] for _ in rules]
            entry = trace.sagas[index]
            first = entry[0]
            if hits[0] and (first is None or start < int(first)):
                entry[0] = start
            entry[1] = entry[1] or hits[1]
            entry[2] = entry[2] or hits[2]

    # Moving the window -----------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Records held now: spans of unsettled traces, sends waiting, processings remembered for
        sends without an offset, messages waiting to be ordered, offset ranges, keys, samples. The
        trace ids of the last judged sends (:data:`JUDGED_MEMO`) are a fixed cost besides."""
        return (
            sum(len(t) for t in self.open.values())
            + len(self.pending)
            + len(self.by_parent)
            + len(self.send_runs)
            + len(self.failed_waiting)
            + len(self.events)
            + sum(len(r) for r in self.processed.values())
            + len(self.order)
            + sum(len(q) + sum(len(h) for h in hops) for q, hops in self.path_latency.values())
        )

    def _advance(self, clock: int) -> None:
        """Settle, judge and release what the clock has left behind."""
        settled = clock - self.window_ns
        while self.open:
            trace_id, trace = next(iter(self.open.items()))
            if trace.last >= settled:
                break
            del self.open[trace_id]
            self._settle(trace_id, trace)
        expired = clock - self.hold_ns
        horizon = self._explicit_horizon()
        while self.pending:
            send = next(iter(self.pending.values()))
            if send.start >= expired:
                break
            del self.pending[send.span_id]
            self._judge(send, horizon)
        for remembered in (self.by_parent, self.send_runs):
            while remembered and next(iter(remembered.values())) < expired:
                remembered.popitem(last=False)
        while self.failed_waiting and next(iter(self.failed_waiting.values()))[1] < expired:
            self.failed_waiting.popitem(last=False)
        self._release(clock - 2 * self.window_ns)

    def _explicit_horizon(self) -> int | None:
        o = self.options
        return o.horizon_ns if o.horizon_ns is not None else o.until_ns

    def horizon(self) -> int | None:
        """The moment the data is judged at (see :class:`AuditOptions`)."""
        explicit = self._explicit_horizon()
        return explicit if explicit is not None else self.clock

    # Judging a send --------------------------------------------------------------------------

    def _judge(self, send: _Send, horizon: int | None) -> None:
        """Was ``send`` processed by every group that consumes its topic? ``horizon`` None: the
        clock has passed its grace (the final horizon can only be later)."""
        topic = send.topic or ""
        self.judged_sends[topic] = self.judged_sends.get(topic, 0) + 1
        if send.failed:
            if self.consumers.get(topic):
                self.send_failed += 1
            else:
                self.unwatched += 1
            return
        self.judged_count += 1
        if send.partition is not None and send.offset is not None:
            judged = self.judged
            judged[(topic, send.partition, send.offset)] = (send.trace_id, self.judged_count)
            if len(judged) > JUDGED_MEMO:
                judged.popitem(last=False)
        groups = self.consumer_order.get(topic)
        if not groups:
            self.unwatched += 1
            return
        for group in groups:
            if (group, send.span_id) in self.by_parent:
                continue
            if send.partition is not None and send.offset is not None:
                done = self.processed.get((group, topic, send.partition))
                if done is not None and send.offset in done:
                    continue
            if horizon is not None and send.start + self.grace_ns > horizon:
                self.send_pending += 1
                continue
            self.unconsumed.append(Unconsumed(group, topic, send.partition, send.offset, send.trace_id))

    # Settling a trace: the joins inside it ---------------------------------------------------

    def _settle(self, trace_id: str, trace: _Trace) -> None:
        _TraceJoins(self, trace).settle()
        if trace.sagas is not None:
            for index, (first, ended, undone) in enumerate(trace.sagas):
                if first is None:
                    continue
                counts = self.saga_counts[index]
                counts[0] += 1
                if ended:
                    counts[1] += 1
                elif undone:
                    counts[2] += 1
                else:
                    self.unfinished.append((index, trace_id, int(first)))

    # Ordering --------------------------------------------------------------------------------

    def _release(self, before: int | None) -> None:
        """Judge the order of the messages processed before ``before`` (all when None)."""
        events = self.events
        while events and (before is None or events[0][0] < before):
            start, _, group, topic, key, partition, offset, produced, trace_id = heapq.heappop(events)
            state = self.order.get((group, topic, key))
            if state is None:
                state = self.order[(group, topic, key)] = _KeyOrder(start)
            elif start < state.last:
                self.unordered += 1
                continue
            state.last = start
            top = state.top
            overtaker = None
            mine = top.get(partition)
            if partition is not None and offset is not None and mine and mine[0] is not None:
                if mine[0] > offset:
                    overtaker = mine[1]
            if overtaker is None and produced is not None:
                for other, (_, _, latest, latest_trace) in top.items():
                    if (other != partition or partition is None) and latest is not None and latest > produced:
                        overtaker = latest_trace
                        break
            if overtaker is not None:
                self.ordering_violations.append(OrderingViolation(group, topic, key, trace_id, overtaker))
            high, high_trace, late, late_trace = mine or (None, None, None, None)
            if offset is not None and (high is None or offset > high):
                high, high_trace = offset, trace_id
            if produced is not None and (late is None or produced > late):
                late, late_trace = produced, trace_id
            top[partition] = (high, high_trace, late, late_trace)

    # The end ---------------------------------------------------------------------------------

    def result(self) -> Audit:
        """The findings over every span added: settles everything still held (ends the pass)."""
        while self.open:
            trace_id, trace = self.open.popitem(last=False)
            self._settle(trace_id, trace)
        self._release(None)
        horizon = self.horizon()
        judge_at = horizon if horizon is not None else 0
        while self.pending:
            _, send = self.pending.popitem(last=False)
            self._judge(send, judge_at)
        self._check_late_groups()
        return _Report(self, horizon).audit()

    def _check_late_groups(self) -> None:
        """A group first seen on a topic after sends of it were judged: those sends inside the
        range of offsets it processed on their partition, and not among them, it skipped."""
        if not self.joined_late:
            return
        for (topic, partition, offset), (trace_id, judged_at) in self.judged.items():
            for group, joined_at in self.joined_late.get(topic, ()):
                if judged_at > joined_at:
                    continue  # judged with the group known: checked then
                done = self.processed.get((group, topic, partition))
                if done is None or offset < done.starts[0] or offset >= done.ends[-1] or offset in done:
                    continue
                self.unconsumed.append(Unconsumed(group, topic, partition, offset, trace_id))
                self.late_found += 1


def audit(spans: Iterable[Span], options: AuditOptions | None = None) -> Audit:
    """Audit every span of ``spans`` (read once, as it comes)."""
    return audit_of_facts(map(audit_facts, spans), options)


def audit_of_facts(facts: Iterable[AuditFacts], options: AuditOptions | None = None) -> Audit:
    """Audit the :data:`AuditFacts` of spans (``iter_file_audit_facts`` reads a file so)."""
    auditor = Auditor(options)
    add = auditor.add_facts
    for fact in facts:
        add(fact)
    return auditor.result()


class _TraceJoins:
    """The joins inside one settled trace (and to the sends still held, for link-only consumers).

    Within one settling nothing they read changes: the send each processing processes and the
    processing each send was made in are looked up once."""

    def __init__(self, auditor: Auditor, trace: _Trace) -> None:
        self.a = auditor
        self.t = trace
        self.by_id = {p.span_id: p for p in trace.processes}
        self.senders: dict[str, _Process | None] = {}
        self.routes: dict[str, tuple[list[tuple[_Send, _Process]], str]] = {}
        sends, pending = trace.sends, auditor.pending
        is_retry = auditor.is_retry
        retries = False
        for p in trace.processes:
            found = None
            for span_id in p.parents:
                found = sends.get(span_id) or pending.get(span_id)
                if found is not None:
                    break
            p.send = found
            retries = retries or is_retry(p.topic)
        self.retries = retries
        """Whether a processing of this trace is on a retry topic (else each stands for itself)."""

    def settle(self) -> None:
        a, t = self.a, self.t
        idents: dict[str, _Ident | None] = {}
        fresh: set[_Ident] = set()
        by_message: dict[_Ident, list[_Process]] = {}
        for p in t.processes:
            if p.group is None:
                continue
            ident = idents[p.span_id] = self.message_id(p)
            if ident is None:
                a.unknown += 1
                continue
            runs = by_message.get(ident)
            if runs is None:
                by_message[ident] = [p]
            else:
                runs.append(p)
            if p.first:
                fresh.add(ident)
            elif len(ident) == _BY_SEND:  # no offset: matched by the send's span id, while it is held
                a.processings += 1
                key = (str(p.group), str(ident[2]))
                if key in a.send_runs:
                    a._repeat(ident, p.trace_id)
                else:
                    a.send_runs[key] = p.start
                    fresh.add(ident)
        self.failures(by_message)
        self.ordering(idents, fresh)
        self.paths()

    # Joins -----------------------------------------------------------------------------------

    def sender(self, send: _Send) -> _Process | None:
        """The process span a send was made in (its nearest processing ancestor), if any."""
        senders = self.senders
        if send.span_id in senders:
            return senders[send.span_id]
        found = None
        span_id = send.parent
        for _ in range(_MAX_ANCESTRY):
            if span_id is None:
                break
            found = self.by_id.get(span_id)
            if found is not None:
                break
            span_id = self.t.parents.get(span_id)
        senders[send.span_id] = found
        return found

    def origin(self, process: _Process) -> _Process:
        """The processing a retry stands for: a message on a retry topic sent while processing
        another message is that message again (followed through retries of retries)."""
        if not self.retries:
            return process
        current, seen = process, 0
        while self.a.is_retry(current.topic) and seen < _MAX_ANCESTRY:
            send = current.send
            before = self.sender(send) if send is not None else None
            if before is None:
                break
            current, seen = before, seen + 1
        return current

    def produced_ns(self, process: _Process) -> int | None:
        send = process.send
        if send is not None:
            return send.start
        if process.queue_ms is not None:
            return process.start - int(process.queue_ms * 1e6)
        return None

    def message_id(self, p: _Process) -> _Ident | None:
        if p.topic is not None and p.partition is not None and p.offset is not None:
            return (p.group, p.topic, p.partition, p.offset)
        send = p.send
        if send is not None:
            return (p.group, "send", send.span_id, send.topic, send.partition, send.offset)
        return None

    # Failures and dead letters ---------------------------------------------------------------

    def failures(self, by_message: dict[_Ident, list[_Process]]) -> None:
        a = self.a
        again: set[str] = set()  # span ids of failed processings whose message was processed again
        if self.retries:
            for p in self.t.processes:
                origin = self.origin(p)
                if origin is not p:
                    # Every failed processing on the way from the original message to this retry.
                    current = p
                    while current is not origin:
                        send = current.send
                        before = self.sender(send) if send is not None else None
                        if before is None:
                            break
                        if before.error_type is not None:
                            again.add(before.span_id)
                        current = before
        last_failed: dict[_Ident, _Process] = {}
        failed_waiting = a.failed_waiting
        for ident, runs in by_message.items():
            if len(runs) > 1:
                runs.sort(key=_start)
                for earlier in runs[:-1]:
                    if earlier.error_type is not None:
                        again.add(earlier.span_id)
            if failed_waiting:
                waiting = failed_waiting.pop(ident, None)
                if waiting is not None:  # a failure of an earlier trace, processed again here
                    a.failure_counts[waiting[0]][1] += 1
            if runs[-1].error_type is not None:
                last_failed[ident] = runs[-1]
        dead: set[str] = set()
        is_dlq = a.is_dlq
        for send in self.t.sends.values():
            if not is_dlq(send.topic):
                continue
            before = self.sender(send)
            if before is not None:
                dead.add(before.span_id)
            a.dead_lettered.append(
                DeadLetter(before.topic if before else None, str(send.topic), send.trace_id)
            )
        for p in self.t.processes:
            if p.error_type is None:
                continue
            key = (p.group, p.topic, p.error_type)
            entry = a.failure_counts.get(key)
            if entry is None:
                entry = a.failure_counts[key] = [0, 0, 0]
            entry[0] += 1
            entry[1] += p.span_id in again
            entry[2] += p.span_id in dead
        for ident, p in last_failed.items():
            if p.span_id not in again:  # may yet be processed again, in a trace read later
                failed_waiting[ident] = ((p.group, p.topic, str(p.error_type)), p.start)

    # Ordering --------------------------------------------------------------------------------

    def ordering(self, idents: dict[str, _Ident | None], fresh: set[_Ident]) -> None:
        # Each message once per group: its first successful processing (a retry's stands for it),
        # judged where it was first read (a message processed again in a later trace was judged).
        a = self.a
        chosen: dict[_Ident, tuple[_Process, _Process]] = {}
        retries = self.retries
        for p in self.t.processes:
            if p.group is None:
                continue
            if retries:
                origin = self.origin(p)
                ident = idents.get(origin.span_id) if origin.group == p.group else None
                ident = ident or idents.get(p.span_id)
            else:
                origin, ident = p, idents.get(p.span_id)
            if ident is None:
                continue
            previous = chosen.get(ident)
            if previous is None or _better(p, previous[1]):
                chosen[ident] = (origin, p)
        for ident, (origin, p) in chosen.items():
            if ident not in fresh:
                continue
            if origin.key is None or origin.topic is None:
                a.no_key += 1
                continue
            produced = self.produced_ns(origin)
            if produced is None and (origin.partition is None or origin.offset is None):
                a.no_order += 1
                continue
            a._sequence += 1
            heapq.heappush(
                a.events,
                (
                    p.start,
                    a._sequence,
                    str(p.group),
                    origin.topic,
                    origin.key,
                    origin.partition,
                    origin.offset,
                    produced,
                    origin.trace_id,
                ),
            )

    # Paths -----------------------------------------------------------------------------------

    def paths(self) -> None:
        latencies = self.a.path_latency
        for p in self.t.processes:
            send = p.send
            if send is None or send.topic is None:
                continue
            if self.sender(send) is None:  # the chain's first hop (most processings)
                hops: Sequence[tuple[_Send, _Process]] = ((send, p),)
                path = send.topic
            else:
                hops, path = self.hops(p)
            key = (path, p.group)
            found = latencies.get(key)
            if found is None:
                found = latencies[key] = (_Quantiles(), [_Quantiles() for _ in hops])
            total, per_hop = found
            # _Quantiles.add, inline: a sample per path and per hop of every processing.
            values = total.values
            values.append((p.start - hops[0][0].start) / 1e6)
            if len(values) > total.limit:
                total._fold()
            for slot, (send, consumer) in zip(per_hop, hops[-len(per_hop) :], strict=False):
                values = slot.values
                values.append(_wait_ms(send, consumer))
                if len(values) > slot.limit:
                    slot._fold()

    def hops(self, process: _Process) -> tuple[list[tuple[_Send, _Process]], str]:
        """The (send, processing) pairs from the start of the chain to ``process``, oldest first
        (the nearest :data:`_MAX_ANCESTRY`), and the path they make (the topics, as the flow metrics
        name them). A processing's upstream is worked out once per settling."""
        known = self.routes.get(process.span_id)
        if known is not None:
            return known
        nearest: list[tuple[_Send, _Process]] = []
        current: _Process | None = process
        upstream: list[tuple[_Send, _Process]] = []
        while current is not None and len(nearest) < _MAX_ANCESTRY:
            send = current.send
            if send is None or send.topic is None:
                break
            nearest.append((send, current))
            current = self.sender(send)
            if current is not None and current.span_id in self.routes:
                upstream = self.routes[current.span_id][0]
                break
        nearest.reverse()
        chain = (upstream + nearest)[-_MAX_ANCESTRY:] if upstream else nearest
        if len(chain) == 1:
            path = str(chain[0][0].topic)
        else:
            topics = [str(send.topic) for send, _ in chain]
            if len(topics) > MAX_PATH_HOPS:
                topics = [topics[0], "..", *topics[-(MAX_PATH_HOPS - 2) :]]
            path = ">".join(topics)
        self.routes[process.span_id] = route = (chain, path)
        return route


def _start(process: _Process) -> int:
    return process.start


# --- the report ---------------------------------------------------------------------------------


class _Report:
    def __init__(self, auditor: Auditor, horizon: int | None) -> None:
        self.a = auditor
        self.o = auditor.options
        self.horizon = horizon
        self.notes: list[str] = []

    def audit(self) -> Audit:
        a, o = self.a, self.o
        report = Audit(
            window_start_ns=o.since_ns if o.since_ns is not None else a.first_ns,
            window_end_ns=self.horizon,
            spans=a.spans,
            traces=a.traces,
        )
        self.note(a.no_group, "process span{s} without a consumer group: counted in failures and paths only")
        report.processings = a.processings
        report.duplicates = sorted(
            (_duplicate(ident, times, trace_id) for ident, (times, trace_id) in a.duplicates.items()),
            key=lambda d: (d.group, d.topic, d.partition or 0, d.offset or 0),
        )
        self.note(a.unknown, "processing{s} with neither offset nor send span: not checked for duplicates")
        report.ordering_violations = a.ordering_violations
        self.note(a.no_key, "processed message{s} without a key: not checked for ordering")
        self.note(
            a.no_order,
            "processed message{s} with neither offset nor production time: not checked for ordering",
        )
        self.note(
            a.unordered,
            f"processed message{{s}} read more than twice --grace ({o.grace_s:g} s) after later processings "
            "of its key: not checked for ordering",
        )
        report.unconsumed = sorted(
            a.unconsumed, key=lambda u: (u.group, u.topic, u.partition or 0, u.offset or 0, u.trace_id)
        )
        self.note(
            a.send_pending, f"send{{s}} not processed yet but within --grace ({o.grace_s:g} s): not judged"
        )
        self.note(a.send_failed, "failed send{s} (no message written): not expected to be processed")
        self.note(
            a.unwatched, "send{s} to topics no group processed in the window: not checked for consumers"
        )
        self.note(
            a.group_late,
            "send{s} judged before a group first processed their topic: checked for it only where its "
            f"processed offsets surround them (the last {JUDGED_MEMO:,} judged; {a.late_found:,} found so)",
        )
        report.failures = [
            Failure(group, topic, error_type, n, retried, dead_lettered)
            for (group, topic, error_type), (n, retried, dead_lettered) in sorted(
                a.failure_counts.items(), key=lambda item: (-item[1][0], str(item[0]))
            )
        ]
        report.dead_lettered = sorted(a.dead_lettered, key=lambda d: (str(d.topic), d.dlq_topic, d.trace_id))
        self.sagas(report)
        self.paths(report)
        self.note(a.outside, "span{s} outside the window (--since/--until) not read")
        self.note(a.filtered, "messaging span{s} on other topics than --topic not read")
        self.note(a.receives, "batch receive span{s}: only process spans count as processing")
        self.note(
            a.late,
            f"span{{s}} read more than --grace ({o.grace_s:g} s) after spans that ended later: joined only "
            "with the spans of its trace still held",
        )
        report.notes = self.notes
        return report

    def note(self, count: int, text: str) -> None:
        if count:
            self.notes.append(f"{count:,} " + text.replace("{s}", "" if count == 1 else "s"))

    def sagas(self, report: Audit) -> None:
        horizon = self.horizon if self.horizon is not None else 0
        grace = self.a.grace_ns
        stuck = [0] * len(self.o.sagas)
        pending = [0] * len(self.o.sagas)
        for index, trace_id, first in self.a.unfinished:
            if first + grace <= horizon:
                stuck[index] += 1
                report.stuck_sagas.append(StuckSaga(self.o.sagas[index].text, trace_id))
            else:
                pending[index] += 1
        for index, rule in enumerate(self.o.sagas):
            started, finished, compensated = self.a.saga_counts[index]
            report.sagas.append(
                SagaOutcome(rule.text, started, finished, compensated, stuck[index], pending[index])
            )
        report.stuck_sagas.sort(key=lambda s: (s.rule, s.trace_id))

    def paths(self, report: Audit) -> None:
        approximate = 0
        for (path, group), (total, per_hop) in self.a.path_latency.items():
            named = path.split(">")
            hop_waits = []
            for topic, slot in zip(named[-len(per_hop) :], per_hop, strict=False):
                if slot.count:
                    hop_waits.append(HopWait(topic, slot.percentile(50), slot.percentile(95)))
                approximate += slot.buckets is not None
            approximate += total.buckets is not None
            report.paths.append(
                PathLatency(
                    path,
                    group,
                    total.count,
                    total.percentile(50),
                    total.percentile(95),
                    total.percentile(99),
                    hop_waits,
                )
            )
        report.paths.sort(key=lambda p: (-p.count, p.path, str(p.group)))
        self.note(
            approximate,
            f"path or hop latency series with more than {EXACT_SAMPLES:,} samples: percentiles read from "
            "a histogram (within 1 %)",
        )


def _duplicate(ident: _Ident, times: int, trace_id: str) -> Duplicate:
    if len(ident) == _BY_SEND:  # (group, "send", send span id, topic, partition, offset)
        group, _, _, topic, partition, offset = ident
    else:  # (group, topic, partition, offset)
        group, topic, partition, offset = ident
    return Duplicate(str(group), str(topic), partition, offset, times, trace_id)  # type: ignore[arg-type]


def _better(candidate: _Process, current: _Process) -> bool:
    """Which processing of a message counts for ordering: the first that succeeded."""
    if (candidate.error_type is None) != (current.error_type is None):
        return candidate.error_type is None
    return candidate.start < current.start


def _wait_ms(send: _Send, process: _Process) -> float:
    waited = (process.start - send.end) / 1e6
    if waited >= 0:
        return waited
    if process.queue_ms is not None:
        return process.queue_ms
    return (process.start - send.start) / 1e6


def _percentile(ordered: list[float], percent: int) -> float:
    """Nearest rank of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[min(rank, len(ordered)) - 1]
