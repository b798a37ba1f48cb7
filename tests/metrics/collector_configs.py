"""The collector configurations in collector-config/ and how they are combined.

A collector started with several --config files merges them: maps merge key by key, a later
file's list replaces the earlier list. `merged()` does the same so tests can check the
configuration a collector actually runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "collector-config"
MANIFEST = REPO_ROOT / "scripts" / "collector" / "manifest.yaml"
COLLECTOR_BIN = REPO_ROOT / ".stack" / "bin" / "otelcol-events"
JAEGER_BIN = REPO_ROOT / ".stack" / "bin" / "jaeger"

# Each combination of files a collector is started with (first file first).
COLLECTOR_SETUPS: dict[str, tuple[str, ...]] = {
    "single": ("collector.yaml",),
    "single+tail-sampling": ("collector.yaml", "tail-sampling.yaml"),
    "agent": ("agent.yaml",),
    "agent+kafka": ("agent.yaml", "agent-kafka.yaml"),
    "gateway": ("gateway.yaml",),
    "gateway+kafka": ("gateway.yaml", "gateway-kafka.yaml"),
}
# Jaeger v2 configurations (run by the Jaeger binary, not by otelcol-events).
JAEGER_CONFIGS = ("jaeger-spm.yaml",)

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8")) or {}


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(overlay)


def merged(files: tuple[str, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in files:
        config = _merge(config, load(name))
    return config


def component_type(component_id: str) -> str:
    """`otlp/jaeger` -> `otlp`."""
    return component_id.split("/", 1)[0]


def pipeline_problems(config: Mapping[str, Any]) -> list[str]:
    """What a collector would reject: undefined components, unused connectors, empty pipelines."""
    problems: list[str] = []
    defined = {kind: set((config.get(kind) or {}).keys()) for kind in KINDS}
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("no pipelines")
    connectors_as_exporter: set[str] = set()
    connectors_as_receiver: set[str] = set()
    for name, pipeline in pipelines.items():
        receivers = pipeline.get("receivers") or []
        exporters = pipeline.get("exporters") or []
        if not receivers or not exporters:
            problems.append(f"pipeline {name}: needs receivers and exporters")
        for rid in receivers:
            if rid in defined["connectors"]:
                connectors_as_receiver.add(rid)
            elif rid not in defined["receivers"]:
                problems.append(f"pipeline {name}: receiver {rid} is not defined")
        for pid in pipeline.get("processors") or []:
            if pid not in defined["processors"]:
                problems.append(f"pipeline {name}: processor {pid} is not defined")
        for eid in exporters:
            if eid in defined["connectors"]:
                connectors_as_exporter.add(eid)
            elif eid not in defined["exporters"]:
                problems.append(f"pipeline {name}: exporter {eid} is not defined")
    for cid in defined["connectors"]:
        if cid not in connectors_as_exporter or cid not in connectors_as_receiver:
            problems.append(f"connector {cid} must be an exporter of one pipeline and a receiver of another")
    for ext in service.get("extensions") or []:
        if ext not in defined["extensions"]:
            problems.append(f"extension {ext} is not defined")
    return problems


def used_component_types(config: Mapping[str, Any]) -> dict[str, set[str]]:
    """Component types the pipelines and extensions actually use, per kind."""
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    connectors = set((config.get("connectors") or {}).keys())
    service = config.get("service") or {}
    for pipeline in (service.get("pipelines") or {}).values():
        for rid in pipeline.get("receivers") or []:
            used["connectors" if rid in connectors else "receivers"].add(component_type(rid))
        for pid in pipeline.get("processors") or []:
            used["processors"].add(component_type(pid))
        for eid in pipeline.get("exporters") or []:
            used["connectors" if eid in connectors else "exporters"].add(component_type(eid))
    for ext in service.get("extensions") or []:
        used["extensions"].add(component_type(ext))
    return used


# The builder names a component after its Go package; its config type is the factory's name.
_MODULE_TO_TYPE = {
    "otlpreceiver": "otlp",
    "kafkareceiver": "kafka",
    "batchprocessor": "batch",
    "memorylimiterprocessor": "memory_limiter",
    "tailsamplingprocessor": "tail_sampling",
    "filterprocessor": "filter",
    "transformprocessor": "transform",
    "otlpexporter": "otlp",
    "debugexporter": "debug",
    "prometheusexporter": "prometheus",
    "loadbalancingexporter": "loadbalancing",
    "kafkaexporter": "kafka",
    "spanmetricsconnector": "spanmetrics",
    "servicegraphconnector": "servicegraph",
    "healthcheckextension": "health_check",
}


def manifest_component_types() -> dict[str, set[str]]:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    types: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kind in KINDS:
        for entry in manifest.get(kind) or []:
            module = entry["gomod"].split()[0].rsplit("/", 1)[-1]
            types[kind].add(_MODULE_TO_TYPE.get(module, module))
    return types


def manifest_versions() -> set[str]:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    versions = set()
    for kind in (*KINDS, "providers"):
        for entry in manifest.get(kind) or []:
            versions.add(entry["gomod"].split()[1])
    versions.add(manifest["telemetry"]["gomod"].split()[1])
    return versions
