"""The fast span path (tracing.write.otel.FastSpans) makes exactly the span the SDK makes.

For the same inputs (sampler, span limits, parent, attributes, links, then what an app
does with the span: attributes, events, exceptions, status, end), the span the fast
path starts and the one ``tracer.start_span`` starts export identically, field by field.
"""

from __future__ import annotations

import random
from time import time_ns
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from tracing.write import otel


class SeededIds(IdGenerator):
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


SAMPLERS = {
    "always_on": lambda: ALWAYS_ON,
    "always_off": lambda: ALWAYS_OFF,
    "parent_on": lambda: ParentBased(ALWAYS_ON),
    "ratio": lambda: TraceIdRatioBased(0.5),
    "parent_ratio": lambda: ParentBased(TraceIdRatioBased(0.5)),
}
KEYS = ["messaging.system", "messaging.destination.name", "messaging.kafka.offset", "k", "server.port"]
values = st.one_of(st.text(max_size=40), st.integers(-(2**40), 2**40), st.booleans())


def _pipeline(sampler: str, limits: dict, seed: int):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=SAMPLERS[sampler](),
        resource=Resource.create({"service.name": "svc"}),
        id_generator=SeededIds(seed),
        span_limits=SpanLimits(**limits),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("kafka-event-tracing", "1"), exporter


def _exported(span) -> dict:
    return {
        "name": span.name,
        "context": span.context,
        "parent": span.parent,
        "kind": span.kind,
        "attributes": dict(span.attributes),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, dict(e.attributes), e.timestamp) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [(link.context, dict(link.attributes)) for link in span.links],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource.attributes,
        "scope": span.instrumentation_scope,
        "times": (span.start_time, span.end_time),
    }


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("known_event"), st.text(max_size=8), st.dictionaries(st.sampled_from(KEYS), values)
        ),
        st.tuples(
            st.just("read"), st.sampled_from(["name", "attributes", "events", "start_time"]), st.none()
        ),
        st.tuples(st.just("end"), st.none(), st.none()),
        st.tuples(st.just("attribute"), st.sampled_from(KEYS), values),
        st.tuples(st.just("event"), st.text(max_size=8), st.dictionaries(st.sampled_from(KEYS), values)),
        st.tuples(
            st.just("status"), st.sampled_from([StatusCode.OK, StatusCode.ERROR, StatusCode.UNSET]), st.text()
        ),
        st.tuples(st.just("exception"), st.text(max_size=20), st.none()),
        st.tuples(
            st.just("known"), st.sampled_from(KEYS), st.one_of(st.integers(0, 2**40), st.text(max_size=40))
        ),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    sampler=st.sampled_from(sorted(SAMPLERS)),
    limits=st.fixed_dictionaries(
        {},
        optional={
            "max_span_attributes": st.integers(0, 8),
            "max_span_attribute_length": st.integers(0, 30),
            "max_links": st.integers(0, 2),
            "max_events": st.integers(0, 3),
            "max_event_attributes": st.integers(0, 3),
        },
    ),
    attributes=st.dictionaries(st.sampled_from(KEYS), values, max_size=5),
    parent=st.sampled_from(["root", "remote_sampled", "remote_unsampled", "local_sampled", "random_flag"]),
    linked=st.booleans(),
    kind=st.sampled_from([SpanKind.PRODUCER, SpanKind.CONSUMER]),
    ops=operations,
    seed=st.integers(0, 2**32),
)
def test_the_fast_path_exports_the_span_the_sdk_exports(
    sampler, limits, attributes, parent, linked, kind, ops, seed
):
    spans = []
    for fast in (True, False):
        provider, tracer, exporter = _pipeline(sampler, limits, seed)
        if parent == "root":
            ctx = Context()
        else:
            flags = {"remote_unsampled": 0x00, "random_flag": 0x03}.get(parent, 0x01)
            parent_context = SpanContext(0xABC, 0xDEF, parent != "local_sampled", TraceFlags(flags))
            ctx = trace.set_span_in_context(NonRecordingSpan(parent_context), Context())
        links = (Link(SpanContext(0x123, 0x456, True, TraceFlags(1))),) if linked else ()
        started = paths = None
        if fast:
            paths = otel.FastSpans.install(provider, tracer)
            assert paths is not None  # this SDK version is one the fast path supports
            started = paths.start("process orders", ctx, kind, dict(attributes), links, 1_000)
        span = started or tracer.start_span("process orders", ctx, kind, dict(attributes), links, 1_000)
        if isinstance(span, NonRecordingSpan):
            spans.append(("not recorded", span.get_span_context()))
            continue
        seen = []
        for op, a, b in ops:
            if op == "known_event":  # a settlement event: the same call on either path
                with patch("opentelemetry.sdk.trace.time_ns", return_value=2_500):
                    otel.add_known_event(span, a, dict(b))
            elif op == "read":  # a property of the SDK's span, read while it runs
                value = getattr(span, a)
                seen.append(dict(value) if a == "attributes" else value)
            elif op == "end":
                span.end(4_000)
            elif op == "attribute":
                span.set_attribute(a, b)
            elif op == "known":  # what the library sets on its own spans (partition, offset)
                if paths is not None:
                    paths.set_known(span, a, b)
                else:
                    span.set_attribute(a, b)
            elif op == "event":
                span.add_event(a, b, timestamp=2_000)
            elif op == "status":
                span.set_status(Status(a, b or None) if a is StatusCode.ERROR else Status(a))
            else:
                span.record_exception(ValueError(a), timestamp=3_000)
        span.end(5_000)
        (finished,) = exporter.get_finished_spans()
        spans.append((_exported(finished), [_comparable(v) for v in seen]))
    assert spans[0] == spans[1]


def _comparable(value):
    if isinstance(value, tuple):  # events
        return [(e.name, dict(e.attributes), e.timestamp) for e in value]
    return value


def test_the_fast_path_is_taken_for_the_spans_this_library_starts():
    provider, tracer, _ = _pipeline("parent_on", {}, 1)
    paths = otel.FastSpans.install(provider, tracer)
    producer = SpanContext(0xABC, 0xDEF, True, TraceFlags(1))
    ctx = trace.set_span_in_context(NonRecordingSpan(producer), Context())
    span = paths.start(
        "process orders", ctx, SpanKind.CONSUMER, {"messaging.system": "kafka"}, (Link(producer),), 1
    )
    assert span is not None and span.is_recording() and span.parent == producer
    span.end()


def test_the_switch_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setenv("KET_FAST_SPANS", "false")
    provider, tracer, _ = _pipeline("parent_on", {}, 1)
    assert otel.FastSpans.install(provider, tracer) is None


EVENT_VALUES = st.one_of(
    st.text(max_size=40), st.integers(-(2**40), 2**40), st.booleans(), st.floats(allow_nan=False)
)


def _event_view(span) -> list[tuple]:
    return [
        (
            e.name,
            dict(e.attributes),
            e.attributes.maxlen,
            e.attributes.max_value_len,
            e.attributes.dropped,
            e.attributes._immutable,
        )
        for e in span.events
    ]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.dictionaries(st.sampled_from(KEYS), EVENT_VALUES, max_size=4), max_size=5),
    limits=st.fixed_dictionaries(
        {
            "max_event_attributes": st.sampled_from([None, 0, 1, 3]),
            "max_attribute_length": st.sampled_from([None, 0, 5, 100]),
            "max_events": st.sampled_from([None, 0, 2, 10]),
        }
    ),
    ended=st.booleans(),
)
def test_a_settlement_event_added_the_fast_way_is_the_event_the_sdk_adds(events, limits, ended):
    spans = []
    for add in (lambda s, n, a: s.add_event(n, a), otel.add_known_event):
        provider = TracerProvider(span_limits=SpanLimits(**limits))
        span = provider.get_tracer("t").start_span("process orders")
        if ended:
            span.end()
        before = time_ns()
        for index, attributes in enumerate(events):
            add(span, f"ack{index}", dict(attributes))
        after = time_ns()
        assert all(before <= e.timestamp <= after for e in span.events)
        spans.append(span)
    assert _event_view(spans[1]) == _event_view(spans[0])
    assert spans[1]._events.dropped == spans[0]._events.dropped


def test_a_settlement_event_is_added_the_fast_way_on_the_sdks_spans(monkeypatch):
    span = TracerProvider().get_tracer("t").start_span("process orders")

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("went through add_event")

    monkeypatch.setattr(type(span), "add_event", refused)
    otel.add_known_event(span, "ack", {"messaging.rabbitmq.message.delivery_tag": 7})
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("ack", {"messaging.rabbitmq.message.delivery_tag": 7})
    ]


class FixedIds(IdGenerator):
    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id

    def generate_span_id(self) -> int:
        return 0x77

    def generate_trace_id(self) -> int:
        return self.trace_id


RATES = [0.0, 0.25, 0.5, 1.0]
delegate = st.one_of(
    st.sampled_from([ALWAYS_ON, ALWAYS_OFF]), st.sampled_from(RATES).map(lambda r: TraceIdRatioBased(r))
)


def _near_bounds() -> st.SearchStrategy[int]:
    bounds = [TraceIdRatioBased.get_bound_for_rate(r) for r in RATES]
    return st.one_of(
        st.integers(1, 2**128 - 1),
        st.sampled_from(bounds).flatmap(lambda b: st.integers(max(1, b - 1), b + 1)),
        st.sampled_from(bounds).map(lambda b: (0xABCD << 64) | max(b, 1)),
    )


@settings(max_examples=400, deadline=None)
@given(
    sampler=st.one_of(
        delegate,
        st.builds(
            ParentBased,
            delegate,
            remote_parent_sampled=delegate,
            remote_parent_not_sampled=delegate,
            local_parent_sampled=delegate,
            local_parent_not_sampled=delegate,
        ),
    ),
    parent=st.sampled_from(["root", "remote", "local"]),
    sampled=st.booleans(),
    state=st.sampled_from([None, "vendor=a"]),
    trace_id=_near_bounds(),
)
def test_the_sdks_own_samplers_decide_on_the_fast_path_exactly_as_they_do(
    sampler, parent, sampled, state, trace_id
):
    """The decisions of ALWAYS_ON/OFF, TraceIdRatioBased and ParentBased over them are read from
    the sampler once (otel.sampling_rules) and made without calling it: same decision, flags and
    trace state as the SDK's, at the ratio's very bound too."""
    from opentelemetry.trace import TraceState

    results = []
    for fast in (True, False):
        provider = TracerProvider(sampler=sampler, id_generator=FixedIds(trace_id))
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        tracer = provider.get_tracer("kafka-event-tracing", "1")
        if parent == "root":
            ctx = Context()
        else:
            trace_state = TraceState.from_header([state]) if state else None
            parent_context = SpanContext(
                trace_id, 0xDEF, parent == "remote", TraceFlags(int(sampled)), trace_state
            )
            ctx = trace.set_span_in_context(NonRecordingSpan(parent_context), Context())
        if fast:
            paths = otel.FastSpans.install(provider, tracer)
            span = paths.start("send orders", ctx, SpanKind.PRODUCER, {"k": 1}, (), 1_000)
        else:
            span = tracer.start_span("send orders", ctx, SpanKind.PRODUCER, {"k": 1}, (), 1_000)
        results.append((span.is_recording(), span.get_span_context()))
        span.end(2_000)
    assert results[0] == results[1]


def test_only_the_sdks_own_samplers_are_read_ahead():
    class Custom(TraceIdRatioBased):  # a subclass may decide otherwise: it is asked each time
        pass

    assert otel.sampling_rules(ParentBased(ALWAYS_ON))[0] == (True, True)
    assert otel.sampling_rules(ParentBased(Custom(0.5)))[0] is None
    assert otel.sampling_rules(Custom(0.5)) == (None,) * 5
    assert otel.sampling_rules(TraceIdRatioBased(0.5)) == (TraceIdRatioBased.get_bound_for_rate(0.5),) * 5


def test_spans_wait_as_fields_only_while_every_processor_is_a_plain_sdk_one():
    """With the SDK's Batch or Simple processors only, a span is held as its fields until it ends
    (PendingSpan); a processor of the app's own sees a real SDK span at on_start, from the first
    span started after it was added."""
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    provider, tracer, exporter = _pipeline("parent_on", {}, 3)
    paths = otel.FastSpans.install(provider, tracer)
    first = paths.start("send orders", Context(), SpanKind.PRODUCER, {"k": 1}, (), 1)
    assert isinstance(first, otel.PendingSpan) and first.is_recording()

    started: list = []
    ended: list = []

    class Watching(SpanProcessor):
        def on_start(self, span, parent_context=None):
            started.append(span)

        def on_end(self, span):
            ended.append(span)

    provider.add_span_processor(Watching())
    second = paths.start("send orders", Context(), SpanKind.PRODUCER, {"k": 2}, (), 1)
    assert not isinstance(second, otel.PendingSpan) and started == [second]
    first.end(5)
    second.end(6)
    assert [type(s) for s in ended] == [ReadableSpan, ReadableSpan]
    assert [dict(s.attributes) for s in exporter.get_finished_spans()] == [{"k": 1}, {"k": 2}]
    assert not first.is_recording()


def test_a_pending_span_ended_twice_warns_as_the_sdk_does(caplog):
    provider, tracer, exporter = _pipeline("parent_on", {}, 4)
    span = otel.FastSpans.install(provider, tracer).start(
        "send orders", Context(), SpanKind.PRODUCER, {}, (), 1
    )
    span.end(2)
    span.end(3)
    span.set_attribute("late", 1)
    assert len(exporter.get_finished_spans()) == 1
    assert (
        exporter.get_finished_spans()[0].end_time == 2
        and "late" not in exporter.get_finished_spans()[0].attributes
    )
    assert "Calling end() on an ended span." in caplog.text
