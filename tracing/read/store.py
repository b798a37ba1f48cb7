"""The span store: an embedded SQLite database that ``eventchain serve`` writes and every command reads.

Reading API (small on purpose; every reader of the store goes through it)::

    from tracing.read.store import SpanStore, default_store_path

    with SpanStore.open(default_store_path()) as store:     # LoadError if there is no store there
        ids = store.trace_ids(limit=20)                      # newest first (by first span start)
        spans = store.trace(ids[0])                          # list[Span], the read side's model
        for span in store.spans(since_ns=...):               # every span, a trace's spans together
            ...
        store.stats()                                        # StoreStats(traces, spans, ...)

- :meth:`SpanStore.resolve` (what a user typed, as :func:`~tracing.read.load.parse_trace_ref` reads
  it, to one trace id), :meth:`SpanStore.trace_ids` (optionally ``prefix=`` hex digits, ``since_ns=``,
  ``limit=``),
  :meth:`SpanStore.trace`, :meth:`SpanStore.spans` (``slim=True`` keeps only the attributes lists and
  searches read), :meth:`SpanStore.linking_traces` (traces whose spans link into a trace),
  :meth:`SpanStore.stats`. All return :class:`~tracing.read.model.Span` records or plain values.
- Readers open their own connection and may read while ``serve`` writes (WAL mode: a reader sees the
  last committed batch, never a half-written one, and never blocks the writer).
- The schema is private: read through this class, not with SQL, so it can change.

Writing (``serve`` only): :meth:`SpanStore.add` stores a batch in one transaction (a span stored twice,
same trace and span id, is kept once), :meth:`SpanStore.prune` applies retention: whole traces, the
least recently received first, and says how many it dropped.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tracing import semconv as sc
from tracing.read.load import LoadError, TraceRef, resolve
from tracing.read.model import Span, SpanEvent, SpanRef

__all__ = ["PruneResult", "SpanStore", "StoreStats", "default_store_path"]

STORE_ENV = "EVENTCHAIN_STORE"
# 2: spans in insertion order with a unique index on the ids (random trace ids inserted into a
# table clustered by them touched a page per span: 3x slower writes). Stores of schema 1 are read and
# written as they are.
_SCHEMA_VERSION = 2
_SCHEMA_VERSIONS = (1, 2)
_SLIM_PREFIXES = ("messaging.",)
_SLIM_KEYS = frozenset({sc.ERROR_TYPE, sc.QUEUE_TIME_MS})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status_error INTEGER NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    events TEXT,
    links TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_ids ON spans (trace_id, span_id);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_by_received ON traces (received_ns);
CREATE TABLE IF NOT EXISTS links (
    linked_trace_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    PRIMARY KEY (linked_trace_id, trace_id)
) WITHOUT ROWID;
"""


def default_store_path() -> Path:
    """``$EVENTCHAIN_STORE``, else ``spans.sqlite`` in the user's cache directory
    (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``kafka-event-tracing/``)."""
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "kafka-event-tracing" / "spans.sqlite"


@dataclass(frozen=True)
class StoreStats:
    """What a store holds."""

    traces: int
    spans: int
    oldest_received_ns: int | None
    newest_received_ns: int | None


@dataclass(frozen=True)
class PruneResult:
    """What one retention pass dropped (whole traces)."""

    traces: int = 0
    spans: int = 0


class SpanStore:
    """One connection to a span store. Not shared between threads: each opens its own."""

    def __init__(self, connection: sqlite3.Connection, path: Path, version: int = _SCHEMA_VERSION) -> None:
        self._db = connection
        self.path = path
        self._rowid = version >= 2  # new spans are the rows after the last rowid

    # --- opening ---

    @classmethod
    def open(cls, path: str | Path) -> SpanStore:
        """Open an existing store for reading; :class:`LoadError` (one line) when there is none."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise LoadError(f"no span store at {path}: start one with eventchain serve --store {path}")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
            db.execute("PRAGMA query_only = ON")
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise LoadError(f"{path} is not a span store ({exc}): try another --store PATH") from None
        if version not in _SCHEMA_VERSIONS:
            db.close()
            raise LoadError(
                f"{path} is not a span store of this eventchain (schema {version}): try another --store PATH"
            )
        return cls(db, path, version)

    @classmethod
    def create(cls, path: str | Path) -> SpanStore:
        """Open a store for writing, creating it (and its folder) when missing; WAL mode."""
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a crash of the process
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, *_SCHEMA_VERSIONS):
                raise LoadError(
                    f"{path} holds another schema ({version}): try another --store PATH, or remove the file"
                )
            if version == 0:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                version = _SCHEMA_VERSION
            db.commit()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise LoadError(f"cannot open the span store {path} ({exc}): try another --store PATH") from None
        return cls(db, path, version)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SpanStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading ---

    def trace_ids(
        self, *, prefix: str | None = None, since_ns: int | None = None, limit: int | None = None
    ) -> list[str]:
        """Trace ids, newest first (by their first span's start); ``prefix``: lower-case hex digits."""
        sql = "SELECT trace_id FROM traces WHERE 1=1"
        params: list[Any] = []
        if prefix:
            sql += " AND trace_id >= ? AND trace_id < ?"
            params += [prefix, prefix + "g"]
        if since_ns is not None:
            sql += " AND start_ns >= ?"
            params.append(since_ns)
        sql += " ORDER BY start_ns DESC, trace_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [row[0] for row in self._read(sql, params)]

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of one trace (empty when the store does not hold it)."""
        return [
            _span(row, slim=False)
            for row in self._read(f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ?", [trace_id])
        ]

    def spans(
        self, *, since_ns: int | None = None, slim: bool = False, as_received: bool = False
    ) -> Iterator[Span]:
        """Every span (of traces that started at or after ``since_ns``), a trace's spans together;
        with ``as_received``, in the order they were received instead (as a file is written: what a
        one-pass reader with a time window, the audit, needs)."""
        order = "rowid" if as_received else "trace_id"
        if since_ns is None:
            rows = self._read(f"SELECT {_COLUMNS} FROM spans ORDER BY {order}", [])
        else:
            rows = self._read(
                f"SELECT {_COLUMNS} FROM spans WHERE trace_id IN "
                f"(SELECT trace_id FROM traces WHERE start_ns >= ?) ORDER BY {order}",
                [since_ns],
            )
        for row in rows:
            yield _span(row, slim=slim)

    def linking_traces(self, trace_id: str) -> list[str]:
        """Traces that hold a span linking into ``trace_id`` (batch consumers, link-only consumers)."""
        return [
            row[0] for row in self._read("SELECT trace_id FROM links WHERE linked_trace_id = ?", [trace_id])
        ]

    def resolve(self, ref: TraceRef) -> str:
        """The one trace that ``ref`` (a typed id, prefix or traceparent) names; TraceNotFound otherwise."""
        ids = self.trace_ids(prefix=ref.prefix) if ref.prefix else []
        if self._read("SELECT 1 FROM traces WHERE trace_id = ?", [ref.trace_id]).fetchone():
            ids.append(ref.trace_id)
        return resolve(ref, ids, f"the span store {self.path}")

    def stats(self) -> StoreStats:
        """How many traces and spans the store holds, and when the oldest and newest arrived."""
        row = self._read(
            "SELECT count(*), coalesce(sum(span_count), 0), min(received_ns), max(received_ns) FROM traces",
            [],
        ).fetchone()
        return StoreStats(int(row[0]), int(row[1]), row[2], row[3])

    def _read(self, sql: str, params: list[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise LoadError(
                f"cannot read the span store {self.path} ({exc}): try again, or another --store PATH"
            ) from None

    # --- writing (serve) ---

    def add(self, spans: Iterable[Span], received_ns: int | None = None) -> dict[str, int]:
        """Store spans in one transaction; returns the spans newly stored per trace id."""
        received = received_ns if received_ns is not None else time.time_ns()
        added: dict[str, int] = {}
        bounds: dict[str, tuple[int, int]] = {}
        links: set[tuple[str, str]] = set()
        rows = []
        for s in spans:
            rows.append(_row(s))
            low, high = bounds.get(s.trace_id, (s.start_ns, s.end_ns))
            bounds[s.trace_id] = (min(low, s.start_ns), max(high, s.end_ns))
            for link in s.links:
                if link.trace_id != s.trace_id:
                    links.add((link.trace_id, s.trace_id))
        db = self._db
        with db:  # one transaction: all of the batch or nothing
            if self._rowid:
                last = db.execute("SELECT coalesce(max(rowid), 0) FROM spans").fetchone()[0]
                before = db.total_changes
                db.executemany(_INSERT_SPAN, rows)
                if db.total_changes - before == len(rows):
                    for row in rows:
                        added[row[0]] = added.get(row[0], 0) + 1
                else:  # some were stored before (a sender retried a batch): count only the new rows
                    added.update(
                        db.execute(
                            "SELECT trace_id, count(*) FROM spans WHERE rowid > ? GROUP BY trace_id", (last,)
                        ).fetchall()
                    )
            else:
                for row in rows:
                    if db.execute(_INSERT_SPAN, row).rowcount > 0:
                        added[row[0]] = added.get(row[0], 0) + 1
            db.executemany(
                "INSERT INTO traces (trace_id, start_ns, end_ns, span_count, received_ns) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET "
                "start_ns = min(start_ns, excluded.start_ns), end_ns = max(end_ns, excluded.end_ns), "
                "span_count = span_count + excluded.span_count, received_ns = excluded.received_ns",
                [
                    (trace_id, start, end, added.get(trace_id, 0), received)
                    for trace_id, (start, end) in bounds.items()
                ],
            )
            db.executemany("INSERT OR IGNORE INTO links (linked_trace_id, trace_id) VALUES (?, ?)", links)
        return added

    def prune(self, *, max_spans: int | None = None, older_than_ns: int | None = None) -> PruneResult:
        """Drop whole traces, the least recently received first: those last received before
        ``older_than_ns``, then as many as needed to hold at most ``max_spans`` spans."""
        db = self._db
        doomed: list[tuple[str, int]] = []
        if older_than_ns is not None:
            doomed += db.execute(
                "SELECT trace_id, span_count FROM traces WHERE received_ns < ? ORDER BY received_ns",
                (older_than_ns,),
            ).fetchall()
        if max_spans is not None:
            total = int(db.execute("SELECT coalesce(sum(span_count), 0) FROM traces").fetchone()[0])
            total -= sum(count for _, count in doomed)
            if total > max_spans:
                seen = {t for t, _ in doomed}
                for trace_id, count in db.execute(
                    "SELECT trace_id, span_count FROM traces ORDER BY received_ns, start_ns"
                ):
                    if total <= max_spans:
                        break
                    if trace_id in seen:
                        continue
                    doomed.append((trace_id, count))
                    total -= count
        if not doomed:
            return PruneResult()
        with db:
            ids = [(t,) for t, _ in doomed]
            db.executemany("DELETE FROM spans WHERE trace_id = ?", ids)
            db.executemany("DELETE FROM traces WHERE trace_id = ?", ids)
            db.executemany("DELETE FROM links WHERE trace_id = ?", ids)
        return PruneResult(traces=len(doomed), spans=sum(count for _, count in doomed))


_COLUMNS = (
    "trace_id, span_id, parent_id, name, kind, service, start_ns, end_ns, status_error, status_message, "
    "attributes, events, links"
)
_MARKS = ", ".join("?" * 13)
_INSERT_SPAN = f"INSERT OR IGNORE INTO spans ({_COLUMNS}) VALUES ({_MARKS})"


def _plain(value: Any) -> Any:
    """An attribute value JSON can hold (bytes become base64 text, as OTLP/JSON writes them)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call


def _dump(value: Any) -> str:
    try:
        return _ENCODE(value)
    except (TypeError, ValueError):
        return json.dumps(_plain(value), separators=(",", ":"), default=str)


def _row(s: Span) -> tuple[Any, ...]:
    return (
        s.trace_id,
        s.span_id,
        s.parent_id,
        s.name,
        s.kind,
        s.service,
        s.start_ns,
        s.end_ns,
        1 if s.status_error else 0,
        s.status_message,
        _dump(s.attributes),
        _dump([[e.name, e.time_ns, e.attributes] for e in s.events]) if s.events else None,
        _dump([[link.trace_id, link.span_id, link.attributes] for link in s.links]) if s.links else None,
    )


def _span(row: tuple[Any, ...], slim: bool) -> Span:
    attributes: dict[str, Any] = json.loads(row[10])
    if slim:
        attributes = {k: v for k, v in attributes.items() if k.startswith(_SLIM_PREFIXES) or k in _SLIM_KEYS}
    return Span(
        trace_id=row[0],
        span_id=row[1],
        parent_id=row[2],
        name=row[3],
        kind=row[4],
        service=row[5],
        start_ns=row[6],
        end_ns=row[7],
        attributes=attributes,
        events=[] if slim or not row[11] else [SpanEvent(n, t, a) for n, t, a in json.loads(row[11])],
        links=[] if not row[12] else [SpanRef(t, s, {} if slim else a) for t, s, a in json.loads(row[12])],
        status_error=bool(row[8]),
        status_message=row[9],
    )
