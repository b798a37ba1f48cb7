"""The OTLP span encoder (tracing.write.otlp) writes what the exporter's own encoder writes:
decoded with opentelemetry-proto, both requests are equal for the same spans."""

from __future__ import annotations

from concurrent import futures

import grpc
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tracing.write.otlp import SpanEncoder

scalars = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=6),
)
values = st.one_of(scalars, st.lists(st.one_of(st.text(max_size=5), st.integers(-5, 5)), max_size=3))
attributes = st.dictionaries(st.sampled_from(["a", "b", "messaging.system", "k.v", ""]), values, max_size=4)


@st.composite
def span_specs(draw):
    return {
        "name": draw(st.text(max_size=12)),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "parent": draw(st.sampled_from([None, "remote", "local"])),
        "state": draw(st.sampled_from([None, "k=v", "a=1,b=2"])),
        "links": draw(st.lists(st.tuples(st.booleans(), attributes), max_size=2)),
        "events": draw(st.lists(st.tuples(st.text(max_size=6), attributes), max_size=2)),
        "status": draw(st.sampled_from([None, StatusCode.OK, StatusCode.ERROR])),
        "description": draw(st.text(max_size=8)),
        "scope": draw(st.sampled_from(["kafka-event-tracing", "other"])),
        "service": draw(st.sampled_from(["orders", "stock"])),
    }


def _spans(specs, max_attributes):
    exporter = InMemorySpanExporter()
    providers = {}
    for spec in specs:
        provider = providers.get(spec["service"])
        if provider is None:
            provider = providers[spec["service"]] = TracerProvider(
                resource=Resource.create({"service.name": spec["service"]}, "https://schema/1"),
                span_limits=SpanLimits(max_span_attributes=max_attributes),
            )
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer(spec["scope"], "1.0", schema_url="https://schema/2")
        ctx = Context()
        if spec["parent"]:
            state = TraceState.from_header([spec["state"]]) if spec["state"] else None
            parent = SpanContext(0xABC, 0xDEF, spec["parent"] == "remote", TraceFlags(1), state)
            ctx = trace.set_span_in_context(NonRecordingSpan(parent), ctx)
        links = [
            Link(SpanContext(0x123, 0x456 + i, remote, TraceFlags(1)), attrs)
            for i, (remote, attrs) in enumerate(spec["links"])
        ]
        span = tracer.start_span(spec["name"], ctx, spec["kind"], spec["attributes"], links, 1_000)
        for name, attrs in spec["events"]:
            span.add_event(name, attrs, timestamp=2_000)
        if spec["status"] is not None:
            span.set_status(Status(spec["status"], spec["description"] or None))
        span.end(3_000)
    return exporter.get_finished_spans()


@settings(max_examples=300, deadline=None)
@given(st.lists(span_specs(), min_size=1, max_size=5), st.sampled_from([None, 2]))
def test_the_encoding_decodes_to_the_exporters_own(specs, max_attributes):
    spans = _spans(specs, max_attributes)
    ours = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    assert ours == encode_spans(spans)


def test_repeated_attributes_are_encoded_once_and_stay_exact():
    spans = _spans(
        [
            {
                "name": "send orders",
                "kind": SpanKind.PRODUCER,
                "attributes": {"messaging.system": "kafka"},
                "parent": None,
                "state": None,
                "links": [],
                "events": [],
                "status": None,
                "description": "",
                "scope": "kafka-event-tracing",
                "service": "orders",
            }
        ]
        * 3,
        None,
    )
    encoder = SpanEncoder()
    first = encoder.encode(spans)
    assert encoder.encode(spans) == first
    assert ExportTraceServiceRequest.FromString(first) == encode_spans(spans)


def test_the_configured_grpc_exporter_sends_this_encoding(monkeypatch):
    from tracing.sdk import otlp_exporter

    spans = _spans(
        [
            {
                "name": "process orders",
                "kind": SpanKind.CONSUMER,
                "attributes": {"k.v": 1},
                "parent": "remote",
                "state": None,
                "links": [(True, {})],
                "events": [],
                "status": None,
                "description": "",
                "scope": "kafka-event-tracing",
                "service": "orders",
            }
        ],
        None,
    )
    received: list[ExportTraceServiceRequest] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802  # the service's own name
            received.append(request)
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        exporter = otlp_exporter(f"http://127.0.0.1:{port}", "grpc")
        assert isinstance(exporter._translate_data(spans), bytes)  # sent as encoded, never re-serialised
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter._initialize_channel_and_stub()  # what a reconnection does: the same stub again
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        server.stop(None)
    assert received == [encode_spans(spans)] * 2  # what the exporter's own encoder would send
    monkeypatch.setenv("KET_FAST_OTLP", "false")
    plain = otlp_exporter("http://127.0.0.1:1", "grpc")
    assert "_translate_data" not in vars(plain)  # the exporter's own method
