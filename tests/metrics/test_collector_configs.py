"""Structural checks of collector-config/ (no stack needed, but the built binaries are run).

Every file parses, every pipeline only uses components that are defined, the collector build
contains every component the configs use, the gateway stays identical to collector.yaml +
tail-sampling.yaml, and the collector and Jaeger themselves (.stack/bin) accept each configuration
(`validate`; without a binary the test skips, and under CI it fails).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.metrics import tools
from tests.metrics.collector_configs import (
    COLLECTOR_BIN,
    COLLECTOR_SETUPS,
    CONFIG_DIR,
    JAEGER_BIN,
    JAEGER_CONFIGS,
    load,
    manifest_component_types,
    manifest_versions,
    merged,
    pipeline_problems,
    used_component_types,
)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.y*ml")), ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)


@pytest.mark.parametrize("setup", sorted(COLLECTOR_SETUPS), ids=str)
def test_pipelines_reference_defined_components(setup: str) -> None:
    assert pipeline_problems(merged(COLLECTOR_SETUPS[setup])) == []


@pytest.mark.parametrize("name", JAEGER_CONFIGS)
def test_jaeger_pipelines_reference_defined_components(name: str) -> None:
    config = load(name)
    assert pipeline_problems(config) == []
    query = config["extensions"]["jaeger_query"]["storage"]
    storage = config["extensions"]["jaeger_storage"]
    assert query["traces"] in storage["backends"]
    assert query["metrics"] in storage["metric_backends"], "the Monitor tab needs a metrics backend"


@pytest.mark.parametrize("setup", sorted(COLLECTOR_SETUPS), ids=str)
def test_the_collector_build_has_every_component_used(setup: str) -> None:
    built = manifest_component_types()
    for kind, types in used_component_types(merged(COLLECTOR_SETUPS[setup])).items():
        assert types <= built[kind], (
            f"{setup}: {kind} {types - built[kind]} are not in scripts/collector/manifest.yaml"
        )


def test_collector_build_is_on_one_release_line() -> None:
    # Collector core v0.N.0 ships its stable modules as v1.(N-94).0; contrib uses v0.N.x.
    versions = manifest_versions()
    minors = {v.split(".")[1] for v in versions if v.startswith("v0.")}
    assert len(minors) == 1, versions
    stable = {v for v in versions if v.startswith("v1.")}
    assert stable == {f"v1.{int(minors.pop()) - 94}.0"}, versions


def test_single_collector_pipelines() -> None:
    config = load("collector.yaml")
    pipelines = config["service"]["pipelines"]
    # OTLP -> memory_limiter -> batch -> Jaeger over OTLP
    assert pipelines["traces"] == {
        "receivers": ["otlp"],
        "processors": ["memory_limiter", "batch"],
        "exporters": ["otlp/jaeger"],
    }
    for pipeline in pipelines.values():
        if pipeline.get("processors"):
            assert pipeline["processors"][0] == "memory_limiter"
    # metrics from every span, before any sampling
    assert {"spanmetrics", "servicegraph"} <= set(pipelines["traces/metrics"]["exporters"])
    assert "tail_sampling" not in pipelines["traces/metrics"].get("processors", [])
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"].startswith("${env:JAEGER_OTLP_ENDPOINT:-")


def test_spanmetrics_has_the_messaging_dimensions() -> None:
    dims = {d["name"] for d in load("collector.yaml")["connectors"]["spanmetrics"]["dimensions"]}
    assert {
        "messaging.system",
        "messaging.destination.name",
        "messaging.consumer.group.name",
        "messaging.operation.type",
    } <= dims


def test_servicegraph_pairs_messaging_spans() -> None:
    sg = load("collector.yaml")["connectors"]["servicegraph"]
    assert "messaging.system" in sg["virtual_node_peer_attributes"]
    assert {"messaging.destination.name", "messaging.consumer.group.name"} <= set(sg["dimensions"])


def test_tail_sampling_profile() -> None:
    config = merged(("collector.yaml", "tail-sampling.yaml"))
    ts = config["processors"]["tail_sampling"]
    types = {p["type"]: p for p in ts["policies"]}
    assert types["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert "TAIL_SLOW_THRESHOLD_MS" in str(types["latency"]["latency"]["threshold_ms"])
    assert "probabilistic" in types
    assert "TAIL_DECISION_WAIT" in str(ts["decision_wait"])
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["processors"] == ["memory_limiter", "tail_sampling", "batch"]
    # the overlay leaves the metrics pipelines alone: they still see every span
    assert pipelines["traces/metrics"] == load("collector.yaml")["service"]["pipelines"]["traces/metrics"]
    # the trade-off is explained next to the setting
    text = (CONFIG_DIR / "tail-sampling.yaml").read_text()
    assert "decision_wait" in text and "trade-off" in text.lower()


def test_gateway_matches_collector_and_tail_sampling() -> None:
    gateway = load("gateway.yaml")
    single = merged(("collector.yaml", "tail-sampling.yaml"))
    assert gateway["processors"]["tail_sampling"] == single["processors"]["tail_sampling"]
    assert gateway["connectors"] == single["connectors"]
    for name in ("filter/queue_time", "transform/queue_time"):
        assert gateway["processors"][name] == single["processors"][name]
    assert gateway["service"]["pipelines"] == single["service"]["pipelines"]


def test_agent_routes_by_trace_id() -> None:
    agent = load("agent.yaml")
    lb = agent["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "traceID"
    assert agent["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing"]
    kafka = merged(("agent.yaml", "agent-kafka.yaml"))
    assert kafka["exporters"]["kafka"]["partition_traces_by_id"] is True
    assert kafka["service"]["pipelines"]["traces"]["exporters"] == ["kafka"]


# The services' own flow metrics (tracing.configure() exports them over OTLP) take the pipeline of this
# name in every setup: collector.yaml's, and both tiers' (agent -> gateway -> prometheus exporter).
SERVICES_METRICS = "metrics/services"


@pytest.mark.parametrize("setup", sorted(COLLECTOR_SETUPS), ids=str)
def test_services_metrics_have_a_pipeline_and_no_sampler(setup: str) -> None:
    pipelines = merged(COLLECTOR_SETUPS[setup])["service"]["pipelines"]
    assert SERVICES_METRICS in pipelines, f"{setup} drops the services' metrics"
    pipeline = pipelines[SERVICES_METRICS]
    assert pipeline["processors"][0] == "memory_limiter"
    # counted for every message: nothing on their way may sample them
    assert "tail_sampling" not in pipeline["processors"]


def test_agent_passes_services_metrics_to_the_gateways_by_service() -> None:
    agent = load("agent.yaml")
    pipeline = agent["service"]["pipelines"][SERVICES_METRICS]
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    lb = agent["exporters"][exporter]
    # one gateway per service: a series split over two gateways would be exposed (and summed) twice
    assert lb["routing_key"] == "service"
    assert lb["resolver"] == agent["exporters"]["loadbalancing"]["resolver"], "not the trace gateways"
    kafka = merged(("agent.yaml", "agent-kafka.yaml"))
    assert kafka["service"]["pipelines"][SERVICES_METRICS]["exporters"] == ["kafka"]
    assert kafka["exporters"]["kafka"]["partition_metrics_by_resource_attributes"] is True
    assert kafka["exporters"]["kafka"]["metrics"]["topic"] != kafka["exporters"]["kafka"]["traces"]["topic"]


def test_gateways_expose_services_metrics_like_the_single_collector() -> None:
    single = load("collector.yaml")["service"]["pipelines"][SERVICES_METRICS]
    assert single["exporters"] == ["prometheus"]
    assert load("gateway.yaml")["service"]["pipelines"][SERVICES_METRICS] == single
    gateway = merged(("gateway.yaml", "gateway-kafka.yaml"))
    pipeline = gateway["service"]["pipelines"][SERVICES_METRICS]
    assert pipeline["exporters"] == ["prometheus"]
    (receiver,) = pipeline["receivers"]
    spans, metrics = gateway["receivers"]["kafka"], gateway["receivers"][receiver]
    # the topic the agents write the metrics to, in a consumer group apart from the spans' one
    agent_kafka = merged(("agent.yaml", "agent-kafka.yaml"))["exporters"]["kafka"]
    assert metrics["metrics"]["topic"] == agent_kafka["metrics"]["topic"]
    assert metrics["group_id"] != spans["group_id"]


def test_prometheus_config_scrapes_the_collector() -> None:
    prom = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    endpoint = load("collector.yaml")["exporters"]["prometheus"]["endpoint"]
    assert endpoint.endswith(":-0.0.0.0:8889}")
    assert "collector:8889" in targets


def test_prometheus_config_passes_promtool() -> None:
    promtool = tools.promtool()
    if promtool is None:
        tools.missing("promtool", "run scripts/metrics-stack.sh install (Debian package prometheus)")
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(CONFIG_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _validate(binary: Path, files: tuple[str, ...], tmp_path: Path) -> None:
    args = [str(binary), "validate"]
    for name in files:
        args.append(f"--config=file:{CONFIG_DIR / name}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTLP_", "JAEGER_", "TAIL_", "KAFKA_"))}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0, f"{' '.join(files)}: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("setup", sorted(COLLECTOR_SETUPS), ids=str)
def test_the_collector_accepts_the_configuration(setup: str, tmp_path: Path) -> None:
    if not COLLECTOR_BIN.exists():
        tools.missing(f"the collector at {COLLECTOR_BIN}", "run scripts/metrics-stack.sh install")
    _validate(COLLECTOR_BIN, COLLECTOR_SETUPS[setup], tmp_path)


@pytest.mark.parametrize("name", JAEGER_CONFIGS)
def test_jaeger_accepts_the_configuration(name: str, tmp_path: Path) -> None:
    if not JAEGER_BIN.exists():
        tools.missing(f"Jaeger at {JAEGER_BIN}", "run scripts/stack.sh up (it builds Jaeger)")
    _validate(JAEGER_BIN, (name,), tmp_path)
