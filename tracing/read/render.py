"""Render an analysed event chain: a rich tree for the terminal (and SVG), or a JSON document.

Renderers only read the chain; every finding was set by :mod:`tracing.read.analyse`.
The text view is deterministic for a given console width, so tests compare it as text.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tracing.read.model import ChainSummary, EventChain, Hop

__all__ = ["Flow", "chain_tree", "format_ms", "header", "legend", "render_list", "render_text", "to_json"]

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


class Flow:
    """Items laid out on a line two spaces apart; an item that does not fit moves whole to the next
    line (indented), so a narrow terminal never splits "waited 15 ms in orders" in two.
    Lines in ``after`` follow on their own (an error message).
    """

    def __init__(self, items: list[Text], after: Iterable[Text] = (), indent: int = 2) -> None:
        self.items = items
        self.after = list(after)
        self.indent = indent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        line, fresh = Text(), True
        for item in self.items:
            if not fresh and line.cell_len + 2 + item.cell_len > width:
                yield line
                line, fresh = Text(" " * self.indent), True
            if not fresh:
                line.append("  ")
            line.append_text(item)
            fresh = False
        yield line
        yield from self.after

    @property
    def plain(self) -> str:
        """The text on one line, for logs and assertions."""
        return "  ".join(i.plain for i in self.items) + "".join("\n" + t.plain for t in self.after)


def header(summary: ChainSummary) -> Flow:
    """The header line: trace id, root operation, services, hops, duration, errors."""
    return Flow(
        [
            Text(f"trace {summary.trace_id}", style="bold"),
            Text(summary.root_name, style="bold"),
            Text(_count(len(summary.services), "service")),
            Text(_count(summary.hops, "hop")),
            Text(format_ms(summary.duration_ms)),
            Text(_count(summary.errors, "error"), style="bold red" if summary.errors else "green"),
        ]
    )


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
        rows.append(
            (
                started,
                s.trace_id,
                f"{s.root_name} ({s.root_service})",
                ", ".join(s.services),
                str(s.hops),
                format_ms(s.duration_ms),
                s.errors,
            )
        )
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


def _label(hop: Hop) -> Flow:
    span = hop.span
    first = Text(
        f"{CRITICAL} " if hop.critical else f"{OTHER} ", style="bold yellow" if hop.critical else "dim"
    )
    first.append(span.service, style="bold cyan")
    items = [first, Text(span.name, style="bold")]
    if not span.is_messaging:
        items.append(Text(span.kind, style="dim"))
    if span.consumer_group:
        items.append(Text(f"group {span.consumer_group}", style="green"))
    location = _location(hop)
    if location:
        items.append(Text(location, style="magenta"))
    items.append(Text(format_ms(span.duration_ms)))
    if hop.queue_ms is not None:
        where = f" in {span.topic}" if span.topic else ""
        skew = " (clock skew?)" if hop.queue_ms < 0 else ""
        items.append(Text(f"waited {format_ms(hop.queue_ms)}{where}{skew}", style="blue"))
    if hop.folded:
        items.append(Text(f"+{_count(len(hop.folded), 'span')}", style="dim"))
    if hop.link:
        items.append(Text(f"↪ link, trace {span.trace_id}", style="bold blue"))
    if hop.orphan:
        items.append(Text("⚠ parent span missing", style="yellow"))
    if hop.duplicate:
        items.append(Text("⚠ duplicate: already processed", style="bold yellow"))
    if hop.unconsumed:
        items.append(Text("⚠ no consumer seen", style="bold yellow"))
    error = span.error
    after = [Text(f"  ✗ {error}", style="bold red")] if error is not None else []
    return Flow(items, after)


def _location(hop: Hop) -> str:
    """``p0@41``, prefixed by the topic when the span name does not already say it."""
    span = hop.span
    if span.partition is None and span.offset is None:
        return ""
    partition = "p?" if span.partition is None else f"p{span.partition}"
    offset = "" if span.offset is None else f"@{span.offset}"
    topic = span.topic
    prefix = f"{topic} " if topic and topic not in span.name.split() else ""
    return f"{prefix}{partition}{offset}"


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
