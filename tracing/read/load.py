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
import contextlib
import gzip
import io
import json
import logging
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, Any

import msgspec

from tracing import semconv as sc
from tracing.read.model import _OPERATION_ROLES, Span, SpanEvent, SpanRef, role_of_kind

__all__ = [
    "JaegerClient",
    "JaegerUnavailable",
    "LoadError",
    "TraceNotFound",
    "TraceRef",
    "from_readable_spans",
    "iter_file",
    "normalise_trace_id",
    "parse_trace_ref",
    "parse_jaeger",
    "parse_otlp",
    "read_file",
    "spans_from_protobuf",
    "resolve",
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
        raise LoadError(
            f"{text!r} is not a trace id (try its 32 hex digits, a unique 8+ digit prefix, a traceparent "
            "or a Jaeger trace URL)"
        )
    return value.lower().rjust(32, "0")


# --- trace references ----------------------------------------------------------------------------

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_UI_TRACE = re.compile(r"/trace/([0-9a-fA-F]+)")
MIN_PREFIX = 8


@dataclass(frozen=True)
class TraceRef:
    """What a user typed to name a trace, understood.

    ``trace_id`` is 32 hex digits when the input was a full id (or a shorter one padded, as Jaeger
    prints 64-bit ids), and ``prefix`` the digits typed when they may also be the start of an id.
    A ``traceparent`` also names a span; a Jaeger UI URL also names the Jaeger it came from.
    """

    trace_id: str
    prefix: str | None = None
    span_id: str | None = None
    jaeger_url: str | None = None

    def matches(self, trace_id: str) -> bool:
        """True for the trace this names: the padded id, or an id starting with the prefix."""
        return trace_id == self.trace_id or (self.prefix is not None and trace_id.startswith(self.prefix))


def parse_trace_ref(text: str) -> TraceRef:
    """Understand a trace id, a unique prefix of 8+ hex digits, a ``traceparent`` or a Jaeger UI URL.

    >>> parse_trace_ref("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").span_id
    '00f067aa0ba902b7'
    >>> parse_trace_ref("http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736").jaeger_url
    'http://jaeger:16686'
    """
    value = text.strip()
    parent = _TRACEPARENT.fullmatch(value.lower())
    if parent:
        return TraceRef(parent.group(2), span_id=parent.group(3))
    if "://" in value:
        parsed = urllib.parse.urlsplit(value)
        found = _UI_TRACE.search(parsed.path)
        if not found or parsed.scheme not in ("http", "https"):
            raise LoadError(
                f"{text!r} is not a Jaeger trace URL (try the URL of a trace page, .../trace/ID, "
                "or the trace id itself)"
            )
        base = parsed.path[: found.start()]
        query = urllib.parse.parse_qs(parsed.query)
        span = (query.get("uiFind") or [""])[0]
        ref = parse_trace_ref(found.group(1))
        span_id = span.lower() if span and _HEX.fullmatch(span) and len(span) <= 16 else None
        return TraceRef(
            ref.trace_id,
            ref.prefix,
            span_id.rjust(16, "0") if span_id else None,
            urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, base.rstrip("/"), "", "")),
        )
    trace_id = normalise_trace_id(value)
    digits = value.lower()
    return TraceRef(trace_id, prefix=digits if MIN_PREFIX <= len(digits) < 32 else None)


def resolve(ref: TraceRef, trace_ids: Iterable[str], where: str) -> str:
    """The one trace among ``trace_ids`` that ``ref`` names; raises :class:`TraceNotFound` otherwise."""
    ids = set(trace_ids)
    if ref.trace_id in ids:
        return ref.trace_id
    found = sorted(t for t in ids if ref.prefix is not None and t.startswith(ref.prefix))
    if len(found) == 1:
        return found[0]
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise LoadError(
            f"{ref.prefix} is the start of {len(found)} trace ids in {where} ({shown}): try more digits"
        )
    if ref.prefix or len(ref.trace_id.lstrip("0")) > 16:
        typed, hint = ref.prefix or ref.trace_id, ""
    else:  # a short id is read as a 64-bit one with leading zeros, and is not a prefix
        typed = ref.trace_id.lstrip("0") or "0"
        hint = f" (a prefix needs at least {MIN_PREFIX} hex digits)"
    raise TraceNotFound(
        f"trace {typed} not found in {where}{hint}: try `eventchain list` with the same "
        "--file, --store or --jaeger for the chains there"
    )


# --- files --------------------------------------------------------------------------------------

Warn = Callable[[str], None]
FORMAT_HINT = "try a Jaeger JSON download or OTLP JSON lines as the collector writes them, plain or gzipped"


def _log_warning(message: str) -> None:
    logging.getLogger("tracing.read").warning("%s", message)


def read_file(path: str | Path, *, warn: Warn | None = None, slim: bool = False) -> list[Span]:
    """Load every span in a Jaeger JSON or OTLP JSON file, telling the format by its content.

    ``path`` ``-`` reads standard input; gzip-compressed input is read as such. OTLP JSON lines are
    read a line at a time and Jaeger JSON a trace at a time, so no second copy of the file is held.
    A truncated or corrupt *last* line of OTLP JSON lines (a file still being written) is skipped
    and reported through ``warn`` (by default the ``tracing.read`` logger); anywhere else it is an
    error naming the line. ``slim`` keeps only what lists and searches read (messaging attributes,
    status, links) to hold big files in less memory.
    """
    return list(iter_file(path, warn=warn, slim=slim))


def iter_file(path: str | Path, *, warn: Warn | None = None, slim: bool = False) -> Iterator[Span]:
    """The spans of a file as they are read (see :func:`read_file`)."""
    return chain.from_iterable(_read(path, warn or _log_warning, _SpanReader(slim)))


SpanFacts = tuple[str, str, "str | None", str, str, int, int, bool, "str | None", tuple[str, ...]]
"""What a chain's summary reads of a span, as a plain tuple: (trace id, span id, parent id, name,
service, start ns, end ns, in error, messaging role or None, ids of the spans it links to)."""


def iter_file_facts(path: str | Path, *, warn: Warn | None = None) -> Iterator[SpanFacts]:
    """The :data:`SpanFacts` of every span of a file, as they are read (see :func:`read_file`).

    What ``list`` needs and no more: OTLP spans go straight from their JSON to the tuple, with no
    :class:`Span` or attribute dict in between. The same input errors are raised as by
    :func:`iter_file`.
    """
    return chain.from_iterable(_read(path, warn or _log_warning, _FactsReader()))


def span_facts(span: Span) -> SpanFacts:
    """The :data:`SpanFacts` of a loaded span."""
    return (
        span.trace_id,
        span.span_id,
        span.parent_id,
        span.name,
        span.service,
        span.start_ns,
        span.end_ns,
        span.error is not None,
        span.role,
        tuple(link.span_id for link in span.links),
    )


def _read(path: str | Path, warn: Warn, convert: _SpanReader) -> Iterator[list[Any]]:
    """What ``convert`` makes of the spans of a file, a batch at a time (a line of OTLP JSON lines,
    a trace of Jaeger JSON, a whole document): flattened by the caller in C, not a generator frame
    per span."""
    name = str(path)
    with _open_text(path) as stream:
        try:
            first = _first_line(stream)
            if not first.strip():
                raise LoadError("the file is empty")
            yield from _parse_stream(first, stream, convert, warn)
        except LoadError as exc:
            if _cut_short(stream):
                hint = f"the compressed data ends early: try gzip -t {name}"
                raise LoadError(f"{name}: {exc} ({hint})") from None
            raise LoadError(f"{name}: {exc} ({FORMAT_HINT})") from None
        except UnicodeDecodeError as exc:
            raise LoadError(
                f"{name}: not UTF-8 text (bad byte at position {exc.start}; {FORMAT_HINT})"
            ) from None
        except OSError as exc:  # a gzip stream that is cut short, a read error
            raise LoadError(f"{name}: cannot read it ({exc.strerror or exc}; {FORMAT_HINT})") from None
        except EOFError:
            raise LoadError(
                f"{name}: the compressed data ends early (a truncated .gz file? try gzip -t {name})"
            ) from None
        if _cut_short(stream):
            warn(
                f"{name}: the compressed data ends early (a file compressed while being written? "
                f"try gzip -t {name}); the spans before the cut are shown"
            )
    if not convert.count:
        raise LoadError(f"{name}: holds no spans ({FORMAT_HINT})")


def _cut_short(stream: io.TextIOBase) -> bool:
    return bool(getattr(getattr(stream, "buffer", None), "cut_short", False))


@contextlib.contextmanager
def _open_text(path: str | Path) -> Iterator[io.TextIOBase]:
    name = str(path)
    try:
        if name == "-":
            raw: IO[bytes] = sys.stdin.buffer
            close = False
        else:
            raw = open(path, "rb")  # noqa: SIM115 - closed below
            close = True
    except FileNotFoundError:
        raise LoadError(f"{name}: no such file (try another path, or --jaeger URL to read Jaeger)") from None
    except IsADirectoryError:
        raise LoadError(f"{name}: is a directory, not a file (try a file in it)") from None
    except PermissionError:
        raise LoadError(f"{name}: permission denied (try a copy you can read)") from None
    except OSError as exc:
        raise LoadError(f"{name}: cannot read it ({exc.strerror or exc}; try another file)") from None
    try:
        buffered: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
        try:
            magic = buffered.peek(2)[:2]
        except IsADirectoryError:
            raise LoadError(f"{name}: is a directory, not a file (try a file in it)") from None
        except OSError as exc:
            raise LoadError(f"{name}: cannot read it ({exc.strerror or exc}; try another file)") from None
        binary: Any = _GzipCutShort(fileobj=buffered) if magic == b"\x1f\x8b" else buffered
        yield io.TextIOWrapper(binary, encoding="utf-8-sig", newline=None)
    finally:
        if close:
            raw.close()


class _GzipCutShort(gzip.GzipFile):
    """A gzip stream that ends where its data is cut (a file copied or compressed while being
    written): reading stops there, ``cut_short`` says so, and what came before is read as usual."""

    cut_short = False

    def read(self, size: int | None = -1) -> bytes:
        try:
            return super().read(size)
        except EOFError:
            self.cut_short = True
            return b""

    def read1(self, size: int = -1) -> bytes:
        try:
            return super().read1(size)
        except EOFError:
            self.cut_short = True
            return b""


def _first_line(stream: io.TextIOBase) -> str:
    # Skip leading blank lines, keep the first one with content.
    for line in stream:
        if line.strip():
            return line
    return ""


def _parse_stream(
    first: str, stream: io.TextIOBase, convert: _SpanReader, warn: Warn
) -> Iterator[list[Span]]:
    # OTLP JSON in the collector's shape (its first key resourceSpans) is read the typed way from the
    # start; a one-line Jaeger download is not decoded twice.
    typed = convert.typed_line(first) if '"resourceSpans"' in first[:64] else None
    doc: Any = None
    if typed is None:
        try:
            doc = json.loads(first)
        except json.JSONDecodeError:
            doc = _NOT_PARSED
    if typed is not None or (isinstance(doc, dict) and _is_otlp(doc)):
        rest = stream.readline()
        while rest and not rest.strip():
            rest = stream.readline()
        if rest:  # OTLP JSON lines: one object a line, read as they come
            first_spans = typed if typed is not None else _otlp_line(doc, 1, convert)
            yield from _otlp_lines(first_spans, rest, stream, convert, warn)
            return
        yield typed if typed is not None else list(convert.otlp(doc))
        return
    rest = stream.read()
    if doc is not _NOT_PARSED and not rest.strip():
        if _is_jaeger(doc):
            yield list(convert.jaeger(doc))
            return
        raise LoadError(f"neither Jaeger JSON nor OTLP JSON ({_describe(doc)})")
    if doc is not _NOT_PARSED:
        raise LoadError(f"line 1: not an OTLP JSON object ({_describe(doc)})")
    if '"resourceSpans"' in first[:64]:
        yield from _broken_first_line(first, rest, convert, warn)
        return
    yield from _parse_document(first + rest, convert)


def _broken_first_line(first: str, rest: str, convert: _SpanReader, warn: Warn) -> Iterator[list[Span]]:
    """A first line that opens OTLP JSON but does not parse: one document spread over lines (read
    whole), else OTLP JSON lines whose first line is broken: skipped when it is the only line (a
    file still being written), an error naming it when lines follow."""
    try:
        yield from _parse_document(first + rest, convert)
        return
    except LoadError:
        if rest.strip() and not first.rstrip().endswith("}") and not _parses(_first_line(io.StringIO(rest))):
            raise  # a document over several lines, broken somewhere: its own error says where
    try:
        json.loads(first)
    except json.JSONDecodeError as exc:
        if rest.strip():
            raise LoadError(
                f"line 1: not JSON ({_json_error(exc)}); only a broken last line is skipped"
            ) from None
        warn(
            f"skipped the last line (line 1): it is not complete JSON ({_json_error(exc)}); a file "
            "still being written? Its spans are not shown"
        )


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _json_error(exc: json.JSONDecodeError) -> str:
    """``Expecting ',' delimiter at column 3001``, ``Unterminated string starting at column 12``."""
    where = "" if exc.msg.endswith(" at") else " at"
    return f"{exc.msg}{where} column {exc.colno}"


_NOT_PARSED = object()
_JAEGER_DATA = re.compile(r'\s*\{\s*"data"\s*:\s*\[')


def _parse_document(text: str, convert: _SpanReader) -> Iterator[list[Span]]:
    """A whole document: Jaeger JSON (a trace at a time when it starts with "data"), or OTLP JSON."""
    opening = _JAEGER_DATA.match(text)
    if opening:
        traces = _jaeger_traces(text, opening.end())
        if traces is not None:
            for index, trace in traces:
                yield list(convert.jaeger_trace(trace, f"data[{index}]"))
            return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise LoadError(f"not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if isinstance(doc, dict) and _is_otlp(doc):
        yield list(convert.otlp(doc))
    elif _is_jaeger(doc):
        yield list(convert.jaeger(doc))
    else:
        raise LoadError(f"neither Jaeger JSON nor OTLP JSON ({_describe(doc)})")


def _jaeger_traces(text: str, position: int) -> list[tuple[int, Any]] | None:
    """The traces of ``{"data": [...]...}`` decoded one by one, or None if the array is not well formed
    (then the whole document is parsed, for an error message that says where it breaks).
    """
    decoder = json.JSONDecoder()
    traces: list[tuple[int, Any]] = []
    index = 0
    size = len(text)
    while True:
        while position < size and text[position] in " \t\r\n":
            position += 1
        if position < size and text[position] == "]":
            return traces
        try:
            trace, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        traces.append((index, trace))
        index += 1
        while position < size and text[position] in " \t\r\n":
            position += 1
        if position < size and text[position] == ",":
            position += 1
        elif position >= size or text[position] != "]":
            return None


def _otlp_lines(
    first: Iterable[Span], second: str, stream: io.TextIOBase, convert: _SpanReader, warn: Warn
) -> Iterator[list[Span]]:
    yield list(first)
    number, pending = 1, second
    for line in stream:
        if line.isspace():
            continue
        number += 1
        typed = convert.typed_line(pending)
        if typed is None:  # not in the collector's usual shape: read the general way
            yield list(_otlp_line(_line_doc(pending, number, last=False), number, convert))
        else:
            yield typed
        pending = line
    number += 1
    typed = convert.typed_line(pending)
    if typed is not None:
        yield typed
        return
    try:
        doc = json.loads(pending)
    except json.JSONDecodeError as exc:
        warn(
            f"skipped the last line (line {number}): it is not complete JSON ({_json_error(exc)}); "
            "a file still being written? Its spans are not shown"
        )
        return
    if not isinstance(doc, dict):
        doc = _line_doc(pending, number, last=False)
    yield list(_otlp_line(doc, number, convert))


def _line_doc(line: str, number: int, last: bool) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise LoadError(
            f"line {number}: not JSON ({_json_error(exc)}); only a broken last line is skipped"
        ) from None


def _otlp_line(doc: Any, number: int, convert: _SpanReader) -> Iterator[Span]:
    if not isinstance(doc, dict):
        raise LoadError(f"line {number}: not an OTLP JSON object ({_describe(doc)})")
    if _is_otlp(doc):
        try:
            yield from convert.otlp(doc)
        except LoadError as exc:
            raise LoadError(f"line {number}: {exc}") from None
    elif not {"resourceLogs", "resourceMetrics"} & doc.keys():
        # Logs and metrics lines may share the file; anything else is not OTLP.
        raise LoadError(f"line {number}: not an OTLP JSON object ({_describe(doc)})")


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


# --- OTLP JSON lines in the collector's shape: the typed fast path -----------------------------
#
# The collector's file exporter writes every line in one shape: camelCase keys, hex ids, numeric
# enums, int64 as strings, plain attribute values. msgspec decodes such a line straight into these
# structs (only the fields the read side uses; others are skipped), several times faster than
# json.loads builds its dicts. Whatever does not fit, down to one field (an arrayValue, a null, an
# intValue written as a number of another type, a value with two kinds), makes the decoder or the
# conversion give up on the whole line, and the line is read the general way: the same spans, the
# same errors. tests/read/test_load_typed.py holds the two ways equal.

_UNSET: Any = msgspec.UNSET


class _Value(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    stringValue: str | msgspec.UnsetType = msgspec.UNSET  # noqa: N815 - OTLP's names
    intValue: str | int | msgspec.UnsetType = msgspec.UNSET  # noqa: N815
    boolValue: bool | msgspec.UnsetType = msgspec.UNSET  # noqa: N815
    doubleValue: float | msgspec.UnsetType = msgspec.UNSET  # noqa: N815


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: _Value | None = None


class _Status(msgspec.Struct, gc=False):
    code: int | str = 0
    message: str | None = None


class _Event(msgspec.Struct, gc=False):
    name: str = ""
    timeUnixNano: str | int = 0  # noqa: N815
    attributes: list[_KeyValue] | None = None


class _Link(msgspec.Struct, gc=False):
    traceId: str  # noqa: N815
    spanId: str  # noqa: N815
    attributes: list[_KeyValue] | None = None


class _TypedSpan(msgspec.Struct, gc=False):
    traceId: str  # noqa: N815
    spanId: str  # noqa: N815
    startTimeUnixNano: str | int  # noqa: N815
    endTimeUnixNano: str | int | None = None  # noqa: N815
    parentSpanId: str | None = None  # noqa: N815
    name: str = ""
    kind: int | str = 1
    attributes: list[_KeyValue] | None = None
    events: list[_Event] | None = None
    links: list[_Link] | None = None
    status: _Status | None = None


class _Resource(msgspec.Struct, gc=False):
    attributes: list[_KeyValue] | None = None


class _Scope(msgspec.Struct, gc=False):
    spans: list[_TypedSpan] | None = None


class _ResourceSpans(msgspec.Struct, gc=False):
    resource: _Resource | None = None
    scopeSpans: list[_Scope] | None = None  # noqa: N815
    instrumentationLibrarySpans: list[_Scope] | None = None  # noqa: N815


class _Request(msgspec.Struct, gc=False):
    resourceSpans: list[_ResourceSpans] | None  # noqa: N815 - required: a line without it is not this shape


_TYPED_LINE = msgspec.json.Decoder(_Request)


class _NotTyped(Exception):
    """A value the typed path does not read the way the general path does: read the line the general way."""


def _typed_value(value: _Value | None) -> Any:
    """An attribute's value, as :func:`_otlp_value` reads it; at most one kind may be set."""
    if value is None:
        return None
    text, number, flag, double = value.stringValue, value.intValue, value.boolValue, value.doubleValue
    if text is not _UNSET:
        if number is _UNSET and flag is _UNSET and double is _UNSET:
            return text
    elif number is not _UNSET:
        if flag is _UNSET and double is _UNSET:
            return int(number)  # type: ignore[arg-type]
    elif flag is not _UNSET:
        if double is _UNSET:
            return flag
    elif double is not _UNSET:
        return double
    else:
        return None
    raise _NotTyped  # two kinds: the general path takes the first in the line's order


def _typed_attributes(items: list[_KeyValue] | None) -> dict[str, Any]:
    result = {}
    for item in items or ():
        value = item.value
        # The common case (text) inline, as in _otlp_attributes.
        if (
            value is not None
            and value.stringValue is not _UNSET
            and value.intValue is _UNSET
            and value.boolValue is _UNSET
            and value.doubleValue is _UNSET
        ):
            result[item.key] = value.stringValue
        else:
            result[item.key] = _typed_value(value)
    return result


def _typed_slim_attributes(items: list[_KeyValue] | None) -> dict[str, Any]:
    result = {}
    for item in items or ():
        key = item.key
        if key.startswith(_SLIM_PREFIXES) or key in _SLIM_KEYS:
            result[key] = _typed_value(item.value)
    return result


def _kind_name(kind: int | str) -> str:
    if type(kind) is int:  # as the collector writes it
        return _OTLP_KINDS.get(kind, "internal")
    if isinstance(kind, str):
        kind_name = kind.removeprefix("SPAN_KIND_").lower()
        return "internal" if kind_name == "unspecified" else kind_name
    return _OTLP_KINDS.get(int(kind), "internal")


# --- span conversion ----------------------------------------------------------------------------

# What slim loading keeps: the attributes lists and searches read.
_SLIM_PREFIXES = ("messaging.",)
_SLIM_KEYS = frozenset({sc.ERROR_TYPE, sc.QUEUE_TIME_MS})
_HEX_DIGITS = "0123456789abcdefABCDEF"


class _SpanReader:
    """Turns parsed Jaeger or OTLP JSON into :class:`Span` records, counting them.

    Repeated strings (trace ids, services, operation names, attribute keys) are shared, so a big
    file's spans take less memory; ``slim`` also drops what lists and searches never read.
    """

    def __init__(self, slim: bool = False) -> None:
        self.slim = slim
        self.count = 0
        self._strings: dict[str, str] = {}
        self._trace_ids: dict[Any, str] = {}

    def share(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def trace_id(self, value: Any) -> str:
        """A trace id, checked once per distinct value (a trace's spans repeat it) and shared."""
        known = self._trace_ids.get(value)
        if known is None:
            known = self._trace_ids[value] = self.share(_hex_id(value, 32))
        return known

    def attributes(self, attributes: dict[str, Any]) -> dict[str, Any]:
        if not self.slim:
            return attributes
        return {k: v for k, v in attributes.items() if k.startswith(_SLIM_PREFIXES) or k in _SLIM_KEYS}

    # Jaeger JSON

    def jaeger(self, doc: Any) -> Iterator[Span]:
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
        for t_index, trace in enumerate(traces):
            yield from self.jaeger_trace(trace, f"{where}[{t_index}]")

    def jaeger_trace(self, trace: Any, where: str) -> Iterator[Span]:
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            raise LoadError(f"malformed Jaeger JSON: {where} has no 'spans' list")
        processes = trace.get("processes") or {}
        for s_index, raw in enumerate(trace["spans"]):
            try:
                span = self._jaeger_span(raw, processes)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise LoadError(f"malformed Jaeger span at {where}.spans[{s_index}] ({_why(exc)})") from None
            self.count += 1
            yield span

    def _jaeger_span(self, raw: dict[str, Any], processes: Mapping[str, Any]) -> Span:
        trace_id = self.share(_hex_id(raw["traceID"], 32))
        span_id = _hex_id(raw["spanID"], 16)
        tags = _jaeger_tags(raw.get("tags"))
        process = raw.get("process") or processes.get(str(raw.get("processID")), {})
        parent_id: str | None = None
        refs = [
            (r.get("refType"), _hex_id(r["traceID"], 32), _hex_id(r["spanID"], 16))
            for r in raw.get("references") or []
        ]
        # Jaeger's own rule: the first same-trace CHILD_OF is the parent, else the first same-trace
        # reference. It writes a parent that is also linked (our process spans) as FOLLOWS_FROM only.
        same_trace = [r for r in refs if r[1] == trace_id]
        parent_ref = next(
            (r for r in same_trace if r[0] == "CHILD_OF"), same_trace[0] if same_trace else None
        )
        if parent_ref is not None:
            parent_id = parent_ref[2]
        links = [SpanRef(self.share(t), s) for ref_type, t, s in refs if (ref_type, t, s) != parent_ref]
        events = (
            []
            if self.slim
            else [
                SpanEvent(
                    name=str(fields.pop("event", "log")),
                    time_ns=int(log.get("timestamp", 0)) * 1000,
                    attributes=fields,
                )
                for log in raw.get("logs") or []
                for fields in [_jaeger_tags(log.get("fields"))]
            ]
        )
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
            name=self.share(str(raw.get("operationName", ""))),
            kind=kind,
            service=self.share(str(process.get("serviceName") or "unknown_service")),
            start_ns=start_ns,
            end_ns=start_ns + int(raw.get("duration", 0)) * 1000,
            attributes=self.attributes(tags),
            events=events,
            links=links,
            status_error=status == "ERROR" or error_tag in (True, "true"),
            status_message=str(status_message) if status_message else None,
        )

    # OTLP JSON

    def otlp(self, doc: Mapping[str, Any]) -> Iterator[Span]:
        """Spans from one OTLP JSON object (``{"resourceSpans": [...]}``, bare or under ``"result"``)."""
        if "resourceSpans" not in doc and isinstance(doc.get("result"), dict):
            doc = doc["result"]  # Jaeger's /api/v3/traces answer wraps the OTLP object
        resources = doc.get("resourceSpans") or []
        if not isinstance(resources, list):
            raise LoadError("malformed OTLP JSON: 'resourceSpans' is not a list")
        for r_index, resource_spans in enumerate(resources):
            try:
                resource = _otlp_attributes((resource_spans.get("resource") or {}).get("attributes"))
                service = self.share(str(resource.get(sc.SERVICE_NAME) or "unknown_service"))
                scopes = resource_spans.get("scopeSpans") or resource_spans.get("instrumentationLibrarySpans")
                for s_index, scope in enumerate(scopes or []):
                    for index, raw in enumerate(scope.get("spans") or []):
                        try:
                            span = self._otlp_span(raw, service)
                        except (KeyError, TypeError, ValueError, AttributeError) as exc:
                            where = f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]"
                            raise LoadError(f"malformed OTLP span at {where} ({_why(exc)})") from None
                        self.count += 1
                        yield span
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # the resource's attributes
                raise LoadError(f"malformed OTLP JSON at resourceSpans[{r_index}] ({_why(exc)})") from None

    def typed_line(self, line: str) -> list[Span] | None:
        """The spans of one OTLP JSON line read the fast way, or None when the line is not in the
        collector's usual shape (then the caller reads it the general way; nothing is counted)."""
        try:
            request = _TYPED_LINE.decode(line)
            spans: list[Span] = []
            append = spans.append
            convert = self._typed_span
            for resource_spans in request.resourceSpans or ():
                resource = resource_spans.resource
                attributes = _typed_attributes(resource.attributes if resource is not None else None)
                service = self.share(str(attributes.get(sc.SERVICE_NAME) or "unknown_service"))
                for scope in resource_spans.scopeSpans or resource_spans.instrumentationLibrarySpans or ():
                    for raw in scope.spans or ():
                        append(convert(raw, service))
        except (msgspec.DecodeError, ValueError, _NotTyped):
            return None
        self.count += len(spans)
        return spans

    def _typed_span(self, raw: _TypedSpan, service: str) -> Span:
        """:meth:`_otlp_span` from the typed structs (the common cases inline: this runs per span)."""
        start = int(raw.startTimeUnixNano)
        end = raw.endTimeUnixNano
        span_id = raw.spanId
        parent = raw.parentSpanId
        kind = raw.kind
        status = raw.status
        events = raw.events
        links = raw.links
        slim = self.slim
        trace_id = self._trace_ids.get(raw.traceId) or self.trace_id(raw.traceId)
        name = raw.name
        return Span(
            trace_id,
            span_id.lower()
            if len(span_id) == 16 and not span_id.strip(_HEX_DIGITS)
            else _hex_id(span_id, 16),
            (
                parent.lower()
                if len(parent) == 16 and not parent.strip(_HEX_DIGITS)
                else _hex_id(parent, 16)
            )
            if parent
            else None,
            self._strings.setdefault(name, name),
            _kind_name(kind),
            service,
            start,
            int(end) if end else start,
            _typed_slim_attributes(raw.attributes) if slim else _typed_attributes(raw.attributes),
            []
            if slim or not events
            else [SpanEvent(e.name, int(e.timeUnixNano), _typed_attributes(e.attributes)) for e in events],
            [
                SpanRef(
                    self.trace_id(link.traceId),
                    _hex_id(link.spanId, 16),
                    {} if slim else _typed_attributes(link.attributes),
                )
                for link in links
            ]
            if links
            else [],
            status is not None and status.code in (2, "2", "STATUS_CODE_ERROR"),
            (status.message or None) if status is not None else None,
        )

    def _otlp_span(self, raw: Mapping[str, Any], service: str) -> Span:
        trace_id = self.trace_id(raw["traceId"])
        span_id = _hex_id(raw["spanId"], 16)
        status = raw.get("status") or {}
        code = status.get("code", 0)
        kind_name = _kind_name(raw.get("kind", 1))
        parent = raw.get("parentSpanId") or ""
        start = int(raw["startTimeUnixNano"])
        events = raw.get("events")
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=_hex_id(parent, 16) if parent else None,
            name=self.share(str(raw.get("name", ""))),
            kind=kind_name,
            service=service,
            start_ns=start,
            end_ns=int(raw.get("endTimeUnixNano") or start),
            attributes=_otlp_slim_attributes(raw.get("attributes"))
            if self.slim
            else _otlp_attributes(raw.get("attributes")),
            events=[]
            if self.slim or not events
            else [
                SpanEvent(
                    str(e.get("name", "")),
                    int(e.get("timeUnixNano", 0)),
                    _otlp_attributes(e.get("attributes")),
                )
                for e in events
            ],
            links=[
                SpanRef(
                    self.trace_id(link["traceId"]),
                    _hex_id(link["spanId"], 16),
                    {} if self.slim else _otlp_attributes(link.get("attributes")),
                )
                for link in raw.get("links") or ()
            ],
            status_error=code in (2, "2", "STATUS_CODE_ERROR"),
            status_message=status.get("message") or None,
        )


class _FactsReader(_SpanReader):
    """Reads :data:`SpanFacts` instead of spans: only the fields a chain's summary needs."""

    def __init__(self) -> None:
        super().__init__(slim=True)

    def _jaeger_span(self, raw: dict[str, Any], processes: Mapping[str, Any]) -> Span:
        return span_facts(super()._jaeger_span(raw, processes))  # type: ignore[return-value]

    def _otlp_span(self, raw: Mapping[str, Any], service: str) -> Span:
        # The same rules as Span.role and Span.error, read from the raw attribute list.
        found: dict[str, Any] = {}
        for item in raw.get("attributes") or ():
            key = item["key"]
            if key in _FACT_KEYS:
                value = item.get("value") or {}
                text = value.get("stringValue")
                found[key] = _otlp_value(value) if text is None else text
        name = str(raw.get("name", ""))
        links = raw.get("links")
        linked: tuple[str, ...] = ()
        if links:
            linked = tuple([_hex_id(link["spanId"], 16) for link in links if self.trace_id(link["traceId"])])
        status = raw.get("status") or {}
        start = int(raw["startTimeUnixNano"])
        return self._facts(  # type: ignore[return-value]
            raw["traceId"],
            raw["spanId"],
            raw.get("parentSpanId"),
            name,
            service,
            start,
            int(raw.get("endTimeUnixNano") or start),
            status.get("code", 0),
            found,
            _kind_name(raw.get("kind", 1)),
            linked,
        )

    def _typed_span(self, raw: _TypedSpan, service: str) -> Span:
        # _facts' rules, inline: this runs per span.
        operation = legacy = error_type = None
        system = False
        for item in raw.attributes or ():
            key = item.key
            if key in _FACT_KEYS:
                value = item.value
                if (
                    value is not None
                    and value.intValue is _UNSET
                    and value.boolValue is _UNSET
                    and value.doubleValue is _UNSET
                    and value.stringValue is not _UNSET
                ):
                    read: Any = value.stringValue
                else:
                    read = _typed_value(value)
                if key == sc.OPERATION_TYPE:
                    operation = read
                elif key == sc.OPERATION_LEGACY:
                    legacy = read
                elif key == sc.ERROR_TYPE:
                    error_type = read
                else:
                    system = True
        role = None
        for told in (operation, legacy):
            if type(told) is str:
                role = _OPERATION_ROLES.get(told) or _OPERATION_ROLES.get(told.lower())
                if role is not None:
                    break
        if role is None:
            kind = raw.kind
            kind_name = _OTLP_KINDS.get(kind, "internal") if type(kind) is int else _kind_name(kind)
            role = role_of_kind(kind_name, raw.name, system)
        links = raw.links
        linked: tuple[str, ...] = ()
        if links:
            for link in links:
                self.trace_id(link.traceId)
            linked = tuple(
                [
                    link.spanId.lower()
                    if len(link.spanId) == 16 and not link.spanId.strip(_HEX_DIGITS)
                    else _hex_id(link.spanId, 16)
                    for link in links
                ]
            )
        status = raw.status
        start = int(raw.startTimeUnixNano)
        end = raw.endTimeUnixNano
        span_id = raw.spanId
        parent = raw.parentSpanId
        return (  # type: ignore[return-value]
            self._trace_ids.get(raw.traceId) or self.trace_id(raw.traceId),
            span_id.lower()
            if len(span_id) == 16 and not span_id.strip(_HEX_DIGITS)
            else _hex_id(span_id, 16),
            (parent.lower() if len(parent) == 16 and not parent.strip(_HEX_DIGITS) else _hex_id(parent, 16))
            if parent
            else None,
            raw.name,
            service,
            start,
            int(end) if end else start,
            (status is not None and status.code in (2, "2", "STATUS_CODE_ERROR")) or error_type is not None,
            role,
            linked,
        )

    def _facts(
        self,
        trace_id: Any,
        span_id: Any,
        parent: Any,
        name: str,
        service: str,
        start: int,
        end: int,
        status_code: Any,
        found: dict[str, Any],
        kind_name: str,
        linked: tuple[str, ...],
    ) -> SpanFacts:
        """The facts of one OTLP span, whichever way it was read: the rules of Span.role and
        Span.error applied to the few attributes they read (``found``: the last of each key)."""
        role = None
        for value in (found.get(sc.OPERATION_TYPE), found.get(sc.OPERATION_LEGACY)):
            if isinstance(value, str):
                role = _OPERATION_ROLES.get(value.lower())
                if role is not None:
                    break
        if role is None:
            role = role_of_kind(kind_name, name, sc.SYSTEM in found)
        # The common case inline (16 hex digits, as the collector writes them); _hex_id otherwise.
        if type(span_id) is str and len(span_id) == 16 and not span_id.strip(_HEX_DIGITS):
            span_id = span_id.lower()
        else:
            span_id = _hex_id(span_id, 16)
        if not parent:
            parent = None
        elif type(parent) is str and len(parent) == 16 and not parent.strip(_HEX_DIGITS):
            parent = parent.lower()
        else:
            parent = _hex_id(parent, 16)
        return (
            self.trace_id(trace_id),
            span_id,
            parent,
            name,
            service,
            start,
            end,
            status_code in (2, "2", "STATUS_CODE_ERROR") or found.get(sc.ERROR_TYPE) is not None,
            role,
            linked,
        )


_FACT_KEYS = frozenset({sc.OPERATION_TYPE, sc.OPERATION_LEGACY, sc.ERROR_TYPE, sc.SYSTEM})


def parse_jaeger(doc: Any) -> list[Span]:
    """Spans from Jaeger's API JSON: ``{"data": [trace, ...]}``, one trace, or a list of traces."""
    return list(_SpanReader().jaeger(doc))


def parse_otlp(doc: Mapping[str, Any]) -> list[Span]:
    """Spans from one OTLP JSON object (``{"resourceSpans": [...]}``, bare or under ``"result"``).

    Accepts the OTLP/JSON encoding (hex ids, numeric enums) and the plain protobuf JSON mapping
    (base64 ids, enum names), and the older ``instrumentationLibrarySpans`` key.
    """
    return list(_SpanReader().otlp(doc))


def _jaeger_tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(tag["key"]): tag.get("value") for tag in tags or []}


def _otlp_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    result = {}
    for item in items or ():
        value = item.get("value") or {}
        text = value.get("stringValue")
        # A plain text value (most attributes) without the call; anything else as _otlp_value reads it.
        result[str(item["key"])] = text if text is not None and len(value) == 1 else _otlp_value(value)
    return result


def _otlp_slim_attributes(items: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    result = {}
    for item in items or ():
        key = item["key"]
        if key.startswith(_SLIM_PREFIXES) or key in _SLIM_KEYS:
            value = item.get("value") or {}
            text = value.get("stringValue")
            result[key] = text if text is not None else _otlp_value(value)
    return result


def _otlp_value(value: Mapping[str, Any]) -> Any:
    for kind, raw in value.items():
        if kind == "stringValue":
            return raw
        if kind == "intValue":
            return int(raw)  # int64 travels as a JSON string
        if kind == "boolValue":
            return bool(raw)
        if kind == "doubleValue":
            return float(raw)
        if kind == "arrayValue":
            return [_otlp_value(v) for v in (raw or {}).get("values", [])]
        if kind == "kvlistValue":
            return _otlp_attributes((raw or {}).get("values"))
        if kind == "bytesValue":
            return raw
    return None


def _hex_id(value: Any, digits: int) -> str:
    """An id as lower-case hex: accepts hex (padded if short) and base64 (protobuf JSON)."""
    if type(value) is str and len(value) == digits and not value.strip(_HEX_DIGITS):
        return value.lower()  # the common case, without a regular expression
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


# --- OTLP protobuf (what eventchain serve receives) ------------------------------------------------

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_INVALID_IDS = "a span's trace_id must be 16 bytes and its span_id 8 bytes, not all zero"


def spans_from_protobuf(request: Any) -> tuple[list[Span], int, str]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` message (protobuf, already parsed); also how
    many were rejected (invalid ids) and why, for the answer's ``partial_success``.

    ::

        request = ExportTraceServiceRequest.FromString(body)
        spans, rejected, why = spans_from_protobuf(request)
    """
    spans: list[Span] = []
    append = spans.append
    kinds = _OTLP_KINDS
    rejected = 0
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                trace_id, span_id, parent = s.trace_id, s.span_id, s.parent_span_id
                if (
                    len(trace_id) != 16
                    or trace_id == _ZERO_TRACE
                    or len(span_id) != 8
                    or span_id == _ZERO_SPAN
                ):
                    rejected += 1
                    continue
                start = s.start_time_unix_nano
                status = s.status
                events = s.events
                links = s.links
                append(
                    Span(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_id=parent.hex() if len(parent) == 8 and parent != _ZERO_SPAN else None,
                        name=s.name,
                        kind=kinds.get(s.kind, "internal"),
                        service=service,
                        start_ns=start,
                        end_ns=s.end_time_unix_nano or start,
                        attributes=_pb_attributes(s.attributes),
                        events=[
                            SpanEvent(e.name, e.time_unix_nano, _pb_attributes(e.attributes)) for e in events
                        ]
                        if events
                        else [],
                        links=[
                            SpanRef(link.trace_id.hex(), link.span_id.hex(), _pb_attributes(link.attributes))
                            for link in links
                            if len(link.trace_id) == 16 and len(link.span_id) == 8
                        ]
                        if links
                        else [],
                        status_error=status.code == 2,
                        status_message=status.message or None,
                    )
                )
    return spans, rejected, _INVALID_IDS if rejected else ""


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _pb_attributes(v.kvlist_value.values)
    return None if which is None else getattr(v, which)


def _pb_attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in items}


# --- Jaeger HTTP API ----------------------------------------------------------------------------


class JaegerClient:
    """A small client for the Jaeger query service's HTTP API (the one its UI uses).

    >>> client = JaegerClient("http://localhost:16686")
    >>> spans = client.trace("4bf92f3577b34da6a3ce929d0e0e4736")  # doctest: +SKIP
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LoadError(
                f"{url!r} is not an http(s) URL of a Jaeger query service (try http://HOST:16686)"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of one trace; raises :class:`TraceNotFound` if Jaeger does not know it."""
        trace_id = normalise_trace_id(trace_id)
        doc = self._get(f"/api/traces/{trace_id}", not_found_ok=True)
        spans = parse_jaeger(doc) if doc is not None else []
        if not spans:
            raise TraceNotFound(
                f"trace {trace_id} not found in Jaeger at {self.url}: check the id, or try "
                "`eventchain list` for recent chains, or --file PATH"
            )
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
            # Only a wait that ran out is helped by waiting longer; a refused or unknown address is not.
            timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
            longer = f", a longer --timeout than {self.timeout:g} s" if timed_out else ""
            raise JaegerUnavailable(
                f"cannot reach Jaeger at {self.url} ({reason}): try --jaeger URL "
                f"(or $EVENTCHAIN_JAEGER_URL){longer}, or --file PATH"
            ) from None
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or "data" not in doc:
            raise JaegerUnavailable(
                f"{self.url} did not answer Jaeger's JSON API on {endpoint} (HTTP {status}): try the "
                "query service's base URL with --jaeger URL (port 16686 by default)"
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
