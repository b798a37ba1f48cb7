"""`eventchain serve` under back-pressure: concurrent senders on loopback fill the receiver's queue.

The store's writer is held by a write transaction the test opens on the same SQLite file (what a slow
disk would do), so the queue fills deterministically: one batch is being written, at most one more
waits (``--max-waiting``), every other request is turned away at once. Conditions are waited for,
never slept on; nothing here measures speed.
"""

from __future__ import annotations

import http.client
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.read.test_serve import WAIT_S, Serve, wait_for
from tracing.read.store import SpanStore

SPANS_PER_REQUEST = 100
SENDERS = 6  # of each protocol


@pytest.fixture
def serve_factory(tmp_path: Path):
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        s = Serve(tmp_path / "spans.sqlite", *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def raw_request(traces: int = 10) -> tuple[bytes, set[str]]:
    """An ExportTraceServiceRequest of SPANS_PER_REQUEST spans in ``traces`` new traces."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add(key="service.name")
    attribute.value.string_value = "pressure"
    spans = resource_spans.scope_spans.add().spans
    trace_ids = [os.urandom(16) for _ in range(traces)]
    for n in range(SPANS_PER_REQUEST):
        span = spans.add(trace_id=trace_ids[n % traces], span_id=os.urandom(8), name="send orders", kind=4)
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + n
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
    return request.SerializeToString(), {t.hex() for t in trace_ids}


def post_http(port: int, body: bytes) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        answer = connection.getresponse()
        answer.read()
        return answer.status, answer.getheader("Retry-After")
    finally:
        connection.close()


def export_grpc(port: int, body: bytes) -> str:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        try:
            stub.Export(request, timeout=WAIT_S)
        except grpc.RpcError as error:
            return str(error.code().name)
        return "OK"


def stored_traces(store: Path) -> set[str]:
    with SpanStore.open(store) as reader:
        return set(reader.trace_ids())


def closing_count(s: Serve, words: str) -> int:
    """The number the closing line gives for ``words`` (0 when it does not mention them)."""
    closing = next(x for x in s.err if "stopped:" in x).split("stopped: ", 1)[1]
    for part in closing.split("; "):
        if words in part:
            return int(next(w for w in part.split() if w[0].isdigit()).replace(",", ""))
    return 0


def test_a_full_queue_answers_503_with_retry_after_and_unavailable_and_keeps_what_it_acknowledged(
    serve_factory,
):
    s = serve_factory("--grpc", "127.0.0.1:0", "--max-waiting", str(SPANS_PER_REQUEST))
    writer = sqlite3.connect(s.store, isolation_level=None, timeout=WAIT_S)
    writer.execute("BEGIN IMMEDIATE")  # serve's writer now waits for this lock: the queue fills up
    requests = [raw_request() for _ in range(2 * SENDERS)]
    answers: dict[int, Any] = {}
    go = threading.Barrier(2 * SENDERS)

    def send(n: int) -> None:
        body = requests[n][0]
        go.wait()
        answers[n] = post_http(s.http_port, body) if n < SENDERS else export_grpc(s.grpc_port, body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2 * SENDERS)]
    for t in threads:
        t.start()
    # One batch is being written and at most one waits: every other request is answered right away.
    wait_for(lambda: len(answers) >= 2 * SENDERS - 2, "the requests beyond the queue to be turned away")
    held = 2 * SENDERS - len(answers)
    writer.rollback()  # the disk is fast again: what waited is written and acknowledged
    for t in threads:
        t.join(timeout=WAIT_S)
    assert len(answers) == 2 * SENDERS

    http_answers = [answers[n] for n in range(SENDERS)]
    grpc_answers = [answers[n] for n in range(SENDERS, 2 * SENDERS)]
    assert {status for status, _ in http_answers} <= {200, 503}
    assert all(after == "1" for status, after in http_answers if status == 503)  # Retry-After: 1
    assert set(grpc_answers) <= {"OK", "UNAVAILABLE"}
    refused = sum(status == 503 for status, _ in http_answers) + grpc_answers.count("UNAVAILABLE")
    accepted = [n for n in range(2 * SENDERS) if answers[n] in ((200, None), "OK")]
    assert len(accepted) <= held <= 2 and refused == 2 * SENDERS - len(accepted)
    assert refused >= 2 * SENDERS - 2

    # Every span acknowledged is in the store; nothing that was turned away is half there.
    acknowledged = set().union(*(requests[n][1] for n in accepted))
    assert stored_traces(s.store) == acknowledged
    assert s.stop() == 0
    assert closing_count(s, "requests turned away while busy") == refused
    assert closing_count(s, "stored") == len(accepted) * SPANS_PER_REQUEST


def sdk_batches(count: int, size: int) -> list[list[ReadableSpan]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "retrying"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for _ in range(count * size):
        with tracer.start_as_current_span("send orders", attributes={"messaging.operation.type": "send"}):
            pass
    spans = list(memory.get_finished_spans())
    return [spans[n : n + size] for n in range(0, len(spans), size)]


def test_sdk_exporters_retry_what_a_busy_receiver_turns_away_and_every_acknowledged_span_is_stored(
    serve_factory,
):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    s = serve_factory("--grpc", "127.0.0.1:0", "--max-waiting", str(SPANS_PER_REQUEST))
    senders = 4  # of each protocol, each with its own exporter, all at once
    batches = sdk_batches(senders * 2 * 5, SPANS_PER_REQUEST)
    results: list[tuple[list[ReadableSpan], SpanExportResult]] = []
    lock = threading.Lock()
    go = threading.Barrier(2 * senders)

    def send(n: int) -> None:
        if n < senders:
            exporter: Any = HttpExporter(endpoint=f"{s.url}/v1/traces", timeout=WAIT_S)
        else:
            exporter = GrpcExporter(endpoint=f"127.0.0.1:{s.grpc_port}", insecure=True, timeout=WAIT_S)
        go.wait()
        for batch in batches[n :: 2 * senders]:
            result = exporter.export(batch)
            with lock:
                results.append((batch, result))
        exporter.shutdown()

    writer = sqlite3.connect(s.store, isolation_level=None, timeout=WAIT_S)
    writer.execute("BEGIN IMMEDIATE")  # the first requests meet a full queue and are retried later
    threads = [threading.Thread(target=send, args=(n,)) for n in range(2 * senders)]
    for t in threads:
        t.start()
    # A probe of our own is turned away only when the queue is full: then the exporters were too.
    wait_for(lambda: post_http(s.http_port, raw_request()[0])[0] == 503, "the queue to fill up")
    writer.rollback()
    for t in threads:
        t.join(timeout=4 * WAIT_S)
    assert len(results) == len(batches)

    acknowledged = {
        format(span.context.span_id, "016x")
        for batch, result in results
        if result is SpanExportResult.SUCCESS
        for span in batch
    }
    assert acknowledged, "no export succeeded"
    with SpanStore.open(s.store) as reader:
        stored = {span.span_id for span in reader.spans() if span.service == "retrying"}
    assert acknowledged <= stored  # nothing acknowledged is lost
    assert s.stop() == 0
    refused = closing_count(s, "requests turned away while busy")
    assert refused >= 1
    failed = sum(result is not SpanExportResult.SUCCESS for _, result in results)
    print(
        f"{len(batches)} exports of {SPANS_PER_REQUEST} spans by {2 * senders} exporters: "
        f"{len(batches) - failed} acknowledged, {failed} given up; {refused} requests turned away and retried"
    )
