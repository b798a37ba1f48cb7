"""The demo's story on the mock cluster, checked span by span (the trees `make demo` prints)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from tests.demo.spans import children, one
from tracing.demo import scenario
from tracing.demo.embedded import EmbeddedRun
from tracing.read import Span, from_readable_spans, make_chain

IN_STOCK, OUT_OF_STOCK, REGISTRATION = scenario.STEPS


class Story:
    def __init__(self, demo: EmbeddedRun, chains: list[scenario.Chain]) -> None:
        self.demo = demo
        self.chains = {chain.step.title: chain for chain in chains}
        self.spans = from_readable_spans(demo.spans())

    def trace(self, step: scenario.Step) -> list[Span]:
        trace_id = self.chains[step.title].trace_id
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    demo = EmbeddedRun(log_stream=io.StringIO())
    try:
        demo.warm_up(0.5)
        yield Story(demo, [demo.play(step) for step in scenario.STEPS])
    finally:
        demo.close()


def test_every_service_records_spans_under_its_own_name(story):
    assert {s.service for s in story.spans} == {
        "order-service", "inventory-service", "notification-service", "points-service",
        "user-service", "recommendation-service",
    }


def test_each_request_is_one_trace_holding_every_span_about_its_order_or_user(story):
    for chain in story.chains.values():
        key = "app.user.id" if chain.step is REGISTRATION else "app.order.id"
        about = {s.trace_id for s in story.spans if s.attributes.get(key) == chain.subject}
        assert about == {chain.trace_id}, chain.step.title


def test_an_order_in_stock_is_reserved_and_confirmed_across_four_services(story):
    spans = story.trace(IN_STOCK)
    assert {s.service for s in spans} == {"order-service", "inventory-service", "notification-service",
                                          "points-service"}
    reserve = one(spans, "process orders", "inventory-service", **{"app.outcome": "reserved"})
    (stock_sent,) = children(spans, reserve)
    confirmations = {s.service: s.attributes.get("app.outcome") for s in children(spans, stock_sent)}
    assert confirmations == {"order-service": "confirmed", "notification-service": "sms sent"}


def test_an_order_out_of_stock_is_cancelled_by_compensation_in_the_same_trace(story):
    spans = story.trace(OUT_OF_STOCK)
    rejected = one(spans, "process stock", "order-service", **{"app.event.type": "stock.rejected"})
    (cancellation,) = children(spans, rejected)
    assert cancellation.name == "send orders" and cancellation.service == "order-service"
    handled = {s.service: s.attributes.get("app.outcome") for s in children(spans, cancellation)}
    assert handled == {"inventory-service": "nothing reserved",
                       "notification-service": "sms failed, retry scheduled",
                       "points-service": "-499 points"}


def test_a_failed_sms_marks_its_span_and_its_retry_continues_the_trace(story):
    spans = story.trace(OUT_OF_STOCK)
    failed = one(spans, "process orders", "notification-service", **{"app.event.type": "order.cancelled"})
    assert failed.error is not None and "SmsFailed" in failed.error
    (retry_sent,) = children(spans, failed)
    assert retry_sent.name == "send notifications.retry"
    (retried,) = children(spans, retry_sent)
    assert retried.name == "process notifications.retry" and retried.error is None
    assert retried.attributes["app.sms.attempt"] == 2
    assert retried.attributes["app.outcome"] == "sms sent"


def test_a_redelivered_event_is_skipped_by_points_and_flagged_as_duplicate(story):
    spans = story.trace(IN_STOCK)
    points = sorted((s for s in spans if s.service == "points-service"), key=lambda s: s.start_ns)
    first, again = points
    assert (first.offset, first.partition) == (again.offset, again.partition)
    assert [e.name for e in first.events] == ["offset not committed: the message will be delivered again"]
    assert again.attributes["app.duplicate"] is True
    assert [e.name for e in again.events] == ["duplicate event skipped"]
    chain = make_chain(spans, story.chains[IN_STOCK.title].trace_id)
    assert [h.span.span_id for h in chain.hops() if h.duplicate] == [again.span_id]
    assert story.demo.service("points-service").balance["c-ada"] == 25  # counted once


def test_a_registration_reaches_points_and_recommendation(story):
    spans = story.trace(REGISTRATION)
    sent = one(spans, "send users", "user-service")
    assert {s.service for s in children(spans, sent)} == {"points-service", "recommendation-service"}
