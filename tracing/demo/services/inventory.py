"""inventory-service (group ``inventory``): reserves stock for each new order.

``order.created`` -> ``stock.reserved`` when every item is in stock, else ``stock.rejected``
(both to ``stock``); ``order.cancelled`` releases what was reserved.
"""

from __future__ import annotations

from typing import Any

from tracing.demo.events import Event
from tracing.demo.runtime import Service, annotate, parser, run

# What the warehouse holds when the service starts (the demo keeps it in memory).
INITIAL_STOCK = {"book": 10, "lamp": 3, "sofa": 0}


class InventoryService(Service):
    name = "inventory-service"
    group = "inventory"
    consumes = ("orders",)

    def __init__(self, producer: Any, *, stock: dict[str, int] | None = None, **options: Any) -> None:
        super().__init__(producer, **options)
        self.stock = dict(INITIAL_STOCK if stock is None else stock)
        self.reserved: dict[str, list[dict[str, Any]]] = {}

    def handlers(self):
        return {"order.created": self.reserve, "order.cancelled": self.release}

    def reserve(self, event: Event) -> None:
        order = event.payload
        order_id = order["order_id"]
        short = [i["sku"] for i in order["items"] if self.stock.get(i["sku"], 0) < i["qty"]]
        outcome = {k: order.get(k) for k in ("order_id", "customer_id", "phone", "items")}
        if short:
            reason = "out of stock: " + ", ".join(short)
            rejected = Event.new("stock.rejected", {**outcome, "reason": reason})
            self.publish(self.topics.stock, rejected, order_id)
            annotate(outcome="rejected")
            self.say(event, order_id, f"{reason} -> stock.rejected")
            return
        for item in order["items"]:
            self.stock[item["sku"]] -= item["qty"]
        self.reserved[order_id] = order["items"]
        self.publish(self.topics.stock, Event.new("stock.reserved", outcome), order_id)
        annotate(outcome="reserved")
        self.say(event, order_id, "reserved " + _list(order["items"]) + " -> stock.reserved")

    def release(self, event: Event) -> None:
        order_id = event.payload["order_id"]
        items = self.reserved.pop(order_id, [])
        for item in items:
            self.stock[item["sku"]] += item["qty"]
        annotate(outcome="released" if items else "nothing reserved")
        self.say(event, order_id, f"released {_list(items)}" if items else "nothing was reserved")


def _list(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['qty']} x {i['sku']}" for i in items)


def main(argv: list[str] | None = None) -> int:
    return run(InventoryService, parser(InventoryService).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
