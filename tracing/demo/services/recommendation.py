"""recommendation-service (group ``recommendation``): a profile for every new user.

``user.registered`` -> an empty profile seeded with the best sellers.
"""

from __future__ import annotations

from typing import Any

from tracing.demo.events import Event
from tracing.demo.runtime import Service, annotate, parser, run

BEST_SELLERS = ("book", "lamp")


class RecommendationService(Service):
    name = "recommendation-service"
    group = "recommendation"
    consumes = ("users",)

    def __init__(self, producer: Any, **options: Any) -> None:
        super().__init__(producer, **options)
        self.profiles: dict[str, dict[str, Any]] = {}

    def handlers(self):
        return {"user.registered": self.create_profile}

    def create_profile(self, event: Event) -> None:
        user_id = event.payload["user_id"]
        self.profiles[user_id] = {"viewed": [], "recommended": list(BEST_SELLERS)}
        annotate(outcome="profile created")
        self.say(event, user_id, "profile created, seeded with " + ", ".join(BEST_SELLERS))


def main(argv: list[str] | None = None) -> int:
    return run(RecommendationService, parser(RecommendationService).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
