"""user-service: registers users over HTTP.

``POST /users`` ``{"name": "Grace", "phone": "+44..."}`` publishes ``user.registered`` to ``users``
and answers 201 with the user id and the trace id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from tracing.demo.events import Event
from tracing.demo.runtime import Route, Service, parser, run


class UserService(Service):
    name = "user-service"

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {("POST", "/users"): self.post_user}

    def post_user(self, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> tuple[int, dict]:
        with self.request("POST", "/users", headers) as span:
            name = str(body.get("name") or "").strip()
            if not name:
                raise ValueError("'name' is required")
            user_id = "u-" + uuid.uuid4().hex[:8]
            event = Event.new(
                "user.registered", {"user_id": user_id, "name": name, "phone": str(body.get("phone") or "")}
            )
            self.publish(self.topics.users, event, key=user_id)
            self.producer.flush(10)
            span.set_attributes({"app.user.id": user_id, "http.response.status_code": 201})
            trace_id = format(span.get_span_context().trace_id, "032x")
            self.log.info("POST /users: %s registered as %s", name, user_id)
        return 201, {"user_id": user_id, "event_id": event.event_id, "trace_id": trace_id}


def main(argv: list[str] | None = None) -> int:
    return run(UserService, parser(UserService, http_port=8081).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
