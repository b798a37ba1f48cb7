"""configure(): one call sets a service up, honouring the standard OTEL_* variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracing
from tracing.sdk import otlp_exporter


def test_configure_sets_service_name_and_sampler_without_touching_the_global():
    provider = tracing.configure(
        "inventory-service", sampler_ratio=0.25, exporter=InMemorySpanExporter(), set_global=False
    )
    assert provider.resource.attributes["service.name"] == "inventory-service"
    assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
    assert provider.sampler.get_description().startswith("ParentBased")
    provider.shutdown()


def test_service_name_comes_from_the_standard_variable(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    provider = tracing.configure(exporter=InMemorySpanExporter(), set_global=False)
    assert provider.resource.attributes["service.name"] == "from-env"
    provider.shutdown()


def test_sampler_comes_from_the_standard_variables(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    provider = tracing.configure("svc", exporter=InMemorySpanExporter(), set_global=False)
    assert "TraceIdRatioBased{0.01}" in provider.sampler.get_description()
    provider.shutdown()


def test_protocol_follows_argument_then_variables(monkeypatch):
    assert isinstance(otlp_exporter("http://127.0.0.1:4317"), GrpcExporter)
    http = otlp_exporter("http://127.0.0.1:4318", "http/protobuf")
    assert isinstance(http, HttpExporter) and http._endpoint == "http://127.0.0.1:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert isinstance(otlp_exporter(), HttpExporter)
    with pytest.raises(ValueError, match="grpc"):
        otlp_exporter(protocol="carrier-pigeon")


def test_spans_are_flushed_at_interpreter_exit(tmp_path):
    out = tmp_path / "spans.txt"
    script = textwrap.dedent(
        f"""
        import tracing
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
        class ToFile(SpanExporter):
            def export(self, spans):
                with open({str(out)!r}, "a") as f:
                    for s in spans: f.write(s.name + "\\n")
                return SpanExportResult.SUCCESS
        tracing.configure("svc", exporter=ToFile())
        from opentelemetry import trace
        trace.get_tracer("x").start_span("last words").end()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert out.read_text().splitlines() == ["last words"]


def _configure_in_a_fresh_interpreter(env_extra: dict) -> dict:
    """Run configure() where no global provider exists yet; what it set up, as JSON."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, tracing\n"
        "from opentelemetry import metrics\n"
        "tracing.configure('points-service', endpoint='http://127.0.0.1:1')\n"
        "mp = metrics.get_meter_provider()\n"
        "res = getattr(mp, '_sdk_config', None)\n"
        "print(json.dumps({'type': type(mp).__name__,"
        " 'service': res.resource.attributes.get('service.name') if res else None}))\n"
    )
    env = {**os.environ, "OTEL_METRIC_EXPORT_INTERVAL": "600000", **env_extra}
    env.pop("OTEL_METRICS_EXPORTER", None) if "OTEL_METRICS_EXPORTER" not in env_extra else None
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_configure_sets_up_the_flow_metrics_beside_the_traces():
    assert _configure_in_a_fresh_interpreter({}) == {"type": "MeterProvider", "service": "points-service"}


def test_otel_metrics_exporter_none_turns_the_metrics_off():
    got = _configure_in_a_fresh_interpreter({"OTEL_METRICS_EXPORTER": "none"})
    assert got["type"] != "MeterProvider"
