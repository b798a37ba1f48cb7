"""Trace context in Kafka headers: replace on write, last value on read, never raise."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context, trace
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.trace import SpanContext, TraceFlags, TraceState

from tracing.write.propagation import (
    Propagation,
    extract_context,
    format_traceparent,
    inject_context,
    parse_traceparent,
    preview,
)

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
GOOD = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = b"00-11111111111111111111111111111111-2222222222222222-01"


def ctx(trace_id=TRACE_ID, span_id=SPAN_ID, sampled=True, state=None) -> SpanContext:
    return SpanContext(trace_id, span_id, False, TraceFlags(1 if sampled else 0), state)


def test_injection_adds_one_traceparent_to_no_headers():
    headers = Propagation().inject(None, ctx())
    assert headers == [("traceparent", GOOD.decode())]


def test_injection_replaces_an_existing_traceparent_and_keeps_other_headers_in_order():
    caller = [("event-type", b"order.created"), ("traceparent", OTHER), ("tenant", b"acme")]
    headers = Propagation().inject(caller, ctx())
    assert [k for k, _ in headers] == ["event-type", "tenant", "traceparent"]
    assert dict(headers)["traceparent"] == GOOD.decode()


def test_injection_never_modifies_the_callers_list_or_dict():
    as_list = [("a", b"1")]
    as_dict = {"a": b"1", "traceparent": OTHER}
    prop = Propagation()
    for _ in range(3):
        prop.inject(as_list, ctx())
        prop.inject(as_dict, ctx())
    assert as_list == [("a", b"1")]
    assert as_dict == {"a": b"1", "traceparent": OTHER}


def test_reusing_one_header_list_never_piles_up_traceparents():
    shared = [("a", b"1")]
    prop = Propagation()
    for span_id in (1, 2, 3):
        headers = prop.inject(shared, ctx(span_id=span_id))
        assert [k for k, _ in headers].count("traceparent") == 1


def test_tracestate_and_baggage_travel_with_the_context():
    state = TraceState([("vendor", "value")])
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        headers = Propagation().inject(None, ctx(state=state))
    finally:
        context.detach(token)
    extracted = Propagation().extract(headers)
    assert extracted is not None
    assert extracted.span_context.trace_state.get("vendor") == "value"
    assert baggage.get_baggage("tenant", extracted.context) == "acme"


def test_extraction_reads_the_last_traceparent():
    extracted = Propagation().extract([("traceparent", OTHER), ("traceparent", GOOD)])
    assert extracted.span_context.trace_id == TRACE_ID
    assert extracted.span_context.span_id == SPAN_ID
    assert extracted.span_context.is_remote


def test_the_last_traceparent_counts_even_when_an_earlier_one_is_valid():
    # As the README says: the last value is read, not the last valid one.
    assert Propagation().extract([("traceparent", GOOD), ("traceparent", b"garbage")]) is None


@pytest.mark.parametrize(
    "headers", [[("traceparent", GOOD)], [("traceparent", GOOD.decode())], {"traceparent": GOOD}]
)
def test_extraction_accepts_bytes_str_and_dicts(headers):
    assert Propagation().extract(headers).span_context.trace_id == TRACE_ID


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe-not-utf8-\x80",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # flags missing
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 with extra
        b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"0" * 9000,
        b"",
        None,
    ],
)
def test_bad_traceparents_are_ignored_without_an_exception(value):
    assert Propagation().extract([("traceparent", value)]) is None


def test_a_future_traceparent_version_keeps_only_the_sampled_flag():
    sc = parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-more")
    assert sc is not None and int(sc.trace_flags) == 1


def test_a_bad_traceparent_is_logged_once_per_kind_and_never_in_full(caplog):
    from tracing.write import propagation

    propagation._last_report.clear()
    secret = b"\xff" + b"s3cr3t-token-" * 30
    with caplog.at_level(logging.WARNING, logger="tracing.propagation"):
        for _ in range(50):
            Propagation().extract([("traceparent", secret)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "not ASCII" in lines[0]
    assert "s3cr3t-token-" * 3 not in lines[0]


def test_a_dropped_tracestate_or_baggage_logs_that_the_trace_goes_on(caplog):
    from tracing.write import propagation

    propagation._last_report.clear()
    headers = [("traceparent", GOOD), ("tracestate", b"k=" + b"v" * 9000), ("baggage", b"t=" + b"x" * 9000)]
    with caplog.at_level(logging.WARNING, logger="tracing.propagation"):
        extracted = Propagation().extract(headers)
    assert extracted is not None and extracted.span_context.span_id == SPAN_ID  # the parent is kept
    assert baggage.get_all(extracted.context) == {}
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines] == [
        "ignoring trace header: oversized tracestate",
        "ignoring trace header: baggage over 8192 bytes",
    ]
    assert all(line.endswith("; the trace goes on without it (same parent)") for line in lines), lines
    assert not any("new trace" in line for line in lines)


def test_preview_is_short_and_escaped():
    text = preview(b"\x00\x01abc\n" + b"x" * 500)
    assert len(text) < 80 and "\\x00" in text and "\n" not in text


def test_a_bad_tracestate_keeps_the_traceparent():
    extracted = Propagation().extract([("traceparent", GOOD), ("tracestate", b"\xff\xfe" * 5000)])
    assert extracted.span_context.span_id == SPAN_ID
    assert len(extracted.span_context.trace_state) == 0


def test_oversized_baggage_is_dropped_but_the_trace_continues():
    big = ",".join(f"k{i}={'v' * 100}" for i in range(100)).encode()  # > 8192 bytes
    extracted = Propagation().extract([("traceparent", GOOD), ("baggage", big)])
    assert extracted.span_context.trace_id == TRACE_ID
    assert baggage.get_all(extracted.context) == {}


def test_baggage_allow_list_keeps_only_listed_keys():
    prop = Propagation(baggage_keys={"tenant"})
    extracted = prop.extract([("traceparent", GOOD), ("baggage", b"tenant=acme,user.email=a%40b.c")])
    assert dict(baggage.get_all(extracted.context)) == {"tenant": "acme"}


@pytest.mark.parametrize("propagator", [B3MultiFormat(), B3SingleFormat(), JaegerPropagator()])
def test_other_propagators_round_trip(propagator):
    prop = Propagation(propagator)
    headers = prop.inject([("traceparent", OTHER)], ctx())
    extracted = prop.extract(headers)
    assert extracted.span_context.trace_id == TRACE_ID
    assert extracted.span_context.span_id == SPAN_ID


def test_generic_extraction_survives_non_utf8_values():
    prop = Propagation(B3MultiFormat())
    assert prop.extract([("x-b3-traceid", b"\xff\xfe"), ("x-b3-spanid", b"\x80")]) is None


def test_public_helpers_round_trip_the_current_context():
    tracer = trace.get_tracer("t")
    with trace.use_span(trace.NonRecordingSpan(ctx())):
        headers = inject_context([("a", b"1")])
    assert ("a", b"1") in headers
    restored = extract_context(headers)
    assert trace.get_current_span(restored).get_span_context().span_id == SPAN_ID
    assert tracer is not None


def test_format_and_parse_are_inverse():
    assert format_traceparent(parse_traceparent(GOOD)) == GOOD.decode()


header_values = st.one_of(st.none(), st.binary(max_size=600), st.text(max_size=200))
header_keys = st.one_of(
    st.sampled_from(["traceparent", "tracestate", "baggage", "b3", "uber-trace-id", ""]), st.text()
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(header_keys, header_values), max_size=30))
def test_any_header_list_is_extracted_without_an_exception(headers):
    for prop in (Propagation(), Propagation(B3MultiFormat()), Propagation(JaegerPropagator())):
        result = prop.extract(headers)
        assert result is None or result.span_context.is_valid
