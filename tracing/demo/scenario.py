"""The demo's fixed story, shared by the embedded and the live run.

1. an order whose items are in stock: reserved, confirmed, an SMS sent; points-service gets the
   ``order.created`` twice (a lost offset commit) and skips the duplicate;
2. an order for something out of stock: rejected, cancelled (the compensation), the customer's SMS
   fails once and is retried, the points given for it are taken back;
3. a user registration: points and a recommendation profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ORDER_IN_STOCK = {"customer_id": "c-ada", "phone": "+44 7700 900101", "items": [{"sku": "book", "qty": 2}]}
ORDER_OUT_OF_STOCK = {
    "customer_id": "c-alan",
    "phone": "+44 7700 900102",
    "items": [{"sku": "sofa", "qty": 1}],
}
REGISTRATION = {"name": "Grace", "phone": "+44 7700 900103"}

# The SMS gateway fails the first message to this number: the cancellation SMS of order 2.
FLAKY_NUMBER: str = str(ORDER_OUT_OF_STOCK["phone"])
# points-service sees the first event of this type twice.
REDELIVERED_EVENT = "order.created"
# The order saga, as `eventchain audit --saga` takes it: an order is created, then either its stock is
# reserved or it is cancelled (the compensation).
ORDER_SAGA = "order.created:stock.reserved:order.cancelled"


@dataclass(frozen=True)
class Step:
    """One request that starts a chain."""

    title: str
    service: str
    method: str
    path: str
    body: dict[str, Any]


STEPS = (
    Step("an order that is in stock (2 x book)", "order-service", "POST", "/orders", ORDER_IN_STOCK),
    Step("an order that is out of stock (1 x sofa)", "order-service", "POST", "/orders", ORDER_OUT_OF_STOCK),
    Step("a user registers", "user-service", "POST", "/users", REGISTRATION),
)


@dataclass
class Chain:
    """One chain the demo started: the request, its answer, and the trace it became."""

    step: Step
    answer: dict[str, Any]

    @property
    def trace_id(self) -> str:
        return str(self.answer["trace_id"])

    @property
    def subject(self) -> str:
        """The order or user the chain is about."""
        return str(self.answer.get("order_id") or self.answer.get("user_id"))
