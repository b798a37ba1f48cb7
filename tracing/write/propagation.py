"""Trace context in Kafka headers: put it in, take it out, never break the message.

Kafka headers are an ordered list in which a key may repeat. We therefore write by
replacing (exactly one ``traceparent`` per message, the caller's list untouched) and
read the LAST value of a key, as the OpenTelemetry Java agent and Brave do.

When the configured propagators are the W3C ones (the default), ``traceparent`` is
formatted and parsed here directly with strict validation: it is on every produce
and every poll, and the generic ``TextMapPropagator`` path costs several times more.
Any other propagator (``b3``, ``jaeger``, custom) goes through the generic path.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import baggage as baggage_api
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing.write import otel

logger = logging.getLogger("tracing.propagation")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"

Headers = Sequence[tuple[str, Any]] | Mapping[str, Any] | None

# version-traceid-spanid-flags; lowercase hex only, as W3C requires. Versions above 00
# may append fields after a dash; version ff is forbidden.
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII)
# What every version-00 producer writes, exactly 55 characters: parsed without decoding,
# as bytes (what the client hands us) or str. Anything else takes the full path.
_TRACEPARENT_00_LEN = 55
_TRACEPARENT_00_BYTES = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACEPARENT_00_STR = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", re.ASCII)
# The same shape, valid as a whole (ids not all zero), checked without converting anything:
# every byte translated to its class (lower-case hex digit, dash, anything else) must give
# the shape of version 00, whose two digits and ids are then looked at. One C pass and a
# few compares: cheaper than a regular expression's match, on every polled message.
_BYTE_CLASS = bytes(
    ord("h") if c in b"0123456789abcdef" else ord("-") if c == ord("-") else ord("!") for c in range(256)
)
_TRACEPARENT_SHAPE = b"hh-" + b"h" * 32 + b"-" + b"h" * 16 + b"-hh"
_ZERO_TRACE_ID = b"0" * 32
_ZERO_SPAN_ID = b"0" * 16
_MAX_TRACEPARENT = 512
_MAX_TRACESTATE = 8192
_W3C_BAGGAGE = W3CBaggagePropagator()
_NO_TRACE_STATE = trace.DEFAULT_TRACE_STATE
# TraceFlags are immutable ints: one instance per value instead of one per message.
_TRACE_FLAGS = tuple(TraceFlags(i) for i in range(256))
_FLAGS_SUFFIX = tuple(f"-{i:02x}" for i in range(256))
# The context keys of the current span and of baggage, found through the public API
# (set a value on an empty context, see which key appears) rather than imported from
# private modules. Extracted contexts are then built as plain dicts in one step.
SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
BAGGAGE_KEY: str = next(iter(baggage_api.set_baggage("k", "v", Context())))

# ----------------------------------------------------------------------------
# Problem reporting: once per kind per minute, never the raw value in full.
# ----------------------------------------------------------------------------
_REPORT_INTERVAL_S = 60.0
_last_report: dict[str, float] = {}


def preview(value: Any, limit: int = 32) -> str:
    """A short, escaped preview of a header value, safe to put in a log line."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    else:
        value = str(value)
    more = "…" if len(value) > limit else ""
    return f"{value[:limit]!r}{more} ({len(value)} {'bytes' if isinstance(value, bytes) else 'chars'})"


# What happens to the message after a header is ignored, as the log line says it.
NEW_TRACE = "the message is processed as a new trace"
TRACE_GOES_ON = "the trace goes on without it (same parent)"
HEADER_LEFT_OUT = "extraction goes on without that header"


def report_problem(kind: str, value: Any = None, outcome: str = NEW_TRACE) -> None:
    """Log a header problem at most once per kind per minute, with what happens instead."""
    now = time.monotonic()
    last = _last_report.get(kind)
    if last is not None and now - last < _REPORT_INTERVAL_S:
        return
    _last_report[kind] = now
    if value is None:
        logger.warning("ignoring trace header: %s; %s", kind, outcome)
    else:
        logger.warning("ignoring trace header: %s, value %s; %s", kind, preview(value), outcome)


def report_internal_error(what: str) -> None:
    """Log a failure inside the instrumentation (not the app's, not a header's) once a minute.

    Called from an ``except`` block: the message goes on untraced or half-traced, and the
    traceback is kept at debug level for whoever wants to report it.
    """
    now = time.monotonic()
    key = "internal: " + what
    last = _last_report.get(key)
    if last is not None and now - last < _REPORT_INTERVAL_S:
        return
    _last_report[key] = now
    logger.warning("tracing: %s; the message goes on without it (debug log has the traceback)", what)
    logger.debug("tracing: %s", what, exc_info=True)


# ----------------------------------------------------------------------------
# Helpers on header collections
# ----------------------------------------------------------------------------
def _items(headers: Headers) -> Iterable[tuple[str, Any]]:
    if type(headers) is list:  # the common case, without the ABC check below
        return headers
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def last_header(headers: Headers, key: str) -> Any:
    """The last value of ``key`` in ``headers`` (list, dict or None), or None."""
    found = None
    for item in _items(headers):
        if item[0] == key:
            found = item[1]
    return found


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")  # may raise: callers report it
    return None


def replace_headers(headers: Headers, new: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    """A NEW header list: ``headers`` without the keys in ``new``, then ``new``.

    The caller's list or dict is never modified, so reusing one header list for many
    produce calls never piles up ``traceparent`` entries.
    """
    if not headers:
        return new
    keys = {k for k, _ in new}
    out = [item for item in _items(headers) if not (type(item[0]) is str and item[0].lower() in keys)]
    out.extend(new)
    return out


def parse_traceparent(value: Any) -> SpanContext | None:
    """Parse a W3C ``traceparent`` (bytes or str) strictly; None if it is not valid.

    Rejects (and reports) non-ASCII, oversized, malformed, version ``ff`` and all-zero ids.
    """
    kind = type(value)
    if (kind is bytes or kind is str) and len(value) == _TRACEPARENT_00_LEN:
        # The common case, on every consumed message: same checks as below, less work.
        match = (_TRACEPARENT_00_BYTES if kind is bytes else _TRACEPARENT_00_STR).fullmatch(value)
        if match is not None:
            trace_hex, span_hex, flags_hex = match.groups()
            trace_id = int(trace_hex, 16)
            span_id = int(span_hex, 16)
            if trace_id and span_id:
                return SpanContext(trace_id, span_id, True, _TRACE_FLAGS[int(flags_hex, 16)])
        # not the common shape after all: the full path says what is wrong with it
    if type(value) is bytes:
        if len(value) > _MAX_TRACEPARENT:
            report_problem("oversized traceparent", value)
            return None
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            report_problem("traceparent is not ASCII", value)
            return None
    elif type(value) is str:
        text = value
        if len(text) > _MAX_TRACEPARENT:
            report_problem("oversized traceparent", value)
            return None
    else:
        if value is not None:
            report_problem("traceparent of unexpected type " + type(value).__name__)
        else:
            report_problem("empty traceparent")
        return None
    match = _TRACEPARENT_RE.fullmatch(text)
    if match is None:
        report_problem("malformed traceparent", value)
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        report_problem("traceparent of invalid version", value)
        return None
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        report_problem("all-zero traceparent id", value)
        return None
    flags = int(flags_hex, 16)
    if version != "00":
        flags &= 0x01  # only the sampled bit is defined for versions we don't know
    return SpanContext(trace_id, span_id, True, TraceFlags(flags))


def format_traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` value for a span context."""
    # The flags from a table: formatting the TraceFlags int subclass is the slow part.
    # A SpanContext is a tuple (trace id, span id, remote, flags, ...): read by index, not
    # through its properties (a Python call each).
    return f"00-{span_context[0]:032x}-{span_context[1]:016x}{_FLAGS_SUFFIX[span_context[3]]}"


# ----------------------------------------------------------------------------
# The propagation used by one wrapper
# ----------------------------------------------------------------------------
class LazySpan(NonRecordingSpan):
    """A non-recording span whose SpanContext is built from a valid version-00
    ``traceparent`` only when something asks for it.

    Most handled messages never have their context read (nothing is sent while handling
    them), yet whether a context becomes current must be decided at once: the header is
    validated before (the same checks as :func:`parse_traceparent`); only the conversion
    to ids and flags waits. Subclasses say which span context the header stands for.
    """

    def __init__(self, traceparent: bytes) -> None:
        self._traceparent = traceparent
        self._span_context: SpanContext | None = None

    @property
    def _context(self) -> SpanContext:  # type: ignore[override]  # what NonRecordingSpan reads
        return self.get_span_context()

    def get_span_context(self) -> SpanContext:
        span_context = self._span_context
        if span_context is None:
            span_context = self._span_context = self._build(self._traceparent)
        return span_context

    def _build(self, tp: bytes) -> SpanContext:
        raise NotImplementedError


class RemoteParent(LazySpan):
    """The producer's span, as the remote parent made current while a message is handled
    by a service without an SDK."""

    def _build(self, tp: bytes) -> SpanContext:
        return plain_span_context(tp)


def plain_span_context(traceparent: bytes) -> SpanContext:
    """The remote span context of a ``traceparent`` that :meth:`Propagation.plain_traceparent`
    accepted (valid, version 00): its fields are at fixed places, nothing to match again."""
    return SpanContext(
        int(traceparent[3:35], 16),
        int(traceparent[36:52], 16),
        True,
        _TRACE_FLAGS[int(traceparent[53:55], 16)],
    )


class Extracted:
    """What a message carries: the producer's span context and the context to parent on."""

    __slots__ = ("span_context", "context")

    def __init__(self, span_context: SpanContext, context: Context) -> None:
        self.span_context = span_context
        self.context = context

    @classmethod
    def of_plain(cls, traceparent: bytes) -> Extracted:
        """From a ``traceparent`` that :meth:`Propagation.plain_traceparent` accepted
        (valid, version 00, the only trace header): no second scan, no second match."""
        span_context = plain_span_context(traceparent)
        return cls(span_context, Context({SPAN_KEY: NonRecordingSpan(span_context)}))


def _is_w3c(propagator: TextMapPropagator) -> tuple[bool, bool]:
    """(is only W3C trace context and baggage, includes baggage)."""
    parts = otel.propagator_parts(propagator)
    has_tc = has_baggage = False
    for p in parts:
        if type(p) is TraceContextTextMapPropagator:
            has_tc = True
        elif type(p) is W3CBaggagePropagator:
            has_baggage = True
        else:
            return False, False
    return has_tc, has_baggage


class Propagation:
    """Injects into and extracts from Kafka headers with one propagator.

    ``propagator=None`` follows the global one (``OTEL_PROPAGATORS``), re-checked
    cheaply on each call so a later ``set_global_textmap`` is honoured.
    """

    __slots__ = ("_explicit", "_module", "_seen", "_fast", "_fast_baggage", "_fields", "baggage_keys")

    def __init__(
        self,
        propagator: TextMapPropagator | None = None,
        *,
        baggage_keys: Iterable[str] | None = None,
    ) -> None:
        # Loads OTEL_PROPAGATORS now: a propagator that is not installed is named when
        # the client is built (MissingPropagatorError), not on every message.
        module = otel.load_propagators() if propagator is None else None
        # Where the global propagator is read without a call (None: through the API).
        self._module = module if otel.FOUND["propagate._HTTP_TEXT_FORMAT"] else None
        self._explicit = propagator
        self._seen: TextMapPropagator | None = None
        self._fast = False
        self._fast_baggage = False
        self._fields: frozenset[str] = frozenset()
        # Only these baggage keys are taken from incoming messages (None: all).
        self.baggage_keys = frozenset(baggage_keys) if baggage_keys is not None else None

    @property
    def propagator(self) -> TextMapPropagator:
        p = self._explicit if self._explicit is not None else otel.global_textmap()
        if p is not self._seen:
            self._seen = p
            fast, with_baggage = _is_w3c(p)
            self._fast, self._fast_baggage = fast, with_baggage
            try:
                self._fields = frozenset(p.fields)
            except Exception:  # a custom propagator with a broken `fields`
                self._fields = frozenset()
        return p

    def _is_fast(self) -> bool:
        """Whether the propagators (as configured now) are the W3C ones we handle directly."""
        return self.propagator is not None and self._fast

    # -- inject ---------------------------------------------------------------
    def inject(
        self,
        headers: Headers,
        span_context: SpanContext,
        context: Context | None = None,
        extra: tuple[str, str] | None = None,
    ) -> Any:
        """Headers for a message sent under ``span_context``: a new list, never the caller's.

        ``context`` carries baggage (defaults to the current context); ``extra``: one
        more header to write the same way (replacing).
        """
        propagator = self.propagator
        if self._fast:
            new = [(TRACEPARENT, format_traceparent(span_context))]
            state = span_context[4]  # trace_state, without the property's call
            if state is not _NO_TRACE_STATE and state:  # the shared empty one: skip its len()
                new.append((TRACESTATE, state.to_header()))
            # No baggage key in the context given: no baggage, not even a call to find out.
            if self._fast_baggage and (context is None or BAGGAGE_KEY in context) and _has_baggage(context):
                carrier: dict[str, str] = {}
                _W3C_BAGGAGE.inject(carrier, context)
                new.extend(carrier.items())
            if extra is not None:
                new.append(extra)
            return replace_headers(headers, new) if headers else new
        carrier = {}
        ctx = trace.set_span_in_context(NonRecordingSpan(span_context), context)
        propagator.inject(carrier, ctx)
        items = list(carrier.items())
        if extra is not None:
            items.append(extra)
        if not items:
            return headers
        return replace_headers(headers, items)

    # -- extract --------------------------------------------------------------
    def extract(self, headers: Headers, *, keep_baggage: bool = True) -> Extracted | None:
        """The producer's context from message headers; None when there is none usable.

        Never raises: a bad header is reported once per kind and ignored.
        """
        if not headers:
            return None
        try:
            propagator = self.propagator
            if self._fast:
                return self._extract_w3c(headers, keep_baggage)
            return self._extract_generic(propagator, headers, keep_baggage)
        except Exception as exc:  # contained: the message matters more than its span
            report_problem("unreadable trace headers (" + type(exc).__name__ + ")")
            return None

    def context_of(self, headers: Headers) -> Context | None:
        """Only the context the headers carry, to make current while the message is handled
        (no span of ours starts from it: there is no SDK). None when there is none usable.

        Never raises; a bad header is reported as by :meth:`extract`.
        """
        if not headers:
            return None
        tp = self.plain_traceparent(headers)
        if tp is not None:
            return Context({SPAN_KEY: RemoteParent(tp)})
        extracted = self.extract(headers)  # anything else: the full path
        return extracted.context if extracted is not None else None

    def plain_traceparent(self, headers: Headers) -> bytes | None:
        """The common case, recognised without building anything: W3C propagators and a
        valid version-00 ``traceparent`` (bytes, or text as RabbitMQ's clients give it: returned
        as bytes) as the only trace header. None otherwise
        (then :meth:`extract` handles the headers, and reports what is wrong with them)."""
        try:
            # self._is_fast(), without a call: this runs for every message. The global
            # propagator is read where otel.global_textmap() finds it, when it is there.
            p = self._explicit
            if p is None:
                module = self._module
                p = module._HTTP_TEXT_FORMAT if module is not None else otel.global_textmap()
            if p is not self._seen:
                p = self.propagator
            if p is None or not self._fast:
                return None
            tp = None
            for item in headers if type(headers) is list else _items(headers):
                key = item[0]
                if key == TRACEPARENT:
                    tp = item[1]
                elif key == TRACESTATE or key == BAGGAGE:
                    return None
            if type(tp) is not bytes:  # Kafka's clients give bytes
                if type(tp) is not str or not tp.isascii():
                    return None
                tp = tp.encode()  # RabbitMQ's clients hand text: the same bytes, one way on
            if (
                len(tp) == _TRACEPARENT_00_LEN
                and tp.translate(_BYTE_CLASS) == _TRACEPARENT_SHAPE
                and tp[0] == 48 == tp[1]  # version "00"
                and tp[3:35] != _ZERO_TRACE_ID
                and tp[36:52] != _ZERO_SPAN_ID
            ):
                return tp
        except Exception:
            return None  # the full path reports it
        return None

    def _extract_w3c(self, headers: Headers, keep_baggage: bool) -> Extracted | None:
        tp = ts = bg = None
        found = False
        for item in headers if type(headers) is list else _items(headers):
            key = item[0]
            if key == TRACEPARENT:
                tp = item[1]
                found = True
            elif key == TRACESTATE:
                ts = item[1]
            elif key == BAGGAGE:
                bg = item[1]
        if not found:
            return None
        span_context = parse_traceparent(tp)
        if span_context is None:
            return None
        if ts:
            span_context = self._with_tracestate(span_context, ts)
        # A context of its own, not derived from the current one: what the standard
        # propagators (and our generic path) return; one dict instead of a copy.
        ctx = Context({SPAN_KEY: NonRecordingSpan(span_context)})
        if bg and keep_baggage and self._fast_baggage:
            ctx = self._extract_baggage(bg, ctx)
        return Extracted(span_context, ctx)

    @staticmethod
    def _with_tracestate(span_context: SpanContext, raw: Any) -> SpanContext:
        try:
            if len(raw) > _MAX_TRACESTATE:
                report_problem("oversized tracestate", raw, TRACE_GOES_ON)
                return span_context
            text = _as_text(raw)
            if not text:
                return span_context
            state = TraceState.from_header([text])
        except Exception:
            report_problem("unreadable tracestate", raw, TRACE_GOES_ON)
            return span_context
        return SpanContext(span_context.trace_id, span_context.span_id, True, span_context.trace_flags, state)

    def _extract_baggage(self, raw: Any, ctx: Context) -> Context:
        try:
            text = _as_text(raw)
        except UnicodeDecodeError:
            report_problem("baggage is not UTF-8", raw, TRACE_GOES_ON)
            return ctx
        if not text:
            return ctx
        if len(text.encode()) > 8192:
            # W3C limit; the OpenTelemetry propagator would also drop it, we say why.
            report_problem("baggage over 8192 bytes", raw, TRACE_GOES_ON)
            return ctx
        extracted = _W3C_BAGGAGE.extract({BAGGAGE: text}, ctx)
        if self.baggage_keys is not None:
            for key in list(baggage_api.get_all(extracted)):
                if key not in self.baggage_keys:
                    extracted = baggage_api.remove_baggage(key, extracted)
        return extracted

    def _extract_generic(
        self, propagator: TextMapPropagator, headers: Headers, keep_baggage: bool
    ) -> Extracted | None:
        carrier: dict[str, str] = {}
        for item in _items(headers):
            key, value = item[0], item[1]
            if type(key) is not str or (self._fields and key.lower() not in self._fields):
                continue
            try:
                text = _as_text(value)
            except UnicodeDecodeError:
                report_problem(f"{key} header is not UTF-8", value, HEADER_LEFT_OUT)
                carrier.pop(key, None)
                continue
            if text is None or len(text) > 8192:
                if text is not None:
                    report_problem(f"oversized {key} header", value, HEADER_LEFT_OUT)
                carrier.pop(key, None)
                continue
            carrier[key] = text  # later values win: read the LAST one
        if not carrier:
            return None
        ctx = propagator.extract(carrier, Context())
        span_context = trace.get_current_span(ctx).get_span_context()
        if not span_context.is_valid:
            report_problem("no valid trace context in " + ",".join(sorted(carrier)))
            return None
        if not keep_baggage:
            ctx = trace.set_span_in_context(NonRecordingSpan(span_context))
        elif self.baggage_keys is not None:
            for key in list(baggage_api.get_all(ctx)):
                if key not in self.baggage_keys:
                    ctx = baggage_api.remove_baggage(key, ctx)
        return Extracted(span_context, ctx)


def _has_baggage(context: Context | None) -> bool:
    ctx = context if context is not None else context_api.get_current()
    return BAGGAGE_KEY in ctx and bool(baggage_api.get_all(ctx))


def env_true(name: str) -> bool:
    """A switch in the environment (``KET_PROPAGATION_ONLY``, ``OTEL_SDK_DISABLED``) is on."""
    return os.environ.get(name, "").strip().lower() == "true"


def inject_context(headers: Headers = None, context: Context | None = None) -> Any:
    """Headers carrying the current (or given) context, for a message you send yourself.

    >>> headers = inject_context([("event-type", b"order.created")])

    Under ``OTEL_SDK_DISABLED=true`` (without ``KET_PROPAGATION_ONLY=true``) the headers
    come back as they are, as the wrappers then inject nothing either.
    """
    if env_true("OTEL_SDK_DISABLED") and not env_true("KET_PROPAGATION_ONLY"):
        return headers
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return headers
    return Propagation().inject(headers, span_context, context)


def extract_context(headers: Headers) -> Context | None:
    """The context a message's headers carry, or None; never raises.

    >>> ctx = extract_context(msg.headers())
    """
    extracted = Propagation().extract(headers)
    return extracted.context if extracted is not None else None
