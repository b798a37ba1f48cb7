"""Render an analysed event chain: text for the terminal (and SVG), or a JSON document.

Renderers only read the chain; every finding was set by :mod:`tracing.read.analyse`.

The text view is a list of lines laid out here, not a ``rich.tree.Tree``: a tree of 20,000 nodes
prints in a fraction of a second, and nothing is ever cut. Indentation is bounded: past a depth
that leaves each label at least half the width, the rest of a branch is re-rooted at column 0 in a
numbered section printed after the tree (``↳ continued in [2]``). Labels wrap inside their own
column, long words are split rather than cropped, and every fold says how many spans it holds.
Glyphs fall back to ASCII when the output encoding cannot carry them. The output is deterministic
for a given width, so tests compare it as text.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

from tracing.read.model import ChainSummary, EventChain, Hop, Repeats, Span

__all__ = [
    "ASCII",
    "UNICODE",
    "Glyphs",
    "chain_lines",
    "format_ms",
    "glyphs_for",
    "header",
    "legend",
    "render_list",
    "render_text",
    "to_json",
    "write_lines",
]

Segment = tuple[str, str]
"""A run of text and its rich style name ("" for none)."""
Line = list[Segment]


@dataclass(frozen=True)
class Glyphs:
    """The characters of the text view; :data:`UNICODE` or, where it cannot be printed, :data:`ASCII`."""

    critical: str
    other: str
    error: str
    warning: str
    link: str
    more: str
    match: str
    deeper: str
    tee: str
    last: str
    pipe: str
    space: str


UNICODE = Glyphs("●", "○", "✗", "⚠", "↪", "…", "◀", "↳", "├── ", "└── ", "│   ", "    ")
ASCII = Glyphs("*", "o", "x", "!", "->", "...", "<-", ">>", "|-- ", "`-- ", "|   ", "    ")

CRITICAL = UNICODE.critical
OTHER = UNICODE.other
INDENT = 4  # columns per tree level
MIN_WIDTH = 20  # narrower consoles get lines laid out for this many columns (the terminal wraps them)
WRAP_INDENT = "  "  # a label's continuation lines


def glyphs_for(encoding: str | None) -> Glyphs:
    """:data:`UNICODE` if ``encoding`` can carry every glyph, else :data:`ASCII`."""
    try:
        "".join(vars(UNICODE).values()).encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


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


# --- the tree as lines ------------------------------------------------------------------------


def max_levels(width: int) -> int:
    """How many levels are indented before a branch is re-rooted: each label keeps half the width."""
    label = max(24, width // 2)
    return max(1, (width - label) // INDENT)


def header(
    summary: ChainSummary, width: int = 10**6, glyphs: Glyphs = UNICODE, link: str | None = None
) -> list[Line]:
    """The header line: trace id, root operation, services, hops, duration, errors (wrapped), and the
    trace's page in the Jaeger UI when given and the line has room for it whole (a URL split across
    lines opens nothing)."""
    items: list[list[Segment]] = [
        [(f"trace {summary.trace_id}", "bold")],
        [(summary.root_name, "bold")],
        [(_count(len(summary.services), "service"), "")],
        [(_count(summary.hops, "hop"), "")],
        [(format_ms(summary.duration_ms), "")],
        [(_count(summary.errors, "error"), "bold red" if summary.errors else "green")],
    ]
    lines = _flow(items, [], width)
    if link and len(lines) == 1 and sum(cell_len(text) for text, _ in lines[0]) + 2 + len(link) <= width:
        lines[0] += [("  ", ""), (link, "cyan")]
    return lines


def legend(glyphs: Glyphs = UNICODE, matched: bool = False, width: int = 10**6) -> list[Line]:
    """The lines under the tree that explain the markers."""
    items = [
        [(f"{glyphs.critical} critical path", "bright_black")],
        [(f"{glyphs.other} other span", "bright_black")],
    ]
    if matched:
        items.append([(f"{glyphs.match} matched", "bright_black")])
    return _flow(items, [], width)


def chain_lines(chain: EventChain, width: int, glyphs: Glyphs = UNICODE) -> Iterator[Line]:
    """The tree's lines at ``width`` columns: every node, fold marker and re-rooted section."""
    levels = max_levels(width)
    sections: deque[tuple[int, Hop, int]] = deque()  # (number, hop whose children continue, depth)
    numbers = itertools.count(1)
    yield from _branch(chain.root, None, width, glyphs, levels, sections, numbers)
    while sections:
        number, hop, depth = sections.popleft()
        yield from _branch(hop, (number, depth), width, glyphs, levels, sections, numbers)


def _branch(
    top: Hop,
    section: tuple[int, int] | None,
    width: int,
    g: Glyphs,
    levels: int,
    sections: deque[tuple[int, Hop, int]],
    numbers: Iterator[int],
) -> Iterator[Line]:
    """One tree drawn from column 0: the root, or a re-rooted section's children under its header."""
    if section is None:
        base = 0
        yield from _label_lines(top, g, width)
    else:
        number, base = section
        span = top.span
        items = [
            [(f"[{number}] {g.deeper} under", "bold")],
            [(span.service, "bold cyan")],
            [(span.name, "bold")],
        ]
        location = _location(span)
        if location:
            items.append([(location, "magenta")])
        items.append([(f"depth {base}", "dim")])
        yield from _flow(items, [], width)
    # (node or marker, first-line prefix, continuation prefix, depth below top)
    stack: list[tuple[Hop | Repeats, str, str, int]] = []

    def push_children(hop: Hop, prefix: str, depth: int) -> None:
        entries: list[Hop | Repeats] = [*hop.children, *hop.repeats]
        for index in range(len(entries) - 1, -1, -1):
            last = index == len(entries) - 1
            stack.append(
                (
                    entries[index],
                    prefix + (g.last if last else g.tee),
                    prefix + (g.space if last else g.pipe),
                    depth,
                )
            )

    push_children(top, "", 1)
    while stack:
        node, first, rest, depth = stack.pop()
        room = max(width - len(first), 1)
        if isinstance(node, Repeats):
            lines = _repeats_lines(node, g, room)
        else:
            lines = _label_lines(node, g, room)
        yield [(first, "bright_black"), *lines[0]]
        for line in lines[1:]:
            yield [(rest, "bright_black"), *line]
        if isinstance(node, Repeats) or not (node.children or node.repeats):
            continue
        if depth >= levels:
            # Deeper would squeeze the labels: the children continue in a section of their own.
            number = next(numbers)
            sections.append((number, node, base + depth))
            marker = [[(f"{g.deeper} continued at [{number}]", "bold")]]
            for line in _flow(marker, [], max(width - len(rest), 1)):
                yield [(rest, "bright_black"), *line]
            continue
        push_children(node, rest, depth + 1)


def _label_lines(hop: Hop, g: Glyphs, width: int) -> list[Line]:
    span = hop.span
    items: list[list[Segment]] = [
        [
            (f"{g.critical} " if hop.critical else f"{g.other} ", "bold yellow" if hop.critical else "dim"),
            (span.service, "bold cyan"),
        ],
        [(span.name, "bold")],
    ]
    if not span.is_messaging:
        items.append([(span.kind, "dim")])
    if span.consumer_group:
        items.append([(f"group {span.consumer_group}", "green")])
    if span.queue:
        items.append([(f"queue {span.queue}", "green")])
    location = _location(span)
    if location:
        items.append([(location, "magenta")])
    items.append([(format_ms(span.duration_ms), "")])
    if hop.queue_ms is not None:
        waited_in = span.queue or span.topic
        where = f" in {waited_in}" if waited_in else ""
        skew = " (clock skew?)" if hop.queue_ms < 0 else ""
        items.append([(f"waited {format_ms(hop.queue_ms)}{where}{skew}", "blue")])
    if hop.source is not None:
        source = hop.source
        sent = f"sent by {source.service}" + (f" to {source.topic}" if source.topic else "")
        items.append([(f"{g.link} {sent}, trace {source.trace_id}", "bold blue")])
    if hop.folded:
        items.append([(f"+{_count(len(hop.folded), 'span')}", "dim")])
    if hop.link:
        items.append([(f"{g.link} link, trace {span.trace_id}", "bold blue")])
    if hop.orphan:
        items.append([(f"{g.warning} parent span missing", "yellow")])
    if hop.duplicate:
        items.append([(f"{g.warning} duplicate: already processed", "bold yellow")])
    if hop.unconsumed:
        items.append([(f"{g.warning} no consumer seen", "bold yellow")])
    if hop.matched:
        items.append([(f"{g.match} matched", "reverse bold")])
    error = span.error
    after = [(f"{g.error} {error}", "bold red")] if error is not None else []
    return _flow(items, after, width)


def _repeats_lines(rep: Repeats, g: Glyphs, width: int) -> list[Line]:
    span = rep.sample
    count = len(rep.hops)
    items: list[list[Segment]] = [
        [(f"{g.more} {count:,} more like this:", "bold")],
        [(span.service, "cyan")],
        [(span.name, "")],
    ]
    if span.consumer_group:
        items.append([(f"group {span.consumer_group}", "green")])
    if span.queue:
        items.append([(f"queue {span.queue}", "green")])
    items.append([(f"({_count(rep.span_count, 'span')})", "dim")])
    if rep.duplicates:
        items.append([(f"{g.warning} {_count(rep.duplicates, 'duplicate')}", "bold yellow")])
    if rep.waits_ms is not None:
        items.append([("waited " + _triple(rep.waits_ms), "blue")])
    items.append([("took " + _triple(rep.durations_ms), "")])
    return _flow(items, [], width)


def _triple(values: tuple[float, float, float]) -> str:
    low, middle, high = values
    return f"min {format_ms(low)} / median {format_ms(middle)} / max {format_ms(high)}"


def _flow(items: Sequence[Sequence[Segment]], after: Sequence[Segment], width: int) -> list[Line]:
    """Items two spaces apart; one that does not fit moves whole to the next line (indented), so
    "waited 15 ms in orders" is never split, unless it is wider than the column on its own: then it
    is split wherever the column ends, never cut. ``after`` items (an error) get lines of their own.
    """
    lines: list[Line] = []
    line: Line = []
    used = 0
    for item in items:
        if len(item) == 1:  # most items: one segment, sized without a list
            text = item[0][0]
            size = len(text) if text.isascii() else cell_len(text)
        else:
            size = sum([len(text) if text.isascii() else cell_len(text) for text, _ in item])
        if line and used + 2 + size > width:
            lines.append(line)
            line, used = [(WRAP_INDENT, "")], len(WRAP_INDENT)
        elif line:
            line.append(("  ", ""))
            used += 2
        if used + size <= width:
            line.extend(item)
            used += size
            continue
        for text, style in item:  # wider than the column: split it
            while text:
                room = max(width - used, 1)
                piece = cells_prefix(text, room)
                if len(piece) < len(text) and " " in piece[1:]:
                    piece = piece[: piece.rindex(" ") + 1]  # break between words where one fits
                line.append((piece, style))
                used += cell_len(piece)
                text = text[len(piece) :]
                if text:
                    lines.append(line)
                    line, used = [(WRAP_INDENT, "")], len(WRAP_INDENT)
    lines.append(line)
    for text, style in after:
        for part in text.splitlines() or [""]:
            indent = WRAP_INDENT
            while True:
                room = max(width - len(indent), 1)
                piece = cells_prefix(part, room)
                if len(piece) < len(part) and " " in piece[1:]:
                    piece = piece[: piece.rindex(" ") + 1]  # between words, as the items above
                lines.append([(indent, ""), (piece, style)])
                part = part[len(piece) :]
                if not part:
                    break
                indent = WRAP_INDENT * 2
    return lines


def cells_prefix(text: str, cells: int) -> str:
    """The longest prefix of ``text`` that fits in ``cells`` columns (at least one character)."""
    if text.isascii():
        return text[: max(cells, 1)]
    if cell_len(text) <= cells:
        return text
    total = 0
    for index, char in enumerate(text):
        total += cell_len(char)
        if total > cells:
            return text[: max(index, 1)]
    return text


def _location(span: Span) -> str:
    """``p0@41``, prefixed by the topic when the span name does not already say it; for
    RabbitMQ the routing key, the delivery tag and a redelivery."""
    if span.partition is None and span.offset is None:
        parts = [f"routing key {span.routing_key}"] if span.routing_key else []
        if span.delivery_tag is not None:
            parts.append(f"tag {span.delivery_tag}")
        if span.redelivered:
            parts.append("redelivered")
        return "  ".join(parts)
    partition = "p?" if span.partition is None else f"p{span.partition}"
    offset = "" if span.offset is None else f"@{span.offset}"
    topic = span.topic
    prefix = f"{topic} " if topic and topic not in span.name.split() else ""
    return f"{prefix}{partition}{offset}"


# --- writing lines ------------------------------------------------------------------------------

_COLOR_SYSTEMS = {
    "standard": ColorSystem.STANDARD,
    "256": ColorSystem.EIGHT_BIT,
    "truecolor": ColorSystem.TRUECOLOR,
    "windows": ColorSystem.STANDARD,
}


def write_lines(console: Console, lines: Iterable[Line]) -> None:
    """Write lines to the console's file, styled when it shows colour.

    Lines are written as they are made, without rich's layout pass (the layout is done). A
    recording console (SVG export) gets them through ``console.print`` so they are recorded.
    """
    if console.record:
        text = Text(end="")
        for line in lines:
            for part, style in line:
                text.append(part, style or None)
            text.append("\n")
        console.print(text, soft_wrap=True, end="")
        return
    system = _COLOR_SYSTEMS.get(console.color_system or "")
    file: IO[str] = console.file
    if system is None:
        _write_plain(file, lines)
    else:
        _write_styled(file, lines, system, console.no_color)
    file.flush()


def _write_plain(file: IO[str], lines: Iterable[Line]) -> None:
    chunk: list[str] = []
    for line in lines:
        chunk.append("".join([part for part, _ in line]).rstrip() + "\n")
        if len(chunk) >= 2000:
            file.write("".join(chunk))
            chunk.clear()
    file.write("".join(chunk))


def _write_styled(file: IO[str], lines: Iterable[Line], system: ColorSystem, no_color: bool) -> None:
    codes: dict[str, tuple[str, str]] = {}
    chunk: list[str] = []
    for line in lines:
        parts = []
        for part, style in line:
            if not style or not part:
                parts.append(part)
                continue
            code = codes.get(style)
            if code is None:
                parsed = Style.parse(style)
                if no_color:
                    parsed = parsed.without_color
                before, _, after = parsed.render("\0", color_system=system).partition("\0")
                code = codes[style] = (before, after)
            parts.append(code[0] + part + code[1])
        chunk.append("".join(parts).rstrip(" ") + "\n")
        if len(chunk) >= 2000:
            file.write("".join(chunk))
            chunk.clear()
    file.write("".join(chunk))


def render_text(
    chain: EventChain,
    console: Console,
    summary: ChainSummary,
    glyphs: Glyphs | None = None,
    link: str | None = None,
) -> None:
    """Print the header line, the tree and the legend at the console's width.

    ``glyphs`` defaults to what the console's encoding can carry; ``link`` (the trace's page in the
    Jaeger UI) ends the header line.
    """
    g = glyphs or glyphs_for(console.encoding)
    width = max(console.width, MIN_WIDTH)
    matched = any(h.matched for h in chain.hops())

    def lines() -> Iterator[Line]:
        yield from header(summary, width, g, link)
        yield from chain_lines(chain, width, g)
        yield from legend(g, matched, width)

    write_lines(console, lines())


# --- JSON -----------------------------------------------------------------------------------------


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


def summary_json(summary: ChainSummary) -> dict[str, Any]:
    """One chain of ``list --json``: the summary's fields, the duration rounded to the microsecond."""
    data = dict(vars(summary))
    data["duration_ms"] = round(summary.duration_ms, 3)
    return data


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
        "client_id": span.client_id,
        "queue": span.queue,
        "routing_key": span.routing_key,
        "partition": span.partition,
        "offset": span.offset,
        "duration_ms": round(span.duration_ms, 3),
        "queue_ms": None if hop.queue_ms is None else round(hop.queue_ms, 3),
        "error": span.error,
        "duplicate": hop.duplicate,
        "unconsumed": hop.unconsumed,
        "link": hop.link,
        "source": None
        if hop.source is None
        else {
            "trace_id": hop.source.trace_id,
            "span_id": hop.source.span_id,
            "service": hop.source.service,
            "topic": hop.source.topic,
        },
        "orphan": hop.orphan,
        "critical": hop.critical,
        "matched": hop.matched,
        "folded": len(hop.folded),
        "children": [],
    }


# --- list -------------------------------------------------------------------------------------------

_LIST_COLUMNS = ("STARTED (UTC)", "TRACE ID", "ROOT", "SERVICES", "HOPS", "DURATION", "ERRORS")
_RIGHT = {"HOPS", "DURATION", "ERRORS"}


def list_lines(summaries: Sequence[ChainSummary], width: int, glyphs: Glyphs = UNICODE) -> list[Line]:
    """One line per chain: start time (UTC), trace id, root operation, services, hops, duration, errors.

    The trace id is never shortened: when the width runs out, the start time goes first, then the
    services, then the root; what is left of root and services is cut with an ellipsis.
    """
    rows = [
        {
            "STARTED (UTC)": _dt.datetime.fromtimestamp(s.start_ns / 1e9, _dt.UTC).strftime("%m-%d %H:%M:%S"),
            "TRACE ID": s.trace_id,
            "ROOT": f"{s.root_name} ({s.root_service})",
            "SERVICES": ", ".join(s.services),
            "HOPS": str(s.hops),
            "DURATION": format_ms(s.duration_ms),
            "ERRORS": str(s.errors),
        }
        for s in summaries
    ]
    sizes = {c: max([len(c), *(cell_len(r[c]) for r in rows)]) for c in _LIST_COLUMNS}
    sizes["STARTED (UTC)"] = 14
    sizes["TRACE ID"] = max(32, sizes["TRACE ID"])
    columns = list(_LIST_COLUMNS)

    def needed(cols: list[str], root: int, services: int) -> int:
        fixed = sum(sizes[c] for c in cols if c not in ("ROOT", "SERVICES"))
        flexible = (root if "ROOT" in cols else 0) + (services if "SERVICES" in cols else 0)
        return fixed + flexible + 2 * (len(cols) - 1)

    minimum = {"ROOT": 12, "SERVICES": 8}
    for drop in ("STARTED (UTC)", "SERVICES", "ROOT"):
        if (
            needed(columns, min(sizes["ROOT"], minimum["ROOT"]), min(sizes["SERVICES"], minimum["SERVICES"]))
            <= width
        ):
            break
        columns.remove(drop)
    free = width - needed(columns, 0, 0)
    root_need, services_need = sizes["ROOT"], sizes["SERVICES"]
    if "SERVICES" in columns:
        root_width = min(root_need, max(free - services_need, free * 3 // 5, minimum["ROOT"]))
        services_width = max(min(services_need, free - root_width), minimum["SERVICES"])
    else:
        root_width, services_width = min(root_need, max(free, minimum["ROOT"])), 0
    sizes["ROOT"], sizes["SERVICES"] = root_width, services_width
    lines: list[Line] = []
    heading: Line = []
    for index, column in enumerate(columns):
        heading.append((_cell(column, sizes[column], column in _RIGHT, glyphs), "bold"))
        if index < len(columns) - 1:
            heading.append(("  ", ""))
    lines.append(heading)
    for row in rows:
        line: Line = []
        for index, column in enumerate(columns):
            style = "bold red" if column == "ERRORS" and row[column] != "0" else ""
            line.append((_cell(row[column], sizes[column], column in _RIGHT, glyphs), style))
            if index < len(columns) - 1:
                line.append(("  ", ""))
        lines.append(line)
    return lines


def _cell(text: str, size: int, right: bool, g: Glyphs) -> str:
    if cell_len(text) > size:
        text = cells_prefix(text, max(size - cell_len(g.more), 1)) + g.more
    pad = " " * max(size - cell_len(text), 0)
    return pad + text if right else text + pad


def render_list(
    summaries: Sequence[ChainSummary],
    console: Console,
    footer: str | None = None,
    glyphs: Glyphs | None = None,
) -> None:
    """Print the list of chains at the console's width, then ``footer`` (e.g. "20 of 2,000 shown")."""
    g = glyphs or glyphs_for(console.encoding)
    lines = list_lines(summaries, console.width, g)
    if footer:
        lines.append([(footer, "bright_black")])
    write_lines(console, lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
