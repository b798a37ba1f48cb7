"""Chains recorded from the real stack (record_fixtures.py), and one produced live.

The recorded files are what real Jaeger answered for a chain made by this project's wrappers
through real Kafka; the live test does the same and runs the real ``eventchain`` command on it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import stack
from tests.read.conftest import fixture
from tests.read.record_fixtures import produce_chain, read_back
from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.load import read_file
from tracing.read.render import to_json

META = json.loads(fixture("real-chain.meta.json").read_text())
MAIN = META["main_trace"]
ORDERS = META["orders_topic"]


def _nodes(node: dict) -> list[dict]:  # type: ignore[type-arg]
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def _doc(file: str, **options: bool) -> dict:  # type: ignore[type-arg]
    chain = make_chain(read_file(fixture(file)), MAIN, **options)
    return to_json(chain, summarise(chain))


def check_recorded_chain(doc: dict, orders: str, run: str) -> None:  # type: ignore[type-arg]
    """What the scenario of record_fixtures.py must look like, from any source."""
    assert doc["services"] == ["api", "billing", "reports", "shipping"]
    assert doc["hops"] == 4 and doc["errors"] == 1
    root = doc["root"]
    assert (root["service"], root["name"], root["folded"]) == ("api", "POST /orders", 0)
    [send] = root["children"]
    assert (send["name"], send["kind"], send["topic"], send["partition"], send["offset"]) == (
        f"send {orders}", "producer", orders, 0, 0)
    consumers = [(c["service"], c["consumer_group"], bool(c["error"]), c["duplicate"])
                 for c in send["children"]]
    assert consumers == [
        ("shipping", f"shipping-{run}", True, False),
        ("billing", f"billing-{run}", False, False),
        ("billing", f"billing-{run}", False, True),
        ("reports", f"reports-{run}", False, False),
    ]
    assert all(c["queue_ms"] is not None and c["queue_ms"] >= 0 for c in send["children"])
    assert send["children"][0]["error"] == "ValueError: address missing"
    billing = send["children"][1]
    assert billing["folded"] == 1  # the POST /charges client span
    [invoices] = billing["children"]
    assert invoices["unconsumed"] and invoices["name"].startswith("send eventchain-invoices-")


@pytest.mark.parametrize("file", ["real-main.jaeger.json", "real-chain.jaeger.json", "real-chain.otlp.jsonl"])
def test_recorded_chain_renders_every_case_from_every_format(file: str) -> None:
    check_recorded_chain(_doc(file), ORDERS, META["run"])


def test_recorded_jaeger_and_otlp_agree_to_the_microsecond() -> None:
    def key(file: str) -> list[tuple[object, ...]]:
        return sorted((s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.service, s.start_ns // 1000,
                       s.error, tuple((r.trace_id, r.span_id) for r in s.links if r.span_id != s.parent_id))
                      for s in read_file(fixture(file)))

    assert key("real-chain.jaeger.json") == key("real-chain.otlp.jsonl")


def test_recorded_link_only_and_batch_consumers_are_stitched_with_follow_links() -> None:
    for file in ("real-chain.jaeger.json", "real-chain.otlp.jsonl"):
        doc = _doc(file, follow_links=True)
        assert doc["hops"] == 4  # links are not hops
        assert doc["services"] == ["api", "audit", "billing", "reports", "shipping"]
        send = doc["root"]["children"][0]
        links = {c["trace_id"]: c for c in send["children"] if c["link"]}
        assert links.keys() == {META["link_only_trace"], META["batch_trace"]}
        assert links[META["link_only_trace"]]["consumer_group"] == f"audit-{META['run']}"
        assert links[META["batch_trace"]]["name"] == f"receive {ORDERS}"


def test_recorded_chain_without_the_link_traces_has_no_link_nodes() -> None:
    assert not any(n["link"] for n in _nodes(_doc("real-main.jaeger.json", follow_links=True)["root"]))


@pytest.mark.stack
def test_eventchain_reads_a_chain_just_produced_through_real_kafka_from_real_jaeger(
        real_stack: stack.Stack) -> None:
    recorded, _, _ = produce_chain(real_stack.kafka_bootstrap, real_stack.otlp_endpoint)
    read_back(recorded, real_stack.jaeger_url)
    command = [stack.venv_python(), "-m", "tracing", "tree", recorded.main_trace,
               "--jaeger", real_stack.jaeger_url, "--json"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    check_recorded_chain(json.loads(run.stdout), recorded.orders_topic, recorded.run)

    linked = subprocess.run([*command, "--follow-links"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert linked.returncode == 0, linked.stderr
    send = json.loads(linked.stdout)["root"]["children"][0]
    assert {c["trace_id"] for c in send["children"] if c["link"]} == {
        recorded.link_only_trace, recorded.batch_trace}


@pytest.mark.stack
def test_eventchain_list_finds_the_chain_just_produced(real_stack: stack.Stack) -> None:
    recorded, _, _ = produce_chain(real_stack.kafka_bootstrap, real_stack.otlp_endpoint)
    read_back(recorded, real_stack.jaeger_url)
    run = subprocess.run(
        [stack.venv_python(), "-m", "tracing", "list", "--jaeger", real_stack.jaeger_url, "--service",
         "shipping", "--topic", recorded.orders_topic, "--errors", "--json", "--lookback", "10m"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert [c["trace_id"] for c in json.loads(run.stdout)] == [recorded.main_trace]


def test_jaeger_unreachable_on_the_stack_port_layout_exits_3() -> None:
    run = subprocess.run([stack.venv_python(), "-m", "tracing", "tree", MAIN, "--jaeger",
                          "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 3
    assert run.stderr.count("\n") == 1 and "http://127.0.0.1:9" in run.stderr
    assert "Traceback" not in run.stderr
