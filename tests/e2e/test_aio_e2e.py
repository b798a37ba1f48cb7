"""asyncio services through the real Kafka into the real Jaeger: with several messages in
flight in one event loop, each order stays ONE trace, send -> process -> send, and no
task's onward send lands under another task's message."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests import stack

SERVICE = Path(__file__).with_name("_aio_service.py")
COUNT = 12  # a multiple of the service's 3 workers


def otlp_spans(jaeger_url: str, trace_id: str) -> list[dict]:
    """Every span of a trace as OTLP JSON (Jaeger's v3 API), with its service name; [] if unknown."""
    try:
        with urllib.request.urlopen(f"{jaeger_url}/api/v3/traces/{trace_id}", timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    spans = []
    for resource in body["result"]["resourceSpans"]:
        attrs = attributes(resource.get("resource", {}))
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                spans.append(dict(span, service=attrs.get("service.name")))
    return spans


def attributes(item: dict) -> dict:
    """OTLP JSON attributes as a plain dict (values as strings or ints)."""
    out = {}
    for attr in item.get("attributes", []):
        value = attr["value"]
        out[attr["key"]] = next(iter(value.values())) if value else None
    return out


def all_traces(jaeger_url: str, trace_ids: list[str], spans_each: int, timeout: float = 30) -> dict:
    """Wait until the traces together hold ``spans_each`` spans per trace, then return them.

    Waiting for the total, not for each trace, keeps a broken run fast: a send that went
    into the wrong trace leaves one trace short and another one over, same total.
    """
    deadline = time.monotonic() + timeout
    while True:
        traces = {tid: otlp_spans(jaeger_url, tid) for tid in trace_ids}
        total = sum(len(spans) for spans in traces.values())
        if total >= spans_each * len(trace_ids) or time.monotonic() >= deadline:
            return traces
        time.sleep(0.5)


def stock_trace_ids(bootstrap: str, topic: str, count: int) -> dict[str, str]:
    """Trace id in each stock message's traceparent header, by message key."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "aio-e2e-check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    try:
        while len(found) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            traceparent = dict(msg.headers() or [])["traceparent"].decode()
            found[msg.key().decode()] = traceparent.split("-")[1]
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("mode", ["workers", "drop-in", "dispatcher"])
def test_concurrent_asyncio_handlers_keep_every_order_in_its_own_trace(real_stack, mode):
    bootstrap = real_stack.kafka_bootstrap
    orders = stack.create_topic(bootstrap, stack.unique_topic(f"aio-orders-{mode}"))
    stock = stack.create_topic(bootstrap, stack.unique_topic(f"aio-stock-{mode}"))
    inventory = stack.start_python(SERVICE, args=["inventory-service", mode, orders, stock, str(COUNT)])
    try:
        produced = stack.run_python(SERVICE, args=["order-service", orders, str(COUNT)], timeout=90)
        out, err = inventory.communicate(timeout=90)
    finally:
        if inventory.poll() is None:
            inventory.kill()
            inventory.communicate()
    assert inventory.returncode == 0, err
    trace_by_key: dict[str, str] = json.loads(produced.stdout.strip().splitlines()[-1])
    assert len(trace_by_key) == COUNT and len(set(trace_by_key.values())) == COUNT  # distinct traces
    # The handlers really overlapped: all the workers (or all the dispatched tasks) at once.
    most = json.loads(out.strip().splitlines()[-1])["most_in_flight"]
    assert most == (COUNT if mode == "dispatcher" else 3)

    traces = all_traces(real_stack.jaeger_url, list(trace_by_key.values()), spans_each=4)
    chain = ["POST /orders", f"send {orders}", f"process {orders}", f"send {stock}"]
    problems = []
    for key, trace_id in sorted(trace_by_key.items()):
        spans = traces[trace_id]
        names = Counter(span["name"] for span in spans)
        if names != Counter(chain):
            problems.append(f"{key}: trace {trace_id} holds {dict(names)}")
            continue
        by_name = {span["name"]: span for span in spans}
        for parent, child in zip(chain, chain[1:], strict=False):
            if by_name[child]["parentSpanId"] != by_name[parent]["spanId"]:
                problems.append(f"{key}: {child} is not a child of {parent}")
        # the message each span is about is this order, not another task's
        for name in chain[1:]:
            got = attributes(by_name[name]).get("messaging.kafka.message.key")
            if got != key:
                problems.append(f"{key}: {name} carries key {got!r}")
        # no other task's poll ended this message's span while its handler still worked
        process, onward = by_name[f"process {orders}"], by_name[f"send {stock}"]
        if int(process["endTimeUnixNano"]) < int(onward["startTimeUnixNano"]):
            problems.append(f"{key}: the process span ended before its onward send started")
        links = [link["spanId"] for link in by_name[f"process {orders}"].get("links", [])]
        if links != [by_name[f"send {orders}"]["spanId"]]:
            problems.append(f"{key}: process span links to {links}")
        services = [by_name[name]["service"] for name in chain]
        if services != ["order-service"] * 2 + ["inventory-service"] * 2:
            problems.append(f"{key}: services {services}")
    assert not problems, "\n".join(problems)

    # On the wire too: each stock message carries its own order's trace onward.
    assert stock_trace_ids(bootstrap, stock, COUNT) == trace_by_key
