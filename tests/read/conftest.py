"""Helpers for the read-side tests: fixture paths, running the CLI, fixture traces in the real Jaeger."""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from rich.console import Console

from tests.stack import Stack, jaeger_trace
from tracing.cli import main
from tracing.read.load import read_file
from tracing.read.model import Span, SpanEvent, SpanRef

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "expected"
WIDTH = 100


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendered text must not depend on the environment the tests run in."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES",
                 "EVENTCHAIN_JAEGER_URL"):
        monkeypatch.delenv(name, raising=False)


def fixture(name: str) -> Path:
    return FIXTURES / name


def plain_console(width: int = WIDTH) -> Console:
    """A console that renders plain text at a fixed width into a buffer (``.file.getvalue()``)."""
    return Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False,
                   legacy_windows=False)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``eventchain`` in-process: ``cli("tree", id, "--file", path)`` -> Result."""

    def run(*args: str) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


# --- the fixture traces, sent to the real Jaeger of the local stack --------------------------------

# Seeded traces start this long before the moment they are sent: recent enough for any lookback.
SEED_AGO_NS = 5 * 10**9


@dataclass(frozen=True)
class SeededJaeger:
    """A fixture file's traces as the real Jaeger holds them, under fresh trace ids."""

    url: str
    ids: Mapping[str, str]
    """Trace id in the fixture file -> trace id in Jaeger (link targets included)."""
    spans: list[Span]
    """The spans as sent: new trace ids, times moved to just before they were sent."""

    def id(self, fixture_trace_id: str) -> str:
        return self.ids[fixture_trace_id.rjust(32, "0")]

    def start_ns(self, fixture_trace_id: str) -> int:
        trace_id = self.id(fixture_trace_id)
        return min(s.start_ns for s in self.spans if s.trace_id == trace_id)

    def expected(self, text: str) -> str:
        """Expected output written for the fixture file, with the trace ids Jaeger has."""
        for old, new in self.ids.items():
            text = text.replace(old, new)
        return text


@pytest.fixture(scope="session")
def seeded_jaeger(real_stack: Stack) -> Callable[[str], SeededJaeger]:
    """``seeded_jaeger("fanout.jaeger.json")``: that file's traces, in the real Jaeger.

    Each file is sent once per test session, under trace ids never used before, so runs against
    the same Jaeger never add spans to an earlier run's traces.
    """
    seeded: dict[str, SeededJaeger] = {}

    def seed(name: str) -> SeededJaeger:
        if name not in seeded:
            seeded[name] = _seed(real_stack, name)
        return seeded[name]

    return seed


def _seed(stack: Stack, name: str) -> SeededJaeger:
    spans = read_file(fixture(name))
    ids: dict[str, str] = {}

    def new_id(old: str) -> str:
        return ids.setdefault(old, secrets.token_hex(16))

    # Move every time by the same whole number of milliseconds (Jaeger keeps microseconds).
    shift = (time.time_ns() - SEED_AGO_NS - min(s.start_ns for s in spans)) // 10**6 * 10**6
    moved = [
        Span(
            trace_id=new_id(s.trace_id), span_id=s.span_id, parent_id=s.parent_id, name=s.name,
            kind=s.kind, service=s.service, start_ns=s.start_ns + shift, end_ns=s.end_ns + shift,
            attributes=dict(s.attributes),
            events=[SpanEvent(e.name, e.time_ns + shift, dict(e.attributes)) for e in s.events],
            links=[SpanRef(new_id(link.trace_id), link.span_id, dict(link.attributes))
                   for link in s.links],
            status_error=s.status_error, status_message=s.status_message,
        )
        for s in spans
    ]
    exporter = OTLPSpanExporter(endpoint=stack.otlp_endpoint, insecure=True, timeout=10)
    try:
        result = exporter.export(_readable_spans(moved))
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.SUCCESS, f"OTLP export to {stack.otlp_endpoint} failed"
    for trace_id in dict.fromkeys(s.trace_id for s in moved):
        jaeger_trace(trace_id, expect_spans=sum(s.trace_id == trace_id for s in moved),
                     base_url=stack.jaeger_url)
    return SeededJaeger(url=stack.jaeger_url, ids=ids, spans=moved)


def _readable_spans(spans: list[Span]) -> list[ReadableSpan]:
    """SDK spans as a service would have finished them: one resource per service."""
    resources = {service: Resource({"service.name": service}) for service in {s.service for s in spans}}
    result = []
    for s in spans:
        attributes = dict(s.attributes)
        # Jaeger shows the instrumentation scope as a tag; send it as the scope it stands for.
        scope = InstrumentationScope(str(attributes.pop("otel.scope.name", "")),
                                     attributes.pop("otel.scope.version", None))
        trace_id = int(s.trace_id, 16)
        result.append(ReadableSpan(
            name=s.name,
            context=_context(trace_id, s.span_id),
            parent=_context(trace_id, s.parent_id) if s.parent_id else None,
            resource=resources[s.service],
            attributes=attributes,
            events=[Event(e.name, dict(e.attributes), e.time_ns) for e in s.events],
            links=[Link(_context(int(link.trace_id, 16), link.span_id), dict(link.attributes))
                   for link in s.links],
            kind=SpanKind[s.kind.upper()],
            status=Status(StatusCode.ERROR, s.status_message) if s.status_error else Status(),
            start_time=s.start_ns,
            end_time=s.end_ns,
            instrumentation_scope=scope,
        ))
    return result


def _context(trace_id: int, span_id: str) -> SpanContext:
    return SpanContext(trace_id, int(span_id, 16), is_remote=False,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))
