"""The fast span path (tracing.write.otel.FastSpans) makes exactly the span the SDK makes.

For the same inputs (sampler, span limits, parent, attributes, links, then what an app
does with the span: attributes, events, exceptions, status, end), the span the fast
path starts and the one ``tracer.start_span`` starts export identically, field by field.
"""

from __future__ import annotations

import random
from time import time_ns

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
        for op, a, b in ops:
            if op == "attribute":
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
        spans.append(_exported(finished))
    assert spans[0] == spans[1]


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
