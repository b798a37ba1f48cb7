"""``eventchain serve``: an OTLP receiver that stores spans in a :mod:`~tracing.read.store` and prints
each event chain when it settles.

One more loader of the read side: OTLP requests in (OTLP/HTTP protobuf or JSON on ``/v1/traces``,
OTLP/gRPC), :class:`~tracing.read.model.Span` records out, into the store; the chains are built,
analysed and rendered by the same steps as every other command.

- Acknowledged means stored: a request is answered 200 (gRPC OK) only after its spans are committed.
- Bounded: a request body limit (compressed and decompressed), a limit on spans waiting to be written
  (beyond it: HTTP 503 with ``Retry-After``, gRPC UNAVAILABLE, which exporters retry), a limit on
  concurrent HTTP connections and on chains waiting to settle.
- Invalid requests get the OTLP/HTTP spec's answer (400 with a ``google.rpc.Status`` body in the
  request's encoding, 413, 415, 404, 405) and the receiver keeps serving; spans with invalid ids are
  rejected and counted (``partial_success``).
- Metrics and logs are accepted and dropped, with one notice per signal and a count at exit.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console

from tracing.read import make_chain
from tracing.read.analyse import fold_repeats, summarise
from tracing.read.load import LoadError, parse_otlp, spans_from_protobuf
from tracing.read.model import Span
from tracing.read.render import Glyphs, format_ms, render_text
from tracing.read.store import PruneResult, SpanStore

__all__ = ["ServeOptions", "parse_address", "serve"]

TRACES_PATH = "/v1/traces"
_DROPPED_PATHS = {"/v1/metrics": "metrics", "/v1/logs": "logs"}
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_NOTICE_EVERY_S = 10.0


@dataclass
class ServeOptions:
    """What ``eventchain serve`` was asked for (the CLI fills it from its arguments)."""

    store: Path
    http: tuple[str, int] = ("127.0.0.1", 4318)
    grpc: tuple[str, int] | None = None
    max_spans: int | None = 1_000_000
    max_age_ns: int | None = 7 * 86400 * 10**9
    live: bool = False
    settle_s: float = 3.0
    max_body: int = 32 * 1024 * 1024
    max_waiting_spans: int = 200_000
    """Spans received but not yet written; beyond it, requests are turned away to be retried."""
    max_connections: int = 64
    max_settling: int = 10_000
    """Chains waiting to settle (``--live``); beyond it the oldest is printed early, and counted."""
    console: Console | None = None
    glyphs: Glyphs | None = None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); ValueError saying what is wrong."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r} is not an address like 127.0.0.1:4318 (port 0 picks a free one)")
    return host, number


class BadRequest(Exception):
    """An OTLP request that is not valid: answered 400 with this message."""


def decode_traces(body: bytes, content_type: str) -> tuple[list[Span], int, str]:
    """The spans of an OTLP/HTTP traces request body (protobuf or JSON); BadRequest when invalid."""
    if content_type == _PROTOBUF:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"not an OTLP ExportTraceServiceRequest ({exc})") from None
        return spans_from_protobuf(request)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadRequest("not an OTLP/JSON ExportTraceServiceRequest (the body must be an object)")
    try:
        return parse_otlp(doc), 0, ""
    except LoadError as exc:
        raise BadRequest(str(exc)) from None


# --- the writer: one thread, batches committed before they are acknowledged ------------------------


class _Batch:
    __slots__ = ("spans", "done", "failed")

    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.done = threading.Event()
        self.failed = False


class _Notices:
    """Lines on stderr: each kind said at once, repeats summed up at most every few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(f"eventchain serve: {text}", file=sys.stderr, flush=True)


class Receiver:
    """Takes decoded spans from the listeners, writes them in batches, applies retention."""

    def __init__(
        self,
        store: SpanStore,
        options: ServeOptions,
        notices: _Notices,
        on_stored: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self._store = store
        self._options = options
        self._notices = notices
        self._on_stored = on_stored
        self._cond = threading.Condition()
        self._queue: list[_Batch] = []
        self._waiting = 0
        self._closing = False
        self.stored = 0
        self.duplicates = 0
        self.turned_away = 0
        self.rejected = 0
        self.dropped = {"metrics": 0, "logs": 0}
        self._pruned = PruneResult()
        self._pruned_said = PruneResult()
        self._pruned_at = 0.0
        self._aged_at = 0.0
        self._total = store.stats().spans
        self._thread = threading.Thread(target=self._run, name="eventchain-store-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._retain(force=True)

    def submit(self, spans: list[Span]) -> _Batch | None:
        """Queue spans to be written; None when too many wait already (answer: retry later)."""
        batch = _Batch(spans)
        with self._cond:
            if self._closing or (
                self._waiting and self._waiting + len(spans) > self._options.max_waiting_spans
            ):
                self.turned_away += 1
                return None
            self._queue.append(batch)
            self._waiting += len(spans)
            self._cond.notify()
        return batch

    def dropped_signal(self, signal_name: str) -> None:
        with self._cond:
            self.dropped[signal_name] += 1
            first = self.dropped[signal_name] == 1
        if first:
            self._notices.say(
                f"{signal_name} received and dropped: serve keeps traces only "
                "(further ones are dropped without a line; the count is given at exit)"
            )

    def close(self) -> None:
        """Write what was accepted, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._say_pruned(final=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(timeout=1.0)
                    if not self._queue:
                        break
                batches, self._queue = self._queue, []
                self._waiting = 0
                done = self._closing and not batches
            if batches:
                self._write(batches)
            self._retain()
            if done:
                return

    def _write(self, batches: list[_Batch]) -> None:
        spans = [s for b in batches for s in b.spans]
        try:
            added = self._store.add(spans, time.time_ns())
        except Exception as exc:  # a full disk, a locked file: the exporters are told to retry
            self._notices.say(
                f"could not store {len(spans):,} spans ({exc}); their senders were told to retry"
            )
            with self._cond:
                self.turned_away += len(batches)  # answered 503 / UNAVAILABLE like a full queue
            for b in batches:
                b.failed = True
                b.done.set()
            return
        count = sum(added.values())
        self.stored += count
        self.duplicates += len(spans) - count
        self._total += count
        for b in batches:
            b.done.set()
        if self._on_stored is not None and added:
            self._on_stored(added)

    def _retain(self, force: bool = False) -> None:
        options = self._options
        now = time.monotonic()
        over = options.max_spans is not None and self._total > options.max_spans
        aged = options.max_age_ns is not None and (force or now - self._aged_at >= 1.0)
        if not (over or aged):
            return
        if aged:
            self._aged_at = now
        try:
            result = self._store.prune(
                max_spans=options.max_spans,
                older_than_ns=time.time_ns() - options.max_age_ns if options.max_age_ns is not None else None,
            )
        except Exception as exc:
            self._notices.say(f"retention could not run ({exc}); it is tried again with the next batch")
            return
        if result.traces:
            self._total -= result.spans
            self._pruned = PruneResult(self._pruned.traces + result.traces, self._pruned.spans + result.spans)
            self._say_pruned()

    def _say_pruned(self, final: bool = False) -> None:
        now = time.monotonic()
        new = PruneResult(
            self._pruned.traces - self._pruned_said.traces, self._pruned.spans - self._pruned_said.spans
        )
        if not new.traces or (
            not final and self._pruned_said.traces and now - self._pruned_at < _NOTICE_EVERY_S
        ):
            return
        self._pruned_at = now
        self._pruned_said = self._pruned
        limits = []
        if self._options.max_spans is not None:
            limits.append(f"--max-spans {self._options.max_spans:,}")
        if self._options.max_age_ns is not None:
            limits.append(f"--max-age {_age(self._options.max_age_ns)}")
        self._notices.say(
            f"retention dropped {new.traces:,} traces ({new.spans:,} spans), least recently received first "
            f"({', '.join(limits)})"
        )


def _age(ns: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if ns % (size * 10**9) == 0:
            return f"{ns // (size * 10**9)}{unit}"
    return f"{ns / 1e9:g}s"


# --- live: each chain printed when no new span came for --settle seconds ---------------------------


class LiveChains:
    """Prints a chain's tree once it settles, newest last; a chain that grows afterwards gets one
    update line per settling. Waiting chains are bounded (``max_settling``): beyond it, the one
    waiting longest is printed early, and that is counted."""

    def __init__(self, store_path: Path, options: ServeOptions, console: Console) -> None:
        self._path = store_path
        self._options = options
        self._console = console
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, tuple[float, int]] = OrderedDict()  # trace -> (last seen, new spans)
        self._printed: OrderedDict[str, int] = OrderedDict()  # trace -> spans shown
        self._early: list[str] = []  # printed before they settled: too many waiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventchain-live", daemon=True)
        self._store: SpanStore | None = None
        self.printed = 0
        self.updated = 0
        self.early = 0
        self.quiet = 0  # traces without a messaging span or an error: not printed, counted

    def start(self) -> None:
        self._thread.start()

    def stored(self, added: dict[str, int]) -> None:
        now = time.monotonic()
        with self._lock:
            for trace_id, count in added.items():
                _, new = self._waiting.pop(trace_id, (now, 0))
                self._waiting[trace_id] = (now, new + count)
            while len(self._waiting) > self._options.max_settling:
                self._early.append(self._waiting.popitem(last=False)[0])
                self.early += 1

    def close(self) -> None:
        """Print every chain still waiting (the receiver stops: they will not grow any more here)."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            rest = self._early + list(self._waiting)
            self._early = []
            self._waiting.clear()
        self._settled(rest)
        if self._store is not None:
            self._store.close()

    def _run(self) -> None:
        tick = min(0.25, self._options.settle_s / 4)
        while not self._stop.wait(tick):
            cutoff = time.monotonic() - self._options.settle_s
            with self._lock:
                due, self._early = self._early, []
                for trace_id, (seen, _) in self._waiting.items():
                    if seen > cutoff:
                        break  # ordered by last arrival: the rest are newer
                    due.append(trace_id)
                for trace_id in due:
                    del self._waiting[trace_id]
            if due:
                self._settled(due)

    def _settled(self, trace_ids: list[str]) -> None:
        if not trace_ids:
            return
        try:
            if self._store is None:
                self._store = SpanStore.open(self._path)
            for trace_id in trace_ids:
                self._show(self._store, trace_id)
        except Exception as exc:  # printing must never stop the receiver
            print(f"eventchain serve: warning: could not print a chain ({exc})", file=sys.stderr, flush=True)

    def _show(self, store: SpanStore, trace_id: str) -> None:
        spans = store.trace(trace_id)
        if not spans:
            return  # dropped by retention meanwhile
        if not any(s.is_messaging or s.error for s in spans):
            self.quiet += 1
            return
        for linking in store.linking_traces(trace_id):
            spans += store.trace(linking)
        chain = make_chain(spans, trace_id, follow_links=True, repeats=False)
        line = _summary_line(chain, len([s for s in spans if s.trace_id == trace_id]))
        shown = self._printed.pop(trace_id, None)
        own = sum(1 for s in spans if s.trace_id == trace_id)
        self._printed[trace_id] = own
        if len(self._printed) > 100_000:
            self._printed.popitem(last=False)
        if shown is not None:
            if own == shown:
                return
            self.updated += 1
            self._console.print(
                f"updated {trace_id}: +{own - shown:,} spans since printed; now {line}",
                highlight=False,
                soft_wrap=True,
            )
            return
        self.printed += 1
        render_text(fold_repeats(chain), self._console, summarise(chain), self._options.glyphs)
        self._console.print(f"settled {trace_id}: {line}", highlight=False, soft_wrap=True)
        self._console.file.flush()


def _summary_line(chain: Any, span_count: int) -> str:
    summary = summarise(chain)
    hops = list(chain.hops())
    duplicates = sum(1 for h in hops if h.duplicate)
    unconsumed = sum(1 for h in hops if h.unconsumed)
    parts = [
        _n(len(summary.services), "service"),
        _n(summary.hops, "hop"),
        format_ms(summary.duration_ms),
        _n(summary.errors, "error"),
        _n(duplicates, "duplicate"),
        _n(unconsumed, "unconsumed", "unconsumed"),
        _n(span_count, "span"),
    ]
    return ", ".join(parts)


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


# --- OTLP/HTTP ----------------------------------------------------------------------------------


def _status_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` (code, message) in the request's encoding, as OTLP/HTTP answers errors."""
    if content_type == _JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _success_body(rejected: int, why: str, content_type: str) -> bytes:
    if content_type == _JSON:
        if not rejected:
            return b"{}"
        return json.dumps({"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": why}}).encode()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = why
    return bytes(response.SerializeToString())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], receiver: Receiver, options: ServeOptions) -> None:
        self.receiver = receiver
        self.options = options
        self.slots = threading.BoundedSemaphore(options.max_connections)
        self.in_flight = 0
        self.in_flight_lock = threading.Condition()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):  # too many connections: turn this one away now
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def drain(self, timeout: float) -> None:
        """Wait for the requests being handled to be answered."""
        deadline = time.monotonic() + timeout
        with self.in_flight_lock:
            while self.in_flight and time.monotonic() < deadline:
                self.in_flight_lock.wait(timeout=0.1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no access log on the terminal

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, _JSON, "OTLP takes POST requests", {"Allow": "POST"})

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        with self.server.in_flight_lock:
            self.server.in_flight += 1
        try:
            self._post()
        finally:
            with self.server.in_flight_lock:
                self.server.in_flight -= 1
                self.server.in_flight_lock.notify_all()

    def _post(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        answer_type = _JSON if content_type == _JSON else _PROTOBUF
        if path != TRACES_PATH and path not in _DROPPED_PATHS:
            self._answer(
                HTTPStatus.NOT_FOUND, answer_type, f"no OTLP endpoint at {path}: traces go to {TRACES_PATH}"
            )
            return
        if content_type not in (_PROTOBUF, _JSON):
            self._answer(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                _JSON,
                f"Content-Type {content_type or '(none)'} is not OTLP: send {_PROTOBUF} or {_JSON}",
            )
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self._answer(HTTPStatus.LENGTH_REQUIRED, answer_type, "a Content-Length header is needed")
            return
        length = int(length_text)
        limit = self.server.options.max_body
        if length > limit:
            self._answer(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                answer_type,
                f"the body ({length:,} bytes) is over the limit of {limit:,}: send smaller batches",
            )
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return  # the sender went away mid-request
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, limit)
            except BadRequest as exc:
                status = (
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE if "limit" in str(exc) else HTTPStatus.BAD_REQUEST
                )
                self._answer(status, answer_type, str(exc))
                return
        elif encoding != "identity":
            self._answer(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                answer_type,
                f"Content-Encoding {encoding} is not supported: use gzip",
            )
            return
        receiver = self.server.receiver
        if path in _DROPPED_PATHS:
            receiver.dropped_signal(_DROPPED_PATHS[path])
            self._answer_ok(b"{}" if answer_type == _JSON else b"", answer_type)
            return
        try:
            spans, rejected, why = decode_traces(body, content_type)
        except BadRequest as exc:
            self._answer(HTTPStatus.BAD_REQUEST, answer_type, str(exc))
            return
        receiver.rejected += rejected
        if spans:
            batch = receiver.submit(spans)
            if batch is None or not batch.done.wait(timeout=60) or batch.failed:
                self._answer(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    answer_type,
                    "the receiver is busy: retry later",
                    {"Retry-After": "1"},
                )
                return
        self._answer_ok(_success_body(rejected, why, answer_type), answer_type)

    def _answer_ok(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(
        self, status: HTTPStatus, content_type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        body = _status_body(status.value, message, content_type)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status.value >= 400 and status not in (HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND):
            self.close_connection = True  # its body may not have been read
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"the gzip body cannot be decompressed ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BadRequest(f"the decompressed body is over the limit of {limit:,} bytes: send smaller batches")
    if not inflater.eof:
        raise BadRequest("the gzip body is truncated")
    return out


# --- OTLP/gRPC ----------------------------------------------------------------------------------


def _grpc_server(address: tuple[str, int], receiver: Receiver, options: ServeOptions) -> tuple[Any, int]:
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's name
            spans, rejected, why = spans_from_protobuf(request)
            receiver.rejected += rejected
            if spans:
                batch = receiver.submit(spans)
                if batch is None or not batch.done.wait(timeout=60) or batch.failed:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the receiver is busy: retry later")
            response = trace_service_pb2.ExportTraceServiceResponse()
            if rejected:
                response.partial_success.rejected_spans = rejected
                response.partial_success.error_message = why
            return response

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
            receiver.dropped_signal("metrics")
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
            receiver.dropped_signal("logs")
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="eventchain-grpc"),
        maximum_concurrent_rpcs=options.max_connections,
        options=[("grpc.max_receive_message_length", options.max_body)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    host, port = address
    try:
        bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise LoadError(
            f"cannot listen for OTLP/gRPC on {host}:{port} (in use? the local stack's Jaeger holds 4317): "
            f"try --grpc {host}:{port + 1 if port else 0}"
        )
    server.start()
    return server, bound


# --- the command ---------------------------------------------------------------------------------


def serve(options: ServeOptions, ready: Callable[[str], None] | None = None) -> int:
    """Run the receiver until SIGINT or SIGTERM; returns the exit code.

    Prints one line when listening (the addresses, the store) and one when stopped (what was stored,
    dropped or turned away). :class:`LoadError` for an address in use or a store that cannot open.
    """
    notices = _Notices()
    say = ready or notices.say
    store = SpanStore.create(options.store)
    console = options.console or Console()
    live = LiveChains(options.store, options, console) if options.live else None
    receiver = Receiver(store, options, notices, live.stored if live else None)
    try:
        http = _Server(options.http, receiver, options)
    except OSError as exc:
        store.close()
        host, port = options.http
        raise LoadError(
            f"cannot listen for OTLP/HTTP on {host}:{port} ({exc.strerror or exc}; the local stack's Jaeger "
            f"holds 4318 while it runs): try --http {host}:{port + 1 if port else 0}"
        ) from None
    grpc_server = None
    grpc_port = 0
    try:
        if options.grpc is not None:
            grpc_server, grpc_port = _grpc_server(options.grpc, receiver, options)
    except LoadError:
        http.server_close()
        store.close()
        raise
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    receiver.start()
    if live:
        live.start()
    listener = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    listener.start()
    host, port = str(http.server_address[0]), int(http.server_address[1])
    where = f"OTLP/HTTP on http://{host}:{port}{TRACES_PATH}"
    if grpc_server is not None:
        assert options.grpc is not None
        where += f" and OTLP/gRPC on {options.grpc[0]}:{grpc_port}"
    stats = store.stats()
    say(
        f"listening: {where}; storing in {options.store} ({stats.spans:,} spans kept); "
        f"send with OTEL_EXPORTER_OTLP_ENDPOINT=http://{host}:{port} "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; Ctrl-C stops"
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        # Stop taking requests, answer those in flight, write what was accepted, then print.
        http.shutdown()
        if grpc_server is not None:
            grpc_server.stop(grace=10).wait()
        http.drain(timeout=70)
        http.server_close()
        receiver.close()
        if live:
            live.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        end = store.stats()
        store.close()
    parts = [
        f"stored {receiver.stored:,} spans; the store holds {end.spans:,} spans in {end.traces:,} traces"
    ]
    if receiver.duplicates:
        parts.append(f"{receiver.duplicates:,} spans received again (kept once)")
    if receiver.rejected:
        parts.append(f"{receiver.rejected:,} spans rejected (invalid ids)")
    if receiver.turned_away:
        parts.append(f"{receiver.turned_away:,} requests turned away while busy (senders retry them)")
    for name, count in receiver.dropped.items():
        if count:
            parts.append(f"{count:,} {name} requests dropped (traces only)")
    if live:
        if live.quiet:
            parts.append(
                f"{live.quiet:,} traces without a messaging span or an error not printed "
                f"(eventchain list --store {options.store} --all shows them)"
            )
        if live.early:
            parts.append(f"{live.early:,} chains printed before they settled (too many waiting)")
    notices.say("stopped: " + "; ".join(parts))
    return 0
