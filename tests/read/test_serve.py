"""`eventchain serve`: real OTLP exporters (HTTP and gRPC) sending to a real `serve` process on loopback.

Every port is picked by the receiver itself (``127.0.0.1:0``) and read from its first line, so the
ports the local stack holds are never touched. Conditions are waited for, never slept on.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # a bound for conditions on a busy machine, not a speed claim


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)


class Serve:
    """An `eventchain serve` process; its output lines are collected as they come."""

    def __init__(self, store: Path, *args: str) -> None:
        self.store = store
        command = [sys.executable, "-m", "tracing", "serve", "--http", "127.0.0.1:0", "--store", str(store)]
        self.proc = subprocess.Popen(
            [*command, "--width", "160", "--color", "never", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True).start()
        line = wait_for(lambda: next((x for x in self.err if "listening:" in x), None), "serve to listen")
        self.http_port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        self.grpc_port = int(line.split("OTLP/gRPC on 127.0.0.1:")[1].split(";")[0]) if "gRPC" in line else 0

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=WAIT_S)
        wait_for(lambda: any("stopped:" in x for x in self.err), "the closing line")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve_factory(tmp_path: Path):
    started: list[Serve] = []

    def start(*args: str, store: Path | None = None) -> Serve:
        s = Serve(store or tmp_path / "spans.sqlite", *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def eventchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracing", *args, "--width", "200", "--color", "never"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT_S,
    )


class Recording:
    """A span exporter that hands each batch to ``inner`` and keeps its answers."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Any) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def send_chain(exporter: Any, service: str = "api", consumers: int = 1) -> tuple[str, Recording]:
    """One send and ``consumers`` process spans, each exported on its own by the given exporter."""
    recording = Recording(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(recording))  # type: ignore[arg-type]
    tracer = provider.get_tracer("test")
    send_attrs = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.destination.name": "orders",
    }
    with tracer.start_as_current_span(
        "send orders", kind=trace.SpanKind.PRODUCER, attributes=send_attrs
    ) as send:
        pass
    for n in range(consumers):
        attrs = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": "orders",
            "messaging.consumer.group.name": f"group-{n}",
        }
        context = trace.set_span_in_context(send)
        with tracer.start_as_current_span(
            "process orders", context=context, kind=trace.SpanKind.CONSUMER, attributes=attrs
        ):
            pass
    provider.shutdown()
    return format(send.get_span_context().trace_id, "032x"), recording


def http_exporter(s: Serve, **options: Any) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{s.url}/v1/traces", **options)


def grpc_exporter(s: Serve) -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"127.0.0.1:{s.grpc_port}", insecure=True)


def post(
    s: Serve, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(s.url + path, data=body if method == "POST" else None, method=method)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
            return answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def otlp_json(trace_id: str, span_id: str, name: str = "send orders") -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": name,
                                "kind": 4,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000002000000",
                                "attributes": [
                                    {"key": "messaging.operation.type", "value": {"stringValue": "send"}},
                                    {"key": "messaging.destination.name", "value": {"stringValue": "orders"}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }


# --- the receiver against the official exporters ------------------------------------------------------


def test_http_protobuf_exporter_is_acknowledged_and_list_reads_the_store_while_serve_runs(serve_factory):
    s = serve_factory()
    trace_id, recording = send_chain(http_exporter(s), consumers=2)
    assert recording.results == [SpanExportResult.SUCCESS] * 3
    listed = eventchain("list", "--store", str(s.store))
    assert listed.returncode == 0, listed.stderr
    assert trace_id in listed.stdout
    assert "1 of 1 chain shown" in listed.stdout
    tree = eventchain("tree", trace_id[:12], "--store", str(s.store))
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.count("process orders") == 2
    assert s.stop() == 0
    assert any("stored 3 spans" in line for line in s.err)


def test_grpc_exporter_is_acknowledged_and_stored(serve_factory):
    s = serve_factory("--grpc", "127.0.0.1:0")
    trace_id, recording = send_chain(grpc_exporter(s))
    assert recording.results == [SpanExportResult.SUCCESS] * 2
    tree = eventchain("tree", trace_id, "--store", str(s.store))
    assert tree.returncode == 0, tree.stderr
    assert "process orders  group group-0" in tree.stdout


def test_gzip_from_the_exporter_and_otlp_json_are_stored(serve_factory):
    from opentelemetry.exporter.otlp.proto.http import Compression

    s = serve_factory()
    gz_trace, recording = send_chain(http_exporter(s, compression=Compression.Gzip))
    assert recording.results == [SpanExportResult.SUCCESS] * 2
    json_trace = "0af7651916cd43dd8448eb211c80319c"
    body = json.dumps(otlp_json(json_trace, "b7ad6b7169203331")).encode()
    status, answer, headers = post(
        s, "/v1/traces", gzip.compress(body), {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(answer) == {}
    listed = eventchain("list", "--store", str(s.store), "--all", "--json")
    assert {c["trace_id"] for c in json.loads(listed.stdout)} == {gz_trace, json_trace}


def test_invalid_requests_get_the_spec_answers_and_the_receiver_keeps_serving(serve_factory):
    from google.rpc import status_pb2

    s = serve_factory()
    protobuf = {"Content-Type": "application/x-protobuf"}
    status, body, _ = post(s, "/v1/traces", b"\xff\xff\xff\xff", protobuf)
    assert status == 400
    message = status_pb2.Status.FromString(body)
    assert "ExportTraceServiceRequest" in message.message
    status, body, _ = post(s, "/v1/traces", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in json.loads(body)["message"]
    bad_id = json.dumps(otlp_json("xyz", "b7ad6b7169203331")).encode()
    status, body, _ = post(s, "/v1/traces", bad_id, {"Content-Type": "application/json"})
    assert status == 400 and "traceId" in json.loads(body)["message"] or "hex" in json.loads(body)["message"]
    assert post(s, "/v1/traces", b"x", {"Content-Type": "text/plain"})[0] == 415
    assert post(s, "/v1/traces", gzip.compress(b"x")[:-4], {**protobuf, "Content-Encoding": "gzip"})[0] == 400
    assert post(s, "/v1/traces", b"x", {**protobuf, "Content-Encoding": "br"})[0] == 415
    assert post(s, "/v2/spans", b"x", protobuf)[0] == 404
    assert post(s, "/v1/traces", b"", {}, method="GET")[0] == 405
    huge = 64 * 1024 * 1024
    # over the body limit: answered from the headers, before the body is read
    connection = http.client.HTTPConnection("127.0.0.1", s.http_port, timeout=WAIT_S)
    connection.putrequest("POST", "/v1/traces")
    connection.putheader("Content-Type", "application/x-protobuf")
    connection.putheader("Content-Length", str(huge))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413 and "limit" in status_pb2.Status.FromString(answer.read()).message
    connection.close()
    # a gzip bomb: small on the wire, over the limit once inflated
    status, _, _ = post(
        s, "/v1/traces", gzip.compress(b"\0" * huge), {**protobuf, "Content-Encoding": "gzip"}
    )
    assert status == 413
    trace_id, recording = send_chain(http_exporter(s))
    assert recording.results == [SpanExportResult.SUCCESS] * 2
    assert trace_id in eventchain("list", "--store", str(s.store)).stdout


def test_spans_with_invalid_ids_are_rejected_and_counted(serve_factory):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    s = serve_factory()
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    good = spans.add(trace_id=bytes.fromhex("11" * 16), span_id=bytes.fromhex("22" * 8), name="ok")
    good.start_time_unix_nano = good.end_time_unix_nano = 1
    spans.add(trace_id=bytes(16), span_id=bytes.fromhex("33" * 8), name="zero trace id")
    status, body, _ = post(
        s, "/v1/traces", request.SerializeToString(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200
    answer = ExportTraceServiceResponse.FromString(body)
    assert answer.partial_success.rejected_spans == 1
    assert s.stop() == 0
    assert any("1 spans rejected" in line for line in s.err)


# --- live, shutdown, persistence, retention ----------------------------------------------------------


def test_the_demo_chains_are_printed_once_each_with_every_span_and_the_store_outlives_serve(
    serve_factory, tmp_path
):
    from tracing.demo import scenario
    from tracing.demo.embedded import WARM_UP_S, EmbeddedRun

    s = serve_factory("--live", "--settle", "0.5")
    demo = EmbeddedRun(log_stream=open(os.devnull, "w"))
    try:
        demo.warm_up(WARM_UP_S)
        chains = [demo.play(step) for step in scenario.STEPS]
        spans = demo.spans()
    finally:
        demo.close()
    exporter = http_exporter(s)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    per_trace: dict[str, int] = {}
    for span in spans:
        tid = format(span.context.trace_id, "032x")
        per_trace[tid] = per_trace.get(tid, 0) + 1
    for chain in chains:
        wait_for(
            lambda c=chain: any(x.startswith(f"settled {c.trace_id}:") for x in s.out),
            f"chain {chain.trace_id}",
        )
    assert s.stop() == 0
    for chain in chains:
        settled = [x for x in s.out if x.startswith(f"settled {chain.trace_id}:")]
        assert len(settled) == 1, settled  # printed once
        assert settled[0].endswith(f", {per_trace[chain.trace_id]} spans")
        assert any(x.startswith(f"trace {chain.trace_id}") for x in s.out)  # with its tree
    assert not any(x.startswith("updated ") for x in s.out)
    # The database persists: a second serve on the same store starts with every span, and reads them.
    again = serve_factory(store=s.store)
    assert any(f"({len(spans):,} spans kept)" in x for x in again.err)
    listed = eventchain("list", "--store", str(s.store), "--all", "--json")
    assert {c["trace_id"] for c in json.loads(listed.stdout)} == set(per_trace)


def test_a_chain_that_grows_after_it_was_printed_gets_an_update_line(serve_factory):
    s = serve_factory("--live", "--settle", "0.3")
    trace_id = "5b8efff798038103d269b633813fc60c"
    body = json.dumps(otlp_json(trace_id, "eee19b7ec3c1b174")).encode()
    assert post(s, "/v1/traces", body, {"Content-Type": "application/json"})[0] == 200
    wait_for(lambda: any(x.startswith(f"settled {trace_id}:") for x in s.out), "the first print")
    more = otlp_json(trace_id, "eee19b7ec3c1b175", "send payments")
    assert post(s, "/v1/traces", json.dumps(more).encode(), {"Content-Type": "application/json"})[0] == 200
    line = wait_for(
        lambda: next((x for x in s.out if x.startswith(f"updated {trace_id}:")), None), "the update"
    )
    assert "+1 spans since printed" in line and line.endswith(", 2 spans")
    assert sum(1 for x in s.out if x.startswith(f"trace {trace_id}")) == 1


def test_retention_drops_the_least_recently_received_traces_and_says_so(serve_factory):
    s = serve_factory("--max-spans", "5")
    first, _ = send_chain(http_exporter(s), consumers=3)
    second, _ = send_chain(http_exporter(s), consumers=3)
    third, _ = send_chain(http_exporter(s), consumers=3)
    listed = eventchain("list", "--store", str(s.store), "--all", "--json")
    kept = {c["trace_id"] for c in json.loads(listed.stdout)}
    assert kept == {third}
    assert first not in kept and second not in kept
    assert s.stop() == 0
    assert any("retention dropped" in x and "--max-spans 5" in x for x in s.err)
    assert any("the store holds 4 spans in 1 traces" in x for x in s.err)


def test_an_address_in_use_is_one_line_saying_what_to_try(serve_factory, tmp_path):
    s = serve_factory()
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracing",
            "serve",
            "--http",
            f"127.0.0.1:{s.http_port}",
            "--store",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT_S,
    )
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and "try --http" in other.stderr and "Traceback" not in other.stderr


def test_reading_a_missing_store_says_how_to_start_one(tmp_path):
    result = eventchain("list", "--store", str(tmp_path / "nothing.sqlite"))
    assert result.returncode == 2
    assert "eventchain serve --store" in result.stderr


# --- a service configured for every signal ---------------------------------------------------------------

SERVICE = textwrap.dedent(
    """
    import logging, sys
    import tracing
    from opentelemetry import trace, metrics
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    provider = tracing.configure("all-signals")
    logs = LoggerProvider()
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(logs)
    logging.getLogger("app").addHandler(LoggingHandler(logger_provider=logs))
    logging.getLogger("app").warning("hello")
    metrics.get_meter("app").create_counter("requests").add(1)
    with trace.get_tracer("app").start_as_current_span("work"):
        pass
    logs.shutdown()
    """
)


def test_a_service_sending_every_signal_logs_no_error_and_serve_says_once_what_it_dropped(serve_factory):
    s = serve_factory("--grpc", "127.0.0.1:0")
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": s.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", SERVICE], capture_output=True, text=True, env=env, timeout=WAIT_S
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr  # no error, no warning
    # the same over gRPC
    env = {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{s.grpc_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    grpc_service = SERVICE.replace("proto.http._log_exporter", "proto.grpc._log_exporter")
    result = subprocess.run(
        [sys.executable, "-c", grpc_service], capture_output=True, text=True, env=env, timeout=WAIT_S
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert s.stop() == 0
    assert sum("metrics received and dropped" in x for x in s.err) == 1
    assert sum("logs received and dropped" in x for x in s.err) == 1
    closing = next(x for x in s.err if "stopped:" in x)
    assert "metrics requests dropped" in closing and "logs requests dropped" in closing
    listed = eventchain("list", "--store", str(s.store), "--all", "--json")
    assert len(json.loads(listed.stdout)) == 3  # one trace per run
