"""Analyses: queue time, duplicates, unconsumed sends, critical path, summary counts."""

from __future__ import annotations

import dataclasses

import pytest

from tests.read.conftest import fixture
from tests.read.make_fixtures import FANOUT, MAIN
from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.load import read_file
from tracing.read.model import EventChain, Span


def _fanout(**options: bool) -> EventChain:
    return make_chain(read_file(fixture("fanout.jaeger.json")), FANOUT, **options)


def _hop(chain: EventChain, span_id: str):  # noqa: ANN202
    hop = chain.find(span_id)
    assert hop is not None, span_id
    return hop


def test_queue_time_is_from_the_end_of_the_send_to_the_start_of_processing() -> None:
    chain = _fanout()
    # send orders ends at 9 ms; billing starts at 24 ms, shipping at 21 ms, the redelivery at 70 ms
    assert _hop(chain, "a1b2c3d4e5f60002").queue_ms == pytest.approx(15.0)
    assert _hop(chain, "a1b2c3d4e5f60004").queue_ms == pytest.approx(12.0)
    assert _hop(chain, "a1b2c3d4e5f60005").queue_ms == pytest.approx(61.0)
    assert _hop(chain, "a1b2c3d4e5f60001").queue_ms is None  # a send waits in no topic


def test_queue_time_falls_back_on_the_recorded_attribute_without_the_send_span() -> None:
    spans = [s for s in read_file(fixture("fanout.jaeger.json")) if s.span_id != "a1b2c3d4e5f60001"]
    chain = make_chain(spans, FANOUT)
    assert _hop(chain, "a1b2c3d4e5f60002").queue_ms == 15  # kafka.record.queue_time_ms
    assert _hop(chain, "a1b2c3d4e5f60004").queue_ms is None


def test_a_consumer_faster_than_the_delivery_report_gets_its_recorded_wait_not_a_negative_one() -> None:
    # On a real broker the consumer may start before the producer served its delivery report.
    spans = read_file(fixture("fanout.jaeger.json"))
    send = next(s for s in spans if s.span_id == "a1b2c3d4e5f60001")
    late = dataclasses.replace(send, end_ns=send.end_ns + 30_000_000)  # report served 30 ms later
    chain = make_chain([late if s is send else s for s in spans], FANOUT)
    assert _hop(chain, "a1b2c3d4e5f60002").queue_ms == 15  # its kafka.record.queue_time_ms
    no_record = _hop(chain, "a1b2c3d4e5f60004")  # no attribute: measured from the send's start
    assert no_record.queue_ms == pytest.approx((no_record.span.start_ns - send.start_ns) / 1e6)
    assert no_record.queue_ms > 0


def test_fan_out_to_two_groups_is_two_siblings_and_not_a_duplicate() -> None:
    chain = _fanout()
    send = _hop(chain, "a1b2c3d4e5f60001")
    first_two = send.children[:2]
    assert {h.span.consumer_group for h in first_two} == {"shipping", "billing"}
    assert not any(h.duplicate for h in first_two)


def test_the_same_offset_processed_again_by_the_same_group_flags_the_later_one() -> None:
    chain = _fanout()
    assert not _hop(chain, "a1b2c3d4e5f60002").duplicate
    assert _hop(chain, "a1b2c3d4e5f60005").duplicate


def test_without_offsets_a_duplicate_is_the_same_send_processed_twice_by_a_group() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    for span in spans:
        span.attributes.pop("messaging.kafka.offset", None)
    chain = make_chain(spans, FANOUT)
    assert _hop(chain, "a1b2c3d4e5f60005").duplicate
    assert not _hop(chain, "a1b2c3d4e5f60004").duplicate


def test_without_a_consumer_group_nothing_is_called_a_duplicate() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    for span in spans:
        span.attributes.pop("messaging.consumer.group.name", None)
    chain = make_chain(spans, FANOUT)
    assert not any(h.duplicate for h in chain.hops())


def test_a_send_with_no_process_span_in_the_chain_is_unconsumed() -> None:
    chain = _fanout()
    assert _hop(chain, "a1b2c3d4e5f60003").unconsumed  # send invoices
    assert not _hop(chain, "a1b2c3d4e5f60001").unconsumed


def test_a_consumer_found_through_a_link_counts_as_consumption() -> None:
    spans = [s for s in read_file(fixture("links.otlp.jsonl")) if s.service != "ledger"]
    assert _hop(make_chain(spans, MAIN), "b000000000000002").unconsumed
    assert not _hop(make_chain(spans, MAIN, follow_links=True), "b000000000000002").unconsumed


def test_the_critical_path_leads_to_the_span_that_ends_the_chain() -> None:
    chain = _fanout()
    critical = [h.span.span_id for h in chain.hops() if h.critical]
    assert critical == ["a1b2c3d4e5f60000", "a1b2c3d4e5f60001", "a1b2c3d4e5f60005"]


def test_the_critical_path_stops_where_a_span_outlasts_its_children() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    root = next(s for s in spans if s.parent_id is None)
    root.end_ns += 500_000_000  # the request itself now ends last
    chain = make_chain(spans, FANOUT)
    assert [h.span.span_id for h in chain.hops() if h.critical] == [root.span_id]


def test_summary_counts_services_hops_duration_and_errors() -> None:
    summary = summarise(_fanout())
    assert summary.services == ["billing", "orders-api", "shipping"]
    assert summary.hops == 3
    assert summary.duration_ms == pytest.approx(74.0)
    assert summary.errors == 1
    assert (summary.root_name, summary.root_service) == ("POST /orders", "orders-api")


def test_summary_is_the_same_with_all_spans_shown() -> None:
    assert summarise(_fanout()) == summarise(_fanout(all_spans=True))


def test_stitched_links_add_services_errors_and_time_but_no_hops() -> None:
    spans = read_file(fixture("links.otlp.jsonl"))
    plain = summarise(make_chain(spans, MAIN))
    linked = summarise(make_chain(spans, MAIN, follow_links=True))
    assert (plain.hops, plain.errors, plain.services) == (1, 0, ["checkout", "ledger"])
    assert (linked.hops, linked.errors) == (1, 1)
    assert linked.services == ["archive", "audit", "checkout", "ledger", "reports"]
    assert linked.duration_ms == pytest.approx(45.0)


def test_older_conventions_count_hops_by_kind() -> None:
    spans = read_file(fixture("legacy.jaeger.json"))
    summary = summarise(make_chain(spans, spans[0].trace_id))
    assert summary.hops == 2


def test_an_error_type_attribute_alone_marks_an_error() -> None:
    span = Span("1" * 32, "1" * 16, None, "x", "internal", "svc", 0, 1, {"error.type": "TimeoutError"})
    assert span.error == "TimeoutError"
    assert dataclasses.replace(span, attributes={}).error is None
