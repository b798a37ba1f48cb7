"""Finding chains: which traces to list, which hold a given message, and searching Jaeger for them.

Pure selection over spans, plus the Jaeger searches that fetch them (through :class:`JaegerClient`).
The CLI only passes its options in.

>>> found = list_chains(read_file("spans.jsonl"), ChainFilter(message=MessageQuery(key="order-42")))
...                                                                          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tracing import semconv as sc
from tracing.read.analyse import Processor
from tracing.read.load import JaegerClient, SpanFacts, TraceRef, resolve, span_facts
from tracing.read.model import PROCESS, RECEIVE, SEND, ChainSummary, EventChain, Span

__all__ = [
    "ChainFilter",
    "ChainList",
    "MessageQuery",
    "find_trace_in_jaeger",
    "is_chain",
    "linking_candidates",
    "list_chains",
    "list_chains_facts",
    "mark_matches",
    "needs_spans",
    "search_jaeger",
    "search_window",
]

# With --follow-links from Jaeger: how long after the chain ends a linked trace may start, and how
# many traces to scan per service. Jaeger cannot search by link, so this is a bounded scan.
LINK_WINDOW_NS = 3600 * 10**9
LINK_SCAN_LIMIT = 500
# Jaeger searches one service per request: this many requests at a time.
SEARCH_CONCURRENCY = 8
# A trace id prefix is looked for among each service's traces of this window, at most this many.
PREFIX_WINDOW_NS = 2 * 86400 * 10**9
PREFIX_SCAN_LIMIT = 1000


@dataclass(frozen=True)
class MessageQuery:
    """A Kafka message as users name it: key, topic/partition/offset, consumer group (any subset).

    >>> MessageQuery(topic="orders", partition=3, offset=1812).jaeger_tags()
    {'messaging.destination.name': 'orders', 'messaging.destination.partition.id': '3', \
'messaging.kafka.offset': '1812'}
    """

    key: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    group: str | None = None
    span_id: str | None = None
    """A span named by a ``traceparent`` or a Jaeger URL's ``uiFind``."""

    @property
    def empty(self) -> bool:
        return all(
            v is None for v in (self.key, self.topic, self.partition, self.offset, self.group, self.span_id)
        )

    @property
    def names_a_message(self) -> bool:
        """True when it asks for a message (not just a span id)."""
        return any(v is not None for v in (self.key, self.topic, self.partition, self.offset, self.group))

    def matches(self, span: Span) -> bool:
        """True for a messaging span of that message (every given field equal), or the named span."""
        if self.span_id is not None and span.span_id == self.span_id:
            return True
        if not self.names_a_message or not span.is_messaging:
            return False
        return (
            (self.key is None or span.key == self.key)
            and (self.topic is None or span.topic == self.topic)
            and (self.partition is None or span.partition == self.partition)
            and (self.offset is None or span.offset == self.offset)
            and (self.group is None or span.consumer_group == self.group)
        )

    def jaeger_tags(self) -> dict[str, str]:
        """The tag search Jaeger runs for it: the attributes the wrappers record, as strings."""
        tags = {
            sc.KAFKA_KEY: self.key,
            sc.DESTINATION_NAME: self.topic,
            sc.PARTITION: None if self.partition is None else str(self.partition),
            sc.KAFKA_OFFSET: None if self.offset is None else str(self.offset),
            sc.CONSUMER_GROUP: self.group,
        }
        return {k: v for k, v in tags.items() if v is not None}


def mark_matches(query: MessageQuery) -> Processor:
    """A processor that flags the nodes showing the message (or span) ``query`` names."""

    def mark(chain: EventChain) -> EventChain:
        for hop in chain.hops():
            hop.matched = query.matches(hop.span)
        return chain

    return mark


@dataclass(frozen=True)
class ChainFilter:
    """What ``list`` and ``find`` keep. By default only chains: traces with a send -> process hop,
    or an error; ``include_all`` keeps the rest too (a batch consumer's receive-only traces...).
    """

    service: str | None = None
    topic: str | None = None
    errors: bool = False
    since_ns: int | None = None
    message: MessageQuery = field(default_factory=MessageQuery)
    include_all: bool = False


@dataclass(frozen=True)
class ChainList:
    """The chains to show (newest first), and what was left out, counted."""

    shown: list[ChainSummary]
    matching: int
    """Traces that passed the filter (``shown`` is the newest ``limit`` of them)."""
    hidden: int
    """Traces that passed every other filter but are not chains (no hop, no error)."""
    traces: int
    """Traces looked at."""


def is_chain(summary: ChainSummary) -> bool:
    """A trace worth listing by default: at least one send -> process hop, or an error."""
    return summary.hops > 0 or summary.errors > 0


def list_chains(spans: Iterable[Span], chain_filter: ChainFilter, limit: int | None = None) -> ChainList:
    """Summaries of the traces among ``spans`` that pass ``chain_filter``, newest first.

    ``spans`` is read once, as it comes: each trace keeps a small digest (its counts, its send
    ids and consumer edges), not its spans, so a file of any size is listed in little memory.
    """
    digests: dict[str, _Digest] = {}
    f = chain_filter
    topic = f.topic
    message = None if f.message.empty else f.message
    for span in spans:
        digest = digests.get(span.trace_id)
        if digest is None:
            digest = digests[span.trace_id] = _Digest()
        digest.add(span_facts(span))
        if topic and not digest.topic_seen and span.topic == topic:
            digest.topic_seen = True
        if message is not None and not digest.message_seen and message.matches(span):
            digest.message_seen = True
    return _select(digests, f, limit)


def needs_spans(chain_filter: ChainFilter) -> bool:
    """True when the filter reads more of a span than its :data:`SpanFacts` (a topic, a message)."""
    return bool(chain_filter.topic) or not chain_filter.message.empty


def list_chains_facts(
    facts: Iterable[SpanFacts], chain_filter: ChainFilter, limit: int | None = None
) -> ChainList:
    """:func:`list_chains` from :data:`SpanFacts` (what :func:`iter_file_facts` reads), for a filter
    that does not :func:`need the spans <needs_spans>`: the same answer, a few times faster."""
    if needs_spans(chain_filter):
        raise ValueError("a topic or message filter needs the spans: use list_chains")
    digests: dict[str, _Digest] = {}
    for fact in facts:
        digest = digests.get(fact[0])
        if digest is None:
            digest = digests[fact[0]] = _Digest()
        digest.add(fact)
    return _select(digests, chain_filter, limit)


def _select(digests: dict[str, _Digest], f: ChainFilter, limit: int | None) -> ChainList:
    # Filtered and ordered on the digests' own counts; a summary is made only for the rows shown
    # (the same tests as on the summaries: is_chain is hops or errors).
    kept: list[tuple[int, str, _Digest]] = []
    hidden = 0
    for trace_id, digest in digests.items():
        if f.topic and not digest.topic_seen:
            continue
        if not f.message.empty and not digest.message_seen:
            continue
        if f.service and f.service not in digest.services:
            continue
        if f.errors and not digest.errors:
            continue
        if f.since_ns is not None and digest.start < f.since_ns:
            continue
        if not f.include_all and not digest.errors and not digest.hops():
            hidden += 1
            continue
        kept.append((digest.start, trace_id, digest))
    kept.sort(key=_newest_first, reverse=True)
    shown = kept[:limit] if limit is not None else kept
    return ChainList(
        shown=[digest.summary(trace_id) for _, trace_id, digest in shown],
        matching=len(kept),
        hidden=hidden,
        traces=len(digests),
    )


def _newest_first(row: tuple[int, str, _Digest]) -> tuple[int, str]:
    return row[0], row[1]


class _Digest:
    """What a trace's summary needs, gathered span by span from their :data:`SpanFacts`."""

    __slots__ = (
        "start",
        "end",
        "services",
        "errors",
        "root",
        "parented",
        "sends",
        "edges",
        "topic_seen",
        "message_seen",
    )

    def __init__(self) -> None:
        self.start = 2**63
        self.end = -(2**63)
        self.services: set[str] = set()
        self.errors = 0
        self.root: tuple[int, str, str, str] | None = None  # earliest span without a parent
        # Until a span without a parent turns up: (start, span id, parent id, name, service) of the
        # others, to find the root the way build_chain does (a parent missing from the trace).
        self.parented: list[tuple[int, str, str, str, str]] | None = []
        self.sends: set[str] = set()
        self.edges: list[tuple[str, str, bool]] = []  # (send span id, consumer span id, is a process)
        self.topic_seen = False
        self.message_seen = False

    def add(self, fact: SpanFacts) -> None:
        _, span_id, parent_id, name, service, start, end, error, role, linked = fact
        if start < self.start:
            self.start = start
        if end > self.end:
            self.end = end
        self.services.add(service)
        if error:
            self.errors += 1
        if parent_id is None:
            candidate = (start, span_id, name, service)
            if self.root is None or candidate < self.root:
                self.root = candidate
            self.parented = None
        elif self.parented is not None:
            self.parented.append((start, span_id, parent_id, name, service))
        if role == SEND:
            self.sends.add(span_id)
        elif role == PROCESS or role == RECEIVE:
            is_process = role == PROCESS
            if linked:
                for target in {parent_id, *linked}:
                    if target is not None:
                        self.edges.append((target, span_id, is_process))
            elif parent_id is not None:
                self.edges.append((parent_id, span_id, is_process))

    def hops(self) -> int:
        """Send -> consumer edges within the trace, each consumer of a send counted once."""
        if not self.edges or not self.sends:
            return 0
        tied: dict[str, dict[str, bool]] = defaultdict(dict)
        for target, consumer, is_process in self.edges:
            if target in self.sends:
                tied[target][consumer] = is_process
        # A batch's receive span counts only when no process span handled the message.
        return sum(sum(kinds.values()) or len(kinds) for kinds in tied.values())

    def summary(self, trace_id: str) -> ChainSummary:
        if self.root is not None:
            _, _, root_name, root_service = self.root
        else:
            parented = self.parented or []
            ids = {p[1] for p in parented}
            orphans = [p for p in parented if p[2] not in ids] or parented
            _, _, _, root_name, root_service = min(orphans)
        return ChainSummary(
            trace_id=trace_id,
            root_name=root_name,
            root_service=root_service,
            services=sorted(self.services),
            hops=self.hops(),
            duration_ms=(self.end - self.start) / 1e6,
            errors=self.errors,
            start_ns=self.start,
        )


# --- Jaeger searches ------------------------------------------------------------------------------


def search_jaeger(
    client: JaegerClient,
    services: list[str],
    start_ns: int,
    end_ns: int,
    limit: int,
    tags: Mapping[str, str] | None = None,
) -> list[Span]:
    """The spans of every service's traces in the window, several services searched at once."""
    if not services:
        return []
    with ThreadPoolExecutor(max_workers=min(SEARCH_CONCURRENCY, len(services))) as pool:
        found = pool.map(lambda s: client.search(s, start_ns, end_ns, limit=limit, tags=tags), services)
        return [span for spans in found for span in spans]


def search_window(
    client: JaegerClient, start_ns: int, end_ns: int, limit: int
) -> tuple[list[Span], list[str]]:
    """Every trace any service has in the window, each trace once (a trace crossing five services is
    in five services' answers), and the services whose answer held ``limit`` traces: their older
    traces in the window were not returned.
    """
    services = client.services()
    if not services:
        return [], []
    with ThreadPoolExecutor(max_workers=min(SEARCH_CONCURRENCY, len(services))) as pool:
        answers = list(pool.map(lambda s: client.search(s, start_ns, end_ns, limit=limit), services))
    seen: set[str] = set()
    spans: list[Span] = []
    full: list[str] = []
    for service, answer in zip(services, answers, strict=True):
        fresh = {s.trace_id for s in answer} - seen
        if len({s.trace_id for s in answer}) >= limit:
            full.append(service)
        spans.extend(s for s in answer if s.trace_id in fresh)
        seen |= fresh
    return spans, full


def linking_candidates(client: JaegerClient, spans: list[Span]) -> list[Span]:
    """Spans of traces that may link to this chain: every service's traces started in its window."""
    start = min(s.start_ns for s in spans)
    end = min(max(s.end_ns for s in spans) + LINK_WINDOW_NS, time.time_ns())
    return search_jaeger(client, client.services(), start, end, limit=LINK_SCAN_LIMIT)


def find_trace_in_jaeger(
    client: JaegerClient, ref: TraceRef, now_ns: Callable[[], int] = time.time_ns
) -> str:
    """The full id of the trace ``ref`` names, for digits that are not a trace Jaeger holds: the one
    recent trace whose id starts with them (Jaeger has no prefix search: recent traces are scanned).
    """
    if ref.prefix is None:
        return ref.trace_id
    end = now_ns()
    spans = search_jaeger(client, client.services(), end - PREFIX_WINDOW_NS, end, limit=PREFIX_SCAN_LIMIT)
    return resolve(ref, {s.trace_id for s in spans}, f"Jaeger at {client.url} (traces of the last 2 days)")
