"""The read side: load spans, build the event chain, analyse it, render it.

Each step is its own module (``load``, ``chain``, ``analyse``, ``render``); this package wires them
for callers that just want a chain or a printed tree::

    from tracing.read import render_chain
    render_chain(exporter.get_finished_spans())   # an InMemorySpanExporter's spans
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console

from tracing.read.analyse import Processor, analyse, processors, summarise
from tracing.read.chain import build_chain, trace_ids
from tracing.read.load import (
    JaegerClient,
    JaegerUnavailable,
    LoadError,
    TraceNotFound,
    from_readable_spans,
    read_file,
)
from tracing.read.model import ChainSummary, EventChain, Hop, Span
from tracing.read.render import render_text, to_json

__all__ = [
    "ChainSummary",
    "EventChain",
    "Hop",
    "JaegerClient",
    "JaegerUnavailable",
    "LoadError",
    "Span",
    "TraceNotFound",
    "from_readable_spans",
    "make_chain",
    "read_file",
    "render_chain",
    "summarise",
    "to_json",
]


def make_chain(
    spans: Iterable[Span],
    trace_id: str | None = None,
    *,
    all_spans: bool = False,
    follow_links: bool = False,
    repeats: bool = False,
    steps: Sequence[Processor] | None = None,
) -> EventChain:
    """Build the chain of ``trace_id`` and run the processors over it.

    The default steps fold non-messaging spans (unless ``all_spans``), analyse, and with
    ``repeats`` fold runs of like siblings (see :func:`tracing.read.analyse.processors`);
    ``steps`` replaces the whole list. ``spans`` may hold several traces: they are the pool links
    are followed into. Without a ``trace_id``, the earliest-starting trace is taken.

    >>> chain = make_chain(read_file("trace.json"), follow_links=True)   # doctest: +SKIP
    """
    spans = list(spans)
    if trace_id is None:
        ids = trace_ids(spans)
        if not ids:
            raise ValueError("no spans")
        trace_id = ids[0]
    chain = build_chain(spans, trace_id, follow_links=follow_links)
    if steps is None:
        steps = processors(all_spans=all_spans, repeats=repeats)
    return analyse(chain, steps)


def render_chain(
    spans_or_chain: EventChain | Iterable[Any],
    console: Console | None = None,
    *,
    trace_id: str | None = None,
    all_spans: bool = False,
    follow_links: bool = True,
) -> EventChain:
    """Print an event chain as a tree; returns the analysed chain.

    Takes an :class:`EventChain`, :class:`Span` records, or OpenTelemetry SDK ``ReadableSpan``
    objects (what an ``InMemorySpanExporter`` collects), so a process can show its own chains
    without Jaeger. In memory, following links costs nothing, so it is on by default here.

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> exporter = InMemorySpanExporter()   # add it to the TracerProvider, run the demo, then:
    >>> render_chain(exporter.get_finished_spans())   # doctest: +SKIP
    """
    console = console or Console()
    if isinstance(spans_or_chain, EventChain):
        chain = spans_or_chain
    else:
        items: Sequence[Any] = list(spans_or_chain)
        spans = [s for s in items if isinstance(s, Span)]
        spans += from_readable_spans(s for s in items if not isinstance(s, Span))
        chain = make_chain(spans, trace_id, all_spans=all_spans, follow_links=follow_links, repeats=True)
    render_text(chain, console, summarise(chain))
    return chain
