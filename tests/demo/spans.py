"""Span look-ups shared by the demo's tests (embedded and live)."""

from __future__ import annotations

from tracing.read.model import Span


def one(spans: list[Span], name: str, service: str, **attributes) -> Span:
    found = [s for s in spans if s.name == name and s.service == service
             and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{len(found)} spans {name!r} of {service} with {attributes}"
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id]
