"""Render an :class:`~tracing.read.audit.Audit`: tables for the terminal, or one JSON document.

The text view is one section per kind of finding, each a small table. A section shows its first
:data:`ROWS_SHOWN` rows and says how many more it holds (``--json`` lists every one); trace ids
are never shortened; other cells wrap inside their column when the width runs out (between
words, after a ``,`` or a ``>`` where they can), so no cell loses a character. Glyphs fall back
to ASCII where the output cannot carry them, as in the tree.
"""

from __future__ import annotations

import datetime as _dt
import textwrap
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console

from tracing.read.audit import Audit
from tracing.read.render import Glyphs, Line, cells_prefix, format_ms, glyphs_for, write_lines

__all__ = ["ROWS_SHOWN", "audit_json", "audit_lines", "render_audit"]

ROWS_SHOWN = 10
_TRACE = "TRACE"  # columns whose header ends like this hold trace ids: never cut


def audit_json(report: Audit) -> dict[str, Any]:
    """The ``audit --json`` document (a contract: scripts rely on its keys)."""
    return {
        "window": {
            "start": _iso(report.window_start_ns),
            "end": _iso(report.window_end_ns),
            "spans": report.spans,
            "traces": report.traces,
        },
        "ordering_violations": [
            {
                "group": v.group,
                "topic": v.topic,
                "key": v.key,
                "first_trace_id": v.first_trace_id,
                "second_trace_id": v.second_trace_id,
            }
            for v in report.ordering_violations
        ],
        "duplicates": [
            {
                "group": d.group,
                "topic": d.topic,
                "partition": d.partition,
                "offset": d.offset,
                "times": d.times,
                "trace_id": d.trace_id,
            }
            for d in report.duplicates
        ],
        "duplicate_rate": round(report.duplicate_rate, 6),
        "processings": report.processings,
        "unconsumed": [
            {
                "group": u.group,
                "topic": u.topic,
                "partition": u.partition,
                "offset": u.offset,
                "trace_id": u.trace_id,
            }
            for u in report.unconsumed
        ],
        "failures": [
            {
                "group": f.group,
                "topic": f.topic,
                "error_type": f.error_type,
                "count": f.count,
                "retried": f.retried,
                "dead_lettered": f.dead_lettered,
            }
            for f in report.failures
        ],
        "dead_lettered": [
            {"topic": d.topic, "dlq_topic": d.dlq_topic, "trace_id": d.trace_id} for d in report.dead_lettered
        ],
        "sagas": [
            {
                "rule": s.rule,
                "started": s.started,
                "finished": s.finished,
                "compensated": s.compensated,
                "stuck": s.stuck,
                "pending": s.pending,
            }
            for s in report.sagas
        ],
        "stuck_sagas": [{"rule": s.rule, "trace_id": s.trace_id} for s in report.stuck_sagas],
        "paths": [
            {
                "path": p.path,
                "group": p.group,
                "count": p.count,
                "p50_ms": round(p.p50_ms, 3),
                "p95_ms": round(p.p95_ms, 3),
                "p99_ms": round(p.p99_ms, 3),
                "hops": [
                    {"topic": h.topic, "wait_p50_ms": round(h.p50_ms, 3), "wait_p95_ms": round(h.p95_ms, 3)}
                    for h in p.hops
                ],
            }
            for p in report.paths
        ],
        "not_checked": list(report.notes),
    }


def audit_lines(report: Audit, width: int, glyphs: Glyphs) -> list[Line]:
    """The text view at ``width`` columns."""
    g = glyphs
    lines: list[Line] = [_heading(report)]

    def section(
        title: str,
        count: int,
        detail: str,
        columns: Sequence[str],
        rows: list[list[str]],
        right: Sequence[str] = (),
    ) -> None:
        lines.append([])
        style = "bold red" if count else "bold green"
        lines.extend(_titled(f"{title}: {count:,}", style, detail, width))
        if rows:
            lines.extend(_table(columns, rows[:ROWS_SHOWN], width, set(right)))
            if len(rows) > ROWS_SHOWN:
                rest = len(rows) - ROWS_SHOWN
                lines.append([(f"  {g.more} {rest:,} more (--json lists every one)", "bright_black")])

    r = report
    section(
        "ordering violations",
        len(r.ordering_violations),
        "events of one key processed in the opposite order to the one they were produced in",
        ("GROUP", "TOPIC", "KEY", "PRODUCED FIRST, TRACE", "PROCESSED FIRST, TRACE"),
        [[v.group, v.topic, v.key, v.first_trace_id, v.second_trace_id] for v in r.ordering_violations],
    )
    section(
        "duplicates",
        len(r.duplicates),
        f"{r.extra_deliveries:,} extra of {r.processings:,} processings ({r.duplicate_rate:.2%})",
        ("GROUP", "TOPIC", "PARTITION", "OFFSET", "TIMES", "FIRST TRACE"),
        [
            [d.group, d.topic, _num(d.partition), _num(d.offset), str(d.times), d.trace_id]
            for d in r.duplicates
        ],
        right=("PARTITION", "OFFSET", "TIMES"),
    )
    section(
        "unconsumed",
        len(r.unconsumed),
        "sent to a topic the group consumed, never processed by it within --grace",
        ("GROUP", "TOPIC", "PARTITION", "OFFSET", "TRACE"),
        [[u.group, u.topic, _num(u.partition), _num(u.offset), u.trace_id] for u in r.unconsumed],
        right=("PARTITION", "OFFSET"),
    )
    section(
        "failures",
        sum(f.count for f in r.failures),
        "failed processings",
        ("GROUP", "TOPIC", "ERROR", "COUNT", "RETRIED", "DEAD-LETTERED"),
        [
            [f.group or "-", f.topic or "-", f.error_type, str(f.count), str(f.retried), str(f.dead_lettered)]
            for f in r.failures
        ],
        right=("COUNT", "RETRIED", "DEAD-LETTERED"),
    )
    if r.dead_lettered:
        section(
            "dead-lettered",
            len(r.dead_lettered),
            "",
            ("FROM TOPIC", "DEAD-LETTER TOPIC", "TRACE"),
            [[d.topic or "-", d.dlq_topic, d.trace_id] for d in r.dead_lettered],
        )
    for saga in r.sagas:
        share = f" ({saga.compensated_share:.0%})" if saga.started else ""
        stuck = [s for s in r.stuck_sagas if s.rule == saga.rule]
        section(
            f"saga {saga.rule}: stuck",
            saga.stuck,
            f"{saga.started:,} started, {saga.finished:,} finished, {saga.compensated:,} compensated{share}, "
            f"{saga.pending:,} within --grace",
            ("STUCK, TRACE",),
            [[s.trace_id] for s in stuck],
        )
    lines.append([])
    lines.extend(
        _titled(
            f"paths: {len(r.paths):,}",
            "bold",
            "chain start to processing, and the wait in each topic (p50 / p95)",
            width,
        )
    )
    if r.paths:
        rows = [
            [
                p.path,
                p.group or "-",
                f"{p.count:,}",
                format_ms(p.p50_ms),
                format_ms(p.p95_ms),
                format_ms(p.p99_ms),
                ", ".join(f"{h.topic} {format_ms(h.p50_ms)} / {format_ms(h.p95_ms)}" for h in p.hops),
            ]
            for p in r.paths
        ]
        columns = ("PATH", "GROUP", "COUNT", "P50", "P95", "P99", "WAIT PER HOP")
        lines.extend(_table(columns, rows[:ROWS_SHOWN], width, {"COUNT", "P50", "P95", "P99"}))
        if len(rows) > ROWS_SHOWN:
            lines.append(
                [(f"  {g.more} {len(rows) - ROWS_SHOWN:,} more (--json lists every one)", "bright_black")]
            )
    if r.notes:
        lines.append([])
        lines.append([("not checked:", "bold")])
        for note in r.notes:
            wrapped = textwrap.wrap(note, max(width - 2, 10))
            lines.extend([[(f"  {part}", "bright_black")] for part in wrapped])
    return lines


def render_audit(report: Audit, console: Console, glyphs: Glyphs | None = None) -> None:
    """Print the audit at the console's width."""
    g = glyphs or glyphs_for(console.encoding)
    write_lines(console, audit_lines(report, max(console.width, 20), g))


def _titled(title: str, style: str, detail: str, width: int) -> list[Line]:
    """A section's title, its explanation beside it when it fits, else wrapped under it."""
    if not detail:
        return [[(title, style)]]
    if cell_len(title) + 2 + cell_len(detail) <= width:
        return [[(title, style), (f"  {detail}", "")]]
    return [[(title, style)], *([(f"  {part}", "")] for part in textwrap.wrap(detail, max(width - 2, 10)))]


def _heading(report: Audit) -> Line:
    start, end = _iso(report.window_start_ns), _iso(report.window_end_ns)
    window = f"{start} .. {end}" if start and end else "an empty window"
    return [("audit", "bold"), (f"  {window}  {report.spans:,} spans  {report.traces:,} traces", "")]


def _table(
    columns: Sequence[str], rows: list[list[str]], width: int, right: set[str]
) -> list[Line]:
    sizes = [max(cell_len(c), *(cell_len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    indent, gap = 2, 2
    total = indent + sum(sizes) + gap * (len(sizes) - 1)
    # Narrow the widest columns that are not trace ids or numbers until the table fits; their
    # cells wrap (never below 6 columns).
    while total > width:
        candidates = [
            i for i, c in enumerate(columns) if not c.endswith(_TRACE) and c not in right and sizes[i] > 6
        ]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: sizes[i])
        cut = min(total - width, sizes[widest] - 6)
        sizes[widest] -= cut
        total -= cut
    lines: list[Line] = []
    for index, row in enumerate([list(columns), *rows]):
        style = "bold" if index == 0 else ""
        parts = [_wrapped(text, sizes[i]) for i, text in enumerate(row)]
        for depth in range(max(len(p) for p in parts)):
            line: Line = [(" " * indent, "")]
            for i, cell in enumerate(parts):
                if i:
                    line.append((" " * gap, ""))
                text = cell[depth] if depth < len(cell) else ""
                pad = " " * max(sizes[i] - cell_len(text), 0)
                line.append((pad + text if columns[i] in right else text + pad, style))
            lines.append(line)
    return lines


def _wrapped(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` columns, broken after a space, ``,`` or ``>`` where
    one falls inside the piece, else where the column ends: every character kept."""
    pieces: list[str] = []
    while cell_len(text) > size:
        cut = len(cells_prefix(text, size))
        breaks = [text.rfind(mark, 1, cut) for mark in (" ", ",", ">")]
        best = max(breaks)
        if best > 0:
            cut = best + 1
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip(" ")
    pieces.append(text)
    return pieces


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    moment = _dt.datetime.fromtimestamp(ns / 1e9, _dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
