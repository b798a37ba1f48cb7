"""Audit many event chains at once: ordering, duplicates, unconsumed events, failures, sagas, paths.

A tree shows one chain; the problems that make event-driven systems hard show only across many.
:class:`Auditor` reads spans one at a time, in any order, and keeps no span: each messaging span
leaves a few numbers (ids, topic, partition, offset, key, group, times) and every other span only
its parent's id; the findings are worked out from those at the end. Pure functions over spans, no
I/O: loading and rendering are the other modules' business.

>>> report = audit(iter_file("spans.jsonl"), AuditOptions(sagas=(parse_saga("orders:shipped"),)))
...                                                                       # doctest: +SKIP
>>> report.duplicates, report.unconsumed                                  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tracing import semconv as sc
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
_EVENT_TYPE_KEYS = (sc.CLOUDEVENTS_EVENT_TYPE, sc.APP_EVENT_TYPE)


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


class _Send:
    __slots__ = ("trace_id", "topic", "partition", "offset", "start", "end", "parent", "failed")

    def __init__(self, span: Span) -> None:
        self.trace_id = span.trace_id
        self.topic = span.topic
        self.partition = span.partition
        self.offset = span.offset
        self.start = span.start_ns
        self.end = span.end_ns
        self.parent = span.parent_id
        self.failed = span.error is not None


class _Process:
    __slots__ = (
        "span_id",
        "trace_id",
        "parents",
        "group",
        "topic",
        "partition",
        "offset",
        "key",
        "start",
        "queue_ms",
        "error_type",
    )

    def __init__(self, span: Span) -> None:
        self.span_id = span.span_id
        self.trace_id = span.trace_id
        # The send this processes: the parent, else a linked span (a link-only consumer).
        parents = [span.parent_id] if span.parent_id else []
        self.parents = tuple(parents + [link.span_id for link in span.links])
        self.group = span.consumer_group
        self.topic = span.topic
        self.partition = span.partition
        self.offset = span.offset
        self.key = span.key
        self.start = span.start_ns
        recorded = span.attributes.get(sc.QUEUE_TIME_MS)
        self.queue_ms = (
            float(recorded) if isinstance(recorded, int | float) and not isinstance(recorded, bool) else None
        )
        self.error_type = _error_type(span) if span.error is not None else None


def _error_type(span: Span) -> str:
    value = span.attributes.get(sc.ERROR_TYPE)
    if value:
        return str(value)
    for event in reversed(span.events):
        if event.name == "exception" and event.attributes.get(sc.EXCEPTION_TYPE):
            return str(event.attributes[sc.EXCEPTION_TYPE])
    return "error"


def _event_type(span: Span) -> str | None:
    for key in _EVENT_TYPE_KEYS:
        value = span.attributes.get(key)
        if value is not None:
            return str(value)
    return None


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


class Auditor:
    """Reads spans one at a time (:meth:`add`), then works out the findings (:meth:`result`)."""

    def __init__(self, options: AuditOptions | None = None) -> None:
        self.options = options or AuditOptions()
        self.on_topics = _TopicPatterns(self.options.topics)
        self.spans = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.trace_ids: set[str] = set()
        self.sends: dict[str, _Send] = {}
        self.processes: list[_Process] = []
        self.parents: dict[str, str] = {}  # other spans: span id -> parent id (to find a send's processing)
        # Sagas: trace -> per rule [earliest START, END seen, COMPENSATION seen].
        self.sagas: dict[str, list[list[int | bool | None]]] = {}
        self.outside = 0
        self.receives = 0
        self.filtered = 0

    def add(self, span: Span) -> None:
        """Take one span into account."""
        o = self.options
        start = span.start_ns
        if (o.since_ns is not None and start < o.since_ns) or (o.until_ns is not None and start > o.until_ns):
            self.outside += 1
            return
        role = span.role
        if o.topics and role is not None and not self.on_topics(span.topic):
            self.filtered += 1
            return
        self.spans += 1
        self.trace_ids.add(span.trace_id)
        if self.first_ns is None or start < self.first_ns:
            self.first_ns = start
        if self.last_ns is None or span.end_ns > self.last_ns:
            self.last_ns = span.end_ns
        if role == SEND:
            self.sends[span.span_id] = _Send(span)
        elif role == PROCESS:
            self.processes.append(_Process(span))
        else:
            if role == RECEIVE:
                self.receives += 1
            if span.parent_id is not None:
                self.parents[span.span_id] = span.parent_id
        if o.sagas and role is not None:
            self._saga_step(span)

    def _saga_step(self, span: Span) -> None:
        topic, event_type = span.topic, _event_type(span)
        state = self.sagas.get(span.trace_id)
        for index, rule in enumerate(self.options.sagas):
            hits = (
                rule.start.matches(topic, event_type),
                rule.end.matches(topic, event_type),
                rule.compensation is not None and rule.compensation.matches(topic, event_type),
            )
            if not any(hits):
                continue
            if state is None:
                state = self.sagas[span.trace_id] = [[None, False, False] for _ in self.options.sagas]
            entry = state[index]
            first = entry[0]
            if hits[0] and (first is None or span.start_ns < int(first)):
                entry[0] = span.start_ns
            entry[1] = entry[1] or hits[1]
            entry[2] = entry[2] or hits[2]

    def result(self) -> Audit:
        """The findings over every span added so far."""
        return _Findings(self).audit()


def audit(spans: Iterable[Span], options: AuditOptions | None = None) -> Audit:
    """Audit every span of ``spans`` (read once, as it comes)."""
    auditor = Auditor(options)
    for span in spans:
        auditor.add(span)
    return auditor.result()


# --- working out the findings -------------------------------------------------------------------


class _Findings:
    def __init__(self, auditor: Auditor) -> None:
        self.a = auditor
        self.o = auditor.options
        self.by_id = {p.span_id: p for p in auditor.processes}
        self.horizon = (
            self.o.horizon_ns
            if self.o.horizon_ns is not None
            else self.o.until_ns
            if self.o.until_ns is not None
            else auditor.last_ns
        )
        self.grace_ns = int(self.o.grace_s * 1e9)
        self.is_retry = _TopicPatterns(self.o.retry)
        self.is_dlq = _TopicPatterns(self.o.dlq)
        self.notes: list[str] = []
        self._origin: dict[str, tuple[_Process, int]] = {}

    def audit(self) -> Audit:
        a = self.a
        report = Audit(
            window_start_ns=self.o.since_ns if self.o.since_ns is not None else a.first_ns,
            window_end_ns=self.horizon,
            spans=a.spans,
            traces=len(a.trace_ids),
        )
        grouped = [p for p in a.processes if p.group is not None]
        if len(grouped) < len(a.processes):
            self.note(
                len(a.processes) - len(grouped),
                "process span{s} without a consumer group: counted in failures and paths only",
            )
        self.duplicates(report, grouped)
        self.ordering(report, grouped)
        self.unconsumed(report, grouped)
        self.failures(report)
        self.sagas(report)
        self.paths(report)
        self.note(a.outside, "span{s} outside the window (--since/--until) not read")
        self.note(a.filtered, "messaging span{s} on other topics than --topic not read")
        self.note(a.receives, "batch receive span{s}: only process spans count as processing")
        report.notes = self.notes
        return report

    def note(self, count: int, text: str) -> None:
        if count:
            self.notes.append(f"{count:,} " + text.replace("{s}", "" if count == 1 else "s"))

    # Joins -----------------------------------------------------------------------------------

    def send_of(self, process: _Process) -> _Send | None:
        for span_id in process.parents:
            found = self.a.sends.get(span_id)
            if found is not None:
                return found
        return None

    def sender(self, send: _Send) -> _Process | None:
        """The process span a send was made in (its nearest processing ancestor), if any."""
        span_id = send.parent
        for _ in range(_MAX_ANCESTRY):
            if span_id is None:
                return None
            found = self.by_id.get(span_id)
            if found is not None:
                return found
            span_id = self.a.parents.get(span_id)
        return None

    def origin(self, process: _Process) -> _Process:
        """The processing a retry stands for: a message on a retry topic sent while processing
        another message is that message again (followed through retries of retries)."""
        current, seen = process, 0
        while self.is_retry(current.topic) and seen < _MAX_ANCESTRY:
            send = self.send_of(current)
            before = self.sender(send) if send is not None else None
            if before is None:
                break
            current, seen = before, seen + 1
        return current

    def produced_ns(self, process: _Process) -> int | None:
        send = self.send_of(process)
        if send is not None:
            return send.start
        if process.queue_ms is not None:
            return process.start - int(process.queue_ms * 1e6)
        return None

    # Duplicates ------------------------------------------------------------------------------

    def duplicates(self, report: Audit, grouped: list[_Process]) -> None:
        seen: dict[tuple[object, ...], list[_Process]] = defaultdict(list)
        unknown = 0
        for p in grouped:
            key = self.message_id(p)
            if key is None:
                unknown += 1
                continue
            seen[key].append(p)
        report.processings = len(grouped) - unknown
        for runs in seen.values():
            if len(runs) > 1:
                first = min(runs, key=lambda p: p.start)
                report.duplicates.append(
                    Duplicate(
                        str(first.group),
                        str(first.topic),
                        first.partition,
                        first.offset,
                        len(runs),
                        first.trace_id,
                    )
                )
        report.duplicates.sort(key=lambda d: (d.group, d.topic, d.partition or 0, d.offset or 0))
        self.note(unknown, "processing{s} with neither offset nor send span: not checked for duplicates")

    def message_id(self, p: _Process) -> tuple[object, ...] | None:
        if p.topic is not None and p.partition is not None and p.offset is not None:
            return (p.group, p.topic, p.partition, p.offset)
        for span_id in p.parents:
            if span_id in self.a.sends:
                return (p.group, "send", span_id)
        return None

    # Ordering --------------------------------------------------------------------------------

    def ordering(self, report: Audit, grouped: list[_Process]) -> None:
        # Each message once per group: its first successful processing (a retry's stands for it).
        chosen: dict[tuple[object, ...], tuple[_Process, _Process]] = {}
        for p in grouped:
            origin = self.origin(p)
            ident = self.message_id(origin) if origin.group == p.group else None
            ident = ident or self.message_id(p)
            if ident is None:
                continue
            previous = chosen.get(ident)
            if previous is None or _better(p, previous[1]):
                chosen[ident] = (origin, p)
        by_key: dict[tuple[str, str, str], list[tuple[int, int | None, int | None, int | None, str]]]
        by_key = defaultdict(list)
        no_key = no_order = 0
        for origin, p in chosen.values():
            if origin.key is None or origin.topic is None:
                no_key += 1
                continue
            produced = self.produced_ns(origin)
            if produced is None and (origin.partition is None or origin.offset is None):
                no_order += 1
                continue
            by_key[(str(p.group), origin.topic, origin.key)].append(
                (p.start, origin.partition, origin.offset, produced, origin.trace_id)
            )
        for (group, topic, key), events in by_key.items():
            if len(events) < 2:
                continue
            events.sort(key=lambda e: e[0])
            # Per partition: the highest offset and the latest production processed so far.
            top: dict[int | None, tuple[int | None, str | None, int | None, str | None]] = {}
            for _, partition, offset, produced, trace_id in events:
                overtaker = None
                mine = top.get(partition)
                if partition is not None and offset is not None and mine and mine[0] is not None:
                    if mine[0] > offset:
                        overtaker = mine[1]
                if overtaker is None and produced is not None:
                    for other, (_, _, latest, latest_trace) in top.items():
                        if (
                            (other != partition or partition is None)
                            and latest is not None
                            and latest > produced
                        ):
                            overtaker = latest_trace
                            break
                if overtaker is not None:
                    report.ordering_violations.append(
                        OrderingViolation(group, topic, key, trace_id, overtaker)
                    )
                high, high_trace, late, late_trace = mine or (None, None, None, None)
                if offset is not None and (high is None or offset > high):
                    high, high_trace = offset, trace_id
                if produced is not None and (late is None or produced > late):
                    late, late_trace = produced, trace_id
                top[partition] = (high, high_trace, late, late_trace)
        self.note(no_key, "processed message{s} without a key: not checked for ordering")
        self.note(
            no_order, "processed message{s} with neither offset nor production time: not checked for ordering"
        )

    # Unconsumed ------------------------------------------------------------------------------

    def unconsumed(self, report: Audit, grouped: list[_Process]) -> None:
        consumers: dict[str, set[str]] = defaultdict(set)
        done: set[tuple[object, ...]] = set()
        for p in grouped:
            if p.topic is not None:
                consumers[p.topic].add(str(p.group))
            if p.topic is not None and p.partition is not None and p.offset is not None:
                done.add((p.group, p.topic, p.partition, p.offset))
            for parent in p.parents:
                done.add((p.group, parent))
        pending = failed = unwatched = 0
        horizon = self.horizon if self.horizon is not None else 0
        for span_id, send in self.a.sends.items():
            groups = consumers.get(send.topic or "")
            if not groups:
                unwatched += 1
                continue
            if send.failed:
                failed += 1
                continue
            for group in sorted(groups):
                if (group, span_id) in done or (group, send.topic, send.partition, send.offset) in done:
                    continue
                if send.start + self.grace_ns > horizon:
                    pending += 1
                    continue
                report.unconsumed.append(
                    Unconsumed(group, str(send.topic), send.partition, send.offset, send.trace_id)
                )
        report.unconsumed.sort(key=lambda u: (u.group, u.topic, u.partition or 0, u.offset or 0, u.trace_id))
        self.note(
            pending, f"send{{s}} not processed yet but within --grace ({self.o.grace_s:g} s): not judged"
        )
        self.note(failed, "failed send{s} (no message written): not expected to be processed")
        self.note(unwatched, "send{s} to topics no group processed in the window: not checked for consumers")

    # Failures and dead letters ---------------------------------------------------------------

    def failures(self, report: Audit) -> None:
        again: set[str] = set()  # span ids of failed processings whose message was processed again
        by_message: dict[tuple[object, ...], list[_Process]] = defaultdict(list)
        for p in self.a.processes:
            ident = self.message_id(p) if p.group is not None else None
            if ident is not None:
                by_message[ident].append(p)
            origin = self.origin(p)
            if origin is not p:
                # Every failed processing on the way from the original message to this retry.
                current = p
                while current is not origin:
                    send = self.send_of(current)
                    before = self.sender(send) if send is not None else None
                    if before is None:
                        break
                    if before.error_type is not None:
                        again.add(before.span_id)
                    current = before
        for runs in by_message.values():
            runs.sort(key=lambda p: p.start)
            for earlier in runs[:-1]:
                if earlier.error_type is not None:
                    again.add(earlier.span_id)
        dead: set[str] = set()
        for send in self.a.sends.values():
            if not self.is_dlq(send.topic):
                continue
            before = self.sender(send)
            if before is not None:
                dead.add(before.span_id)
            report.dead_lettered.append(
                DeadLetter(before.topic if before else None, str(send.topic), send.trace_id)
            )
        counts: dict[tuple[str | None, str | None, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for p in self.a.processes:
            if p.error_type is None:
                continue
            entry = counts[(p.group, p.topic, p.error_type)]
            entry[0] += 1
            entry[1] += p.span_id in again
            entry[2] += p.span_id in dead
        report.failures = [
            Failure(group, topic, error_type, n, retried, dead_lettered)
            for (group, topic, error_type), (n, retried, dead_lettered) in sorted(
                counts.items(), key=lambda item: (-item[1][0], str(item[0]))
            )
        ]
        report.dead_lettered.sort(key=lambda d: (str(d.topic), d.dlq_topic, d.trace_id))

    # Sagas -----------------------------------------------------------------------------------

    def sagas(self, report: Audit) -> None:
        horizon = self.horizon if self.horizon is not None else 0
        for index, rule in enumerate(self.o.sagas):
            started = finished = compensated = stuck = pending = 0
            for trace_id, states in self.a.sagas.items():
                first, ended, undone = states[index]
                if first is None:
                    continue
                started += 1
                if ended:
                    finished += 1
                elif undone:
                    compensated += 1
                elif int(first) + self.grace_ns <= horizon:
                    stuck += 1
                    report.stuck_sagas.append(StuckSaga(rule.text, trace_id))
                else:
                    pending += 1
            report.sagas.append(SagaOutcome(rule.text, started, finished, compensated, stuck, pending))
        report.stuck_sagas.sort(key=lambda s: (s.rule, s.trace_id))

    # Paths -----------------------------------------------------------------------------------

    def paths(self, report: Audit) -> None:
        latencies: dict[tuple[str, str | None], list[float]] = defaultdict(list)
        waits: dict[tuple[str, str | None], list[list[float]]] = {}
        for p in self.a.processes:
            hops = self.hops(p)
            if hops is None:
                continue
            topics = [str(send.topic) for send, _ in hops]
            if len(topics) > MAX_PATH_HOPS:
                topics = [topics[0], "..", *topics[-(MAX_PATH_HOPS - 2) :]]
            key = (">".join(topics), p.group)
            latencies[key].append((p.start - hops[0][0].start) / 1e6)
            per_hop = waits.setdefault(key, [[] for _ in hops])
            for slot, (send, consumer) in zip(per_hop, hops[-len(per_hop) :], strict=False):
                wait = _wait_ms(send, consumer)
                if wait is not None:
                    slot.append(wait)
        for (path, group), values in latencies.items():
            values.sort()
            named = path.split(">")
            hop_waits = []
            for topic, slot in zip(named[-len(waits[(path, group)]) :], waits[(path, group)], strict=False):
                slot.sort()
                if slot:
                    hop_waits.append(HopWait(topic, _percentile(slot, 50), _percentile(slot, 95)))
            report.paths.append(
                PathLatency(
                    path,
                    group,
                    len(values),
                    _percentile(values, 50),
                    _percentile(values, 95),
                    _percentile(values, 99),
                    hop_waits,
                )
            )
        report.paths.sort(key=lambda p: (-p.count, p.path, str(p.group)))

    def hops(self, process: _Process) -> list[tuple[_Send, _Process]] | None:
        """The (send, processing) pairs from the start of the chain to ``process``, oldest first."""
        chain: list[tuple[_Send, _Process]] = []
        current: _Process | None = process
        while current is not None and len(chain) < _MAX_ANCESTRY:
            send = self.send_of(current)
            if send is None or send.topic is None:
                break
            chain.append((send, current))
            current = self.sender(send)
        chain.reverse()
        return chain or None


def _better(candidate: _Process, current: _Process) -> bool:
    """Which processing of a message counts for ordering: the first that succeeded."""
    if (candidate.error_type is None) != (current.error_type is None):
        return candidate.error_type is None
    return candidate.start < current.start


def _wait_ms(send: _Send, process: _Process) -> float | None:
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
