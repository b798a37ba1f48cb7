"""Build an event chain from spans: the tree by parent references, link stitching, folding.

Pure functions over the model: no I/O, no rendering.

>>> chain = build_chain(spans, "4bf92f3577b34da6a3ce929d0e0e4736")   # doctest: +SKIP
>>> chain = fold(chain)                                               # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tracing.read.model import EventChain, Hop, Span

__all__ = ["build_chain", "fold", "trace_ids"]


def trace_ids(spans: Iterable[Span]) -> list[str]:
    """The distinct trace ids among ``spans``, earliest-starting trace first."""
    first_start: dict[str, int] = {}
    for span in spans:
        if span.trace_id not in first_start or span.start_ns < first_start[span.trace_id]:
            first_start[span.trace_id] = span.start_ns
    return sorted(first_start, key=lambda t: (first_start[t], t))


def build_chain(spans: Iterable[Span], trace_id: str, *, follow_links: bool = False) -> EventChain:
    """Build the full tree of one trace, every span a node, children in start order.

    Spans whose parent is missing from the trace hang under the root, marked ``orphan``. With
    ``follow_links``, spans of *other* traces among ``spans`` that link to a span of the chain are
    stitched in under the linked span (marked ``link``), together with their own subtrees; this
    repeats, so a chain of link-only consumers is followed to its end.

    Raises ``ValueError`` when no span has this trace id.
    """
    unique = _dedupe(spans)
    own = [s for s in unique if s.trace_id == trace_id]
    if not own:
        raise ValueError(f"no span of trace {trace_id}")
    children = _children_by_parent(unique)
    own_ids = {s.span_id for s in own}
    roots = sorted((s for s in own if s.parent_id not in own_ids), key=_order)
    # Broken data can have no root at all (parent references in a loop): start from the earliest.
    main = min(roots or own, key=lambda s: (s.parent_id is not None, *_order(s)))
    placed: set[tuple[str, str]] = set()
    root = _subtree(main, children, placed)
    for other in [*roots, *sorted(own, key=_order)]:
        # Other roots, then whatever no root reaches (a loop of parent references), as orphans.
        if (other.trace_id, other.span_id) not in placed:
            orphan = _subtree(other, children, placed)
            orphan.orphan = True
            root.children.append(orphan)
    root.children.sort(key=_hop_order)
    chain = EventChain(trace_id=trace_id, root=root, spans=list(own))
    if follow_links:
        _stitch_links(chain, [s for s in unique if s.trace_id != trace_id], children, placed)
    return chain


def fold(chain: EventChain) -> EventChain:
    """Fold non-messaging spans into their nearest shown ancestor, which counts them.

    The root, messaging spans, spans in error, linked and orphaned spans are always shown: folding
    hides plumbing, never a finding.
    """
    return EventChain(trace_id=chain.trace_id, root=_refold(chain.root), spans=chain.spans)


def _refold(top: Hop) -> Hop:
    new_top = Hop(span=top.span, link=top.link, orphan=top.orphan, folded=list(top.folded))
    # (original children to place, the shown node they go under)
    stack: list[tuple[list[Hop], Hop]] = [(top.children, new_top)]
    while stack:
        children, target = stack.pop()
        for child in children:
            if _shown(child):
                node = Hop(span=child.span, link=child.link, orphan=child.orphan, folded=list(child.folded))
                target.children.append(node)
                stack.append((child.children, node))
            else:
                target.folded.append(child.span)
                target.folded.extend(child.folded)
                stack.append((child.children, target))
    for hop in new_top.walk():
        hop.children.sort(key=_hop_order)
    return new_top


def _shown(hop: Hop) -> bool:
    return hop.span.is_messaging or hop.span.error is not None or hop.link or hop.orphan


def _stitch_links(
    chain: EventChain,
    pool: list[Span],
    children: dict[tuple[str, str], list[Span]],
    placed: set[tuple[str, str]],
) -> None:
    nodes = {(h.span.trace_id, h.span.span_id): h for h in chain.hops()}
    pending = sorted(pool, key=_order)
    changed = True
    while changed:
        changed = False
        for span in pending:
            key = (span.trace_id, span.span_id)
            if key in placed:
                continue
            targets = [
                nodes[(link.trace_id, link.span_id)]
                for link in span.links
                if (link.trace_id, link.span_id) in nodes
            ]
            if not targets:
                continue
            # A batch may link to several spans of the chain: hang it under the earliest.
            target = min(targets, key=lambda h: _order(h.span))
            hop = _subtree(span, children, placed)
            hop.link = True
            target.children.append(hop)
            target.children.sort(key=_hop_order)
            for node in hop.walk():
                nodes[(node.span.trace_id, node.span.span_id)] = node
                chain.spans.append(node.span)
            changed = True


def _subtree(span: Span, children: dict[tuple[str, str], list[Span]], placed: set[tuple[str, str]]) -> Hop:
    # Iterative on purpose: a chain of thousands of hops must not hit the recursion limit.
    placed.add((span.trace_id, span.span_id))
    top = Hop(span=span)
    stack = [top]
    while stack:
        hop = stack.pop()
        for child in children.get((hop.span.trace_id, hop.span.span_id), []):
            key = (child.trace_id, child.span_id)
            if key in placed:
                continue
            placed.add(key)
            node = Hop(span=child)
            hop.children.append(node)
            stack.append(node)
    return top


def _children_by_parent(spans: list[Span]) -> dict[tuple[str, str], list[Span]]:
    children: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in spans:
        if span.parent_id is not None:
            children[(span.trace_id, span.parent_id)].append(span)
    for kids in children.values():
        kids.sort(key=_order)
    return children


def _dedupe(spans: Iterable[Span]) -> list[Span]:
    seen: dict[tuple[str, str], Span] = {}
    for span in spans:
        seen.setdefault((span.trace_id, span.span_id), span)
    return list(seen.values())


def _order(span: Span) -> tuple[int, str, str]:
    return (span.start_ns, span.trace_id, span.span_id)


def _hop_order(hop: Hop) -> tuple[int, str, str]:
    return _order(hop.span)
