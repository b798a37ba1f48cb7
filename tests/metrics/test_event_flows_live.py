"""The collector configs and the dashboards against real components.

Traffic goes through the real Kafka broker with the project's wrappers (tests/metrics/flows.py),
spans go to the real collector (otelcol-events with collector-config/), metrics to the real
Prometheus (Debian's package) and traces to the real Jaeger v2. Then:

- every PromQL expression of every dashboard panel and variable returns data from Prometheus
  (for the test's own flows, and for the demo's six services run as separate processes),
  every exemplar query returns trace ids that Jaeger knows, every Jaeger search of a panel finds
  traces, and the panels' data links lead to traces;
- Jaeger's Monitor tab (jaeger-spm.yaml) reads those metrics from Prometheus;
- the tail-sampling profile keeps an error chain and a slow chain and drops ordinary ones, while
  the metrics still count every chain;
- the two-tier layout (agent.yaml -> loadbalancing by trace id -> two gateway.yaml) keeps each
  chain whole on one gateway; and the same with Kafka between the tiers.
"""

from __future__ import annotations

import math
import re
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.metrics import live
from tests.metrics.conftest import MetricsStack
from tests.metrics.dashboard_queries import (
    jaeger_search_params,
    load_dashboards,
    panel_queries,
    parse_label_values,
    promql_of,
    query_panels,
    substitute,
    variable_query,
    variables,
)
from tests.metrics.flows import Flow, drive, new_flow
from tests.stack import REPO_ROOT, Stack, create_topic, jaeger_trace, span_service, unique_topic, venv_python

pytestmark = [pytest.mark.stack, pytest.mark.timeout(1200)]

DASHBOARDS = load_dashboards()


def _variable_values(flow: Flow) -> dict[str, str]:
    """What a user would pick to look at this run's traffic."""
    return {
        "topic": f"{flow.orders_topic}|{flow.stock_topic}",
        "group": f"{flow.inventory_group}|{flow.billing_group}",
        "service": flow.services["billing"],
        "failing_service": flow.services["inventory"],
        "error_type": "StockUnavailable",
        "slow_ms": "1000",
        "jaeger_ui": "http://127.0.0.1:16686",
    }


def test_dashboard_variables_offer_this_runs_values(flow_traffic: Flow) -> None:
    values = _variable_values(flow_traffic)
    expected = {
        "topic": {flow_traffic.orders_topic, flow_traffic.stock_topic},
        "group": {flow_traffic.inventory_group, flow_traffic.billing_group},
        "service": {flow_traffic.services["billing"]},
        "failing_service": {flow_traffic.services["inventory"]},
        "error_type": {"StockUnavailable"},
    }
    for dash in DASHBOARDS.values():
        for var in variables(dash):
            if var.get("type") != "query":
                continue
            selector, label = parse_label_values(variable_query(var))
            offered = live.prom_label_values(substitute(selector, values) if selector else None, label)
            assert expected[var["name"]] <= set(offered), f"${var['name']}: {offered}"


def test_every_dashboard_promql_returns_data(flow_traffic: Flow) -> None:
    values = _variable_values(flow_traffic)
    queries = [q for q in panel_queries(DASHBOARDS) if q.kind == "prometheus"]
    assert queries

    def all_answer() -> bool:
        missing = []
        for q in queries:
            expr = substitute(promql_of(q.target), values)
            if q.target.get("instant"):
                result = live.prom_query(expr)
            else:
                result = live.prom_query_range(expr, seconds=300, step=5)
            if not result or not live.has_positive_sample(result):
                missing.append(f"{q.label}: {len(result)} series, values {live.sample_values(result)[:5]}")
        assert not missing, "no data (or only zeros/NaN) for:\n" + "\n".join(missing)
        return True

    live.wait_until(all_answer, timeout=120, interval=3, what="data for every panel query")


def test_exemplars_link_to_traces_in_jaeger(flow_traffic: Flow, real_stack: Stack) -> None:
    values = _variable_values(flow_traffic)
    targets = [q for q in panel_queries(DASHBOARDS) if q.kind == "prometheus" and q.target.get("exemplar")]
    assert targets, "no panel shows exemplars"
    ours = set(flow_traffic.ok_traces + flow_traffic.failed_traces + flow_traffic.slow_traces)
    for q in targets:
        expr = substitute(promql_of(q.target), values)
        exemplars = live.wait_until(
            lambda expr=expr: live.prom_exemplars(expr), timeout=60, what=f"exemplars for {q.label}"
        )
        trace_ids = {ex["labels"]["trace_id"] for ex in exemplars}
        assert trace_ids & ours, f"{q.label}: exemplars {trace_ids} are not from this run"
        trace_id = next(iter(trace_ids & ours))
        jaeger_trace(trace_id, expect_spans=3, timeout=30, base_url=real_stack.jaeger_url)


def test_every_dashboard_jaeger_search_finds_chains(flow_traffic: Flow, real_stack: Stack) -> None:
    values = _variable_values(flow_traffic)
    searches = [q for q in panel_queries(DASHBOARDS) if q.kind == "jaeger"]
    assert searches
    for q in searches:
        assert q.target.get("queryType") == "search", q.label
        params = jaeger_search_params(q.target, values)
        traces = live.wait_until(
            lambda params=params: live.jaeger_search(real_stack.jaeger_url, params),
            timeout=60,
            what=f"traces for {q.label}",
        )
        found = {t["traceID"] for t in traces}
        if "tags" in params:  # failing chains
            assert found & set(flow_traffic.failed_traces), q.label
            assert not found & set(flow_traffic.ok_traces), q.label
        if "minDuration" in params:  # slowest chains
            assert found & set(flow_traffic.slow_traces), q.label
            assert not found & set(flow_traffic.ok_traces), q.label


def test_failing_handlers_table_links_to_the_failing_traces(flow_traffic: Flow, real_stack: Stack) -> None:
    values = _variable_values(flow_traffic)
    dash = next(iter(DASHBOARDS.values()))
    panel = next(p for p in query_panels(dash) if p["title"] == "Failing handlers by error type")
    expr = substitute(promql_of(panel["targets"][0]), values)
    rows = live.wait_until(lambda: live.prom_query(expr), timeout=60, what="failing handler rows")
    row = rows[0]["metric"]
    assert row["error_type"] == "StockUnavailable"
    link = panel["fieldConfig"]["defaults"]["links"][0]["url"]
    url = _fill_link(link, values, row)
    parsed = urllib.parse.urlparse(url)
    assert parsed.path == "/search"
    params = dict(urllib.parse.parse_qsl(parsed.query))
    traces = live.jaeger_search(real_stack.jaeger_url, params)
    assert {t["traceID"] for t in traces} & set(flow_traffic.failed_traces)


def _fill_link(url: str, values: dict[str, str], fields: dict[str, str]) -> str:
    url = re.sub(r"\$\{__data\.fields\.([a-zA-Z0-9_]+)\}", lambda m: fields[m.group(1)], url)
    return substitute(url, values)


def test_the_demos_traffic_shows_on_every_panel(real_stack: Stack, metrics_stack: MetricsStack) -> None:
    """The demo (python -m tracing.demo --live: six services as separate processes) sent through the
    collector, twice (so counters grow between scrapes): every panel has data for its topics."""
    prefix = f"dashdemo-{uuid.uuid4().hex[:8]}-"
    argv = [
        venv_python(), "-m", "tracing.demo", "--live", "--prefix", prefix,
        "--bootstrap", real_stack.kafka_bootstrap, "--otlp", metrics_stack.otlp_endpoint,
        "--jaeger", real_stack.jaeger_url, "--sms-fail-share", "1.0",
    ]  # fmt: skip
    for _ in range(2):
        proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    failing = live.wait_until(
        lambda: live.prom_label_values(
            f'traces_span_metrics_calls_total{{status_code="STATUS_CODE_ERROR", '
            f'messaging_destination_name=~"{prefix}.*"}}',
            "service_name",
        ),
        timeout=60,
        what="a failing demo service in Prometheus",
    )
    error_types = live.prom_label_values(
        f'traces_span_metrics_calls_total{{status_code="STATUS_CODE_ERROR", service_name="{failing[0]}"}}',
        "error_type",
    )
    values = {
        "topic": f"{prefix}.*",
        "group": f"{prefix}.*",
        "service": "order-service",
        "failing_service": failing[0],
        "error_type": error_types[0],
        "slow_ms": "5",
        "jaeger_ui": "http://127.0.0.1:16686",
    }
    # Panels on the services' own flow metrics are left out: the demo's processes export them once,
    # at exit, and do all their work between two exports (rate() needs a series to grow between two
    # scrapes), and the demo has no failed send. test_flow_metrics_live.py runs the demo's services
    # with spaced orders at 0 % trace sampling for those.
    queries = [q for q in panel_queries(DASHBOARDS) if q.kind != "prometheus" or _from_spans(q)]

    def all_answer() -> bool:
        missing = []
        for q in queries:
            if q.kind == "prometheus":
                expr = substitute(promql_of(q.target), values)
                if q.target.get("instant"):
                    result = live.prom_query(expr)
                else:
                    result = live.prom_query_range(expr, seconds=300, step=5)
                if not live.has_positive_sample(result):
                    missing.append(f"{q.label}: {live.sample_values(result)[:5]}")
            else:
                if not live.jaeger_search(real_stack.jaeger_url, jaeger_search_params(q.target, values)):
                    missing.append(f"{q.label}: no traces")
        assert not missing, "no data for the demo's flows:\n" + "\n".join(missing)
        return True

    live.wait_until(all_answer, timeout=120, interval=3, what="data for every panel from the demo")


# What the collector computes from spans (the rest comes from the services' own flow metrics).
SPAN_METRICS = ("traces_span_metrics_", "traces_service_graph_", "messaging_publish_to_process_")


def _from_spans(q) -> bool:
    return any(m in promql_of(q.target) for m in SPAN_METRICS)


def test_jaeger_monitor_tab_reads_the_span_metrics(
    flow_traffic: Flow, metrics_stack: MetricsStack, log_dir: Path
) -> None:
    service = flow_traffic.services["inventory"]
    with live.jaeger_spm(metrics_stack.prometheus_url, log_dir) as query_url:
        common = {
            "service": service,
            "spanKind": "consumer",
            "lookback": "900000",
            "step": "15000",
            "ratePer": "60000",
        }

        def calls() -> bool:
            status, body = live.get_json(f"{query_url}/api/metrics/calls", common)
            assert status == 200, body
            points = [
                p["gaugeValue"]["doubleValue"]
                for m in body.get("metrics") or []
                for p in m.get("metricPoints") or []
            ]
            finite = [float(v) for v in points if isinstance(v, (int, float)) and math.isfinite(v)]
            assert finite and max(finite) > 0, body
            return True

        live.wait_until(calls, timeout=60, what="SPM call rates")
        status, body = live.get_json(f"{query_url}/api/metrics/errors", common)
        assert status == 200 and body.get("metrics"), body
        status, body = live.get_json(f"{query_url}/api/metrics/latencies", {**common, "quantile": "0.95"})
        assert status == 200 and body.get("metrics"), body


# ---------------------------------------------------------------------------- tail sampling


def _jaeger_otlp(real_stack: Stack) -> str:
    return live.host_port(real_stack.otlp_endpoint)


def _assert_chain_kept(
    real_stack: Stack, trace_id: str, services: set[str], spans: int, timeout: float
) -> dict:
    trace = jaeger_trace(trace_id, expect_spans=spans, timeout=timeout, base_url=real_stack.jaeger_url)
    seen = {span_service(trace, s) for s in trace["spans"]}
    assert services <= seen, f"trace {trace_id} lacks spans of {services - seen}"
    return trace


def _assert_dropped(real_stack: Stack, trace_ids: list[str]) -> None:
    kept = [t for t in trace_ids if live.jaeger_has_trace(real_stack.jaeger_url, t)]
    assert not kept, f"{len(kept)} of {len(trace_ids)} ordinary chains reached Jaeger: {kept}"


# The tail-sampling processor's own count of decided traces (the collector's internal metrics).
DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled_total"


def _decisions(samplers: tuple[live.CollectorPorts, ...]) -> dict[str, float]:
    counts = {"kept": 0.0, "dropped": 0.0}
    for ports in samplers:
        text = live.get_text(ports.telemetry_url)
        counts["kept"] += live.metric_total(text, DECIDED, {"sampled": "true"})
        counts["dropped"] += live.metric_total(text, DECIDED, {"sampled": "false"})
    return counts


def _wait_decided(samplers: tuple[live.CollectorPorts, ...], *, kept: int, dropped: int) -> None:
    """Wait until the sampling collectors have decided every chain of the run (each collector is
    fresh, so its counts are this run's), then check they kept and dropped the expected number."""
    live.wait_until(
        lambda: sum(_decisions(samplers).values()) >= kept + dropped,
        timeout=DECISION_WAIT_S + 60,
        what=f"tail-sampling decisions for {kept + dropped} chains",
    )
    assert _decisions(samplers) == {"kept": kept, "dropped": dropped}


def _calls_in(metrics_text: str, service: str, span_name: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if (
            line.startswith("traces_span_metrics_calls_total{")
            and f'service_name="{service}"' in line
            and (f'span_name="{span_name}"' in line)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# Every span of a chain must reach the collector within the decision wait: the chains here take a
# few seconds (the slow one's billing handler sleeps 3 s) and drive() exports every 200 ms; 15 s leaves
# room for a loaded machine.
DECISION_WAIT_S = 15
SAMPLING_ENV = {
    "TAIL_DECISION_WAIT": f"{DECISION_WAIT_S}s",
    "TAIL_SLOW_THRESHOLD_MS": "2500",
    "TAIL_SAMPLE_PERCENTAGE": "0",  # nothing ordinary is kept: a kept trace is kept by a policy
    "METRICS_FLUSH_INTERVAL": "1s",
}


def test_tail_sampling_keeps_error_and_slow_chains_and_drops_ordinary_ones(
    real_stack: Stack, log_dir: Path
) -> None:
    flow = new_flow(real_stack.kafka_bootstrap, prefix="tail")
    env = {**SAMPLING_ENV, "JAEGER_OTLP_ENDPOINT": _jaeger_otlp(real_stack)}
    with live.collector("tail-sampling", ("collector.yaml", "tail-sampling.yaml"), env, log_dir) as ports:
        drive(
            real_stack.kafka_bootstrap, ports.otlp_endpoint, flow, ok=4, failing=1, slow=1, slow_seconds=3.0
        )
        checkout, inventory, billing = (flow.services[k] for k in ("checkout", "inventory", "billing"))
        _wait_decided(
            (ports,), kept=len(flow.failed_traces) + len(flow.slow_traces), dropped=len(flow.ok_traces)
        )
        # error chain: checkout root, send, failed process
        trace = _assert_chain_kept(real_stack, flow.failed_traces[0], {checkout, inventory}, 3, timeout=60)
        assert any(live.span_tags(s).get("error.type") == "StockUnavailable" for s in trace["spans"])
        # slow chain: all five spans, across the three services
        _assert_chain_kept(real_stack, flow.slow_traces[0], {checkout, inventory, billing}, 5, timeout=60)
        # The ordinary chains were decided no later than those (their first spans came first).
        _assert_dropped(real_stack, flow.ok_traces)
        # ... and yet the metrics counted every chain (they are computed before sampling)
        text = live.get_text(ports.metrics_url)
        assert _calls_in(text, billing, f"process {flow.stock_topic}") == len(flow.ok_traces) + len(
            flow.slow_traces
        )


def test_two_tiers_keep_each_chain_on_one_gateway(real_stack: Stack, log_dir: Path) -> None:
    flow = new_flow(real_stack.kafka_bootstrap, prefix="tier")
    env = {**SAMPLING_ENV, "JAEGER_OTLP_ENDPOINT": _jaeger_otlp(real_stack)}
    with (
        live.collector("gateway-1", ("gateway.yaml",), env, log_dir) as g1,
        live.collector("gateway-2", ("gateway.yaml",), env, log_dir) as g2,
    ):
        gateways = f"[127.0.0.1:{g1.otlp_grpc}, 127.0.0.1:{g2.otlp_grpc}]"
        with live.collector("agent", ("agent.yaml",), {"GATEWAY_ENDPOINTS": gateways}, log_dir) as agent:
            drive(real_stack.kafka_bootstrap, agent.otlp_endpoint, flow, ok=8, failing=6, slow=0)
            checkout, inventory = flow.services["checkout"], flow.services["inventory"]
            # The failing process span and the send span come from different services (different
            # OTLP batches): only routing by trace id brings them to the same gateway, whose
            # sampler then keeps the whole chain. A split chain would arrive without its send span.
            _wait_decided((g1, g2), kept=len(flow.failed_traces), dropped=len(flow.ok_traces))
            for trace_id in flow.failed_traces:
                _assert_chain_kept(real_stack, trace_id, {checkout, inventory}, 3, timeout=60)
            _assert_dropped(real_stack, flow.ok_traces)

            # Both gateways got chains (the ring spreads 14 traces over both, but not evenly).
            def both_busy() -> bool:
                counts = [
                    _calls_in(live.get_text(g.metrics_url), checkout, f"send {flow.orders_topic}")
                    for g in (g1, g2)
                ]
                assert sum(counts) == len(flow.ok_traces) + len(flow.failed_traces), counts
                assert all(c > 0 for c in counts), counts
                return True

            live.wait_until(both_busy, timeout=30, what="span metrics on both gateways")


def test_kafka_between_the_tiers_keeps_each_chain_whole(real_stack: Stack, log_dir: Path) -> None:
    flow = new_flow(real_stack.kafka_bootstrap, prefix="kbuf")
    spans_topic = create_topic(real_stack.kafka_bootstrap, unique_topic("otlp-spans"), partitions=4)
    kafka_env = {
        "KAFKA_BROKERS": f"[{real_stack.kafka_bootstrap}]",
        "KAFKA_SPANS_TOPIC": spans_topic,
        "KAFKA_GATEWAY_GROUP": f"gateways-{flow.run_id}",
        "KAFKA_INITIAL_OFFSET": "earliest",
    }
    gateway_env = {**SAMPLING_ENV, **kafka_env, "JAEGER_OTLP_ENDPOINT": _jaeger_otlp(real_stack)}
    with (
        live.collector(
            "kafka-gateway", ("gateway.yaml", "gateway-kafka.yaml"), gateway_env, log_dir
        ) as gateway,
        live.collector("kafka-agent", ("agent.yaml", "agent-kafka.yaml"), kafka_env, log_dir) as agent,
    ):
        drive(real_stack.kafka_bootstrap, agent.otlp_endpoint, flow, ok=4, failing=2, slow=0)
        checkout, inventory = flow.services["checkout"], flow.services["inventory"]
        _wait_decided((gateway,), kept=len(flow.failed_traces), dropped=len(flow.ok_traces))
        for trace_id in flow.failed_traces:
            _assert_chain_kept(real_stack, trace_id, {checkout, inventory}, 3, timeout=90)
        _assert_dropped(real_stack, flow.ok_traces)
