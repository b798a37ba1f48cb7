"""Arbitrary header lists never cost a message: fuzzing the extraction and the consume path.

Kafka headers are whatever the producer wrote: any keys, any bytes, keys repeated,
values up to the message size limit, thousands of them. Whatever arrives, extraction
must not raise, and every message must reach the application unchanged and in order.

- the extraction alone, for the W3C fast path and the generic propagators (many examples);
- the consume path on librdkafka's mock cluster, in each consuming style (many examples);
- the consume path on the real broker, through the managed loop (fewer, bigger examples,
  with a 1 MiB header value and 5000 headers among them).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import tracing
from tests import stack
from tests.reliability.support import record_figures
from tracing.write.propagation import Propagation

MIB = 1024 * 1024
# The client's own limit on a produce request: room for a 1 MiB header plus the rest.
MAX_MESSAGE_BYTES = 8 * MIB

# ------------------------------------------------------------------------------ strategies

HEX = "0123456789abcdef"
TRACE_KEYS = [
    "traceparent",
    "tracestate",
    "baggage",
    "Traceparent",
    "TRACEPARENT",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-b3-parentspanid",
    "uber-trace-id",
    "uberctx-tenant",
]
# confluent-kafka cuts a header key, and a str value, at the first NUL, and crashes the
# interpreter on a key that is not encodable (a lone surrogate) — both before any of our
# code runs — so keys and str values here are NUL-free UTF-8; bytes values carry anything.
NO_NUL = st.characters(codec="utf-8", exclude_characters="\x00")


def _hex(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=HEX, min_size=n, max_size=n)


@st.composite
def traceparent_like(draw) -> str:
    """Mostly well-formed traceparents, with the mutations parsers get wrong."""
    version = draw(st.sampled_from(["00", "00", "01", "cc", "ff", "0", "000", "0g", "AA"]))
    trace_id = draw(st.one_of(_hex(32), st.just("0" * 32), _hex(31), _hex(33), _hex(32).map(str.upper)))
    span_id = draw(st.one_of(_hex(16), st.just("0" * 16), _hex(15)))
    flags = draw(st.sampled_from(["00", "01", "ff", "1", "0x", "09"]))
    rest = draw(st.sampled_from(["", "", "-", "-extra", "x", " ", "\n"]))
    sep = draw(st.sampled_from(["-", "-", "-", "_", ""]))
    return sep.join([version, trace_id, span_id, flags]) + rest


@st.composite
def valid_traceparent(draw) -> str | bytes:
    nonzero = st.integers(1, 2**128 - 1)
    trace_id, span_id = draw(nonzero), draw(st.integers(1, 2**64 - 1))
    value = f"00-{trace_id:032x}-{span_id:016x}-{draw(_hex(2))}"
    return value.encode() if draw(st.booleans()) else value


@st.composite
def big_value(draw) -> bytes:
    """A value up to 1 MiB, cheap to build: a short pattern repeated."""
    pattern = draw(st.binary(min_size=1, max_size=8))
    size = draw(st.sampled_from([8193, 65_536, 512 * 1024, MIB]))
    return (pattern * (size // len(pattern) + 1))[:size]


def baggage_like() -> st.SearchStrategy[str]:
    member = st.tuples(
        st.sampled_from(["tenant", "user.email", "debug", "k", "", " ", "a b", "%", "é"]),
        st.text(max_size=20, alphabet=NO_NUL),
    ).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.lists(member, max_size=8).map(",".join)


keys = st.one_of(st.sampled_from(TRACE_KEYS), st.text(alphabet=NO_NUL, max_size=24))
values = st.one_of(
    st.none(),
    st.binary(max_size=120),
    st.text(alphabet=NO_NUL, max_size=60),
    traceparent_like(),
    traceparent_like().map(str.encode),
    baggage_like(),
    st.sampled_from(["1", "0", "d", "true", ""]),
    big_value(),
)
header = st.tuples(keys, values)


@st.composite
def many_headers(draw) -> list:
    """Thousands of headers: a few drawn ones, repeated (duplicate keys included)."""
    template = draw(
        st.lists(st.tuples(keys, st.one_of(st.none(), st.binary(max_size=16))), min_size=1, max_size=5)
    )
    count = draw(st.integers(1000, 5000))
    return [template[i % len(template)] for i in range(count)]


@st.composite
def carrying_context(draw) -> list:
    """Junk around a valid traceparent (and maybe tracestate and baggage); junk after it may replace it."""
    before = draw(st.lists(header, max_size=6))
    context = [("traceparent", draw(valid_traceparent()))]
    if draw(st.booleans()):
        context.append(("tracestate", draw(st.one_of(st.just("vendor=abc,other=1"), values))))
    if draw(st.booleans()):
        context.append(("baggage", draw(st.one_of(baggage_like(), values))))
    after = draw(st.lists(header, max_size=3))
    return before + context + after


header_lists = st.one_of(st.lists(header, max_size=12), carrying_context(), many_headers())

# ------------------------------------------------------------------------------ oracles

_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.ASCII | re.DOTALL
)


def expected_w3c(headers) -> tuple[int, int, bool] | None:
    """(trace id, span id, sampled) by the W3C rules: the LAST traceparent, strictly valid, or nothing."""
    last = None
    for key, value in headers:
        if key == "traceparent":
            last = value
    if isinstance(last, bytes):
        if len(last) > 512 or not last.isascii():
            return None
        last = last.decode()
    if not isinstance(last, str) or len(last) > 512:
        return None
    match = _TRACEPARENT.fullmatch(last)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return int(trace_id, 16), int(span_id, 16), bool(int(flags, 16) & 1)


def as_received(headers) -> list:
    """The header list as a consumer gets it back from the broker."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in headers]


# ------------------------------------------------------------------------------ figures


@dataclass
class Tally:
    examples: int = 0
    messages: int = 0
    lost: int = 0
    exceptions: int = 0
    with_valid_context: int = 0  # messages whose headers did carry a usable trace context
    most_headers: int = 0
    largest_header_bytes: int = 0
    styles: set = field(default_factory=set)

    def saw(self, headers) -> None:
        self.most_headers = max(self.most_headers, len(headers))
        for _, value in headers:
            if value is not None:
                self.largest_header_bytes = max(self.largest_header_bytes, len(value))

    def figures(self) -> dict:
        return {
            "examples": self.examples,
            "messages_tried": self.messages,
            "messages_lost": self.lost,
            "exceptions": self.exceptions,
            "with_valid_context": self.with_valid_context,
            "most_headers_on_a_message": self.most_headers,
            "largest_header_value_bytes": self.largest_header_bytes,
            **({"consuming_styles": sorted(self.styles)} if self.styles else {}),
        }


FUZZ = settings(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# ------------------------------------------------------------------------------ extraction

W3C = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
GENERIC = {
    "b3multi": B3MultiFormat(),
    "b3": B3SingleFormat(),
    "jaeger": JaegerPropagator(),
    "tracecontext+b3multi": CompositePropagator([TraceContextTextMapPropagator(), B3MultiFormat()]),
}


def test_extraction_never_raises_and_follows_the_last_valid_traceparent():
    tally = Tally()
    w3c = Propagation(W3C)
    allow_listed = Propagation(W3C, baggage_keys={"tenant"})
    generic = {name: Propagation(p, baggage_keys={"tenant"}) for name, p in GENERIC.items()}

    @settings(FUZZ, max_examples=1000)
    @given(headers=header_lists, as_dict=st.booleans())
    def check(headers, as_dict):
        tally.examples += 1
        tally.messages += 1
        tally.saw(headers)
        carrier = dict(headers) if as_dict else headers
        want = expected_w3c(list(carrier.items()) if as_dict else headers)
        tally.with_valid_context += want is not None
        for propagation in (w3c, allow_listed):
            for keep_baggage in (True, False):
                got = propagation.extract(carrier, keep_baggage=keep_baggage)
                if got is None:
                    assert want is None
                else:
                    context = got.span_context
                    assert (context.trace_id, context.span_id, context.trace_flags.sampled) == want
                    members = baggage.get_all(got.context)
                    assert len(members) <= 180
                    if propagation is allow_listed or not keep_baggage:
                        assert set(members) <= ({"tenant"} if keep_baggage else set())
        for propagation in generic.values():
            got = propagation.extract(carrier)
            if got is not None:
                assert got.span_context.is_valid
                assert set(baggage.get_all(got.context)) <= {"tenant"}
        tracing.extract_context(carrier)  # the public helper, with the global propagator

    check()
    record_figures("fuzz_extraction", tally.figures())


# ------------------------------------------------------------------------------ consume path


@st.composite
def batches(draw, max_total: int) -> list:
    """1-4 messages (value, headers), at most max_total bytes of headers in all."""
    messages = draw(
        st.lists(
            st.tuples(st.one_of(st.none(), st.binary(max_size=64)), header_lists),
            min_size=1,
            max_size=4,
        )
    )
    kept, total = [], 0
    for value, headers in messages:
        size = sum(len(k) + len(v or b"") for k, v in headers)
        if kept and total + size > max_total:
            break
        kept.append((value, headers))
        total += size
    return kept


class ConsumePath:
    """Sends batches with arbitrary headers and checks what the app gets."""

    def __init__(self, bootstrap: str, tally: Tally) -> None:
        self.bootstrap = bootstrap
        self.tally = tally
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        conf = {"bootstrap.servers": bootstrap, "message.max.bytes": MAX_MESSAGE_BYTES, "linger.ms": 0}
        self.raw = Producer(conf)
        self.traced = tracing.TracedProducer(conf, tracer_provider=self.provider)
        self.next_offset: dict[str, int] = {}  # where the next consumer of a topic starts

    def consumer(self, topic: str) -> tracing.TracedConsumer:
        consumer = tracing.TracedConsumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"fuzz-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.max.bytes": 2 * MAX_MESSAGE_BYTES,
                "receive.message.max.bytes": 3 * MAX_MESSAGE_BYTES,
            },
            tracer_provider=self.provider,
        )
        consumer.assign([TopicPartition(topic, 0, self.next_offset.get(topic, 0))])
        return consumer

    def produce(self, topic: str, batch, traced: bool) -> list:
        """Sends the batch; returns the headers each message should arrive with."""
        producer = self.traced if traced else self.raw
        expected = []
        for value, headers in batch:
            producer.produce(topic, value, partition=0, headers=list(headers))
            want = as_received(headers)
            if traced:  # the producer replaces any traceparent with its own, last
                want = [(k, v) for k, v in want if k.lower() != "traceparent"] + [("traceparent", None)]
            expected.append(want)
        assert producer.flush(30) == 0
        return expected

    def consume(self, consumer, n: int, style: str) -> list:
        got: list = []
        deadline = time.monotonic() + 60
        if style == "run":
            consumer.run(
                got.append, stop=lambda: len(got) >= n or time.monotonic() > deadline, handle_signals=False
            )
        elif style == "poll":
            while len(got) < n and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    got.append(msg)
        else:
            while len(got) < n and time.monotonic() < deadline:
                for msg in consumer.consume(n - len(got), 0.2):
                    if msg.error() is None:
                        with consumer.process(msg):
                            got.append(msg)
        return got

    def check(self, topic: str, batch, traced: bool, style: str) -> None:
        self.tally.examples += 1
        self.tally.styles.add(style)
        carried = [expected_w3c(headers) for _, headers in batch]
        for (_, headers), context in zip(batch, carried, strict=True):
            self.tally.saw(headers)
            self.tally.with_valid_context += traced or context is not None
        self.exporter.clear()
        expected_headers = self.produce(topic, batch, traced)
        consumer = self.consumer(topic)
        try:
            got = self.consume(consumer, len(batch), style)
        except Exception:
            self.tally.exceptions += 1
            raise
        finally:
            consumer.close()
        if got:
            self.next_offset[topic] = got[-1].offset() + 1
        self.tally.messages += len(batch)
        self.tally.lost += max(0, len(batch) - len(got))
        assert [m.value() for m in got] == [value for value, _ in batch]  # unchanged, in order
        for msg, want in zip(got, expected_headers, strict=True):
            headers = msg.headers() or []
            if traced:
                headers = [(k, None) if k == "traceparent" else (k, v) for k, v in headers]
            assert headers == want
        # One process span per message, whatever the headers: parented on the producer's
        # send span (junk headers never beat it), or on the last valid traceparent, or a new
        # trace. A producer's "not sampled" is honoured (parent-based sampling): no span.
        processed = [s for s in self.exporter.get_finished_spans() if s.name == f"process {topic}"]
        parents = [
            (p.parent.trace_id, p.parent.span_id, p.parent.trace_flags.sampled) if p.parent else None
            for p in processed
        ]
        if traced:
            sends = [s for s in self.exporter.get_finished_spans() if s.name == f"send {topic}"]
            assert parents == [(s.context.trace_id, s.context.span_id, True) for s in sends]
        else:
            assert parents == [c for c in carried if c is None or c[2]]


def test_the_consume_path_delivers_every_message_unchanged_on_the_mock_cluster(mock_cluster):
    tally = Tally()
    path = ConsumePath(mock_cluster, tally)

    @settings(FUZZ, max_examples=300)
    @given(
        # The mock cluster keeps at most 5 MiB per partition.
        batch=batches(max_total=3 * MIB),
        traced=st.booleans(),
        style=st.sampled_from(["run", "poll", "consume"]),
    )
    def check(batch, traced, style):
        path.check(f"fuzz-{uuid.uuid4().hex[:12]}", batch, traced, style)

    check()
    record_figures("fuzz_consume_mock_cluster", tally.figures())
    assert tally.lost == 0 and tally.exceptions == 0


def create_big_message_topic(bootstrap: str) -> str:
    """A topic that accepts messages of MAX_MESSAGE_BYTES (the broker's default is ~1 MB)."""
    name = stack.unique_topic("fuzz-headers")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(
        name, num_partitions=1, replication_factor=1, config={"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    )
    admin.create_topics([new], operation_timeout=30)[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return name
        assert time.monotonic() < deadline, f"topic {name} has no leader"
        time.sleep(0.2)


ONE_MIB_HEADER = [(None, [("x-blob", b"\xff" * MIB), ("traceparent", b"\xff" * MIB), ("traceparent", None)])]
FIVE_THOUSAND = [
    (
        b"order",
        [("baggage", b"tenant=acme"), ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")] * 2500,
    )
]


def test_the_consume_path_delivers_every_message_unchanged_on_the_real_broker(real_stack):
    tally = Tally()
    path = ConsumePath(real_stack.kafka_bootstrap, tally)
    topic = create_big_message_topic(real_stack.kafka_bootstrap)

    @settings(FUZZ, max_examples=30)
    @given(batch=batches(max_total=4 * MIB), traced=st.booleans())
    @example(batch=ONE_MIB_HEADER, traced=False)
    @example(batch=ONE_MIB_HEADER, traced=True)
    @example(batch=FIVE_THOUSAND, traced=False)
    @example(batch=FIVE_THOUSAND, traced=True)
    def check(batch, traced):
        # One topic for every example: the consumer starts where the last one stopped.
        path.check(topic, batch, traced, "run")

    check()
    record_figures("fuzz_consume_real_broker", tally.figures())
    assert tally.lost == 0 and tally.exceptions == 0
