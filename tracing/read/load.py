"""Load spans from Jaeger's HTTP API, a Jaeger JSON file, an OTLP JSON file, or SDK span objects.

Every loader returns plain :class:`~tracing.read.model.Span` records; nothing downstream knows where
they came from. File formats are told apart by content, never by file name:

- Jaeger JSON: what ``/api/traces`` answers and the Jaeger UI downloads (``{"data": [trace, ...]}``),
  or a bare trace object, or a list of them;
- OTLP JSON: ``{"resourceSpans": [...]}`` objects, one per line as the collector's file exporter writes
  them (one trace may be spread over many lines), or a single pretty-printed object, or Jaeger's
  ``/api/v3/traces`` answer (``{"result": {"resourceSpans": [...]}}``).

Failures raise :class:`LoadError` (bad input), :class:`TraceNotFound` or :class:`JaegerUnavailable`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tracing.read.model import Span, SpanEvent, SpanRef

__all__ = [
    "JaegerClient",
    "JaegerUnavailable",
    "LoadError",
    "TraceNotFound",
    "from_readable_spans",
    "normalise_trace_id",
    "parse_jaeger",
    "parse_otlp",
    "read_file",
]

_HEX = re.compile(r"[0-9a-fA-F]+")
_OTLP_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


class LoadError(Exception):
    """The input cannot be read: a missing, unreadable or malformed file, or a bad argument."""


class TraceNotFound(LoadError):
    """The trace id is not in the file or not known to Jaeger."""


class JaegerUnavailable(Exception):
    """Jaeger could not be reached, or answered with something that is not its API."""


def normalise_trace_id(text: str) -> str:
    """Return a trace id as 32 lower-case hex digits (Jaeger may print them without leading zeros).

    >>> normalise_trace_id("  4BF92F3577B34DA6 ")
    '00000000000000004bf92f3577b34da6'
    """
    value = text.strip()
    if not value or len(value) > 32 or not _HEX.fullmatch(value):
        raise LoadError(f"{text!r} is not a trace id (up to 32 hex digits)")
    return value.lower().rjust(32, "0")


# --- files --------------------------------------------------------------------------------------


def read_file(path: str | Path) -> list[Span]:
    """Load every span in a Jaeger JSON or OTLP JSON file, telling the format by its content."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise LoadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise LoadError(f"{name}: is a directory, not a file") from None
    except PermissionError:
        raise LoadError(f"{name}: permission denied") from None
    except OSError as exc:
        raise LoadError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{name}: not UTF-8 text (bad byte at position {exc.start})") from None
    if not text.strip():
        raise LoadError(f"{name}: the file is empty")
    try:
        spans = _parse_text(text)
    except LoadError as exc:
        raise LoadError(f"{name}: {exc}") from None
    if not spans:
        raise LoadError(f"{name}: holds no spans")
    return spans


def _parse_text(text: str) -> list[Span]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2 or not _parses(lines[0][1]):
            # Not JSON lines either: report where the document as a whole breaks.
            raise LoadError(
                f"not JSON ({whole_error.msg} at line {whole_error.lineno}, column {whole_error.colno})"
            ) from None
        return _parse_otlp_lines(lines)
    if isinstance(doc, dict) and _is_otlp(doc):
        return parse_otlp(doc)
    if _is_jaeger(doc):
        return parse_jaeger(doc)
    raise LoadError(f"neither Jaeger JSON nor OTLP JSON ({_describe(doc)})")


def _parse_otlp_lines(lines: list[tuple[int, str]]) -> list[Span]:
    spans: list[Span] = []
    for number, line in lines:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"line {number}: not JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(doc, dict):
            raise LoadError(f"line {number}: not an OTLP JSON object ({_describe(doc)})")
        if _is_otlp(doc):
            try:
                spans.extend(parse_otlp(doc))
            except LoadError as exc:
                raise LoadError(f"line {number}: {exc}") from None
        elif not {"resourceLogs", "resourceMetrics"} & doc.keys():
            # Logs and metrics lines may share the file; anything else is not OTLP.
            raise LoadError(f"line {number}: not an OTLP JSON object ({_describe(doc)})")
    return spans


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _is_otlp(doc: dict[str, Any]) -> bool:
    result = doc.get("result")
    return "resourceSpans" in doc or (isinstance(result, dict) and "resourceSpans" in result)


def _is_jaeger(doc: Any) -> bool:
    if isinstance(doc, list):
        return bool(doc) and all(isinstance(t, dict) and "spans" in t for t in doc)
    return isinstance(doc, dict) and ("data" in doc or ("spans" in doc and "traceID" in doc))


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(list(doc)[:5]) or "none"
        return f"an object with keys: {keys}"
    return f"a JSON {type(doc).__name__}"


# --- Jaeger JSON --------------------------------------------------------------------------------


def parse_jaeger(doc: Any) -> list[Span]:
    """Spans from Jaeger's API JSON: ``{"data": [trace, ...]}``, one trace, or a list of traces."""
    if isinstance(doc, dict) and "data" in doc:
        traces = doc["data"] or []
        where = "data"
    elif isinstance(doc, dict):
        traces, where = [doc], "trace"
    else:
        traces, where = doc, "list"
    if not isinstance(traces, list):
        raise LoadError(f"malformed Jaeger JSON: '{where}' is not a list of traces")
    spans: list[Span] = []
    for t_index, trace in enumerate(traces):
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            raise LoadError(f"malformed Jaeger JSON: {where}[{t_index}] has no 'spans' list")
        processes = trace.get("processes") or {}
        for s_index, raw in enumerate(trace["spans"]):
            try:
                spans.append(_jaeger_span(raw, processes))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise LoadError(
                    f"malformed Jaeger span at {where}[{t_index}].spans[{s_index}] ({_why(exc)})"
                ) from None
    return spans


def _jaeger_span(raw: dict[str, Any], processes: Mapping[str, Any]) -> Span:
    trace_id = _hex_id(raw["traceID"], 32)
    span_id = _hex_id(raw["spanID"], 16)
    tags = _jaeger_tags(raw.get("tags"))
    process = raw.get("process") or processes.get(raw.get("processID"), {})
    parent_id: str | None = None
    links: list[SpanRef] = []
    refs = [
        (r.get("refType"), _hex_id(r["traceID"], 32), _hex_id(r["spanID"], 16))
        for r in raw.get("references") or []
    ]
    # Jaeger's own rule: the first same-trace CHILD_OF is the parent, else the first same-trace
    # reference. It writes a parent that is also linked (our process spans) as FOLLOWS_FROM only.
    same_trace = [r for r in refs if r[1] == trace_id]
    parent_ref = next((r for r in same_trace if r[0] == "CHILD_OF"), same_trace[0] if same_trace else None)
    if parent_ref is not None:
        parent_id = parent_ref[2]
    links = [SpanRef(t, s) for ref_type, t, s in refs if (ref_type, t, s) != parent_ref]
    events = [
        SpanEvent(
            name=str(fields.pop("event", "log")),
            time_ns=int(log.get("timestamp", 0)) * 1000,
            attributes=fields,
        )
        for log in raw.get("logs") or []
        for fields in [_jaeger_tags(log.get("fields"))]
    ]
    # Jaeger keeps kind and status as tags; lift them out so attributes hold only the span's own.
    status = str(tags.pop("otel.status_code", "")).upper()
    error_tag = tags.pop("error", False)
    status_message = tags.pop("otel.status_description", None)
    kind = str(tags.pop("span.kind", "internal")).lower()
    start_ns = int(raw["startTime"]) * 1000
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=str(raw.get("operationName", "")),
        kind=kind,
        service=str(process.get("serviceName") or "unknown_service"),
        start_ns=start_ns,
        end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
        attributes=tags,
        events=events,
        links=links,
        status_error=status == "ERROR" or error_tag in (True, "true"),
        status_message=str(status_message) if status_message else None,
    )


def _jaeger_tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(tag["key"]): tag.get("value") for tag in tags or []}


# --- OTLP JSON ----------------------------------------------------------------------------------


def parse_otlp(doc: Mapping[str, Any]) -> list[Span]:
    """Spans from one OTLP JSON object (``{"resourceSpans": [...]}``, bare or under ``"result"``).

    Accepts the OTLP/JSON encoding (hex ids, numeric enums) and the plain protobuf JSON mapping
    (base64 ids, enum names), and the older ``instrumentationLibrarySpans`` key.
    """
    if "resourceSpans" not in doc and isinstance(doc.get("result"), dict):
        doc = doc["result"]  # Jaeger's /api/v3/traces answer wraps the OTLP object
    spans: list[Span] = []
    resources = doc.get("resourceSpans") or []
    if not isinstance(resources, list):
        raise LoadError("malformed OTLP JSON: 'resourceSpans' is not a list")
    for r_index, resource_spans in enumerate(resources):
        try:
            resource = _otlp_attributes((resource_spans.get("resource") or {}).get("attributes"))
            service = str(resource.get("service.name") or "unknown_service")
            scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans")
            for s_index, scope in enumerate(scopes or []):
                for index, raw in enumerate(scope.get("spans") or []):
                    where = f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]"
                    try:
                        spans.append(_otlp_span(raw, service))
                    except (KeyError, TypeError, ValueError, AttributeError) as exc:
                        raise LoadError(f"malformed OTLP span at {where} ({_why(exc)})") from None
        except (TypeError, AttributeError) as exc:
            raise LoadError(f"malformed OTLP JSON at resourceSpans[{r_index}] ({_why(exc)})") from None
    return spans


def _otlp_span(raw: Mapping[str, Any], service: str) -> Span:
    status = raw.get("status") or {}
    code = status.get("code", 0)
    kind = raw.get("kind", 1)
    if isinstance(kind, str):
        kind_name = kind.removeprefix("SPAN_KIND_").lower()
        kind_name = "internal" if kind_name == "unspecified" else kind_name
    else:
        kind_name = _OTLP_KINDS.get(int(kind), "internal")
    parent = raw.get("parentSpanId") or ""
    return Span(
        trace_id=_hex_id(raw["traceId"], 32),
        span_id=_hex_id(raw["spanId"], 16),
        parent_id=_hex_id(parent, 16) if parent else None,
        name=str(raw.get("name", "")),
        kind=kind_name,
        service=service,
        start_ns=int(raw["startTimeUnixNano"]),
        end_ns=int(raw.get("endTimeUnixNano") or raw["startTimeUnixNano"]),
        attributes=_otlp_attributes(raw.get("attributes")),
        events=[
            SpanEvent(
                str(e.get("name", "")), int(e.get("timeUnixNano", 0)), _otlp_attributes(e.get("attributes"))
            )
            for e in raw.get("events") or []
        ],
        links=[
            SpanRef(
                _hex_id(link["traceId"], 32),
                _hex_id(link["spanId"], 16),
                _otlp_attributes(link.get("attributes")),
            )
            for link in raw.get("links") or []
        ],
        status_error=code in (2, "2", "STATUS_CODE_ERROR"),
        status_message=status.get("message") or None,
    )


def _otlp_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(item["key"]): _otlp_value(item.get("value") or {}) for item in items or []}


def _otlp_value(value: Mapping[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])  # int64 travels as a JSON string
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _otlp_attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _hex_id(value: Any, digits: int) -> str:
    """An id as lower-case hex: accepts hex (padded if short) and base64 (protobuf JSON)."""
    text = str(value).strip()
    if _HEX.fullmatch(text) and len(text) <= digits:
        return text.lower().rjust(digits, "0")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) * 2 == digits:
        return raw.hex()
    raise ValueError(f"{text!r} is not a {digits}-digit hex id")


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


# --- OpenTelemetry SDK spans ----------------------------------------------------------------------


def from_readable_spans(spans: Iterable[Any]) -> list[Span]:
    """Convert OpenTelemetry SDK ``ReadableSpan`` objects (e.g. an ``InMemorySpanExporter``'s).

    Lets a process print its own event chains without Jaeger::

        exporter = InMemorySpanExporter()
        ...
        render_chain(from_readable_spans(exporter.get_finished_spans()))
    """
    result = []
    for s in spans:
        context = s.context
        resource = getattr(s, "resource", None)
        service = resource.attributes.get("service.name") if resource is not None else None
        status = s.status
        start = s.start_time or 0
        result.append(
            Span(
                trace_id=format(context.trace_id, "032x"),
                span_id=format(context.span_id, "016x"),
                parent_id=format(s.parent.span_id, "016x") if s.parent is not None else None,
                name=s.name,
                kind=s.kind.name.lower(),
                service=str(service or "unknown_service"),
                start_ns=start,
                end_ns=s.end_time or start,
                attributes=dict(s.attributes or {}),
                events=[SpanEvent(e.name, e.timestamp, dict(e.attributes or {})) for e in s.events],
                links=[
                    SpanRef(
                        format(link.context.trace_id, "032x"),
                        format(link.context.span_id, "016x"),
                        dict(link.attributes or {}),
                    )
                    for link in s.links
                ],
                status_error=status.status_code.name == "ERROR",
                status_message=status.description or None,
            )
        )
    return result


# --- Jaeger HTTP API ----------------------------------------------------------------------------


class JaegerClient:
    """A small client for the Jaeger query service's HTTP API (the one its UI uses).

    >>> client = JaegerClient("http://localhost:16686")
    >>> spans = client.trace("4bf92f3577b34da6a3ce929d0e0e4736")  # doctest: +SKIP
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LoadError(f"{url!r} is not an http(s) URL of a Jaeger query service")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of one trace; raises :class:`TraceNotFound` if Jaeger does not know it."""
        trace_id = normalise_trace_id(trace_id)
        doc = self._get(f"/api/traces/{trace_id}", not_found_ok=True)
        spans = parse_jaeger(doc) if doc is not None else []
        if not spans:
            raise TraceNotFound(f"trace {trace_id} not found in Jaeger at {self.url}")
        return spans

    def services(self) -> list[str]:
        """The service names Jaeger has seen."""
        doc = self._get("/api/services")
        return sorted(str(s) for s in (doc.get("data") or []))

    def search(
        self, service: str, start_ns: int, end_ns: int, limit: int = 20, tags: Mapping[str, str] | None = None
    ) -> list[Span]:
        """Spans of the traces of ``service`` that started in [start_ns, end_ns]."""
        params = {
            "service": service,
            "start": str(start_ns // 1000),
            "end": str(end_ns // 1000),
            "limit": str(limit),
        }
        if tags:
            params["tags"] = json.dumps(dict(tags), separators=(",", ":"))
        return parse_jaeger(self._get("/api/traces?" + urllib.parse.urlencode(params)))

    def _get(self, path: str, not_found_ok: bool = False) -> Any:
        """Jaeger's answer to a GET: its JSON document, or None for a 404 when ``not_found_ok``.

        Every answer of the query API, errors included, is a JSON object with a ``data`` key (an
        error has ``"data": null`` and the reason under ``errors``). Anything else comes from some
        other server at that URL: that, like an error answer, raises :class:`JaegerUnavailable`.
        """
        endpoint = path.split("?")[0]
        request = urllib.request.Request(self.url + path, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise JaegerUnavailable(f"cannot reach Jaeger at {self.url} ({reason})") from None
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or "data" not in doc:
            raise JaegerUnavailable(
                f"{self.url} did not answer Jaeger's JSON API on {endpoint} (HTTP {status})"
            )
        if status == 200:
            return doc
        if status == 404 and not_found_ok:
            return None
        raise JaegerUnavailable(
            f"Jaeger at {self.url} answered HTTP {status} to {endpoint}{_jaeger_reason(doc)}"
        )


def _jaeger_reason(doc: Mapping[str, Any]) -> str:
    """``: <message>`` from the ``errors`` of a Jaeger error answer, or nothing."""
    errors = doc.get("errors")
    if not isinstance(errors, list):
        return ""
    messages = [str(e["msg"]) for e in errors if isinstance(e, dict) and e.get("msg")]
    return ": " + "; ".join(messages) if messages else ""
