"""One chain across RabbitMQ and Kafka, four services in four OS processes, read back from the
real Jaeger: order-service (pika) -> RabbitMQ exchange -> notification-service (pika, one nack
and the broker's redelivery) -> Kafka topic -> points-service (confluent-kafka, then aio-pika)
-> RabbitMQ default exchange -> ledger-service (aio-pika). ONE trace, every hop the child of
the one before, and ``eventchain tree`` names the exchanges and queues."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests import stack

pika = pytest.importorskip("pika")
pytest.importorskip("aio_pika")

SERVICE = Path(__file__).with_name("_rabbitmq_service.py")


@pytest.fixture(scope="module")
def amqp_url(request: pytest.FixtureRequest, real_stack: stack.Stack) -> str:
    url = stack.rabbitmq_url()
    problem = stack.rabbitmq_problem(url)
    if problem:
        message = f"{problem}; run `make stack-up`"
        if stack.in_ci() or request.config.getoption("--require-stack"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


def _declare(url: str, exchange: str, queue: str, ledger: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    for name in (queue, ledger):
        channel.queue_declare(name, arguments={"x-expires": 300_000})
    channel.queue_bind(queue, exchange, "order.#")
    connection.close()


def _tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def test_a_chain_through_rabbitmq_and_kafka_is_one_trace_hop_by_hop(real_stack, amqp_url):
    run = uuid.uuid4().hex[:10]
    exchange, queue, ledger = f"orders-{run}", f"notifications-{run}", f"ledger-{run}"
    topic = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("notified"))
    _declare(amqp_url, exchange, queue, ledger)
    env = {"KET_RABBITMQ_URL": amqp_url}
    services = [
        stack.start_python(SERVICE, args=["ledger-service", ledger], env=env),
        stack.start_python(SERVICE, args=["points-service", topic, ledger], env=env),
        stack.start_python(SERVICE, args=["notification-service", queue, topic], env=env),
    ]
    try:
        order = stack.run_python(SERVICE, args=["order-service", exchange], env=env, timeout=90)
        trace_id = order.stdout.strip()
        for proc in services:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in services:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    # root, send, two process spans (the nacked delivery and its redelivery), then 2 per hop
    trace = stack.jaeger_trace(trace_id, expect_spans=8, timeout=60)
    spans = trace["spans"]
    by_id = {s["spanID"]: s for s in spans}
    assert {s["traceID"] for s in spans} == {trace["traceID"]}
    names = sorted(s["operationName"] for s in spans)
    assert names == sorted([
        "POST /orders", f"send {exchange}", f"process {exchange}", f"process {exchange}",
        f"send {topic}", f"process {topic}", "send amq.default", "process amq.default",
    ])

    def parent(span: dict) -> dict:
        return by_id[span["references"][0]["spanID"]]

    def one(name: str, **tags: object) -> dict:
        found = [s for s in spans if s["operationName"] == name
                 and all(_tags(s).get(k) == v for k, v in tags.items())]
        assert len(found) == 1, (name, tags, found)
        return found[0]

    service = {s["spanID"]: stack.span_service(trace, s) for s in spans}
    # RabbitMQ -> Kafka -> RabbitMQ, every hop the child of the one before
    handled = one(f"process {exchange}", **{"rabbitmq.message.redelivered": True})
    nacked = next(s for s in spans if s["operationName"] == f"process {exchange}" and s is not handled)
    send_exchange = one(f"send {exchange}")
    assert parent(send_exchange)["operationName"] == "POST /orders"
    assert parent(handled) is send_exchange and parent(nacked) is send_exchange
    assert parent(one(f"send {topic}")) is handled
    assert parent(one(f"process {topic}")) is one(f"send {topic}")
    assert parent(one("send amq.default")) is one(f"process {topic}")
    assert parent(one("process amq.default")) is one("send amq.default")
    assert [service[s["spanID"]] for s in (send_exchange, handled, one(f"process {topic}"),
                                           one("process amq.default"))] == [
        "order-service", "notification-service", "points-service", "ledger-service"]

    send = _tags(send_exchange)
    assert (send["messaging.system"], send["messaging.destination.name"]) == ("rabbitmq", exchange)
    assert send["messaging.rabbitmq.destination.routing_key"] == "order.created"
    assert send["messaging.operation.type"] == "send" and send["rabbitmq.publish.confirm"] == "ack"
    process = _tags(handled)
    assert process["messaging.destination.subscription.name"] == queue
    assert process["messaging.rabbitmq.message.delivery_tag"] >= 1
    assert "rabbitmq.message.redelivered" not in _tags(nacked)
    assert [e["fields"][0]["value"] for e in nacked.get("logs", []) if e["fields"]] == ["nack"]
    assert _tags(one("send amq.default"))["messaging.destination.name"] == ""
    assert _tags(one("process amq.default"))["messaging.destination.subscription.name"] == ledger
    assert _tags(one(f"send {topic}"))["messaging.system"] == "kafka"

    # eventchain reads it back from Jaeger: exchange, queues, routing keys, the redelivery
    tree = subprocess.run(
        [stack.venv_python(), "-m", "tracing", "tree", trace_id, "--jaeger", real_stack.jaeger_url,
         "--width", "220", "--color", "never"],
        capture_output=True, text=True, timeout=60, cwd=stack.REPO_ROOT,
    )
    assert tree.returncode == 0, tree.stderr
    out = tree.stdout
    assert "4 services" in out and "4 hops" in out
    lines = out.splitlines()
    assert any(f"send {exchange}" in line and "routing key order.created" in line for line in lines)
    redelivered = [i for i, line in enumerate(lines) if f"queue {queue}" in line and "redelivered" in line]
    assert len(redelivered) == 1
    assert any(f"queue {queue}" in line and "redelivered" not in line for line in lines)
    assert "duplicate: already processed" in "\n".join(lines[redelivered[0]:redelivered[0] + 2])
    assert any(f"process {topic}" in line and "group points" in line for line in lines)
    assert any("process amq.default" in line and f"queue {ledger}" in line for line in lines)
