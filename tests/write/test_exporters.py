"""OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER in tracing.configure(), the OTLP JSON lines file
exporter (several processes, a killed writer), and exit without a collector."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # a bound on a busy machine, not a speed claim

APP = textwrap.dedent(
    """
    import sys
    import tracing
    from opentelemetry import trace
    tracing.configure("order-service")
    tracer = trace.get_tracer("app")
    for n in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        with tracer.start_as_current_span("send orders", kind=trace.SpanKind.PRODUCER,
                                          attributes={"messaging.operation.type": "send",
                                                      "messaging.destination.name": "orders"}):
            pass
    """
)


def run_app(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", APP, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OTEL_METRICS_EXPORTER": "none", **env},
        timeout=WAIT_S,
        cwd=ROOT,
    )


def eventchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracing", *args, "--width", "200"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT_S,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_otlp_file_writes_lines_eventchain_reads(tmp_path):
    path = tmp_path / "spans.jsonl"
    result = run_app({"OTEL_TRACES_EXPORTER": "otlp_file", "KET_TRACES_FILE": str(path)}, "3")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    doc = json.loads(path.read_text().splitlines()[0])
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)  # hex, as OTLP/JSON says
    listed = eventchain("list", "--file", str(path), "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3


def test_console_prints_otlp_json_lines_eventchain_reads_from_a_pipe(tmp_path):
    result = run_app({"OTEL_TRACES_EXPORTER": "console"}, "2")
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "tracing", "list", "--file", "-", "--all", "--json"],
        input=result.stdout,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT_S,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2


def test_none_exports_nothing_and_says_nothing():
    result = run_app(
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_an_unknown_exporter_is_one_line_naming_the_known_ones():
    result = run_app({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert result.returncode != 0
    assert "otlp, console, otlp_file, none" in result.stderr.splitlines()[-1]


def test_exit_without_a_collector_says_what_was_not_exported(tmp_path):
    for protocol in ("grpc", "http/protobuf"):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        }
        result = run_app(env, "2")
        assert result.returncode == 0
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr  # one line, no retry warnings, no traceback
        assert "2 spans not exported at exit: nothing listens at" in lines[0]
        assert "eventchain serve" in lines[0]


WRITER = textwrap.dedent(
    """
    import sys
    from tracing.exporters import JsonLinesFile
    out = JsonLinesFile(sys.argv[1])
    me = sys.argv[2]
    for n in range(int(sys.argv[3])):
        out.append(('{"writer": "%s", "n": %d, "pad": "%s"}\\n' % (me, n, me * (n % 5000))).encode())
    """
)


def test_four_processes_appending_to_one_file_never_interleave_lines(tmp_path):
    path = tmp_path / "shared.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "400"], cwd=ROOT) for name in "abcd"
    ]
    assert [w.wait(timeout=WAIT_S) for w in writers] == [0, 0, 0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    docs = [json.loads(line) for line in lines[:-1]]  # every line whole
    for name in "abcd":
        assert [d["n"] for d in docs if d["writer"] == name] == list(range(400))


def test_a_line_left_unfinished_by_a_killed_writer_is_skipped_then_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "spans.jsonl"
    env = {"OTEL_TRACES_EXPORTER": "otlp_file", "KET_TRACES_FILE": str(path)}
    assert run_app(env).returncode == 0
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # what a writer killed mid-line leaves
    listed = eventchain("list", "--file", str(path), "--all", "--json")
    assert listed.returncode == 0
    assert len(json.loads(listed.stdout)) == 1
    assert "warning" in listed.stderr and "last line" in listed.stderr
    assert run_app(env).returncode == 0  # the next writer cuts the unfinished line first
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""
    assert all(json.loads(line) for line in lines[:-1])
