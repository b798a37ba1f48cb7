"""Three services in three OS processes through real Kafka: ONE trace in real Jaeger."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests import stack

SERVICE = Path(__file__).with_name("_chain_service.py")


def otlp_spans(jaeger_url: str, trace_id: str) -> dict:
    """The trace as OTLP JSON from Jaeger's v3 API, spans by name."""
    with urllib.request.urlopen(f"{jaeger_url}/api/v3/traces/{trace_id}", timeout=10) as resp:
        body = json.load(resp)
    return {
        span["name"]: span
        for resource in body["result"]["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }


def tags(span):
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def test_order_inventory_notification_chain_is_one_trace_hop_by_hop(real_stack):
    orders = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("orders"))
    stock = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("stock"))
    inventory = stack.start_python(SERVICE, args=["inventory-service", orders, stock])
    notification = stack.start_python(SERVICE, args=["notification-service", stock, "-"])
    trace_id = stack.run_python(SERVICE, args=["order-service", "-", orders], timeout=90).stdout.strip()
    for proc in (inventory, notification):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err

    trace = stack.jaeger_trace(trace_id, expect_spans=5, timeout=60)
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {
        "POST /orders",
        f"send {orders}",
        f"process {orders}",
        f"send {stock}",
        f"process {stock}",
    }

    chain = ["POST /orders", f"send {orders}", f"process {orders}", f"send {stock}", f"process {stock}"]
    # OTLP as stored: every hop's parent is the previous one.
    otlp = otlp_spans(real_stack.jaeger_url, trace_id)
    for parent, child in zip(chain, chain[1:], strict=False):
        assert otlp[child]["parentSpanId"] == otlp[parent]["spanId"], f"{child} is not a child of {parent}"
    # Jaeger's own model: the first reference (what its UI nests by) points at the previous hop.
    # Jaeger turns a parent that is also a link into FOLLOWS_FROM, the async causal relation.
    for parent, child in zip(chain, chain[1:], strict=False):
        first = spans[child]["references"][0]
        assert first["spanID"] == spans[parent]["spanID"] and first["traceID"] == trace["traceID"]
    assert spans[f"process {orders}"]["references"][0]["refType"] == "FOLLOWS_FROM"
    assert spans[f"send {orders}"]["references"][0]["refType"] == "CHILD_OF"
    services = {name: stack.span_service(trace, span) for name, span in spans.items()}
    assert services == {
        "POST /orders": "order-service",
        f"send {orders}": "order-service",
        f"process {orders}": "inventory-service",
        f"send {stock}": "inventory-service",
        f"process {stock}": "notification-service",
    }

    send = tags(spans[f"send {orders}"])
    assert send["span.kind"] == "producer"
    assert send["messaging.system"] == "kafka"
    assert send["messaging.operation.type"] == "send"
    assert send["messaging.destination.name"] == orders
    assert send["messaging.destination.partition.id"] == "0"
    assert send["messaging.kafka.offset"] == 0
    assert send["messaging.kafka.message.key"] == "order-42"
    assert send["messaging.client.id"] == "order-service"
    assert send["server.address"] == "127.0.0.1"

    process = tags(spans[f"process {orders}"])
    assert process["span.kind"] == "consumer"
    assert process["messaging.operation.type"] == "process"
    assert process["messaging.consumer.group.name"] == "inventory"
    assert process["messaging.destination.partition.id"] == "0"
    assert process["messaging.kafka.offset"] == 0
    assert process["kafka.record.queue_time_ms"] >= 0
    assert tags(spans[f"process {stock}"])["messaging.consumer.group.name"] == "notification"
    # the producer's span is also a link on the process span
    links = otlp[f"process {orders}"]["links"]
    assert [link["spanId"] for link in links] == [otlp[f"send {orders}"]["spanId"]]
