"""RabbitMQ hops on the read side: exchange and queue names, routing key, delivery tag, and a
redelivery from the same queue marked as a duplicate, the way a Kafka offset processed twice is.
(The same chain from real services through the real brokers: tests/e2e/test_rabbitmq_e2e.py.)"""

from __future__ import annotations

from tests.read.conftest import plain_console
from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.model import Span, SpanRef
from tracing.read.render import render_text, to_json

TRACE = "ab" * 16
MS = 1_000_000
NOTIFY = "notification-service"


def _span(span_id: str, parent: str | None, name: str, kind: str, service: str, start: int, end: int,
          **attributes: object) -> Span:
    links = [SpanRef(TRACE, parent)] if kind == "consumer" and parent else []
    return Span(TRACE, span_id, parent, name, kind, service, start * MS, end * MS, dict(attributes),
                links=links)


def _amqp(operation: str, exchange: str, **extra: object) -> dict[str, object]:
    return {"messaging.system": "rabbitmq", "messaging.operation.type": operation,
            "messaging.destination.name": exchange, **extra}


def _spans() -> list[Span]:
    rk = {"messaging.rabbitmq.destination.routing_key": "order.created"}
    return [
        _span("0000000000000001", None, "POST /orders", "server", "order-service", 0, 10),
        _span("0000000000000002", "0000000000000001", "send orders", "producer", "order-service", 1, 3,
              **_amqp("send", "orders", **rk)),
        _span("0000000000000003", "0000000000000002", "process orders", "consumer", NOTIFY, 5, 6,
              **_amqp("process", "orders", **rk, **{
                  "messaging.destination.subscription.name": "notifications",
                  "messaging.rabbitmq.message.delivery_tag": 1})),
        _span("0000000000000004", "0000000000000002", "process orders", "consumer", NOTIFY, 8, 12,
              **_amqp("process", "orders", **rk, **{
                  "messaging.destination.subscription.name": "notifications",
                  "messaging.rabbitmq.message.delivery_tag": 2, "rabbitmq.message.redelivered": True})),
        # the same message routed to another queue is fan-out, not a duplicate
        _span("0000000000000005", "0000000000000002", "process orders", "consumer", "points-service", 6, 7,
              **_amqp("process", "orders", **rk, **{
                  "messaging.destination.subscription.name": "points",
                  "messaging.rabbitmq.message.delivery_tag": 1})),
        # the default exchange: an empty destination name, the span named after amq.default
        _span("0000000000000006", "0000000000000004", "send amq.default", "producer", "notification-service",
              9, 10, **_amqp("send", "", **{"messaging.rabbitmq.destination.routing_key": "sms"})),
    ]


def test_a_redelivery_from_the_same_queue_is_a_duplicate_and_another_queue_is_fan_out() -> None:
    chain = make_chain(_spans(), TRACE)
    flags = {h.span.span_id: h.duplicate for h in chain.hops() if h.span.role == "process"}
    assert flags == {"0000000000000003": False, "0000000000000004": True, "0000000000000005": False}
    assert summarise(chain).hops == 3


def test_the_default_exchange_is_named_amq_default_and_never_an_empty_topic() -> None:
    chain = make_chain(_spans(), TRACE)
    hop = chain.find("0000000000000006")
    assert hop is not None and hop.span.topic == "amq.default"


def test_the_tree_names_exchange_queue_routing_key_and_delivery_tag() -> None:
    chain = make_chain(_spans(), TRACE)
    console = plain_console(160)
    render_text(chain, console, summarise(chain))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "tag 2" in line)
    redelivery = lines[at]
    assert "process orders" in redelivery and "queue notifications" in redelivery
    assert "routing key order.created" in redelivery and "redelivered" in redelivery
    assert "duplicate: already processed" in lines[at + 1]  # the node's second line
    assert text.count("duplicate: already processed") == 1
    assert "waited 5.0 ms in notifications" in redelivery  # the queue it waited in, not the exchange
    assert "send orders" in text and "queue points" in text


def test_the_json_view_carries_queue_and_routing_key() -> None:
    chain = make_chain(_spans(), TRACE)
    doc = to_json(chain, summarise(chain))
    send = doc["root"]["children"][0]
    assert (send["topic"], send["queue"], send["routing_key"]) == ("orders", None, "order.created")
    queues = sorted(child["queue"] for child in send["children"])
    assert queues == ["notifications", "notifications", "points"]
