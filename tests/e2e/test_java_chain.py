"""Java -> Python -> Java -> Python through the real Kafka: ONE trace in the real Jaeger.

The Java services (examples/java, plain kafka-clients) run under the OpenTelemetry Java agent from
Maven Central, built and fetched by scripts/java-apps.sh (`make test` runs its `install` before
pytest, so a cold build shows its progress there; here it is a no-op). The Python services in
between use this project's wrappers. Each run uses its own topics, groups and service names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import stack

pytestmark = pytest.mark.stack

JAVA_APPS = stack.REPO_ROOT / "scripts" / "java-apps.sh"
PY_SERVICE = Path(__file__).with_name("_java_chain_service.py")
WAIT_S = 240  # how long a hung process may take before the test gives up on it (not a threshold)

# The agent's default (pre-stable) conventions, and what -Dotel.semconv-stability.opt-in=messaging gives.
MODES = {
    "agent-default": [],
    "semconv-opt-in": ["-Dotel.semconv-stability.opt-in=messaging"],
}


@dataclass(frozen=True)
class JavaApps:
    classpath: str
    agent: str


@pytest.fixture(scope="module")
def java_apps() -> JavaApps:
    proc = subprocess.run(
        [str(JAVA_APPS), "install"], cwd=stack.REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"scripts/java-apps.sh install failed:\n{proc.stdout}\n{proc.stderr}"
    paths = subprocess.run(
        [str(JAVA_APPS), "paths"], cwd=stack.REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    values = dict(line.split("=", 1) for line in paths.splitlines() if "=" in line)
    return JavaApps(classpath=values["JAVA_CHAIN_CLASSPATH"], agent=values["JAVA_AGENT_JAR"])


def start_java(
    apps: JavaApps, real_stack: stack.Stack, service: str, options: list[str], main: str, *args: str
) -> subprocess.Popen[str]:
    """A Java service under the agent, exporting OTLP over HTTP to the stack's Jaeger."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": real_stack.kafka_bootstrap,
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": real_stack.otlp_http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    argv = ["java", "-Xmx256m", f"-javaagent:{apps.agent}", *options, "-cp", apps.classpath]
    return subprocess.Popen(
        [*argv, f"eventchain.example.{main}", *args],
        env=env,
        cwd=stack.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], what: str) -> str:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not finish\n--- stdout ---\n{out}\n--- stderr ---\n{err}") from None
    assert proc.returncode == 0, (
        f"{what} exited with {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    )
    return out


def traces_of(service: str, expect_spans: int) -> list[dict[str, Any]]:
    """The service's traces in Jaeger, polled until one holds ``expect_spans`` spans."""
    query = urllib.parse.urlencode({"service": service, "lookback": "1h", "limit": 20})
    url = f"{stack.jaeger_url()}/api/traces?{query}"
    deadline = time.monotonic() + WAIT_S
    last: object = "nothing"
    while time.monotonic() < deadline:
        status, body = stack._get_json(url)
        data = body.get("data") if status == 200 and isinstance(body, dict) else None
        if data and max(len(t["spans"]) for t in data) >= expect_spans:
            return list(data)
        last = data or body
        time.sleep(0.5)
    raise AssertionError(f"Jaeger has no trace of {service} with {expect_spans} spans; last answer: {last}")


def otlp_parents(trace_id: str) -> dict[str, str | None]:
    """Span id -> parent span id (None for a root), from Jaeger's OTLP (v3) API."""
    status, body = stack._get_json(f"{stack.jaeger_url()}/api/v3/traces/{trace_id}")
    assert status == 200, body
    return {
        span["spanId"].lower(): (span.get("parentSpanId") or "").lower() or None
        for resource in body["result"]["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }


def tags(span: Mapping[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


@dataclass
class ChainRun:
    topics: list[str]
    services: list[str]
    printed: dict[str, str]
    trace: dict[str, Any]


def run_chain(
    apps: JavaApps, real_stack: stack.Stack, options: list[str], one_trace: bool = True
) -> ChainRun:
    run = uuid.uuid4().hex[:8]
    topics = [
        stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic(f"java-chain-{i}"))
        for i in (1, 2, 3)
    ]
    java_orders, py_relay, java_relay, py_sink = (
        f"{name}-{run}" for name in ("java-orders", "py-relay", "java-relay", "py-sink")
    )
    relay = stack.start_python(PY_SERVICE, args=["relay", py_relay, topics[0], topics[1]])
    java = start_java(
        apps, real_stack, java_relay, options, "Relay", topics[1], java_relay, topics[2], "1", "180"
    )
    sink = stack.start_python(PY_SERVICE, args=["sink", py_sink, topics[2], "-"])
    producer = start_java(apps, real_stack, java_orders, options, "OrderProducer", topics[0], "order-7", "{}")
    printed = {
        java_orders: finish(producer, "the Java producer"),
        py_relay: finish(relay, "the Python relay"),
        java_relay: finish(java, "the Java relay"),
        py_sink: finish(sink, "the Python sink"),
    }
    services = [java_orders, py_relay, java_relay, py_sink]
    if not one_trace:
        return ChainRun(topics=topics, services=services, printed=printed, trace={})
    # ONE trace: every service's only trace in Jaeger is the same one, and it holds all six hops.
    found = {service: traces_of(service, expect_spans=6) for service in services}
    ids = {service: sorted({t["traceID"] for t in traces}) for service, traces in found.items()}
    first = ids[java_orders]
    assert len(first) == 1, f"the Java producer's event made {len(first)} traces: {first}"
    assert all(v == first for v in ids.values()), f"the services are not in one trace: {ids}"
    trace = stack.jaeger_trace(first[0], expect_spans=6, timeout=WAIT_S)
    return ChainRun(topics=topics, services=services, printed=printed, trace=trace)


@pytest.fixture(scope="module", params=list(MODES), ids=list(MODES))
def chain(
    request: pytest.FixtureRequest, java_apps: JavaApps, real_stack: stack.Stack
) -> Iterator[tuple[str, ChainRun]]:
    yield request.param, run_chain(java_apps, real_stack, MODES[request.param])


def expected_hops(mode: str, run: ChainRun) -> list[tuple[str, str]]:
    """(service, span name) of every hop, in chain order."""
    t1, t2, t3 = run.topics
    java_orders, py_relay, java_relay, py_sink = run.services
    if mode == "agent-default":
        java_send, java_process = "{} publish", "{} process"
    else:
        java_send, java_process = "send {}", "process {}"
    return [
        (java_orders, java_send.format(t1)),
        (py_relay, f"process {t1}"),
        (py_relay, f"send {t2}"),
        (java_relay, java_process.format(t2)),
        (java_relay, java_send.format(t3)),
        (py_sink, f"process {t3}"),
    ]


def test_each_hop_is_the_child_of_the_one_before_across_both_languages(chain: tuple[str, ChainRun]) -> None:
    mode, run = chain
    trace = run.trace
    spans = {(stack.span_service(trace, s), s["operationName"]): s for s in trace["spans"]}
    hops = expected_hops(mode, run)
    assert sorted(spans) == sorted(hops), f"spans in the trace: {sorted(spans)}"
    # Parents as stored (OTLP): Jaeger's own model shows a parent that is also a link as FOLLOWS_FROM.
    parents = otlp_parents(trace["traceID"])
    assert parents[spans[hops[0]]["spanID"]] is None
    for parent, child in zip(hops, hops[1:], strict=False):
        assert parents[spans[child]["spanID"]] == spans[parent]["spanID"], (
            f"{child} is not a child of {parent}"
        )


def test_the_agent_records_its_conventions_of_the_mode(chain: tuple[str, ChainRun]) -> None:
    mode, run = chain
    spans = {(stack.span_service(run.trace, s), s["operationName"]): tags(s) for s in run.trace["spans"]}
    hops = expected_hops(mode, run)
    java_send, java_process = spans[hops[0]], spans[hops[3]]
    if mode == "agent-default":
        assert java_send["messaging.operation"] == "publish"
        assert java_process["messaging.operation"] == "process"
        assert java_process["messaging.kafka.consumer.group"] == run.services[2]
        assert java_process["messaging.kafka.message.offset"] == 0
        assert java_process["messaging.client_id"] == "java-relay"
    else:
        assert java_send["messaging.operation.type"] == "send"
        assert java_process["messaging.operation.type"] == "process"
        assert java_process["messaging.consumer.group.name"] == run.services[2]
        assert java_process["messaging.kafka.offset"] == 0
        assert java_process["messaging.client.id"] == "java-relay"


def eventchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kafka_event_tracing", *args],
        cwd=stack.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_eventchain_shows_every_hop_with_topic_group_partition_offset_and_wait(
    chain: tuple[str, ChainRun],
) -> None:
    mode, run = chain
    trace_id = run.trace["traceID"]
    t1, t2, t3 = run.topics
    java_orders, py_relay, java_relay, py_sink = run.services
    assert run.printed[java_orders].strip() == f"sent {t1} 0@0"
    assert f"handled {t1} 0@0" in run.printed[py_relay]
    assert f"relayed {t2} 0@0 -> {t3}" in run.printed[java_relay]
    assert f"handled {t3} 0@0" in run.printed[py_sink]

    done = eventchain("tree", "--jaeger", stack.jaeger_url(), trace_id, "--json")
    assert done.returncode == 0, done.stderr
    nodes = list(walk(json.loads(done.stdout)["root"]))
    seen = [(n["service"], n["role"], n["topic"]) for n in nodes]
    assert seen == [
        (java_orders, "send", t1),
        (py_relay, "process", t1),
        (py_relay, "send", t2),
        (java_relay, "process", t2),
        (java_relay, "send", t3),
        (py_sink, "process", t3),
    ], seen
    for node in nodes:
        assert (node["partition"], node["offset"]) == (0, 0), node
        if node["role"] == "process":
            assert node["consumer_group"] == node["service"], node
            assert node["queue_ms"] is not None and node["queue_ms"] >= 0, node

    text = eventchain("tree", "--jaeger", stack.jaeger_url(), trace_id, "--width", "200", "--color", "never")
    assert text.returncode == 0, text.stderr
    assert "4 services  3 hops" in text.stdout, text.stdout
    for service, topic in ((py_relay, t1), (java_relay, t2), (py_sink, t3)):
        line = next(line for line in text.stdout.splitlines() if f"{service}  " in line and "process" in line)
        assert (
            f"group {service}" in line and "p0@0" in line and "waited " in line and f" in {topic}" in line
        ), line


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node["children"]:
        yield from walk(child)


RECEIVE_TELEMETRY = "-Dotel.instrumentation.messaging.experimental.receive-telemetry.enabled=true"


def test_with_receive_telemetry_eventchain_shows_the_linked_producer_and_the_wait(
    java_apps: JavaApps, real_stack: stack.Stack
) -> None:
    # Each poll of the Java relay starts its own trace; its process span only links to the Python
    # relay's send, which is in the first trace.
    run = run_chain(java_apps, real_stack, [RECEIVE_TELEMETRY], one_trace=False)
    _t1, t2, t3 = run.topics
    _java_orders, py_relay, java_relay, py_sink = run.services
    traces = traces_of(java_relay, expect_spans=4)
    [receive_trace] = [t for t in traces if any(s["operationName"] == f"{t2} receive" for s in t["spans"])]
    trace_id = receive_trace["traceID"]
    stack.jaeger_trace(trace_id, expect_spans=4, timeout=WAIT_S)  # the sink's process span too

    done = eventchain("tree", "--jaeger", stack.jaeger_url(), trace_id, "--json")
    assert done.returncode == 0, done.stderr
    nodes = {(n["service"], n["role"], n["topic"]): n for n in walk(json.loads(done.stdout)["root"])}
    process = nodes[(java_relay, "process", t2)]
    assert process["source"]["service"] == py_relay and process["source"]["topic"] == t2, process
    assert process["source"]["trace_id"] != trace_id
    assert process["queue_ms"] is not None and process["queue_ms"] >= 0, process
    assert (py_sink, "process", t3) in nodes

    text = eventchain("tree", "--jaeger", stack.jaeger_url(), trace_id, "--width", "200", "--color", "never")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if f"{java_relay}  {t2} process" in line)
    line = " ".join(part.strip() for part in lines[at : at + 2])  # the node's label may wrap once
    assert f"sent by {py_relay} to {t2}" in line and "waited " in line and f"group {java_relay}" in line, line
