"""notification-service (group ``notification``): tells customers about their orders by SMS.

``stock.reserved`` -> "order confirmed"; ``order.cancelled`` -> "order cancelled"; other events on
its topics are ignored. With ``--amqp`` it also consumes ``order.created`` from RabbitMQ (its
``notifications`` queue on the ``order-events`` exchange) and notes the order. A failed send marks the
message's span as an error and puts the event on ``notifications.retry``, which this service
also consumes: each SMS is retried once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from tracing.demo.events import Event
from tracing.demo.runtime import Service, annotate, parser, run

MAX_ATTEMPTS = 2


class SmsFailed(Exception):
    """The SMS provider did not accept a message."""


class SmsGateway:
    """Stands in for an SMS provider.

    ``fail_share`` of all sends fail at random; a number in ``flaky_numbers`` fails on its first
    attempt and succeeds on the next (a failure on cue, for the demo's fixed scenario).
    """

    def __init__(
        self, fail_share: float = 0.0, flaky_numbers: Iterable[str] = (), rng: random.Random | None = None
    ) -> None:
        if not 0.0 <= fail_share <= 1.0:
            raise ValueError("fail_share must be between 0 and 1")
        self.fail_share = fail_share
        self.flaky_numbers = set(flaky_numbers)
        self.rng = rng or random.Random()
        self.sent: list[tuple[str, str]] = []

    def send(self, phone: str, text: str, attempt: int) -> None:
        if phone in self.flaky_numbers and attempt == 1:
            raise SmsFailed(f"provider timed out sending to {phone}")
        if self.fail_share and self.rng.random() < self.fail_share:
            raise SmsFailed(f"provider refused the message to {phone} (simulated failure)")
        self.sent.append((phone, text))


class NotificationService(Service):
    name = "notification-service"
    group = "notification"
    consumes = ("orders", "stock", "sms_retry")

    def __init__(self, producer: Any, *, gateway: SmsGateway | None = None, **options: Any) -> None:
        super().__init__(producer, **options)
        self.gateway = gateway or SmsGateway()

    def handlers(self):
        return {"stock.reserved": self.confirmed, "order.cancelled": self.cancelled}

    def amqp_handlers(self):
        return {"order.created": self.received}

    def received(self, event: Event) -> None:
        """From RabbitMQ (``--amqp``): the order was placed. Noted, no SMS yet: the customer
        hears once the stock is reserved or the order cancelled."""
        order_id = event.payload.get("order_id", "?")
        annotate(outcome="order noted")
        self.say(event, order_id, "order received (RabbitMQ)")

    def confirmed(self, event: Event) -> None:
        self.sms(event, f"Your order {event.payload['order_id']} is confirmed.")

    def cancelled(self, event: Event) -> None:
        reason = event.payload.get("reason") or "it could not be fulfilled"
        self.sms(event, f"Sorry, your order {event.payload['order_id']} was cancelled: {reason}.")

    def sms(self, event: Event, text: str) -> None:
        order_id = event.payload.get("order_id", "?")
        phone = event.payload.get("phone") or ""
        annotate(sms_attempt=event.attempt)
        try:
            self.gateway.send(phone, text, event.attempt)
        except SmsFailed as exc:
            if event.attempt < MAX_ATTEMPTS:
                self.publish(self.topics.sms_retry, event.retry(), key=order_id)
                annotate(outcome="sms failed, retry scheduled")
                self.say(event, order_id, f"SMS failed ({exc}) -> {self.topics.sms_retry}")
            else:
                annotate(outcome="sms failed, given up")
                self.say(event, order_id, f"SMS failed again ({exc}): giving up")
            raise
        annotate(outcome="sms sent")
        retried = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        self.say(event, order_id, f"SMS sent to {phone}{retried}")


def main(argv: list[str] | None = None) -> int:
    p = parser(NotificationService)
    p.add_argument(
        "--sms-fail-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of SMS sends that fail at random, 0..1 (default 0)",
    )
    p.add_argument(
        "--sms-flaky-number",
        action="append",
        default=[],
        metavar="PHONE",
        help="a number whose first SMS always fails (repeatable)",
    )
    args = p.parse_args(argv)
    return run(NotificationService, args, gateway=SmsGateway(args.sms_fail_share, args.sms_flaky_number))


if __name__ == "__main__":
    raise SystemExit(main())
