"""The services' own flow metrics against real components: what survives trace sampling.

The wrappers count every message (messaging_client_*, messaging_process_duration,
kafka_record_queue_time, eventchain_chain_duration, kafka_consumer_lag/time_lag) and export the
counts over OTLP; the collector passes them to Prometheus (pipeline metrics/services). Here:

- the dashboard's flow-metric panels answer their questions for this run's traffic
  (tests/metrics/flows.py): the paths its chains took, the sends the broker refused, the backlog
  it left;
- the demo's order flow, its services run as separate processes with a head sampler that keeps
  0 % of the traces, still has every chain counted in the real Prometheus, its panels filled, and
  nothing in Jaeger;
- in the two-tier layouts (agent -> gateways, directly or through Kafka) the metrics cross both
  tiers to a gateway's prometheus exporter, each service's series on one gateway.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.metrics import live
from tests.metrics.conftest import MetricsStack
from tests.metrics.dashboard_queries import (
    load_dashboards,
    parse_label_values,
    promql_of,
    query_panels,
    substitute,
    variable_query,
    variables,
)
from tests.metrics.flows import BACKLOG, REJECTED_ERROR_TYPE, Flow, drive, new_flow
from tests.stack import Stack, create_topic, unique_topic
from tracing.demo import live as demo_live
from tracing.demo.events import Topics
from tracing.demo.runtime import ensure_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

DASHBOARDS = load_dashboards()
# What the services export, as the collector's prometheus exporter names it. Panels built on these
# need no span at all; the others (traces_*, messaging_publish_to_process_*) come from spans.
FLOW_METRICS = (
    "messaging_client_sent_messages_total",
    "messaging_client_consumed_messages_total",
    "messaging_process_duration_seconds",
    "kafka_record_queue_time_seconds",
    "eventchain_chain_duration_seconds",
    "kafka_consumer_lag",
    "kafka_consumer_time_lag_seconds",
)


def _flow_metric_panels() -> dict[str, dict[str, Any]]:
    panels = {}
    for dash in DASHBOARDS.values():
        for panel in query_panels(dash):
            exprs = [promql_of(t) for t in panel.get("targets") or []]
            if exprs and all(any(m in e for m in FLOW_METRICS) for e in exprs):
                assert not any("traces_" in e for e in exprs), panel["title"]
                panels[panel["title"]] = panel
    return panels


FLOW_PANELS = _flow_metric_panels()


def _instant(panel_title: str, values: dict[str, str], ref_id: str = "A") -> list[dict[str, Any]]:
    target = next(t for t in FLOW_PANELS[panel_title]["targets"] if t["refId"] == ref_id)
    return live.prom_query(substitute(promql_of(target), values))


def _flow_values(flow: Flow) -> dict[str, str]:
    return {
        "topic": f"{flow.orders_topic}|{flow.stock_topic}",
        "group": f"{flow.inventory_group}|{flow.billing_group}",
    }


def test_the_dashboard_has_the_flow_metric_panels() -> None:
    assert set(FLOW_PANELS) >= {
        "End-to-end chain latency per path (p50 / p95 / p99)",
        "Queue time per hop (p95)",
        "Consumer lag per group and topic (messages)",
        "Consumer time lag per group",
        "Messages sent and consumed per topic",
        "Failed sends by error type",
        "Processing duration per consumer group (p95)",
    }, sorted(FLOW_PANELS)


# ------------------------------------------------------------ the panels, on flows.py's traffic


def test_chain_latency_panel_shows_the_paths_the_chains_took(flow_traffic: Flow) -> None:
    values = _flow_values(flow_traffic)
    orders, stock = flow_traffic.orders_topic, flow_traffic.stock_topic

    def paths() -> set[tuple[str, str]]:
        rows = _instant("End-to-end chain latency per path (p50 / p95 / p99)", values, "C")
        found = {(r["metric"]["eventchain_path"], r["metric"]["messaging_consumer_group_name"]) for r in rows}
        assert (f"{orders}>{stock}", flow_traffic.billing_group) in found, found
        return found

    found = live.wait_until(paths, timeout=60, what="the chain paths")
    # Orders start their chain at checkout; inventory carries it on to stock. The backlog left on
    # stock was written outside any processing: its chain starts there. Nothing else: a context
    # leaking from one message to the next would show up as a longer path.
    assert found == {
        (orders, flow_traffic.inventory_group),
        (f"{orders}>{stock}", flow_traffic.billing_group),
        (stock, flow_traffic.billing_group),
    }


def test_failed_sends_panel_shows_the_refused_orders(flow_traffic: Flow) -> None:
    rows = live.wait_until(
        lambda: _instant("Failed sends by error type", _flow_values(flow_traffic)),
        timeout=60,
        what="failed sends",
    )
    assert {(r["metric"]["messaging_destination_name"], r["metric"]["error_type"]) for r in rows} == {
        (flow_traffic.orders_topic, REJECTED_ERROR_TYPE)
    }
    assert flow_traffic.rejected_sends > 0


def test_lag_panels_show_the_backlog_left_behind(flow_traffic: Flow) -> None:
    values = _flow_values(flow_traffic)
    expected = {
        (flow_traffic.inventory_group, flow_traffic.orders_topic),
        (flow_traffic.billing_group, flow_traffic.stock_topic),
    }

    def backlog_seen() -> bool:
        rows = _instant("Consumer lag per group and topic (messages)", values)
        lag = {
            (r["metric"]["messaging_consumer_group_name"], r["metric"]["messaging_destination_name"]): float(
                r["value"][1]
            )
            for r in rows
        }
        # Each run leaves BACKLOG messages on each topic; the last run's are still there when its
        # consumers last report (more when the last offsets were not committed yet).
        assert set(lag) == expected, lag
        assert all(messages >= BACKLOG for messages in lag.values()), lag
        return True

    live.wait_until(backlog_seen, timeout=60, what="the backlog in the lag panel")
    time_lag = {
        r["metric"]["messaging_consumer_group_name"]: float(r["value"][1])
        for r in _instant("Consumer time lag per group", values)
    }
    assert set(time_lag) == {group for group, _topic in expected}
    assert all(0 < seconds < 600 for seconds in time_lag.values()), time_lag


# ---------------------------------------------------- the demo's order flow, 0 % of the traces

ORDERS = 6  # the demo's warehouse holds 10 books: every order of one book is reserved
ORDER_SPACING_S = 1.0  # orders spread over several metric exports and scrapes, so rate() has a slope
ORDER = {"customer_id": "c-metrics", "phone": "+44 7700 900199", "items": [{"sku": "book", "qty": 1}]}
UNSAMPLED = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}


def _variable_options() -> dict[str, set[str]]:
    """What the dashboard's $topic and $group selectors offer right now."""
    offered = {}
    for dash in DASHBOARDS.values():
        for var in variables(dash):
            if var["name"] in ("topic", "group"):
                selector, label = parse_label_values(variable_query(var))
                offered[var["name"]] = set(live.prom_label_values(selector, label))
    return offered


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.loads(response.read())


def _total(expr: str) -> float:
    return sum(float(r["value"][1]) for r in live.prom_query(expr))


def test_unsampled_demo_order_flow_is_counted_in_full(real_stack: Stack, metrics_stack: MetricsStack) -> None:
    """order-service -> orders -> inventory-service -> stock -> notification-service, as OS processes
    (tracing.demo.live's), sampling 0 % of the traces: spans to the real Jaeger, metrics to the
    collector. Every chain is in Prometheus; none is in Jaeger."""
    prefix = f"unsampled-{uuid.uuid4().hex[:8]}-"
    topics = Topics(prefix)
    ensure_topics(real_stack.kafka_bootstrap, topics.all())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        UNSAMPLED,
        OTEL_EXPORTER_OTLP_ENDPOINT=real_stack.otlp_endpoint,  # spans: straight to Jaeger
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=metrics_stack.otlp_endpoint,  # metrics: the collector
        OTEL_BSP_SCHEDULE_DELAY="200",
        PYTHONUNBUFFERED="1",
    )
    wanted = ("order", "inventory", "notification")
    procs = [p for p in demo_live.services(real_stack.kafka_bootstrap, prefix, 0.0) if p.module in wanted]
    answers = []
    try:
        for p in procs:
            p.start(env, None)
        deadline = time.monotonic() + demo_live.READY_TIMEOUT_S
        for p in procs:
            while not p.ready.wait(0.2):
                assert p.proc is not None and p.proc.poll() is None, f"{p.module} exited:\n" + "\n".join(
                    p.log
                )
                assert time.monotonic() < deadline, f"{p.module} not ready:\n" + "\n".join(p.log)
        order_url = next(p.url for p in procs if p.module == "order")
        for _ in range(ORDERS):
            answers.append(_post(f"{order_url}/orders", ORDER))
            time.sleep(ORDER_SPACING_S)

        path = f"{topics.orders}>{topics.stock}"
        chains = (
            f'eventchain_chain_duration_seconds_count{{eventchain_path="{path}", '
            f'messaging_consumer_group_name="{prefix}notification"}}'
        )
        live.wait_until(
            lambda: _total(chains) == ORDERS, timeout=60, what=f"{ORDERS} chains {path} in Prometheus"
        )
        # Each service exports on its own clock: its last count may land a second after the chains.
        sent = 'messaging_client_sent_messages_total{{messaging_destination_name="{}", error_type=""}}'
        consumed = (
            f'messaging_client_consumed_messages_total{{messaging_destination_name="{topics.stock}", '
            f'messaging_consumer_group_name="{prefix}notification"}}'
        )
        for expr in (sent.format(topics.orders), sent.format(topics.stock), consumed):
            live.wait_until(lambda e=expr: _total(e) >= ORDERS, timeout=30, what=f"{ORDERS} for {expr}")
            assert _total(expr) == ORDERS, expr  # every message counted once, none twice

        # The dashboard's flow-metric panels have the flow, with no span behind it. (Not the lag
        # panels, whose data depends on when librdkafka's statistics fall, nor failed sends: none.)
        # The topic and group selectors offer the run's names, although no span exists.
        offered = _variable_options()
        assert {topics.orders, topics.stock} <= offered["topic"]
        assert {f"{prefix}inventory", f"{prefix}notification"} <= offered["group"]
        values = {"topic": f"{prefix}.*", "group": f"{prefix}.*"}

        def panels_answer() -> bool:
            missing = []
            for title, panel in FLOW_PANELS.items():
                if "lag" in title.lower() or title == "Failed sends by error type":
                    continue
                for target in panel["targets"]:
                    result = live.prom_query_range(substitute(promql_of(target), values), seconds=120, step=2)
                    if not live.has_positive_sample(result):
                        missing.append(f"{title} / {target['refId']}")
            assert not missing, missing
            return True

        live.wait_until(panels_answer, timeout=60, interval=3, what="the flow-metric panels for the demo")
    finally:
        problems = demo_live.stop_all(procs)
    assert not problems, problems

    # Stopped services have flushed every span they held. A sampled marker span sent to the same
    # Jaeger afterwards must arrive first: then whatever the services sent has been ingested too.
    _send_marker_and_wait(real_stack)
    kept = [a["trace_id"] for a in answers if live.jaeger_has_trace(real_stack.jaeger_url, a["trace_id"])]
    assert not kept, f"sampled at 0 %, yet Jaeger has traces {kept}"
    status, known = live.get_json(f"{real_stack.jaeger_url}/api/services")
    assert status == 200, known
    for service in ("order-service", "inventory-service", "notification-service"):
        if service not in (known.get("data") or []):
            continue  # Jaeger has no span of it at all
        found = live.jaeger_search(
            real_stack.jaeger_url,
            {"service": service, "tags": json.dumps({"messaging.destination.name": topics.orders})},
        )
        assert not found, f"{service} sent spans of this run to Jaeger: {[t['traceID'] for t in found]}"


def _send_marker_and_wait(real_stack: Stack) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tracing.sdk import otlp_exporter

    provider = TracerProvider(resource=Resource.create({"service.name": "flow-metrics-marker"}))
    provider.add_span_processor(SimpleSpanProcessor(otlp_exporter(real_stack.otlp_endpoint, "grpc")))
    try:
        span = provider.get_tracer("tests").start_span("marker")
        span.end()
        trace_id = f"{span.get_span_context().trace_id:032x}"
    finally:
        provider.shutdown()
    live.wait_until(
        lambda: live.jaeger_has_trace(real_stack.jaeger_url, trace_id),
        timeout=60,
        what=f"the marker trace {trace_id} in Jaeger",
    )


# ------------------------------------------------------------------------ two tiers, live


def _gateway_env(real_stack: Stack) -> dict[str, str]:
    # The run's spans go through the gateways too; a short decision wait settles them (into Jaeger)
    # before the gateways stop, instead of holding them in memory for the default 30 s.
    return {"JAEGER_OTLP_ENDPOINT": live.host_port(real_stack.otlp_endpoint), "TAIL_DECISION_WAIT": "5s"}


def _assert_counted_on_one_gateway(flow: Flow, gateways: tuple[live.CollectorPorts, ...]) -> None:
    """The run's flow metrics, read from the gateways' prometheus exporters (what Prometheus scrapes)."""
    texts = [live.get_text(g.metrics_url) for g in gateways]
    checkout, inventory, billing = (flow.services[k] for k in ("checkout", "inventory", "billing"))

    def total(name: str, **labels: str) -> float:
        return sum(live.metric_total(text, name, labels) for text in texts)

    sent = "messaging_client_sent_messages_total"
    refused = total(
        sent, job=checkout, messaging_destination_name=flow.orders_topic, error_type=REJECTED_ERROR_TYPE
    )
    assert refused == flow.rejected_sends
    orders = len(flow.ok_traces) + len(flow.failed_traces) + len(flow.slow_traces)
    delivered = total(sent, job=checkout, messaging_destination_name=flow.orders_topic) - refused
    assert delivered == orders + flow.backlog[flow.orders_topic]
    chains = total(
        "eventchain_chain_duration_seconds_count",
        job=billing,
        eventchain_path=f"{flow.orders_topic}>{flow.stock_topic}",
        messaging_consumer_group_name=flow.billing_group,
    )
    assert chains == len(flow.ok_traces) + len(flow.slow_traces)
    assert (
        total("kafka_consumer_lag", job=inventory, messaging_consumer_group_name=flow.inventory_group)
        >= BACKLOG
    )
    # Routed by service.name, each service's flow metrics are all on one gateway. (Its span
    # metrics are not: the spans are routed by trace id, so only the flow metrics are looked at.)
    for service in (checkout, inventory, billing):
        holding = [i for i, text in enumerate(texts) if _has_flow_metric_of(text, service)]
        assert len(holding) == 1, f"{service}'s flow metrics are on gateways {holding}"


def _has_flow_metric_of(text: str, service: str) -> bool:
    return any(line.startswith(FLOW_METRICS) and f'job="{service}"' in line for line in text.splitlines())


@pytest.mark.parametrize("between", ["loadbalancing", "kafka"])
def test_service_metrics_cross_the_two_tiers(between: str, real_stack: Stack, log_dir: Path) -> None:
    flow = new_flow(real_stack.kafka_bootstrap, prefix=f"tiermetrics-{between}")
    gateway_env = _gateway_env(real_stack)

    def run(agent_endpoint: str, gateways: tuple[live.CollectorPorts, ...]) -> None:
        drive(real_stack.kafka_bootstrap, agent_endpoint, flow, ok=3, failing=1, slow=1, slow_seconds=0.2)
        live.wait_until(
            lambda: _assert_counted_on_one_gateway(flow, gateways) or True,
            timeout=60,
            what="the run's flow metrics on the gateways",
        )

    if between == "loadbalancing":
        with (
            live.collector("gateway-1", ("gateway.yaml",), gateway_env, log_dir) as g1,
            live.collector("gateway-2", ("gateway.yaml",), gateway_env, log_dir) as g2,
        ):
            gateways = f"[127.0.0.1:{g1.otlp_grpc}, 127.0.0.1:{g2.otlp_grpc}]"
            with live.collector("agent", ("agent.yaml",), {"GATEWAY_ENDPOINTS": gateways}, log_dir) as agent:
                run(agent.otlp_endpoint, (g1, g2))
        return
    kafka_env = {
        "KAFKA_BROKERS": f"[{real_stack.kafka_bootstrap}]",
        "KAFKA_SPANS_TOPIC": create_topic(
            real_stack.kafka_bootstrap, unique_topic("otlp-spans"), partitions=2
        ),
        "KAFKA_METRICS_TOPIC": create_topic(
            real_stack.kafka_bootstrap, unique_topic("otlp-metrics"), partitions=2
        ),
        "KAFKA_GATEWAY_GROUP": f"gateways-{flow.run_id}",
        "KAFKA_INITIAL_OFFSET": "earliest",
    }
    with (
        live.collector(
            "kafka-gateway", ("gateway.yaml", "gateway-kafka.yaml"), {**gateway_env, **kafka_env}, log_dir
        ) as gateway,
        live.collector("kafka-agent", ("agent.yaml", "agent-kafka.yaml"), kafka_env, log_dir) as agent,
    ):
        run(agent.otlp_endpoint, (gateway,))
