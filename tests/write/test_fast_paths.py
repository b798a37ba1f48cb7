"""The hot-path shortcuts give exactly what the general code gives.

The fast traceparent parse, the context made current without an SDK (its SpanContext
built on first use) and the skipped children of unsampled parents are optimisations:
each is checked here against the path it shortcuts.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random

import opentelemetry.metrics._internal as metrics_internal
import opentelemetry.trace as trace_api
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing.write.operations import SendOperation
from tracing.write.propagation import Extracted, Propagation, parse_traceparent
from tracing.write.providers import confluent
from tracing.write.recipe import Telemetry
from tracing.write.records import ClientInfo

ids_alphabet = "0123456789abcdefABF-_ "
version_00 = st.builds(
    lambda trace_hex, span_hex, flags: f"00-{trace_hex}-{span_hex}-{flags}",
    st.one_of(st.just("0" * 32), st.text(alphabet=ids_alphabet, min_size=32, max_size=32)),
    st.one_of(st.just("0" * 16), st.text(alphabet=ids_alphabet, min_size=16, max_size=16)),
    st.text(alphabet=ids_alphabet, min_size=2, max_size=2),
)
other_shapes = st.sampled_from(
    [
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-more",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        "\u00e9" * 55,
        b"\xff" * 55,
    ]
)
traceparents = st.one_of(
    version_00, version_00.map(str.encode), other_shapes, st.binary(max_size=64), st.none()
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(version_00, st.booleans())
def test_the_fast_traceparent_parse_agrees_with_the_opentelemetry_propagator(text, as_bytes):
    # The API's propagator trims surrounding blanks, the W3C format has none: not compared.
    assume(text.strip() == text)
    ours = parse_traceparent(text.encode() if as_bytes else text)
    theirs = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": text}))
    expected = theirs.get_span_context()
    if not expected.is_valid:
        assert ours is None
    else:
        assert ours == SpanContext(expected.trace_id, expected.span_id, True, expected.trace_flags)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["traceparent", "tracestate", "baggage", "other"]), traceparents),
        max_size=6,
    )
)
def test_without_an_sdk_the_context_made_current_is_the_one_extraction_reads(headers):
    propagation = Propagation()
    extracted = propagation.extract(headers)
    carried = propagation.context_of(headers)
    if extracted is None:
        assert carried is None
    else:
        assert carried is not None
        assert trace.get_current_span(carried).get_span_context() == extracted.span_context
        assert baggage.get_all(carried) == baggage.get_all(extracted.context)


# Valid version-00 values, bytes as Kafka's clients give them and text as RabbitMQ's do
# (all-zero ids included).
valid_traceparents = st.builds(
    lambda trace_id, span_id, flags, text: (
        f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
        if text
        else b"00-%032x-%016x-%02x" % (trace_id, span_id, flags)
    ),
    st.one_of(st.just(0), st.integers(1, 2**128 - 1)),
    st.one_of(st.just(0), st.integers(1, 2**64 - 1)),
    st.integers(0, 255),
    st.booleans(),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["traceparent", "traceparent", "tracestate", "baggage", "other"]),
            st.one_of(valid_traceparents, traceparents),
        ),
        max_size=4,
    )
)
@example([("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
@example([("other", b"x"), ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")])
@example([("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
@example([("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u00e9")])
def test_a_plain_traceparent_read_once_gives_what_extraction_gives(headers):
    propagation = Propagation()
    extracted = propagation.extract(headers)
    plain = propagation.plain_traceparent(headers)
    if plain is not None:  # only then does a consumer take the one-read path
        assert type(plain) is bytes
        assert extracted is not None
        once = Extracted.of_plain(plain)
        assert once.span_context == extracted.span_context
        assert trace.get_current_span(once.context).get_span_context() == extracted.span_context
        assert dict(once.context).keys() == dict(extracted.context).keys()


def test_a_text_traceparent_takes_the_one_read_path_as_its_bytes_do():
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    propagation = Propagation()
    assert propagation.plain_traceparent([("traceparent", value)]) == value.encode()
    assert propagation.plain_traceparent({"traceparent": value, "tenant": "acme"}) == value.encode()
    assert propagation.plain_traceparent({"traceparent": value, "tracestate": "a=b"}) is None
    assert propagation.plain_traceparent([("traceparent", value.upper())]) is None


def test_a_lazily_read_parent_looks_like_any_remote_parent():
    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
    carried = Propagation().context_of([("traceparent", value)])
    span = trace.get_current_span(carried)
    assert isinstance(span, NonRecordingSpan) and not span.is_recording()
    assert span.get_span_context() == parse_traceparent(value)
    assert repr(span) == repr(NonRecordingSpan(parse_traceparent(value)))


def _sdk_child(provider, parent: SpanContext) -> SpanContext:
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    return provider.get_tracer("t").start_span("x", ctx).get_span_context()


def test_a_skipped_child_of_an_unsampled_parent_is_what_the_sdk_would_make():
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    telemetry = Telemetry(ClientInfo("kafka"), provider)
    telemetry.tracer()
    for remote in (True, False):
        for flags in (0x00, 0x02):
            parent = SpanContext(
                random.getrandbits(128) or 1, random.getrandbits(64) or 1, remote, TraceFlags(flags)
            )
            skipped = telemetry._unsampled_child(parent)
            made = _sdk_child(provider, parent)
            assert skipped is not None
            mine = skipped.get_span_context()
            assert (mine.trace_id, mine.trace_flags, mine.trace_state, mine.is_remote) == (
                made.trace_id,
                made.trace_flags,
                made.trace_state,
                made.is_remote,
            )
            assert mine.span_id != parent.span_id


class _CountingIds:
    """An id generator of the app's own: its ids must be the ones used."""

    def __init__(self) -> None:
        self.trace_ids: list[int] = []

    def generate_trace_id(self) -> int:
        self.trace_ids.append(random.getrandbits(128) or 1)
        return self.trace_ids[-1]

    def generate_span_id(self) -> int:
        return random.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return True


def read_back(bootstrap: str, topic: str, n: int) -> list:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "read-back", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    while len(got) < n:
        batch = consumer.consume(1000, 5)
        assert batch, f"only {len(got)} of {n} messages came back"
        got.extend(m for m in batch if m.error() is None)
    consumer.close()
    return got


def test_root_sends_under_a_ratio_sampler_keep_exactly_the_sdks_share(mock_cluster):
    """Deciding roots before the SDK must not sample twice (r x r) nor change the ids."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracing import TracedProducer

    ids = _CountingIds()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.25)), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=provider)
    n = 4000
    for _ in range(n):
        producer.produce("ratio-roots", b"x", partition=0)
        if len(producer) > 500:
            producer.poll(0)
    assert producer.flush(30) == 0
    sent = [msg.headers() for msg in read_back(mock_cluster, "ratio-roots", n)]
    recorded = exporter.get_finished_spans()
    # 4000 draws at 25 %: 1000 expected, sd ~27; twice-sampled would give ~250.
    assert 850 < len(recorded) < 1150
    assert all(s.context.trace_id in ids.trace_ids for s in recorded)  # the app's generator's ids
    sampled_flags = 0
    for headers in sent:
        (traceparent,) = [v for k, v in headers if k == "traceparent"]
        context = parse_traceparent(traceparent)
        assert context.trace_id in ids.trace_ids
        assert context.trace_flags & 0x02  # the generator's ids are random: level-2 flag, as the SDK sets it
        sampled_flags += context.trace_flags.sampled
        # Sampled iff the trace id is under the ratio's bound, as the SDK decides.
        assert context.trace_flags.sampled == ((context.trace_id & ((1 << 64) - 1)) < (1 << 62))
    assert sampled_flags == len(recorded)


def test_a_lazily_skipped_child_is_what_the_sdk_would_make():
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)))
    telemetry = Telemetry(ClientInfo("kafka"), provider)
    telemetry.tracer()
    for flags in ("00", "02"):
        tp = f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-{flags}".encode()
        parent = parse_traceparent(tp)
        made = _sdk_child(provider, parent)
        mine = telemetry.skipped_child(tp).get_span_context()
        assert (mine.trace_id, mine.trace_flags, mine.trace_state, mine.is_remote) == (
            made.trace_id,
            made.trace_flags,
            made.trace_state,
            made.is_remote,
        )
        assert mine.span_id not in (0, parent.span_id)
    sampled = f"00-{1:032x}-{1:016x}-01".encode()
    assert telemetry.skipped_child(sampled) is None  # a sampled parent goes to the SDK


def test_an_unsampled_message_flows_on_unsampled_in_its_trace(mock_cluster):
    from confluent_kafka import Producer

    from tests.write.conftest import Spans, consumer_conf, poll_n
    from tracing import TracedConsumer, TracedProducer

    spans = Spans(sampler=ParentBased(TraceIdRatioBased(1.0)))
    incoming = f"00-{0xABC:032x}-{0xDEF:016x}-00".encode()
    raw = Producer({"bootstrap.servers": mock_cluster})
    raw.produce("unsampled-in", b"x", partition=0, headers=[("traceparent", incoming)])
    raw.flush(15)
    consumer = TracedConsumer(consumer_conf(mock_cluster), tracer_provider=spans.provider)
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition("unsampled-in", 0, 0)])
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    (msg,) = poll_n(consumer, 1)
    with consumer.process(msg) as span:
        current = trace.get_current_span().get_span_context()
        assert span.get_span_context() == current
        producer.produce("unsampled-out", b"y", partition=0)
    producer.flush(15)
    consumer.close()
    assert current.trace_id == 0xABC and not current.trace_flags.sampled and not current.is_remote
    assert current.span_id != 0xDEF
    (onward,) = read_back(mock_cluster, "unsampled-out", 1)
    (tp,) = [v for k, v in onward.headers() if k == "traceparent"]
    sent = parse_traceparent(tp)
    assert sent.trace_id == 0xABC and not sent.trace_flags.sampled
    assert spans.finished() == []  # nothing recorded, exactly as the sampler decides


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    global_tracer=st.booleans(),
    global_meter=st.booleans(),
    given_tracer=st.booleans(),
    current=st.sampled_from(["none", "valid", "invalid"]),
    switch=st.sampled_from([None, "OTEL_SDK_DISABLED", "KET_PROPAGATION_ONLY"]),
)
def test_a_send_plans_the_same_with_or_without_the_no_sdk_shortcut(
    global_tracer, global_meter, given_tracer, current, switch
):
    saved = (trace_api._TRACER_PROVIDER, metrics_internal._METER_PROVIDER, os.environ.get(switch or "-"))
    try:
        trace_api._TRACER_PROVIDER = TracerProvider() if global_tracer else None
        metrics_internal._METER_PROVIDER = MeterProvider() if global_meter else None
        if switch:
            os.environ[switch] = "true"
        span = {
            "none": None,
            "valid": NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(1))),
            "invalid": trace.INVALID_SPAN,
        }[current]
        ctx = Context() if span is None else trace.set_span_in_context(span, Context())

        def plan(shortcut: bool):
            op = SendOperation(
                confluent, ClientInfo("kafka"), tracer_provider=TracerProvider() if given_tracer else None
            )
            op._quiet = op._quiet and shortcut  # without the shortcut: the general path alone
            found = op.prepare(ctx)
            if found is None:
                return None
            tracer, instruments, carried = found
            return tracer is None, instruments is None, carried

        assert plan(True) == plan(False)
    finally:
        trace_api._TRACER_PROVIDER, metrics_internal._METER_PROVIDER = saved[0], saved[1]
        if switch:
            if saved[2] is None:
                os.environ.pop(switch, None)
            else:
                os.environ[switch] = saved[2]


# -- the no-SDK poll: the context each message carries, made current on a reused Processing
class _ListConsumer:
    """A client whose poll() hands out prepared messages, then None."""

    def __init__(self, messages) -> None:
        self._messages = list(messages)

    def poll(self, timeout=-1):
        return self._messages.pop(0) if self._messages else None

    def consume(self, num_messages=1, timeout=-1):
        return []

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _no_sdk():
    """No global TracerProvider and no MeterProvider for the block (the ones set are put back)."""
    saved = (trace_api._TRACER_PROVIDER, metrics_internal._METER_PROVIDER)
    trace_api._TRACER_PROVIDER = metrics_internal._METER_PROVIDER = None
    try:
        yield
    finally:
        trace_api._TRACER_PROVIDER, metrics_internal._METER_PROVIDER = saved


def _message(offset: int, headers):
    from confluent_kafka import Message

    return Message(topic="orders", partition=0, offset=offset, value=b"v", headers=headers)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["traceparent", "traceparent", "tracestate", "other"]),
                st.one_of(valid_traceparents, traceparents),
            ),
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.sampled_from(["poll", "poll", "enter", "exit", "enter-unpolled"]), max_size=14),
)
@example(  # a poll inside a block that ends before the polled message's own block begins
    headers_per_message=[[("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]],
    steps=["enter-unpolled", "poll", "exit", "enter"],
)
def test_a_no_sdk_poll_makes_current_what_the_general_path_makes_current(headers_per_message, steps):
    from contextlib import ExitStack

    from tracing.write.clients.consumer import TracedConsumer

    with _no_sdk():

        def run(fast: bool) -> list:
            messages = [_message(i, h or None) for i, h in enumerate(headers_per_message)]
            consumer = TracedConsumer(_ListConsumer(messages), client_config={"group.id": "g"})
            consumer._spans.operation.carry_only = fast  # False: ProcessOperation.open() alone
            seen, last = [], None
            with ExitStack() as stack:
                blocks = []
                for step in steps:
                    if step == "poll":
                        nested.append(bool(blocks))
                        last = consumer.poll(0) or last
                    elif step in ("enter", "enter-unpolled") and (last is not None or step != "enter"):
                        nested.append(bool(blocks))
                        msg = last if step == "enter" else _message(99, headers_per_message[0] or None)
                        block = ExitStack()
                        block.enter_context(consumer.process(msg))
                        blocks.append(block)
                        # Inside any block, again or not: the context its message carries.
                        carried = Propagation().context_of(msg.headers())
                        if carried is not None:
                            assert trace.get_current_span().get_span_context() == (
                                trace.get_current_span(carried).get_span_context()
                            )
                    elif step == "exit" and blocks:
                        blocks.pop().close()
                    seen.append(trace.get_current_span().get_span_context())
                while blocks:
                    blocks.pop().close()
                    seen.append(trace.get_current_span().get_span_context())
                stack.callback(consumer.close)
            seen.append(trace.get_current_span().get_span_context())
            return seen

        # Each from an empty context. A poll or a block inside a block undoes a context out of
        # order (one made current before the block's), and the block's end then brings that one
        # back: contextvars' own order. Only without those is nothing left current at the end.
        nested: list[bool] = []  # per poll or block: made inside a block
        general = contextvars.Context().run(run, False)
        assert contextvars.Context().run(run, True) == general
        if not any(nested):
            assert general[-1] == trace.INVALID_SPAN_CONTEXT  # nothing left current


def test_a_no_sdk_consumer_reuses_one_processing_for_the_messages_it_polls():
    from tracing.write.clients.consumer import TracedConsumer
    from tracing.write.operations import Processing

    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-%016x-01"
    messages = [_message(i, [("traceparent", value % (i + 1))]) for i in range(5)]
    with _no_sdk():
        consumer = TracedConsumer(_ListConsumer(messages), client_config={"group.id": "g"})
        held = set()
        for i in range(5):
            msg = consumer.poll(0)
            assert trace.get_current_span().get_span_context().span_id == i + 1
            processing = consumer._spans.open[None]
            assert type(processing) is Processing and processing.msg is msg
            held.add(id(processing))
            if i == 2:
                with consumer.process(msg) as span:
                    assert span.get_span_context().span_id == 3
                assert not trace.get_current_span().get_span_context().is_valid  # the block restored it
        assert len(held) == 1  # one Processing, reused for every message
        consumer.poll(0)  # None: the last message's context is no longer current
        assert not trace.get_current_span().get_span_context().is_valid


def test_a_block_in_another_thread_keeps_its_message_context_while_the_poller_moves_on():
    import threading

    from tracing.write.clients.consumer import TracedConsumer

    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-%016x-01"
    messages = [_message(i, [("traceparent", value % (i + 1))]) for i in range(4)]
    with _no_sdk():
        consumer = TracedConsumer(_ListConsumer(messages), client_config={"group.id": "g"})
        first = consumer.poll(0)
        entered, polled_on, seen = threading.Event(), threading.Event(), {}

        def handle() -> None:  # the message handed to a worker thread
            with consumer.process(first) as span:
                seen["entered"] = trace.get_current_span().get_span_context().span_id
                seen["span"] = span.get_span_context().span_id
                entered.set()
                assert polled_on.wait(30)
                seen["after the poller moved on"] = trace.get_current_span().get_span_context().span_id
            seen["after"] = trace.get_current_span().get_span_context().span_id

        worker = threading.Thread(target=handle)
        worker.start()
        assert entered.wait(30)
        for expected in (2, 3, 4):  # the poller goes on while the worker's block is open
            consumer.poll(0)
            assert trace.get_current_span().get_span_context().span_id == expected
        polled_on.set()
        worker.join(30)
        assert seen == {"entered": 1, "span": 1, "after the poller moved on": 1, "after": 0}
        consumer.poll(0)
        with consumer.process(messages[3]):  # not the polled one: its own context all the same
            assert trace.get_current_span().get_span_context().span_id == 4
        assert not trace.get_current_span().get_span_context().is_valid


def test_unsampled_processings_under_an_sdk_are_not_kept_one_per_message():
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from tracing.write.clients.consumer import TracedConsumer

    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-%016x-00"
    messages = [_message(i, [("traceparent", value % (i + 1))]) for i in range(200)]
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    consumer = TracedConsumer(
        _ListConsumer(messages), client_config={"group.id": "g"}, tracer_provider=provider
    )
    for i in range(200):
        assert consumer.poll(0) is messages[i]
        assert trace.get_current_span().get_span_context().trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    consumer.close()
    assert len(consumer._spans._spare) <= 2


def test_a_block_that_loses_the_race_with_the_next_poll_records_on_a_live_span_of_its_own():
    """A worker's block checks the poll-opened processing is unclaimed; before it sets the claim,
    the poller's next poll ends that processing. The block must not take over the ended span
    (its events and outcome would be dropped): it opens its own. Driven step by step: the claim's
    first read of ``claimed`` in the worker waits until the poller has polled on."""
    import threading

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracing.write.clients.consumer import TracedConsumer
    from tracing.write.operations import Processing

    claimed_slot = Processing.__dict__["claimed"]
    checking, polled_on, worker_ids = threading.Event(), threading.Event(), set()

    class _Racing(Processing):
        __slots__ = ()

        @property
        def claimed(self):
            if threading.get_ident() in worker_ids and not checking.is_set():
                checking.set()  # the worker read "unclaimed" and is about to claim it
                assert polled_on.wait(30)
            return claimed_slot.__get__(self, Processing)

        @claimed.setter
        def claimed(self, value):
            claimed_slot.__set__(self, value)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-%016x-01"
    messages = [_message(i, [("traceparent", value % (i + 1))]) for i in range(3)]
    consumer = TracedConsumer(
        _ListConsumer(messages), client_config={"group.id": "g"}, tracer_provider=provider
    )
    first = consumer.poll(0)
    consumer._spans.open[None].__class__ = _Racing
    seen = {}

    def handle() -> None:
        worker_ids.add(threading.get_ident())
        with consumer.process(first) as span:
            seen["recording"] = span.is_recording()
            span.add_event("handled")
            seen["span_id"] = span.get_span_context().span_id

    worker = threading.Thread(target=handle)
    worker.start()
    assert checking.wait(30)
    assert consumer.poll(0) is messages[1]  # ends the first message's poll-opened processing
    polled_on.set()
    worker.join(30)
    assert not worker.is_alive()
    consumer.close()

    assert seen["recording"] is True
    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
    handled = spans[seen["span_id"]]
    assert [e.name for e in handled.events] == ["handled"]
    assert handled.parent is not None and handled.parent.span_id == 1  # the first message's sender
    polled = [s for s in spans.values() if s.parent is not None and s.parent.span_id == 1]
    assert len(polled) == 2  # the poll's span, ended at the next poll, and the block's own


def test_a_block_in_an_asyncio_task_leaves_the_poller_its_context_to_restore():
    """A synchronous consumer polled in a thread, the message handled in an asyncio task of that
    thread (its own copy of the context): the block cannot undo the poll's context there, and
    the poller's next poll must still do it, or the message's context stays current."""
    import asyncio

    from tracing.write.clients.consumer import TracedConsumer

    value = b"00-4bf92f3577b34da6a3ce929d0e0e4736-%016x-01"

    def scenario(sdk: bool) -> list[int]:
        messages = [_message(i, [("traceparent", value % (i + 1))]) for i in range(2)]
        consumer = TracedConsumer(
            _ListConsumer(messages),
            client_config={"group.id": "g"},
            tracer_provider=TracerProvider() if sdk else None,
        )
        seen = []
        for _ in messages:
            msg = consumer.poll(0)

            async def handle(msg=msg) -> None:
                with consumer.process(msg):
                    seen.append(trace.get_current_span().get_span_context().trace_id != 0)

            asyncio.run(handle())
            seen.append(trace.get_current_span().get_span_context().trace_id != 0)  # until the next poll
        consumer.poll(0)  # None: nothing of the messages is current any more
        seen.append(trace.get_current_span().get_span_context().trace_id != 0)
        consumer.close()
        return seen

    with _no_sdk():
        assert contextvars.Context().run(scenario, False) == [True, True, True, True, False]
    assert contextvars.Context().run(scenario, True) == [True, True, True, True, False]
