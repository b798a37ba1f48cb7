"""Analyses of an event chain, each a plain function ``(chain) -> chain`` that sets flags on its nodes.

A renderer (or a caller) picks the list it wants; :data:`PROCESSORS` is the default set.

>>> chain = analyse(fold(build_chain(spans, trace_id)))   # doctest: +SKIP
>>> summarise(chain).hops                                 # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from tracing import semconv as sc
from tracing.read.chain import fold
from tracing.read.model import PROCESS, RECEIVE, SEND, ChainSummary, EventChain, Hop, Repeats, Span

__all__ = [
    "PROCESSORS",
    "analyse",
    "consumers_of",
    "critical_path",
    "duplicates",
    "fold_plumbing",
    "fold_repeats",
    "linked_sources",
    "processors",
    "queue_times",
    "source_send",
    "summarise",
    "summarise_spans",
    "unconsumed",
]

Processor = Callable[[EventChain], EventChain]
_CONSUMING = (PROCESS, RECEIVE)


def source_send(span: Span, spans_by_id: dict[str, Span]) -> Span | None:
    """The send span a consuming span handles: its parent if that is a send, else a linked send."""
    candidates = [span.parent_id] if span.parent_id else []
    candidates += [link.span_id for link in span.links]
    for span_id in candidates:
        found = spans_by_id.get(span_id) if span_id else None
        if found is not None and found.role == SEND:
            return found
    return None


def consumers_of(send: Span, spans: Iterable[Span]) -> list[Span]:
    """Spans that consume ``send``: process spans whose parent or link is it, else receive spans."""
    return _consumers_by_send([send, *spans]).get(send.span_id, [])


def queue_times(chain: EventChain) -> EventChain:
    """Set ``queue_ms`` on consuming nodes: end of the send span to the start of the node's span.

    A send span ends when the producer serves its delivery report, which on a real broker can
    come after a fast consumer has already started: then (and when the send span is not in the
    chain) the consumer's own ``kafka.record.queue_time_ms`` (record timestamp to processing)
    is used, and failing that the time since the send started.
    """
    by_id = _by_id(chain.spans)
    for hop in chain.hops():
        if hop.span.role not in _CONSUMING:
            continue
        hop.queue_ms = _wait_ms(hop.span, source_send(hop.span, by_id))
    return chain


def _wait_ms(span: Span, send: Span | None) -> float | None:
    waited = (span.start_ns - send.end_ns) / 1e6 if send is not None else None
    if waited is None or waited < 0:
        recorded = span.attributes.get(sc.QUEUE_TIME_MS)
        if isinstance(recorded, int | float) and not isinstance(recorded, bool):
            waited = float(recorded)
        elif send is not None:
            waited = (span.start_ns - send.start_ns) / 1e6
    return waited


def linked_sources(pool: Iterable[Span]) -> Processor:
    """A step that shows where link-only consumers' events came from.

    When every poll starts its own trace (the Java agent's receive telemetry), a ``process`` span's
    only tie to its producer is a link into another trace. A consuming node whose send is not in
    the chain gets the linked send span found in ``pool`` as ``source``, and its wait from it.
    """
    sends = {(s.trace_id, s.span_id): s for s in pool if s.role == SEND}

    def step(chain: EventChain) -> EventChain:
        by_id = _by_id(chain.spans)
        for hop in chain.hops():
            if hop.span.role not in _CONSUMING or source_send(hop.span, by_id) is not None:
                continue
            for link in hop.span.links:
                send = sends.get((link.trace_id, link.span_id))
                if send is not None and send.trace_id != hop.span.trace_id:
                    hop.source = send
                    hop.queue_ms = _wait_ms(hop.span, send)
                    break
        return chain

    return step


def duplicates(chain: EventChain) -> EventChain:
    """Flag repeated processing: the same topic/partition/offset (or, lacking offsets, the same send
    span) processed again by the same consumer group (for RabbitMQ, from the same queue: a
    redelivery). The earliest is the original; later ones are flagged. Spans with no consumer group
    or queue are left alone: without it, fan-out and a duplicate look the same.
    """
    by_id = _by_id(chain.spans)
    seen: dict[tuple[object, ...], Hop] = {}
    process_hops = sorted(
        (h for h in chain.hops() if h.span.role == PROCESS), key=lambda h: (h.span.start_ns, h.span.span_id)
    )
    for hop in process_hops:
        key = _message_key(hop.span, by_id)
        if key is None:
            continue
        if key in seen:
            hop.duplicate = True
        else:
            seen[key] = hop
    return chain


def unconsumed(chain: EventChain) -> EventChain:
    """Flag send nodes that no span in the chain consumes ("no consumer seen")."""
    consumed: set[str] = set()
    for span in chain.spans:
        if span.role in _CONSUMING:
            if span.parent_id:
                consumed.add(span.parent_id)
            consumed.update(link.span_id for link in span.links)
    for hop in chain.hops():
        hop.unconsumed = hop.span.role == SEND and hop.span.span_id not in consumed
    return chain


def critical_path(chain: EventChain) -> EventChain:
    """Mark the nodes that decide when the chain ends.

    From the root, step into the child whose subtree ends last, as long as it ends after the
    current node's own work; the marked path leads to the span that finished the chain.
    """
    ends = _subtree_ends(chain.root)
    for hop in chain.hops():
        hop.critical = False
    hop = chain.root
    hop.critical = True
    while hop.children:
        last = max(hop.children, key=lambda c: (ends[id(c)], -c.span.start_ns))
        if ends[id(last)] <= hop.own_end_ns():
            break
        last.critical = True
        hop = last
    return chain


def fold_plumbing(chain: EventChain) -> EventChain:
    """Fold non-messaging spans into their nearest shown node, which counts them (see ``fold``)."""
    return fold(chain)


REPEAT_MIN = 6
"""Like siblings fold when there are at least this many of them..."""
REPEAT_SHOWN = 3
"""...and the first this many stay on show, so the tree still shows what they look like."""


def fold_repeats(chain: EventChain) -> EventChain:
    """Fold runs of like siblings (same service, operation and consumer group) into a count.

    A 5,000-way fan-out shows its first few consumers and one line for the rest, with the min,
    median and max of their waits and durations. Only siblings with nothing to report fold: a node
    whose subtree holds an error, an unconsumed send, a link, an orphan, the critical path or a
    match stays on show; duplicates fold, and the line says how many it holds. Run it after the
    other processors (it reads their flags).
    """
    for hop in chain.hops():  # top-down: a folded node's subtree is folded with it, whole
        if len(hop.children) < REPEAT_MIN:
            continue  # too few siblings to make a run (most nodes)
        groups: dict[tuple[str, str, str | None], list[Hop]] = defaultdict(list)
        for child in hop.children:
            groups[(child.span.service, child.span.name, child.span.consumer_group)].append(child)
        folded: set[int] = set()
        for members in groups.values():
            if len(members) < REPEAT_MIN:
                continue
            quiet = [m for m in members if not _has_finding(m)]
            if len(quiet) < REPEAT_MIN:
                continue
            run = quiet[REPEAT_SHOWN:]
            folded.update(id(m) for m in run)
            hop.repeats.append(_repeats(run))
        if folded:
            hop.children = [c for c in hop.children if id(c) not in folded]
    return chain


def _has_finding(top: Hop) -> bool:
    # A duplicate on its own folds (a redelivery storm would otherwise fill the screen); the fold
    # marker counts the duplicates it holds.
    return any(
        h.span.error is not None
        or (h.duplicate and h is not top)
        or h.unconsumed
        or h.link
        or h.orphan
        or h.critical
        or h.matched
        for h in top.walk()
    )


def _repeats(hops: list[Hop]) -> Repeats:
    waits = [h.queue_ms for h in hops if h.queue_ms is not None]
    durations = [h.span.duration_ms for h in hops]
    return Repeats(
        hops=hops,
        span_count=sum(1 + len(n.folded) for h in hops for n in h.walk()),
        duplicates=sum(1 for h in hops if h.duplicate),
        waits_ms=(min(waits), statistics.median(waits), max(waits)) if waits else None,
        durations_ms=(min(durations), statistics.median(durations), max(durations)),
    )


PROCESSORS: Sequence[Processor] = (queue_times, duplicates, unconsumed, critical_path)
"""The analyses every view runs."""


def processors(
    *, all_spans: bool = False, repeats: bool = False, extra: Sequence[Processor] = ()
) -> list[Processor]:
    """The steps for a view, in order: folding plumbing (unless ``all_spans``), the analyses, the
    ``extra`` ones (marking a searched message...), then folding like siblings (with ``repeats``: the
    text view does, ``--unfold`` and ``--json`` do not).
    """
    steps: list[Processor] = [] if all_spans else [fold_plumbing]
    steps += PROCESSORS
    steps += extra
    if repeats:
        steps.append(fold_repeats)
    return steps


def analyse(chain: EventChain, processors: Sequence[Processor] = PROCESSORS) -> EventChain:
    """Run each processor over the chain in turn."""
    for processor in processors:
        chain = processor(chain)
    return chain


def summarise(chain: EventChain) -> ChainSummary:
    """The header counts: services, hops (send -> process edges in the trace), duration, errors."""
    return summarise_spans(chain.spans, chain.trace_id, root=chain.root.span)


def summarise_spans(spans: Sequence[Span], trace_id: str, root: Span | None = None) -> ChainSummary:
    """:func:`summarise` straight from a trace's spans, without building its tree (for lists).

    The root is the one :func:`~tracing.read.chain.build_chain` picks: the earliest span without a
    parent in the trace.
    """
    own = [s for s in spans if s.trace_id == trace_id]
    if root is None:
        ids = {s.span_id for s in own}
        roots = [s for s in own if s.parent_id not in ids] or own
        root = min(roots, key=lambda s: (s.parent_id is not None, s.start_ns, s.trace_id, s.span_id))
    hops = sum(len(tied) for tied in _consumers_by_send(own).values())
    start = min(s.start_ns for s in spans)
    return ChainSummary(
        trace_id=trace_id,
        root_name=root.name,
        root_service=root.service,
        services=sorted({s.service for s in spans}),
        hops=hops,
        duration_ms=(max(s.end_ns for s in spans) - start) / 1e6,
        errors=sum(1 for s in spans if s.error is not None),
        start_ns=start,
    )


def _consumers_by_send(spans: Iterable[Span]) -> dict[str, list[Span]]:
    spans = list(spans)
    sends = {s.span_id for s in spans if s.role == SEND}
    tied: dict[str, dict[str, Span]] = defaultdict(dict)
    for span in spans:
        if span.role not in _CONSUMING:
            continue
        for target in {span.parent_id, *(link.span_id for link in span.links)}:
            if target in sends:
                tied[target][span.span_id] = span
    result = {}
    for send_id, consumers in tied.items():
        processing = [s for s in consumers.values() if s.role == PROCESS]
        # A batch's receive span counts only when no process span handled the message.
        result[send_id] = processing or list(consumers.values())
    return result


def _message_key(span: Span, by_id: dict[str, Span]) -> tuple[object, ...] | None:
    # RabbitMQ has no groups: a queue's consumers share its messages as a group's members do.
    group = span.consumer_group or span.queue
    if group is None:
        return None
    if span.partition is not None and span.offset is not None and span.topic is not None:
        return ("offset", group, span.topic, span.partition, span.offset)
    send = source_send(span, by_id)
    if send is not None:
        return ("send", group, send.span_id)
    return None


def _by_id(spans: Iterable[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def _subtree_ends(root: Hop) -> dict[int, int]:
    ends: dict[int, int] = {}
    for hop in reversed(list(root.walk())):  # children before parents
        end = hop.own_end_ns()
        for child in hop.children:
            child_end = ends[id(child)]
            if child_end > end:
                end = child_end
        ends[id(hop)] = end
    return ends
