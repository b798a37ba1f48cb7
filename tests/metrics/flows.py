"""Event-flow traffic through the real broker, traced with the project's wrappers.

The shape the dashboards are about: three services, two topics, two consumer groups.

    checkout --send--> orders-<run> --process (group inventory-<run>)--> inventory
    inventory --send--> stock-<run>  --process (group billing-<run>)----> billing

Every chain is one trace (each process span is the child of the send span that wrote its
message). Some chains fail in inventory (the handler raises: the process span is ERROR with
error.type), some are slow in billing (the handler sleeps). Each service has its own
TracerProvider (service.name) exporting over OTLP gRPC to the endpoint given.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_trace_id

import tracing
from tests.stack import create_topic


class StockUnavailable(Exception):
    """What the inventory handler raises for an order it cannot serve."""


@dataclass
class Flow:
    """Names and outcomes of one traffic run."""

    run_id: str
    orders_topic: str
    stock_topic: str
    inventory_group: str
    billing_group: str
    services: dict[str, str]
    ok_traces: list[str] = field(default_factory=list)
    failed_traces: list[str] = field(default_factory=list)
    slow_traces: list[str] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)


def new_flow(bootstrap: str, prefix: str = "flows") -> Flow:
    run_id = uuid.uuid4().hex[:8]
    flow = Flow(
        run_id=run_id,
        orders_topic=f"orders-{run_id}",
        stock_topic=f"stock-{run_id}",
        inventory_group=f"inventory-{run_id}",
        billing_group=f"billing-{run_id}",
        services={
            "checkout": f"{prefix}-checkout-{run_id}",
            "inventory": f"{prefix}-inventory-{run_id}",
            "billing": f"{prefix}-billing-{run_id}",
        },
    )
    create_topic(bootstrap, flow.orders_topic, partitions=2)
    create_topic(bootstrap, flow.stock_topic, partitions=2)
    return flow


# How often each service's BatchSpanProcessor exports (OTEL_BSP_SCHEDULE_DELAY, ms). The SDK's
# default (5 s) would hold a chain's last span back for up to 5 s after it ended; the tail-sampling
# tests need every span of a chain at the collector well within its decision_wait.
EXPORT_DELAY_MS = 200


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _providers(flow: Flow, endpoint: str) -> dict[str, TracerProvider]:
    # tracing.configure() builds its BatchSpanProcessor from the standard OTEL_BSP_* variables.
    with _environ(OTEL_BSP_SCHEDULE_DELAY=str(EXPORT_DELAY_MS)):
        return {
            role: tracing.configure(name, endpoint=endpoint, set_global=False)
            for role, name in flow.services.items()
        }


def _consumer(bootstrap: str, group: str, provider: TracerProvider) -> tracing.TracedConsumer:
    return tracing.TracedConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": 10000,
        },
        tracer_provider=provider,
    )


def _wait_assigned(consumer: tracing.TracedConsumer, timeout: float) -> None:
    """Poll until the group has given this consumer its partitions (nothing is produced yet)."""
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() >= deadline:
            raise AssertionError(f"consumer got no partitions within {timeout}s")
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            raise AssertionError("a message arrived before anything was produced")


def _drain(
    consumer: tracing.TracedConsumer,
    expected: int,
    handle: Callable[[Any], None],
    timeout: float,
) -> int:
    """Process `expected` messages, each inside its process span; returns how many were handled."""
    handled = 0
    deadline = time.monotonic() + timeout
    while handled < expected:
        if time.monotonic() >= deadline:
            raise AssertionError(f"processed {handled} of {expected} messages within {timeout}s")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            raise KafkaException(msg.error())
        try:
            with consumer.process(msg):
                handle(msg)
        except StockUnavailable:
            pass  # recorded on the span; the message counts as handled (a real app would dead-letter it)
        handled += 1
    return handled


def drive(
    bootstrap: str,
    endpoint: str,
    flow: Flow,
    *,
    ok: int = 12,
    failing: int = 3,
    slow: int = 2,
    slow_seconds: float = 1.2,
    timeout: float = 90,
) -> Flow:
    """Send ok + failing + slow orders through the two hops and wait until all are processed.

    Consumers are subscribed and assigned before anything is produced, so each chain takes
    about as long as its handlers (the tail-sampling test relies on short chains). Each service
    exports its spans every EXPORT_DELAY_MS, and flushes them to `endpoint` before returning.
    """
    providers = _providers(flow, endpoint)
    producer = tracing.TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5}, tracer_provider=providers["checkout"]
    )
    inventory = _consumer(bootstrap, flow.inventory_group, providers["inventory"])
    billing = _consumer(bootstrap, flow.billing_group, providers["billing"])
    inventory_out = tracing.TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5}, tracer_provider=providers["inventory"]
    )
    try:
        inventory.subscribe([flow.orders_topic])
        billing.subscribe([flow.stock_topic])
        _wait_assigned(inventory, timeout=30)
        _wait_assigned(billing, timeout=30)

        kinds = ["ok"] * ok + ["fail"] * failing + ["slow"] * slow
        tracer = providers["checkout"].get_tracer("tests.metrics.flows")
        for i, kind in enumerate(kinds):
            # A root span per order (the HTTP request in a real checkout) so the trace id is known.
            with tracer.start_as_current_span(f"checkout order {kind}") as root:
                producer.produce(flow.orders_topic, value=f"{kind}:{i}".encode(), key=f"order-{i}".encode())
                trace_id = format_trace_id(root.get_span_context().trace_id)
            {"ok": flow.ok_traces, "fail": flow.failed_traces, "slow": flow.slow_traces}[kind].append(
                trace_id
            )
        assert producer.flush(30) == 0, "orders were not all delivered"

        def handle_order(msg: Any) -> None:
            kind = msg.value().decode().split(":", 1)[0]
            if kind == "fail":
                raise StockUnavailable(msg.value().decode())
            inventory_out.produce(flow.stock_topic, value=msg.value(), key=msg.key())
            inventory_out.poll(0)

        def handle_stock(msg: Any) -> None:
            if msg.value().decode().startswith("slow:"):
                time.sleep(slow_seconds)
            else:
                time.sleep(0.01)

        started = time.monotonic()
        flow.processed["inventory"] = _drain(inventory, len(kinds), handle_order, timeout)
        assert inventory_out.flush(30) == 0, "stock messages were not all delivered"
        remaining = max(10.0, timeout - (time.monotonic() - started))
        flow.processed["billing"] = _drain(billing, ok + slow, handle_stock, remaining)
    finally:
        for consumer in (inventory, billing):
            try:
                consumer.close()
            except Exception:
                pass
        for provider in providers.values():
            provider.force_flush(15_000)
            provider.shutdown()
    return flow
