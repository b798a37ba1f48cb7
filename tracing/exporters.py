"""Where :func:`tracing.configure` sends spans and metrics: ``OTEL_TRACES_EXPORTER`` and
``OTEL_METRICS_EXPORTER``.

Values (comma-separated for several):

- ``otlp`` (default): OTLP to ``OTEL_EXPORTER_OTLP_*``. At interpreter exit, when nothing listens at
  the endpoint, what is left is not retried for seconds: it is dropped, and one line on stderr says how
  many spans were not exported and what to do.
- ``console``: OTLP JSON lines on stdout, the format ``eventchain --file -`` reads.
- ``otlp_file``: OTLP JSON lines appended to the file ``KET_TRACES_FILE`` (metrics:
  ``KET_METRICS_FILE``) names, or ``configure(traces_file=...)``; the collector file exporter's format,
  read by ``eventchain --file``. Several processes may append to one file: each line is written whole
  under an exclusive lock, and a line a killed process left unfinished is cut off by the next writer.
- ``none``: nothing.

>>> import os; os.environ["OTEL_TRACES_EXPORTER"] = "otlp_file"      # doctest: +SKIP
>>> tracing.configure("billing", traces_file="spans.jsonl")          # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import IO, Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracing.write import otel

TRACES_FILE_ENV = "KET_TRACES_FILE"
METRICS_FILE_ENV = "KET_METRICS_FILE"
EXPORTERS = ("otlp", "console", "otlp_file", "none")
_PROBE_TIMEOUT_S = 0.5


def _names(variable: str) -> list[str]:
    raw = os.environ.get(variable, "otlp")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] or ["otlp"]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ValueError(f"{variable}={raw!r}: {', '.join(unknown)} is not one of {', '.join(EXPORTERS)}")
    return [] if "none" in names else names


def _file(explicit: str | None, variable: str, signal: str) -> str:
    path = explicit or os.environ.get(variable)
    if not path:
        raise ValueError(f"otlp_file needs a file for the {signal}: set {variable}=PATH")
    return path


# --- OTLP JSON lines ------------------------------------------------------------------------------


def _hex_ids(node: Any) -> Any:
    """The protobuf JSON mapping writes bytes as base64; OTLP/JSON wants trace and span ids in hex."""
    import base64

    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
    return node


def otlp_json_line(message: Any) -> bytes:
    """One OTLP/JSON line (hex ids, enums as numbers) of an ``Export*ServiceRequest``."""
    from google.protobuf.json_format import MessageToDict

    doc = _hex_ids(MessageToDict(message, use_integers_for_enums=True))
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


class JsonLinesFile:
    """Appends whole lines to a file that other processes may append to as well."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def append(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # reads its end
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                _cut_unfinished_line(fd)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _cut_unfinished_line(fd: int) -> None:
    """A writer killed mid-line left a line without its end: cut it, so the file stays whole lines."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


class _StdoutLines:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def append(self, line: bytes) -> None:
        with self._lock:
            stream: IO[bytes] = sys.stdout.buffer
            stream.write(line)
            stream.flush()

    def close(self) -> None:
        pass


class OtlpJsonSpanExporter(SpanExporter):
    """Spans as OTLP JSON lines, one line per batch, in a file (``path``) or on stdout (no path)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._out: JsonLinesFile | _StdoutLines = JsonLinesFile(path) if path is not None else _StdoutLines()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        try:
            self._out.append(otlp_json_line(encode_spans(spans)))
        except (OSError, ValueError) as exc:
            print(f"tracing: {len(spans)} spans not written ({exc})", file=sys.stderr)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    """Metrics as OTLP JSON lines, in a file (``path``) or on stdout (no path)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self._out: JsonLinesFile | _StdoutLines = JsonLinesFile(path) if path is not None else _StdoutLines()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        try:
            self._out.append(otlp_json_line(encode_metrics(metrics_data)))
        except (OSError, ValueError) as exc:
            print(f"tracing: metrics not written ({exc})", file=sys.stderr)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._out.close()


# --- OTLP, without a long wait at exit when nothing listens -----------------------------------------


class _ExitCheck:
    """At interpreter exit (before the SDK's own flush), asks once whether the OTLP endpoint accepts
    connections; if not, the exporters drop what is left at once instead of retrying for seconds,
    and one line says how many spans that was."""

    def __init__(self) -> None:
        self.exporters: list[Any] = []
        self.unreachable: str | None = None
        self.dropped = 0
        self.dropped_metrics = 0
        self.reported = False

    def probe(self) -> None:
        if self.unreachable:
            return
        for exporter in self.exporters:
            address = exporter.address
            if address is not None and not _accepts(address):
                self.unreachable = exporter.endpoint
                for other in self.exporters:
                    other.give_up()
                return

    def report(self) -> None:
        if self.reported:
            return
        if self.unreachable and (self.dropped or self.dropped_metrics):
            self.reported = True
            what = (
                f"{self.dropped:,} span{'' if self.dropped == 1 else 's'}"
                if self.dropped
                else "the last metrics"
            )
            print(
                f"tracing: {what} not exported at exit: nothing listens at {self.unreachable} "
                "(start a collector or `eventchain serve`, "
                "or set OTEL_TRACES_EXPORTER=none, console or otlp_file)",
                file=sys.stderr,
            )


_exit_check: _ExitCheck | None = None
_probe_registered = False


def _check() -> _ExitCheck:
    global _exit_check
    if _exit_check is None:
        _exit_check = _ExitCheck()
    return _exit_check


def _accepts(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _address(endpoint: str) -> tuple[str, int] | None:
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    if not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.hostname, port


class _BoundedAtExit:
    """Wraps an OTLP exporter; after :meth:`give_up`, exports are dropped (and counted) at once."""

    def __init__(self, inner: Any, check: _ExitCheck, metrics: bool) -> None:
        self.inner = inner
        self.check = check
        self.metrics = metrics
        self.endpoint = str(getattr(inner, "_endpoint", "") or "")
        self.address = _address(self.endpoint) if self.endpoint else None
        self.gave_up = False
        self.shut = False  # shut down by its provider (the program's own shutdown, before exit)

    def give_up(self) -> None:
        if self.gave_up:
            return
        self.gave_up = True
        if self.shut:
            return  # shut down already: shutting it down again only logs a warning
        try:
            self.inner.shutdown()  # ends a retry already waiting
        except Exception:
            pass


class BoundedSpanExporter(SpanExporter):
    def __init__(self, wrapper: _BoundedAtExit) -> None:
        self._w = wrapper

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._w.gave_up:
            self._w.check.dropped += len(spans)
            return SpanExportResult.FAILURE
        result: SpanExportResult = self._w.inner.export(spans)
        return result

    def shutdown(self) -> None:
        # The tracer provider shuts down last at exit (after the meter provider): what was dropped is known.
        if not self._w.gave_up and not self._w.shut:
            self._w.inner.shutdown()
        self._w.shut = True
        self._w.check.report()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._w.inner.force_flush(timeout_millis))


def _bounded_metrics(inner: MetricExporter, wrapper: _BoundedAtExit) -> MetricExporter:
    class BoundedMetricExporter(MetricExporter):
        def __init__(self) -> None:
            temporality, aggregation = otel.exporter_preferences(inner)
            super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)

        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            if wrapper.gave_up:
                wrapper.check.dropped_metrics += 1
                return MetricExportResult.FAILURE
            result: MetricExportResult = inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            return result

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            if not wrapper.gave_up and not wrapper.shut:
                inner.shutdown(timeout_millis=timeout_millis, **kwargs)
            wrapper.shut = True

    return BoundedMetricExporter()


def bounded_at_exit(exporter: Any, metrics: bool = False) -> Any:
    """``exporter`` (an OTLP one) wrapped so that exit does not wait on an endpoint nobody listens at."""
    check = _check()
    wrapper = _BoundedAtExit(exporter, check, metrics)
    check.exporters.append(wrapper)
    return _bounded_metrics(exporter, wrapper) if metrics else BoundedSpanExporter(wrapper)


def register_exit_probe() -> None:
    """Called by ``configure()`` after the providers exist: atexit runs it before their flush."""
    global _probe_registered
    if _exit_check is not None and _exit_check.exporters and not _probe_registered:
        _probe_registered = True
        atexit.register(_exit_check.probe)


# --- from the variables -----------------------------------------------------------------------------


def span_exporters(otlp: Callable[[], SpanExporter], traces_file: str | None = None) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` built by ``otlp``); ValueError if unknown."""
    result: list[SpanExporter] = []
    for name in _names("OTEL_TRACES_EXPORTER"):
        if name == "otlp":
            result.append(bounded_at_exit(otlp()))
        elif name == "console":
            result.append(OtlpJsonSpanExporter())
        else:
            result.append(OtlpJsonSpanExporter(_file(traces_file, TRACES_FILE_ENV, "spans")))
    return result


def metric_exporter(
    otlp: Callable[[], MetricExporter], metrics_file: str | None = None
) -> MetricExporter | None:
    """The exporter ``OTEL_METRICS_EXPORTER`` names (the first, when several), or None for ``none``."""
    names = _names("OTEL_METRICS_EXPORTER")
    if not names:
        return None
    name = names[0]
    if name == "otlp":
        exporter: MetricExporter = bounded_at_exit(otlp(), metrics=True)
        return exporter
    if name == "console":
        return OtlpJsonMetricExporter()
    return OtlpJsonMetricExporter(_file(metrics_file, METRICS_FILE_ENV, "metrics"))
