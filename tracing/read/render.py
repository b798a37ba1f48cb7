"""Render an analysed event chain: a rich tree for the terminal (and SVG), or a JSON document.

Renderers only read the chain; every finding was set by :mod:`tracing.read.analyse`.
The text view is deterministic for a given console width, so tests compare it as text.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tracing.read.model import ChainSummary, EventChain, Hop

__all__ = ["chain_tree", "format_ms", "header", "legend", "render_list", "render_text", "to_json"]

CRITICAL = "●"
OTHER = "○"


def format_ms(ms: float) -> str:
    """A duration for people: ``0.42 ms``, ``1.8 ms``, ``15 ms``, ``1.52 s``, ``3m 05s``."""
    if ms < 0:
        return "-" + format_ms(-ms)
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes}m {seconds:02d}s"


def header(summary: ChainSummary) -> Text:
    """The header line: trace id, root operation, services, hops, duration, errors."""
    text = Text()
    text.append(f"trace {summary.trace_id}", style="bold")
    text.append("  ")
    text.append(summary.root_name, style="bold")
    text.append(f" ({summary.root_service})", style="cyan")
    text.append(f"  {_count(len(summary.services), 'service')}")
    text.append(f"  {_count(summary.hops, 'hop')}")
    text.append(f"  {format_ms(summary.duration_ms)}")
    text.append("  ")
    text.append(_count(summary.errors, "error"), style="bold red" if summary.errors else "green")
    return text


def legend() -> Text:
    """The line under the tree that explains the markers."""
    return Text(f"{CRITICAL} critical path  {OTHER} other span", style="bright_black")


def chain_tree(chain: EventChain) -> Tree:
    """The chain as a ``rich.tree.Tree``, one labelled node per hop."""
    tree = Tree(_label(chain.root), guide_style="bright_black")
    stack: list[tuple[Hop, Tree]] = [(chain.root, tree)]
    while stack:
        hop, node = stack.pop()
        for child in hop.children:
            stack.append((child, node.add(_label(child))))
    return tree


def render_text(chain: EventChain, console: Console, summary: ChainSummary) -> None:
    """Print the header line and the tree."""
    console.print(header(summary))
    console.print(chain_tree(chain))
    console.print(legend())


def to_json(chain: EventChain, summary: ChainSummary) -> dict[str, Any]:
    """The ``--json`` document (a contract: scripts rely on its keys)."""
    root = _node(chain.root)
    stack: list[tuple[Hop, dict[str, Any]]] = [(chain.root, root)]
    while stack:
        hop, node = stack.pop()
        for child in hop.children:
            child_node = _node(child)
            node["children"].append(child_node)
            stack.append((child, child_node))
    return {
        "trace_id": summary.trace_id,
        "services": summary.services,
        "hops": summary.hops,
        "duration_ms": round(summary.duration_ms, 3),
        "errors": summary.errors,
        "root": root,
    }


def render_list(summaries: Iterable[ChainSummary], console: Console) -> None:
    """One line per chain: start time (UTC), trace id, root operation, services, hops, duration, errors.

    Root and services share what the fixed columns leave of the console's width, cut with an ellipsis.
    """
    rows = []
    for s in summaries:
        started = _dt.datetime.fromtimestamp(s.start_ns / 1e9, _dt.UTC).strftime("%m-%d %H:%M:%S")
        rows.append((started, s.trace_id, f"{s.root_name} ({s.root_service})", ", ".join(s.services),
                     str(s.hops), format_ms(s.duration_ms), s.errors))
    # Narrow consoles drop the start time first: the trace id is what the next command needs.
    with_started = console.width >= 100
    fixed = 32 + 4 + 8 + 6 + 2 * 5 + (16 if with_started else 0)
    free = max(console.width - fixed, 20)
    root_need = max([4, *(len(r[2]) for r in rows)])
    services_need = max([8, *(len(r[3]) for r in rows)])
    root_width = min(root_need, max(free - services_need, free * 3 // 5))
    services_width = max(min(services_need, free - root_width), 8)
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    if with_started:
        table.add_column("STARTED (UTC)", no_wrap=True, width=14)
    table.add_column("TRACE ID", no_wrap=True, width=32)
    table.add_column("ROOT", no_wrap=True, overflow="ellipsis", width=root_width)
    table.add_column("SERVICES", no_wrap=True, overflow="ellipsis", width=services_width)
    table.add_column("HOPS", justify="right", no_wrap=True, width=4)
    table.add_column("DURATION", justify="right", no_wrap=True, width=8)
    table.add_column("ERRORS", justify="right", no_wrap=True, width=6)
    for started, *cells, errors in rows:
        row = [started, *cells] if with_started else cells
        table.add_row(*row, Text(str(errors), style="bold red" if errors else ""))
    console.print(table)


def _label(hop: Hop) -> Text:
    span = hop.span
    text = Text()
    if hop.critical:
        text.append(f"{CRITICAL} ", style="bold yellow")
    else:
        text.append(f"{OTHER} ", style="dim")
    text.append(span.service, style="bold cyan")
    text.append("  ")
    text.append(span.name, style="bold")
    if not span.is_messaging:
        text.append(f"  {span.kind}", style="dim")
    if span.consumer_group:
        text.append(f"  group {span.consumer_group}", style="green")
    location = _location(hop)
    if location:
        text.append(f"  {location}", style="magenta")
    text.append(f"  {format_ms(span.duration_ms)}")
    if hop.queue_ms is not None:
        where = f" in {span.topic}" if span.topic else ""
        skew = " (clock skew?)" if hop.queue_ms < 0 else ""
        text.append(f"  waited {format_ms(hop.queue_ms)}{where}{skew}", style="blue")
    if hop.folded:
        text.append(f"  +{_count(len(hop.folded), 'span')}", style="dim")
    if hop.link:
        text.append(f"  ↪ link, trace {span.trace_id}", style="bold blue")
    if hop.orphan:
        text.append("  ⚠ parent span missing", style="yellow")
    if hop.duplicate:
        text.append("  ⚠ duplicate: already processed", style="bold yellow")
    if hop.unconsumed:
        text.append("  ⚠ no consumer seen", style="bold yellow")
    error = span.error
    if error is not None:
        text.append(f"\n  ✗ {error}", style="bold red")
    return text


def _location(hop: Hop) -> str:
    span = hop.span
    if span.partition is None and span.offset is None:
        return ""
    topic = span.topic or ""
    partition = "?" if span.partition is None else str(span.partition)
    offset = "" if span.offset is None else f"@{span.offset}"
    return f"{topic}[{partition}]{offset}"


def _node(hop: Hop) -> dict[str, Any]:
    span = hop.span
    return {
        "span_id": span.span_id,
        "trace_id": span.trace_id,
        "service": span.service,
        "name": span.name,
        "kind": span.kind,
        "role": span.role,
        "topic": span.topic,
        "consumer_group": span.consumer_group,
        "partition": span.partition,
        "offset": span.offset,
        "duration_ms": round(span.duration_ms, 3),
        "queue_ms": None if hop.queue_ms is None else round(hop.queue_ms, 3),
        "error": span.error,
        "duplicate": hop.duplicate,
        "unconsumed": hop.unconsumed,
        "link": hop.link,
        "orphan": hop.orphan,
        "critical": hop.critical,
        "folded": len(hop.folded),
        "children": [],
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
