"""order-service: takes orders over HTTP and cancels them when stock is short (the saga's compensation).

``POST /orders`` ``{"customer_id": "c-1", "phone": "+44...", "items": [{"sku": "book", "qty": 2}]}``
publishes ``order.created`` to ``orders`` (and, with ``--amqp``, to RabbitMQ's ``order-events``
exchange) and answers 202 with the order id and the trace id.
``stock.rejected`` -> ``order.cancelled`` (to ``orders``); ``stock.reserved`` -> the order is confirmed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from tracing.demo.events import Event
from tracing.demo.runtime import Route, Service, annotate, parser, run

# Prices in cents.
CATALOGUE = {"book": 1250, "lamp": 4000, "sofa": 49900}


class OrderService(Service):
    name = "order-service"
    group = "order"
    consumes = ("stock",)
    publishes_amqp = True

    def __init__(self, producer: Any, **options: Any) -> None:
        super().__init__(producer, **options)
        self.status: dict[str, str] = {}

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {("POST", "/orders"): self.post_order}

    def handlers(self):
        return {"stock.reserved": self.confirm, "stock.rejected": self.cancel}

    # -- POST /orders -------------------------------------------------------------------------------
    def post_order(self, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> tuple[int, dict]:
        with self.request("POST", "/orders", headers) as span:
            items = _items(body.get("items"))
            order_id = uuid.uuid4().hex[:8]
            amount = sum(CATALOGUE[i["sku"]] * i["qty"] for i in items)
            event = Event.new(
                "order.created",
                {
                    "order_id": order_id,
                    "customer_id": str(body.get("customer_id") or "guest"),
                    "phone": str(body.get("phone") or ""),
                    "items": items,
                    "amount_cents": amount,
                },
            )
            self.publish(self.topics.orders, event, key=order_id)
            if self.amqp is not None:  # notification-service hears of it through RabbitMQ
                self.amqp.publish(event)
            self.producer.flush(10)  # answer only once the event is stored
            self.status[order_id] = "pending"
            span.set_attributes({"app.order.id": order_id, "http.response.status_code": 202})
            trace_id = format(span.get_span_context().trace_id, "032x")
            self.log.info(
                "POST /orders: order %s placed (%s, %.2f)",
                order_id,
                ", ".join(f"{i['qty']} x {i['sku']}" for i in items),
                amount / 100,
            )
        return 202, {"order_id": order_id, "event_id": event.event_id, "trace_id": trace_id}

    # -- events -------------------------------------------------------------------------------------
    def confirm(self, event: Event) -> None:
        order_id = event.payload["order_id"]
        self.status[order_id] = "confirmed"
        annotate(outcome="confirmed")
        self.say(event, order_id, "order confirmed")

    def cancel(self, event: Event) -> None:
        """Compensation: the stock could not be reserved, so the order is cancelled."""
        order_id = event.payload["order_id"]
        self.status[order_id] = "cancelled"
        reason = event.payload.get("reason", "stock rejected")
        cancelled = Event.new(
            "order.cancelled",
            {
                "order_id": order_id,
                "customer_id": event.payload.get("customer_id"),
                "phone": event.payload.get("phone"),
                "reason": reason,
            },
        )
        self.publish(self.topics.orders, cancelled, key=order_id)
        annotate(outcome="cancelled")
        self.say(event, order_id, f"order cancelled ({reason}) -> order.cancelled")


def _items(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("'items' must be a non-empty list of {sku, qty}")
    items = []
    for item in raw:
        sku = item.get("sku") if isinstance(item, dict) else None
        qty = item.get("qty", 1) if isinstance(item, dict) else None
        if sku not in CATALOGUE:
            raise ValueError(f"unknown sku {sku!r}; known: {', '.join(CATALOGUE)}")
        if not isinstance(qty, int) or qty < 1:
            raise ValueError(f"qty of {sku} must be a positive whole number")
        items.append({"sku": sku, "qty": qty})
    return items


def main(argv: list[str] | None = None) -> int:
    return run(OrderService, parser(OrderService, http_port=8080).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
