"""Helpers for the read-side tests: fixture paths, running the CLI, a stand-in Jaeger query service."""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tracing.cli import main

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


# --- a stand-in for Jaeger's query API, answering the way Jaeger v2 was seen to answer ----------


class FakeJaeger:
    """Serves the traces of some Jaeger JSON fixtures; ``mode`` makes it misbehave."""

    def __init__(self, *fixture_names: str) -> None:
        self.traces: dict[str, dict[str, Any]] = {}
        for name in fixture_names:
            doc = json.loads(fixture(name).read_text())
            for trace in doc["data"] if "data" in doc else [doc]:
                self.traces[trace["traceID"].rjust(32, "0")] = trace
        self.mode = "ok"
        self.requests: list[str] = []
        self.url = ""

    def answer(self, path: str) -> tuple[int, str, bytes]:
        self.requests.append(path)
        if self.mode == "error":
            return 500, "text/plain", b"internal error"
        if self.mode == "html":
            return 200, "text/html", b"<html><body>not jaeger</body></html>"
        parsed = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(parsed.query)
        if parsed.path == "/api/services":
            services = sorted({p["serviceName"] for t in self.traces.values()
                               for p in t["processes"].values()})
            return _json(200, {"data": services, "total": len(services)})
        if parsed.path == "/api/traces":
            service = query.get("service", [""])[0]
            found = [t for t in self.traces.values()
                     if any(p["serviceName"] == service for p in t["processes"].values())]
            return _json(200, {"data": found[: int(query.get("limit", ["20"])[0])]})
        if parsed.path.startswith("/api/traces/"):
            trace_id = parsed.path.rsplit("/", 1)[1]
            if trace_id in self.traces:
                return _json(200, {"data": [self.traces[trace_id]]})
            return _json(404, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]})
        return 404, "text/plain", b"404 page not found"


def _json(status: int, doc: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(doc).encode()


@pytest.fixture
def fake_jaeger() -> Iterator[Callable[..., FakeJaeger]]:
    """``fake_jaeger("fanout.jaeger.json", ...)`` starts a server; its ``url`` goes to --jaeger."""
    servers: list[ThreadingHTTPServer] = []

    def start(*fixture_names: str) -> FakeJaeger:
        jaeger = FakeJaeger(*fixture_names)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                status, content_type, body = jaeger.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        jaeger.url = f"http://127.0.0.1:{server.server_address[1]}"
        return jaeger

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
