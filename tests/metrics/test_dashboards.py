"""Structural checks of the Grafana dashboards and their provisioning (no stack needed).

What Grafana would refuse or silently break on: duplicate uids, panels pointing at a datasource
that is not provisioned, queries using variables the dashboard does not define, PromQL that does
not parse (checked with Prometheus' own promtool; without it the test skips, and fails under CI).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.metrics import tools
from tests.metrics.dashboard_queries import (
    DASHBOARDS_DIR,
    GRAFANA_BUILTINS,
    PROVISIONING_DIR,
    all_panels,
    dashboard_files,
    datasource_of,
    load_dashboards,
    panel_queries,
    parse_label_values,
    promql_of,
    provisioned_datasources,
    query_panels,
    referenced_variables,
    substitute,
    variable_query,
    variables,
)

DASHBOARDS = load_dashboards()


def test_there_is_an_event_flows_dashboard() -> None:
    titles = {d["title"] for d in DASHBOARDS.values()}
    assert "Event flows" in titles


def test_dashboard_uids_are_unique_and_stable() -> None:
    uids = [d.get("uid") for d in DASHBOARDS.values()]
    assert all(isinstance(uid, str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", uid) for uid in uids), uids
    assert len(uids) == len(set(uids)), Counter(uids)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_importable(path: Path) -> None:
    dash = DASHBOARDS[path]
    assert dash.get("id") in (None, 0), "a file-provisioned dashboard must not carry a database id"
    assert isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 39  # Grafana 11+
    assert dash.get("title")
    ids = [p.get("id") for p in all_panels(dash)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {Counter(ids)}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_says_what_question_it_answers(path: Path) -> None:
    for panel in query_panels(DASHBOARDS[path]):
        desc = (panel.get("description") or "").strip()
        assert len(desc) >= 40, f"panel {panel.get('title')!r} needs a description"
        assert "?" in desc, (
            f"panel {panel.get('title')!r}: the description should state the question it answers"
        )


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_has_queries(path: Path) -> None:
    for panel in query_panels(DASHBOARDS[path]):
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')!r} has no targets"
        refs = [t.get("refId") for t in targets]
        assert all(refs) and len(refs) == len(set(refs)), f"panel {panel.get('title')!r}: refIds {refs}"


def test_panels_cover_the_event_flow_questions() -> None:
    exprs = " ".join(promql_of(q.target) for q in panel_queries(DASHBOARDS) if q.kind == "prometheus")
    for needed in (
        'span_kind="SPAN_KIND_PRODUCER"',  # publish rate
        'span_kind="SPAN_KIND_CONSUMER"',  # process rate, handler durations
        "messaging_publish_to_process_duration_milliseconds_bucket",  # publish -> process latency
        "histogram_quantile(0.99",
        'status_code="STATUS_CODE_ERROR"',
        "traces_service_graph_request_total",
    ):
        assert needed in exprs, needed
    types = Counter(p["type"] for d in DASHBOARDS.values() for p in query_panels(d))
    assert types["nodegraph"] >= 1, "the service graph panel is missing"
    jaeger_targets = [q for q in panel_queries(DASHBOARDS) if q.kind == "jaeger"]
    assert len(jaeger_targets) >= 2, "slowest and failing chains come from Jaeger searches"


def test_panels_cover_the_services_flow_metrics() -> None:
    """The services' own metrics (every message, whatever the trace sampling) have their panels,
    and the topic and group selectors also read them: at 0 % head sampling no span metric exists."""
    exprs = [promql_of(q.target) for q in panel_queries(DASHBOARDS) if q.kind == "prometheus"]
    joined = " ".join(exprs)
    for needed in (
        # per path and consumer group
        "sum by (le, eventchain_path, messaging_consumer_group_name) "
        "(rate(eventchain_chain_duration_seconds_bucket",
        "kafka_record_queue_time_seconds_bucket",
        "messaging_process_duration_seconds_bucket",
        "kafka_consumer_lag{",
        "kafka_consumer_time_lag_seconds{",
        "rate(messaging_client_sent_messages_total{",
        "rate(messaging_client_consumed_messages_total{",
        'error_type!=""',  # failed sends
    ):
        assert needed in joined, needed
    for quantile in ("0.50", "0.95", "0.99"):
        assert any(
            e.startswith(f"histogram_quantile({quantile}") and "eventchain_chain_duration" in e for e in exprs
        ), quantile
    for dash in DASHBOARDS.values():
        for var in variables(dash):
            if var["name"] in ("topic", "group"):
                assert "messaging_client_consumed_messages_total" in variable_query(var), var["name"]


# ------------------------------------------------------------------------- datasources


def test_provisioned_datasources_have_fixed_unique_uids() -> None:
    sources = provisioned_datasources()
    uids = [s.get("uid") for s in sources]
    assert all(uids) and len(uids) == len(set(uids)), uids
    assert {s["type"] for s in sources} >= {"prometheus", "jaeger"}
    by_uid = {s["uid"]: s for s in sources}
    # Exemplar links and trace-to-metrics links point at provisioned datasources too.
    for prom in (s for s in sources if s["type"] == "prometheus"):
        for dest in prom.get("jsonData", {}).get("exemplarTraceIdDestinations", []):
            assert dest["name"] == "trace_id"  # the label the collector's prometheus exporter uses
            assert dest.get("datasourceUid") in by_uid or dest.get("url")
    for jaeger in (s for s in sources if s["type"] == "jaeger"):
        t2m = jaeger.get("jsonData", {}).get("tracesToMetrics")
        if t2m:
            assert t2m["datasourceUid"] in by_uid


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_datasource_references_resolve_to_provisioned_datasources(path: Path) -> None:
    by_uid = {s["uid"]: s for s in provisioned_datasources()}
    dash = DASHBOARDS[path]

    def check(ds: dict, where: str) -> None:
        uid = ds.get("uid")
        if uid in ("-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"):
            return
        assert uid in by_uid, f"{where}: datasource uid {uid!r} is not provisioned ({sorted(by_uid)})"
        assert ds.get("type") in (None, by_uid[uid]["type"]), (
            f"{where}: type {ds.get('type')} != {by_uid[uid]['type']}"
        )

    for panel in query_panels(dash):
        check(panel.get("datasource") or {}, f"panel {panel.get('title')!r}")
        for target in panel.get("targets") or []:
            check(datasource_of(target, panel), f"panel {panel.get('title')!r} target {target.get('refId')}")
    for var in variables(dash):
        if var.get("type") == "query":
            check(var.get("datasource") or {}, f"variable {var.get('name')}")
    for ann in (dash.get("annotations") or {}).get("list") or []:
        check(ann.get("datasource") or {}, f"annotation {ann.get('name')}")


def test_dashboard_provider_loads_this_folder() -> None:
    providers = []
    for path in (PROVISIONING_DIR / "dashboards").glob("*.y*ml"):
        providers.extend(yaml.safe_load(path.read_text())["providers"])
    assert providers, "no dashboard provider"
    for provider in providers:
        assert provider["type"] == "file"
        assert provider["options"]["path"], provider
    assert DASHBOARDS_DIR.joinpath("event-flows.json").exists()


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_queries_only_use_defined_variables(path: Path) -> None:
    dash = DASHBOARDS[path]
    defined = {v["name"] for v in variables(dash)} | set(GRAFANA_BUILTINS)
    texts = []
    for panel in query_panels(dash):
        for target in panel.get("targets") or []:
            texts.extend(
                str(target.get(k, "")) for k in ("expr", "service", "operation", "tags", "minDuration")
            )
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links") or []:
            texts.append(link["url"])
    texts.extend(variable_query(v) for v in variables(dash) if v.get("type") == "query")
    for text in texts:
        unknown = {v for v in referenced_variables(text) if not v.startswith("__")} - defined
        assert not unknown, f"undefined variable(s) {unknown} in {text}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_query_variables_use_label_values(path: Path) -> None:
    for var in variables(DASHBOARDS[path]):
        if var.get("type") == "query":
            selector, label = parse_label_values(variable_query(var))
            assert selector and label


# ------------------------------------------------------------------------- PromQL syntax


def _sample_values(dash: dict) -> dict[str, str]:
    return {v["name"]: ".*" if v.get("includeAll") else "x" for v in variables(dash)}


def test_promql_parses_with_promtool(tmp_path: Path) -> None:
    promtool = tools.promtool()
    if promtool is None:
        tools.missing("promtool", "run scripts/metrics-stack.sh install (Debian package prometheus)")
    rules = []
    for path, dash in DASHBOARDS.items():
        values = _sample_values(dash)
        for i, q in enumerate(q for q in panel_queries({path: dash}) if q.kind == "prometheus"):
            rules.append(
                {
                    "record": f"check:{path.stem.replace('-', '_')}:q{i}",
                    "expr": substitute(promql_of(q.target), values),
                }
            )
        for var in variables(dash):
            if var.get("type") == "query":
                selector, _ = parse_label_values(variable_query(var))
                rules.append({"record": f"check:var:{var['name']}", "expr": substitute(selector, values)})
    file = tmp_path / "rules.yml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
