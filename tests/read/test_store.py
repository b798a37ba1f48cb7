"""The span store's writing path: a span stored twice is kept once and counted once, in the current
schema and in stores written by the first one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tracing.read.model import Span
from tracing.read.store import SpanStore

A = "a" * 32


def span(trace: str, n: int) -> Span:
    return Span(
        trace_id=trace * 32,
        span_id=f"{n:016x}",
        parent_id=None,
        name="send orders",
        kind="producer",
        service="api",
        start_ns=n,
        end_ns=n + 1,
        attributes={"messaging.destination.name": "orders", "bytes": b"\x01"},
    )


def test_spans_sent_again_are_kept_once_and_only_the_new_ones_are_counted(tmp_path: Path):
    with SpanStore.create(tmp_path / "s.sqlite") as store:
        assert store.add([span("a", 1), span("a", 2), span("b", 1)]) == {A: 2, "b" * 32: 1}
        # a retried batch with one new span, and a span twice in one batch
        again = store.add([span("a", 1), span("a", 3), span("b", 1), span("c", 1), span("c", 1)])
        assert again == {A: 1, "c" * 32: 1}
        assert store.stats().spans == 5
        assert [s.span_id for s in store.trace(A)] == [f"{n:016x}" for n in (1, 2, 3)]
        assert store.trace(A)[0].attributes["bytes"] == "AQ=="
        # every span, a trace's spans together
        assert [s.trace_id[0] for s in store.spans()] == ["a", "a", "a", "b", "c"]


FIRST_SCHEMA = """
CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, service TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status_error INTEGER NOT NULL, status_message TEXT, attributes TEXT NOT NULL, events TEXT, links TEXT,
    PRIMARY KEY (trace_id, span_id)) WITHOUT ROWID;
CREATE TABLE traces (trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL, received_ns INTEGER NOT NULL);
CREATE TABLE links (linked_trace_id TEXT NOT NULL, trace_id TEXT NOT NULL,
    PRIMARY KEY (linked_trace_id, trace_id)) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def test_a_store_of_the_first_schema_is_still_read_and_written(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_SCHEMA)
    with SpanStore.create(path) as store:
        assert store.add([span("a", 1), span("a", 2)]) == {A: 2}
        assert store.add([span("a", 2), span("a", 3)]) == {A: 1}
    with SpanStore.open(path) as reader:
        assert reader.stats().spans == 3
        assert len(reader.trace(A)) == 3
