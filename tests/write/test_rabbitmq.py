"""RabbitMQ wrappers without a broker: hostile headers never break a consumer (fuzzed, as for
Kafka), every delivery gets exactly one process span, ``instrument()`` patches pika.

The same wrappers against the real broker: the RabbitMQ part of tests/write/test_contract.py.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("pika")
pytest.importorskip("aio_pika")

from tracing.rabbitmq import TracedBlockingChannel  # noqa: E402
from tracing.rabbitmq.aio import TracedQueue  # noqa: E402
from tracing.write.clients.rabbitmq import with_headers  # noqa: E402

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=80),
    st.binary(max_size=80),
    st.builds(Decimal, st.integers()),
    st.just(TRACEPARENT),
    st.just(TRACEPARENT.encode()),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_keys = st.one_of(
    st.sampled_from(["traceparent", "tracestate", "baggage", "eventchain", "x"]), st.text(max_size=12)
)
hostile_headers = st.one_of(
    st.none(),
    st.dictionaries(_keys, _values, max_size=6),
    st.lists(st.tuples(_keys, _values), max_size=3),  # not a table at all
    st.integers(),
)


def _pika_delivery(headers: Any) -> tuple[Any, Any, bytes]:
    method = SimpleNamespace(exchange="orders", routing_key="order.created", delivery_tag=7, redelivered=True)
    properties = SimpleNamespace(headers=headers, timestamp=1_700_000_000, message_id="m-1")
    return method, properties, b'{"id": 1}'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=hostile_headers)
def test_hostile_headers_never_break_a_pika_consumer(headers, spans):
    channel = TracedBlockingChannel(SimpleNamespace(), tracer_provider=spans.provider)
    handled = []
    with channel.process(*_pika_delivery(headers), queue="notifications"):
        handled.append(1)
    assert handled == [1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=hostile_headers)
def test_hostile_headers_never_break_an_aio_pika_consumer(headers, spans):
    queue = TracedQueue(SimpleNamespace(name="notifications"), tracer_provider=spans.provider)
    message = SimpleNamespace(
        exchange="",
        routing_key="notifications",
        delivery_tag=3,
        redelivered=False,
        body=b"x",
        timestamp=None,
        message_id=None,
        headers=headers,
    )
    handled = []
    with queue.process(message):
        handled.append(1)
    assert handled == [1]


def test_one_process_span_per_delivery_with_the_rabbitmq_attributes(spans):
    channel = TracedBlockingChannel(
        SimpleNamespace(basic_ack=lambda *a: None), tracer_provider=spans.provider
    )
    method, properties, body = _pika_delivery({"traceparent": TRACEPARENT, "tenant": "acme"})
    with channel.process(method, properties, body, queue="notifications"):
        channel.basic_ack(method.delivery_tag)
    span = spans.one("process orders")
    assert span.parent.trace_id == int(TRACEPARENT[3:35], 16) and len(span.links) == 1
    attrs = span.attributes
    assert attrs["messaging.system"] == "rabbitmq"
    assert attrs["messaging.destination.name"] == "orders"
    assert attrs["messaging.destination.subscription.name"] == "notifications"
    assert attrs["messaging.rabbitmq.destination.routing_key"] == "order.created"
    assert attrs["messaging.rabbitmq.message.delivery_tag"] == 7
    assert attrs["rabbitmq.message.redelivered"] is True
    assert attrs["messaging.message.body.size"] == len(body)
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("ack", {"messaging.rabbitmq.message.delivery_tag": 7})
    ]


def test_publish_never_touches_the_callers_properties(spans):
    import pika

    published = []
    raw = SimpleNamespace(basic_publish=lambda *args: published.append(args), _delivery_confirmation=False)
    channel = TracedBlockingChannel(raw, tracer_provider=spans.provider)
    headers = {"traceparent": "stale", "tenant": "acme"}
    properties = pika.BasicProperties(headers=headers, message_id="m-1")
    channel.basic_publish("", "notifications", b"x", properties)
    assert properties.headers is headers and headers == {"traceparent": "stale", "tenant": "acme"}
    sent = published[0][3]
    assert sent is not properties and sent.message_id == "m-1"
    assert sent.headers["tenant"] == "acme" and sent.headers["traceparent"] != "stale"
    span = spans.one("send amq.default")
    assert span.attributes["messaging.destination.name"] == ""
    assert span.attributes["messaging.rabbitmq.destination.routing_key"] == "notifications"
    assert "rabbitmq.publish.confirm" not in span.attributes  # confirms off: no answer to record


def test_instrument_traces_pika_channels_and_uninstrument_restores():
    from pika.adapters.blocking_connection import BlockingConnection

    import tracing

    original = BlockingConnection.channel
    tracing.instrument()
    try:
        assert BlockingConnection.channel is not original
        assert BlockingConnection.channel._kafka_event_tracing_original is original
    finally:
        tracing.uninstrument()
    assert BlockingConnection.channel is original


_FIELDS = st.one_of(st.none(), st.text(max_size=8), st.integers(0, 2**31))


@settings(max_examples=100, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {"content_type": _FIELDS, "message_id": _FIELDS, "priority": _FIELDS, "app_id": _FIELDS}
    ),
    before=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    after=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    subclass=st.booleans(),
)
def test_published_properties_are_the_callers_copied_with_only_the_headers_changed(
    fields, before, after, subclass
):
    import pika

    class Mine(pika.BasicProperties):
        pass

    kind = Mine if subclass else pika.BasicProperties
    original = kind(headers=before, **fields)
    kept = dict(original.__dict__)
    sent = with_headers(original, after, pika.BasicProperties)
    expected = copy.copy(original)
    expected.headers = dict(after)
    assert type(sent) is type(original) and sent is not original
    assert sent.__dict__ == expected.__dict__
    assert original.__dict__ == kept and original.headers is before  # the caller's are untouched


_AIO_TEXT = st.one_of(st.none(), st.text(max_size=6))


@settings(max_examples=150, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {
            "content_type": _AIO_TEXT,
            "content_encoding": _AIO_TEXT,
            "correlation_id": _AIO_TEXT,
            "reply_to": _AIO_TEXT,
            "message_id": _AIO_TEXT,
            "type": _AIO_TEXT,
            "user_id": _AIO_TEXT,
            "app_id": _AIO_TEXT,
            "priority": st.one_of(st.none(), st.integers(0, 9)),
            "delivery_mode": st.one_of(st.none(), st.sampled_from([1, 2])),
            "expiration": st.one_of(st.none(), st.integers(1, 10_000)),
            "timestamp": st.one_of(st.none(), st.integers(0, 2**31)),
        }
    ),
    body=st.binary(max_size=20),
    before=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    after=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    locked=st.booleans(),
    subclass=st.booleans(),
)
def test_an_aio_pika_message_is_published_as_copy_copy_makes_it_with_only_the_headers_changed(
    fields, body, before, after, locked, subclass
):
    import aio_pika

    from tracing.write.clients.rabbitmq_aio import message_with_headers

    class Mine(aio_pika.Message):
        pass

    original = (Mine if subclass else aio_pika.Message)(body, headers=before, **fields)
    if locked:
        original.lock()
    kept = (original.properties, dict(original.headers), original.body)
    sent = message_with_headers(original, after)
    expected = copy.copy(original)
    expected.headers = dict(after or {})
    # What Exchange.publish reads of a message, and what the app may read of it afterwards.
    assert type(sent) is type(expected) and sent is not original
    assert sent.body == expected.body and sent.body_size == expected.body_size
    assert sent.properties == expected.properties
    assert sent.properties.marshal() == expected.properties.marshal()  # the same bytes on the wire
    assert sent.headers == (after or {}) and sent.headers is not after
    assert not sent.locked
    # The caller's message is untouched.
    assert (original.properties, original.headers, original.body) == kept
    assert original.locked == locked
