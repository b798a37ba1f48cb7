"""points-service (group ``points``): loyalty points, idempotent by event id.

``order.created`` adds a point per whole currency unit, ``order.cancelled`` takes them back,
``user.registered`` gives a welcome bonus. An event seen before (Kafka delivers at least once) is
skipped, and its span says so: ``app.duplicate=true`` and a ``duplicate event skipped`` event.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from tracing.demo.events import Event
from tracing.demo.runtime import Service, annotate, parser, run

WELCOME_BONUS = 100


class PointsService(Service):
    name = "points-service"
    group = "points"
    consumes = ("orders", "users")

    def __init__(self, producer: Any, **options: Any) -> None:
        super().__init__(producer, **options)
        self.balance: dict[str, int] = {}
        self.awarded: dict[str, tuple[str, int]] = {}  # order id -> (customer, points)
        self.seen: set[str] = set()  # ids of the events already applied

    def handlers(self):
        return {"order.created": self.award, "order.cancelled": self.revoke, "user.registered": self.welcome}

    def handle(self, event: Event) -> None:
        if event.event_id in self.seen:
            span = trace.get_current_span()
            span.set_attribute("app.duplicate", True)
            span.add_event("duplicate event skipped", {"app.event.id": event.event_id})
            annotate(outcome="duplicate skipped")
            subject = event.payload.get("order_id") or event.payload.get("user_id") or "?"
            self.say(event, subject, f"event {event.event_id[:8]} already applied: duplicate skipped")
            return
        super().handle(event)
        self.seen.add(event.event_id)

    def award(self, event: Event) -> None:
        order = event.payload
        points = int(order.get("amount_cents", 0)) // 100
        self._add(order["customer_id"], points)
        self.awarded[order["order_id"]] = (order["customer_id"], points)
        annotate(outcome=f"+{points} points")
        self.say(event, order["order_id"], f"+{points} points for {order['customer_id']}")

    def revoke(self, event: Event) -> None:
        order_id = event.payload["order_id"]
        customer, points = self.awarded.pop(order_id, (event.payload.get("customer_id") or "?", 0))
        self._add(customer, -points)
        annotate(outcome=f"-{points} points")
        self.say(event, order_id, f"-{points} points for {customer} (order cancelled)")

    def welcome(self, event: Event) -> None:
        user_id = event.payload["user_id"]
        self._add(user_id, WELCOME_BONUS)
        annotate(outcome=f"+{WELCOME_BONUS} points")
        self.say(event, user_id, f"+{WELCOME_BONUS} welcome points")

    def _add(self, customer: str, points: int) -> None:
        self.balance[customer] = self.balance.get(customer, 0) + points


def main(argv: list[str] | None = None) -> int:
    return run(PointsService, parser(PointsService).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
