"""What the environment switches do to the wrappers, each in a fresh interpreter (the
global providers are set once per process): OTEL_SDK_DISABLED=true, propagation only,
an OTLP protocol the exporters lack, a propagator that is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tracing.write import otel

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# Configures the service, sends a message carrying a traceparent (argv[3]), handles it with a TracedConsumer
# (drop-in poll), sends a message while handling it and one outside any message, then
# prints what the two sends carried.
_SERVICE = textwrap.dedent(
    """
    import json, sys, time
    from confluent_kafka import Consumer, Producer, TopicPartition
    import tracing

    bootstrap, topic = sys.argv[1], sys.argv[2]
    tracing.configure("switched-service", endpoint="http://127.0.0.1:1")
    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(topic + "-in", b"in", headers=[("traceparent", sys.argv[3])])
    raw.flush(10)
    consumer = tracing.TracedConsumer({"bootstrap.servers": bootstrap, "group.id": "g",
                                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic + "-in", p, 0) for p in range(4)])
    producer = tracing.TracedProducer({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 20
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error():
            msg = None
    assert msg is not None, "the incoming message never arrived"
    producer.produce(topic, b"while handling")
    consumer.close()  # ends the handling
    producer.produce(topic, b"outside")
    producer.flush(10)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "r", "auto.offset.reset": "earliest"})
    reader.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got = {}
    while len(got) < 2 and time.monotonic() < deadline:
        m = reader.poll(0.2)
        if m is not None and not m.error():
            got[m.value().decode()] = {k: v.decode() for k, v in (m.headers() or [])}
    print(json.dumps(got))
    """
)


def _run_service(mock_cluster: str, topic: str, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "KET_PROPAGATION"))}
    full.update(OTEL_METRIC_EXPORT_INTERVAL="600000", OTEL_BSP_SCHEDULE_DELAY="600000", **env)
    out = subprocess.run(
        [sys.executable, "-c", _SERVICE, mock_cluster, topic, INCOMING],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got: dict = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(got) == {"while handling", "outside"}, got
    return got


def test_a_configured_service_carries_the_trace_and_the_chain_header(mock_cluster, topic):
    # The reference for the two switches below: what the same service writes normally.
    got = _run_service(mock_cluster, topic)
    assert got["while handling"]["traceparent"].split("-")[1] == INCOMING.split("-")[1]
    assert "eventchain" in got["while handling"] and "eventchain" in got["outside"]


def test_otel_sdk_disabled_writes_no_header_at_all(mock_cluster, topic):
    got = _run_service(mock_cluster, topic, OTEL_SDK_DISABLED="true")
    assert got == {"while handling": {}, "outside": {}}


def test_propagation_only_carries_the_incoming_trace_and_nothing_else(mock_cluster, topic):
    both = {"KET_PROPAGATION_ONLY": "true", "OTEL_SDK_DISABLED": "true"}
    for env in ({"KET_PROPAGATION_ONLY": "true"}, both):
        got = _run_service(mock_cluster, f"{topic}-{len(env)}", **env)
        assert got == {"while handling": {"traceparent": got["while handling"]["traceparent"]}, "outside": {}}
        assert got["while handling"]["traceparent"].split("-")[1] == INCOMING.split("-")[1]


def test_inject_context_adds_nothing_when_the_sdk_is_disabled_unless_propagation_only(monkeypatch):
    from tracing import extract_context, inject_context

    incoming = extract_context([("traceparent", INCOMING.encode())])
    assert incoming is not None
    mine = [("event-type", b"order.created")]
    carried = inject_context(mine, incoming)  # the reference: what it adds normally
    assert [k for k, _ in carried] == ["event-type", "traceparent"]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert inject_context(mine, incoming) == mine
    monkeypatch.setenv("KET_PROPAGATION_ONLY", "true")
    assert inject_context(mine, incoming) == carried
    assert mine == [("event-type", b"order.created")]


def _configure_fails(**env: str) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", "import tracing; tracing.configure('svc')"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    return out.stderr.strip().splitlines()[-1]


def test_otlp_http_json_is_refused_in_one_line_naming_the_supported_values():
    line = _configure_fails(OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
    assert line == (
        "ValueError: OTEL_EXPORTER_OTLP_PROTOCOL 'http/json' is not an OTLP protocol the exporters "
        "support: use 'grpc' or 'http/protobuf'"
    )
    line = _configure_fails(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/json")
    assert line.startswith("ValueError: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL 'http/json' ")


def test_a_propagator_that_is_not_installed_is_named_in_one_line():
    line = _configure_fails(OTEL_PROPAGATORS="tracecontext,xray")
    assert line == (
        "tracing.write.otel.MissingPropagatorError: OTEL_PROPAGATORS names 'xray', which is not "
        "installed: install the package providing it (or take it out of the variable)"
    )


@pytest.mark.parametrize(("name", "extra"), [("b3", "b3"), ("b3multi", "b3"), ("jaeger", "jaeger")])
def test_a_missing_propagator_of_an_extra_names_the_extra(monkeypatch, name, extra):
    import importlib.metadata

    real = importlib.metadata.entry_points

    def without(**kwargs):  # as if the extra's package were not installed
        return [ep for ep in real(**kwargs) if ep.name != name]

    monkeypatch.setattr(importlib.metadata, "entry_points", without)
    monkeypatch.setenv("OTEL_PROPAGATORS", f"tracecontext,baggage,{name}")
    assert otel.missing_propagator_message() == (
        f"OTEL_PROPAGATORS names {name!r}, which is not installed: "
        f"pip install 'kafka-event-tracing[{extra}]' (or take it out of the variable)"
    )


def test_a_missing_propagator_is_named_when_a_client_is_built_too():
    code = "import tracing; tracing.TracedProducer({'bootstrap.servers': '127.0.0.1:9'})"
    env = {**os.environ, "OTEL_PROPAGATORS": "nosuch"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].endswith("OTEL_PROPAGATORS names 'nosuch', which is not "
                                                         "installed: install the package providing it "
                                                         "(or take it out of the variable)")
