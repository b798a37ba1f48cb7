"""`make demo-live` end to end: six processes, the real broker, spans read back from the real Jaeger."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest

from tests import stack
from tests.demo.spans import children, one
from tracing.read import JaegerClient, Span

pytestmark = pytest.mark.stack

FOUR_SERVICES = {"order-service", "inventory-service", "notification-service", "points-service"}


@dataclass
class LiveRun:
    prefix: str
    stdout: str
    trace_ids: list[str]  # in story order: in stock, out of stock, registration
    client: JaegerClient
    started_ns: int

    def spans(self, index: int) -> list[Span]:
        return self.client.trace(self.trace_ids[index])


@pytest.fixture(scope="module")
def live(real_stack) -> LiveRun:
    prefix = f"demo-{uuid.uuid4().hex[:8]}-"  # topics and groups of this run only
    started_ns = time.time_ns()
    proc = subprocess.run(
        [stack.venv_python(), "-m", "tracing.demo", "--live", "--prefix", prefix,
         "--bootstrap", real_stack.kafka_bootstrap, "--otlp", real_stack.otlp_endpoint,
         "--jaeger", real_stack.jaeger_url],
        cwd=stack.REPO_ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    trace_ids = re.findall(r"^Jaeger\s+\S+/trace/([0-9a-f]{32})$", proc.stdout, re.MULTILINE)
    return LiveRun(prefix, proc.stdout, trace_ids, JaegerClient(real_stack.jaeger_url), started_ns)


def test_live_demo_prints_each_chain_with_its_jaeger_link_and_the_tree_read_back(live, real_stack):
    assert len(live.trace_ids) == 3
    for trace_id in live.trace_ids:
        assert f"{real_stack.jaeger_url}/trace/{trace_id}" in live.stdout
        assert re.search(rf"^trace {trace_id}\s+POST /(orders|users)", live.stdout, re.MULTILINE)


def test_live_cancelled_order_is_one_trace_across_four_services_with_its_compensation(live):
    trace_id = live.trace_ids[1]
    raw = stack.jaeger_trace(trace_id, expect_spans=12)
    assert {stack.span_service(raw, s) for s in raw["spans"]} >= FOUR_SERVICES

    spans = live.spans(1)
    p = live.prefix
    rejected = one(spans, f"process {p}stock", "order-service", **{"app.event.type": "stock.rejected"})
    (cancellation,) = children(spans, rejected)
    assert (cancellation.name, cancellation.service) == (f"send {p}orders", "order-service")
    handlers = {s.service for s in children(spans, cancellation) if s.name == f"process {p}orders"}
    assert handlers == {"inventory-service", "notification-service", "points-service"}

    # ONE trace: Jaeger finds no other trace with a span about this order, in any service.
    order_id = rejected.attributes["app.order.id"]
    found = set()
    for service in FOUR_SERVICES:
        found |= {s.trace_id for s in live.client.search(service, live.started_ns, time.time_ns(), limit=50,
                                                        tags={"app.order.id": order_id})}
    assert found == {trace_id}


def test_live_failed_sms_is_an_error_retried_once_in_the_same_trace(live):
    spans = live.spans(1)
    p = live.prefix
    failed = one(spans, f"process {p}orders", "notification-service", **{"app.event.type": "order.cancelled"})
    assert failed.error is not None and "SmsFailed" in failed.error
    (retry_sent,) = children(spans, failed)
    assert retry_sent.name == f"send {p}notifications.retry"
    (retried,) = children(spans, retry_sent)
    assert retried.name == f"process {p}notifications.retry" and retried.error is None
    assert retried.attributes["app.sms.attempt"] == 2


def test_live_redelivered_order_event_is_skipped_and_visible(live):
    spans = live.spans(0)
    points = sorted((s for s in spans if s.service == "points-service"), key=lambda s: s.start_ns)
    assert len(points) == 2
    first, again = points
    assert (first.topic, first.partition, first.offset) == (again.topic, again.partition, again.offset)
    assert again.attributes["app.duplicate"] is True
    assert "duplicate event skipped" in [e.name for e in again.events]
    assert "duplicate: already processed" in live.stdout


def test_live_registration_reaches_points_and_recommendation(live):
    spans = live.spans(2)
    sent = one(spans, f"send {live.prefix}users", "user-service")
    assert {s.service for s in children(spans, sent)} == {"points-service", "recommendation-service"}


def test_live_order_created_reaches_notification_through_rabbitmq_in_the_same_trace(live):
    spans = live.spans(0)
    p = live.prefix
    root = one(spans, "POST /orders", "order-service")
    sends = [s for s in children(spans, root) if s.attributes.get("messaging.system") == "rabbitmq"]
    assert [(s.name, s.routing_key) for s in sends] == [(f"send {p}order-events", "order.created")]
    (received,) = children(spans, sends[0])
    assert (received.service, received.queue) == ("notification-service", f"{p}notifications")
    assert received.attributes["app.event.type"] == "order.created" and received.error is None
    kafka = [s for s in children(spans, root) if s.attributes.get("messaging.system") == "kafka"]
    assert [s.name for s in kafka] == [f"send {p}orders"]  # inventory and points stay on Kafka
    assert f"queue {p}notifications" in live.stdout and "RabbitMQ" in live.stdout
