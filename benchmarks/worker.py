"""One measurement in a fresh interpreter: ``python -m benchmarks.worker '<json spec>'``.

The spec names the client library (``raw``, ``ours``, ``contrib``, ``floor``: the SDK
work of this library's spans alone, see :func:`floor_producer`; ``aio-raw`` and
``aio-ours`` for the asyncio clients, see :mod:`benchmarks.worker_aio`; ``ours-metrics``
and ``ours-metrics-sdk``: ours with the flow metrics on, see :func:`setup_metrics`), the
sampling (``none`` = no SDK configured, or a ratio), the exporter (``discard``, or ``otlp``:
ours through the exporter ``configure()`` builds, contrib and the floor through the SDK's
gRPC exporter) and the broker. The worker prints one JSON line (the last line of stdout) with the
throughput of each phase:

- ``produce``: N root sends (no ambient span), ``poll(0)`` every 1000, then ``flush()``;
- ``poll``: consume N pre-produced messages in a plain ``poll()`` loop (drop-in style);
- ``process``: the same messages again, each handled inside ``process(msg)`` (ours) or
  simply handled after ``poll()`` (raw, floor, contrib: they have no such call).

A phase shorter than ``MIN_PHASE_S`` is repeated with a fresh client (at most
``MAX_REPEATS`` times) and its median taken: the raw client needs only ~50 ms for N.

The input messages are pre-produced untimed WITH a ``traceparent`` header, as traced
producers would send them; its sampled flag is set with the run's sampling ratio.
Consumers get the first message untimed and then wait until librdkafka has prefetched
the rest, so the timed loop measures the client side, not the fetch. Every timed phase
includes ``force_flush()`` of the span processor: the export work belongs to the cost.

Runs under this project's venv and under the contrib venv (no ``tracing`` import
unless the library is ``ours``). Must stay compatible with both.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

KEYS = [f"id-{i:02d}".encode() for i in range(64)]
VALUE = bytes(range(100))
PARTITIONS = 4
POLL_EVERY = 1000
PREFETCH_WAIT_S = {"mock": 0.5, "real": 1.5}
IDLE_LIMIT_S = 20.0
MIN_PHASE_S = 1.0
MAX_REPEATS = 10


# ----------------------------------------------------------------------------- SDK
class _Counting:
    """A span exporter that counts what it is given and passes it on (or discards it).

    ``cpu_s`` is the CPU time the inner exporter's ``export()`` took in the exporter's
    thread (the BatchSpanProcessor's worker): encoding, serialising and sending."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.count = 0
        self.cpu_s = 0.0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        if self.inner is None:
            return SpanExportResult.SUCCESS
        started = time.thread_time()
        try:
            return self.inner.export(spans)
        finally:
            self.cpu_s += time.thread_time() - started

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def setup_sdk(spec: dict[str, Any]) -> tuple[Any, _Counting | None]:
    """Configure the global provider as the spec says; (provider, counting exporter) or (None, None)."""
    sampling = spec["sampling"]
    if sampling == "none":
        return None, None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    ratio = float(sampling)
    sampler = ParentBased(ALWAYS_ON) if ratio >= 1.0 else ParentBased(TraceIdRatioBased(ratio))
    if spec["exporter"] == "otlp" and spec["library"].startswith("ours"):
        # The exporter configure() builds (KET_FAST_OTLP decides its encoder).
        from tracing.sdk import otlp_exporter

        exporter = _Counting(otlp_exporter(spec["otlp_endpoint"], "grpc"))
    elif spec["exporter"] == "otlp":
        # contrib and the SDK floor: the SDK's standard gRPC exporter, as its users build it.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = spec["otlp_endpoint"]
        exporter = _Counting(OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://")))
    else:
        exporter = _Counting()
    resource = Resource.create({"service.name": f"bench-{spec['library']}"})
    provider = TracerProvider(resource=resource, sampler=sampler)
    if spec["exporter"] == "otlp":
        provider.add_span_processor(BatchSpanProcessor(exporter))  # the SDK's defaults, as deployed
    else:
        # Discarding: a queue that holds a whole phase, so that no variant is flattered by the
        # spans its processor drops when the export thread falls behind.
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 20))
    trace.set_tracer_provider(provider)
    return provider, exporter


# ----------------------------------------------------------------------------- SDK floor
# The best any wrapper could do: the SDK work for the very spans this library records (same
# name, kind, attributes, parent and link), with no wrapper logic around it.
def _common_attributes(bootstrap: str) -> dict[str, Any]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return {"messaging.system": "kafka", "server.address": host, "server.port": int(port)}


def floor_producer(conf: dict[str, Any]) -> Any:
    """A raw producer whose ``produce()`` starts and ends one send span around the raw call.

    Partition and offset are constants set before ``end()``: no delivery callback and no
    header injection, so only the SDK's share of a traced send is counted.
    """
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    raw = Producer(conf)
    start_span, kind = trace.get_tracer("bench-floor").start_span, SpanKind.PRODUCER
    common = _common_attributes(conf["bootstrap.servers"])
    recipes: dict[str, tuple[str, dict[str, Any]]] = {}  # per topic: span name, attributes

    def produce(topic: str, value: bytes, key: bytes | None = None) -> None:
        recipe = recipes.get(topic)
        if recipe is None:
            recipe = recipes[topic] = (
                "send " + topic,
                {
                    **common,
                    "messaging.operation.name": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                },
            )
        name, attrs = recipe[0], recipe[1].copy()
        if key is not None:
            attrs["messaging.kafka.message.key"] = key.decode()
        span = start_span(name, None, kind, attrs)
        # A BufferError leaves this span unended (never exported); the retry starts another.
        raw.produce(topic, value, key=key)
        span.set_attribute("messaging.destination.partition.id", "0")
        span.set_attribute("messaging.kafka.offset", 0)
        span.end()

    return SimpleNamespace(produce=produce, poll=raw.poll, flush=raw.flush)


def floor_consumer(raw: Consumer, conf: dict[str, Any]) -> Any:
    """A raw consumer whose ``poll()`` ends the previous message's process span and starts
    one for the message it returns, as this library's drop-in ``poll()`` does.

    Every span is a child of (and links to) one fixed remote sampled parent instead of the
    message's ``traceparent``: the header parsing is wrapper work. No context is attached.
    """
    from opentelemetry import trace
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

    start_span, kind = trace.get_tracer("bench-floor").start_span, SpanKind.CONSUMER
    parent = SpanContext(
        random.getrandbits(128) | 1,
        random.getrandbits(64) | 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    parent_ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    common = _common_attributes(conf["bootstrap.servers"])
    recipes: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}  # per partition
    span: Any = None  # the span of the message poll() returned last

    def poll(timeout: float = -1) -> Any:
        nonlocal span
        if span is not None:
            span.end()
            span = None
        msg = raw.poll(timeout)
        if msg is None or msg.error() is not None:
            return msg
        topic, partition = msg.topic(), msg.partition()
        recipe = recipes.get((topic, partition))
        if recipe is None:
            recipe = recipes[(topic, partition)] = (
                "process " + topic,
                {
                    **common,
                    "messaging.operation.name": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                    "messaging.consumer.group.name": conf["group.id"],
                },
            )
        name, attrs = recipe[0], recipe[1].copy()
        attrs["messaging.kafka.offset"] = msg.offset()
        attrs["messaging.kafka.message.key"] = msg.key().decode()
        attrs["messaging.message.body.size"] = len(msg.value())
        now = time.time_ns()
        attrs["kafka.record.queue_time_ms"] = now // 1_000_000 - msg.timestamp()[1]
        span = start_span(name, parent_ctx, kind, attrs, (Link(parent),), now)
        return msg

    def close() -> None:
        nonlocal span
        if span is not None:
            span.end()
            span = None
        raw.close()

    return SimpleNamespace(poll=poll, close=close)


def carry_floor_consumer(raw: Consumer) -> Any:
    """No SDK: a raw consumer whose ``poll()`` makes the context the polled message carries
    current until the next poll, the least any wrapper must do for a service without an SDK.

    It finds the ``traceparent`` header, checks it (version 00, lower-case hex digits, ids not
    all zero: one byte-class translation and a few compares), and makes a context current that
    holds the remote span, whose span context is built only when read. Nothing is checked
    beyond that (no other propagator, no ``tracestate``, no baggage, no containment).
    """
    from opentelemetry import context as context_api
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.propagation import _SPAN_KEY

    byte_class = bytes(
        ord("h") if c in b"0123456789abcdef" else ord("-") if c == ord("-") else ord("!") for c in range(256)
    )
    shape = b"hh-" + b"h" * 32 + b"-" + b"h" * 16 + b"-hh"
    zero_trace, zero_span = b"0" * 32, b"0" * 16

    class RemoteSpan(NonRecordingSpan):
        def __init__(self, traceparent: bytes) -> None:  # noqa: D107 - the span context waits
            self._traceparent = traceparent
            self._built: SpanContext | None = None

        @property
        def _context(self) -> SpanContext:  # type: ignore[override]
            return self.get_span_context()

        def get_span_context(self) -> SpanContext:
            if self._built is None:
                tp = self._traceparent
                self._built = SpanContext(
                    int(tp[3:35], 16), int(tp[36:52], 16), True, TraceFlags(int(tp[53:55], 16))
                )
            return self._built

    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    attach = var.set if var is not None else context_api.attach
    token: Any = None

    def poll(timeout: float = -1) -> Any:
        nonlocal token
        if token is not None:
            try:
                token.var.reset(token) if var is not None else context_api.detach(token)
            except ValueError:
                pass
            token = None
        msg = raw.poll(timeout)
        if msg is None or msg.error() is not None:
            return msg
        tp = None
        for key, value in msg.headers() or ():
            if key == "traceparent":
                tp = value
        if (
            type(tp) is bytes
            and len(tp) == 55
            and tp.translate(byte_class) == shape
            and tp[0] == 48 == tp[1]
            and tp[3:35] != zero_trace
            and tp[36:52] != zero_span
        ):
            token = attach(context_api.Context({_SPAN_KEY: RemoteSpan(tp)}))
        return msg

    return SimpleNamespace(poll=poll, close=raw.close)


# ----------------------------------------------------------------------------- clients
def make_producer(library: str, conf: dict[str, Any]) -> Any:
    if library == "raw":
        return Producer(conf)
    if library == "ours":
        from tracing import TracedProducer

        return TracedProducer(conf)
    if library == "floor":
        return floor_producer(conf)
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    return ConfluentKafkaInstrumentor.instrument_producer(Producer(conf))


def make_consumer(library: str, conf: dict[str, Any], topic: str, sdk: bool = True) -> Any:
    raw = Consumer(conf)
    # assign() before wrapping: the contrib proxy cannot assign (it never initialises
    # its Consumer base class); no group join, so every variant starts alike.
    raw.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    if library == "raw":
        return raw
    if library == "ours":
        from tracing import TracedConsumer

        return TracedConsumer(raw, client_config=conf)
    if library == "floor":
        return floor_consumer(raw, conf) if sdk else carry_floor_consumer(raw)
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    return ConfluentKafkaInstrumentor.instrument_consumer(raw)


# ----------------------------------------------------------------------------- broker
class Broker:
    """The mock cluster owned by this process, or the real broker (topics made and removed here)."""

    def __init__(self, kind: str, bootstrap: str | None) -> None:
        self.kind = kind
        self._owner = None
        self._topics: list[str] = []
        if kind == "mock":
            if bootstrap:
                self.bootstrap = bootstrap  # a cluster owned by another process
            else:
                self._owner = Producer({"test.mock.num.brokers": 1, "log_level": 0})
                broker = next(iter(self._owner.list_topics(timeout=10).brokers.values()))
                self.bootstrap = f"{broker.host}:{broker.port}"
        else:
            self.bootstrap = bootstrap or "127.0.0.1:19092"

    def topic(self, tag: str) -> str:
        name = f"bench-{tag}-{uuid.uuid4().hex[:10]}"
        if self.kind == "real":
            from confluent_kafka.admin import AdminClient, NewTopic

            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            futures = admin.create_topics([NewTopic(name, PARTITIONS, 1)], operation_timeout=15)
            futures[name].result(timeout=30)
            self._topics.append(name)
        # The mock cluster creates topics on first use with 4 partitions (PARTITIONS).
        return name

    def cleanup(self) -> None:
        if self.kind == "real" and self._topics:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            try:
                for future in admin.delete_topics(self._topics, operation_timeout=15).values():
                    future.result(timeout=30)
            except Exception as exc:  # leftovers are harmless; say so and go on
                print(f"could not delete benchmark topics: {exc}", file=sys.stderr)


def traceparents(n: int, ratio: float, seed: int) -> list[bytes]:
    """N random valid traceparents; the sampled flag set with probability ``ratio``."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        flags = 1 if rnd.random() < ratio else 0
        out.append(
            f"00-{rnd.getrandbits(128) or 1:032x}-{rnd.getrandbits(64) or 1:016x}-{flags:02x}".encode()
        )
    return out


def preproduce(bootstrap: str, topic: str, n: int, ratio: float, seed: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, tp in enumerate(traceparents(n, ratio, seed)):
        _produce(producer.produce, producer.poll, topic, KEYS[i & 63], [("traceparent", tp)])
        if i % POLL_EVERY == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("pre-produce did not complete")


def _produce(produce: Any, poll: Any, topic: str, key: bytes, headers: Any = None) -> None:
    while True:
        try:
            if headers is None:
                produce(topic, VALUE, key=key)
            else:
                produce(topic, VALUE, key=key, headers=headers)
            return
        except BufferError:  # local queue full: serve delivery reports, as an app would
            poll(0.05)


# ----------------------------------------------------------------------------- phases
def phase_produce(library: str, bootstrap: str, topic: str, n: int, provider: Any) -> float:
    producer = make_producer(library, {"bootstrap.servers": bootstrap})
    produce, poll = producer.produce, producer.poll
    produce(topic, VALUE, key=KEYS[0])  # warm-up: metadata, connection, per-topic caches
    producer.flush(30)
    keys = KEYS
    start = time.perf_counter()
    for i in range(n):
        try:
            produce(topic, VALUE, key=keys[i & 63])
        except BufferError:
            _produce(produce, poll, topic, keys[i & 63])
        if i % POLL_EVERY == 999:
            poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("produce: messages left undelivered")
    if provider is not None:
        provider.force_flush()
    return time.perf_counter() - start


def _handle(msg: Any) -> int:
    """The application's work per message: deliberately trivial."""
    return len(msg.value())


def phase_consume(
    library: str, broker: Broker, topic: str, n: int, provider: Any, style: str, group: str
) -> float:
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = make_consumer(library, conf, topic, sdk=provider is not None)
    poll = consumer.poll
    first = _poll_one(poll)
    _handle(first)
    time.sleep(PREFETCH_WAIT_S[broker.kind])  # let librdkafka prefetch the rest
    handle = _handle
    got = 1
    idle_since = None
    start = time.perf_counter()
    if style == "process" and library == "ours":
        process = consumer.process
        while got < n:
            msg = poll(1.0)
            if msg is None or msg.error() is not None:
                idle_since = _idle(idle_since, msg)
                continue
            with process(msg):
                handle(msg)
            got += 1
    else:
        while got < n:
            msg = poll(1.0)
            if msg is None or msg.error() is not None:
                idle_since = _idle(idle_since, msg)
                continue
            handle(msg)
            got += 1
    if provider is not None:
        provider.force_flush()
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def _poll_one(poll: Any) -> Any:
    deadline = time.monotonic() + IDLE_LIMIT_S * 2
    while time.monotonic() < deadline:
        msg = poll(1.0)
        if msg is not None and msg.error() is None:
            return msg
    raise RuntimeError("consume: no message arrived")


def _idle(since: float | None, msg: Any) -> float | None:
    if msg is not None:
        if msg.error() is not None and msg.error().fatal():
            raise KafkaException(msg.error())
        return since
    now = time.monotonic()
    if since is None:
        return now
    if now - since > IDLE_LIMIT_S:
        raise RuntimeError("consume: the broker stopped delivering messages")
    return since


# ----------------------------------------------------------------------------- main
# The flow metrics' collection runs every second (configure() reads the interval from
# OTEL_METRIC_EXPORT_INTERVAL, default 60 s), so each timed phase pays for some exports too.
METRIC_EXPORT_INTERVAL_MS = "1000"


def setup_metrics(spec: dict[str, Any]) -> Any:
    """For ``ours-metrics`` and ``ours-metrics-sdk``: the global MeterProvider exactly as
    ``tracing.configure()`` builds it (``tracing.sdk.configure_metrics``: the flow metrics'
    histograms aggregated in place and merged at export), with an exporter that discards.
    ``ours-metrics-sdk``: the same with ``KET_PREAGGREGATE=false`` (every value through the
    SDK's ``Histogram.record()``)."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
    from opentelemetry.sdk.resources import Resource

    from tracing.sdk import configure_metrics

    class Discard(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = METRIC_EXPORT_INTERVAL_MS
    if spec["library"] == "ours-metrics-sdk":
        os.environ["KET_PREAGGREGATE"] = "false"
    resource = Resource.create({"service.name": f"bench-{spec['library']}"})
    return configure_metrics(resource, exporter=Discard(), set_global=True)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    library, n = spec["library"], int(spec["n"])
    if library in ("ours-metrics", "ours-metrics-sdk"):
        setup_metrics(spec)
        library = "ours"  # the same clients; the global MeterProvider turns the metrics on
    provider, exporter = setup_sdk(spec)
    ratio = 1.0 if spec["sampling"] == "none" else float(spec["sampling"])
    broker = Broker(spec["broker"], spec.get("bootstrap"))
    result: dict[str, Any] = {
        "spec": spec,
        "seconds": {},
        "repeats": {},
        "msgs_per_s": {},
        "spans_exported": {},
        "export_cpu_us_per_span": {},
    }
    try:
        phases = spec.get("phases", ["produce", "poll", "process"])
        topic_in = None
        if "poll" in phases or "process" in phases:
            topic_in = broker.topic("in")
            preproduce(broker.bootstrap, topic_in, n, ratio, int(spec.get("seed", 1)))
        topic_out = broker.topic("out") if "produce" in phases else None
        for phase in phases:
            before = exporter.count if exporter is not None else 0
            cpu_before = exporter.cpu_s if exporter is not None else 0.0
            # Fast variants finish N messages in a few ms, where one scheduler hiccup
            # shows: they are repeated (fresh client each time) up to MIN_PHASE_S of
            # timed work and the median taken.
            runs: list[float] = []
            lags: list[float] = []
            min_s = float(spec.get("min_phase_s", MIN_PHASE_S))
            while not runs or (sum(runs) < min_s and len(runs) < MAX_REPEATS):
                if library.startswith("aio-"):
                    from benchmarks import worker_aio

                    group = f"bench-{phase}-{uuid.uuid4().hex[:6]}"
                    topic = topic_out if phase == "produce" else topic_in
                    seconds, lag = worker_aio.run_phase(phase, library, broker, topic, n, provider, group)
                    runs.append(seconds)
                    lags.append(lag)
                elif phase == "produce":
                    runs.append(phase_produce(library, broker.bootstrap, topic_out, n, provider))
                else:
                    group = f"bench-{phase}-{uuid.uuid4().hex[:6]}"
                    runs.append(phase_consume(library, broker, topic_in, n, provider, phase, group))
            count = n if phase == "produce" else n - 1  # the first message is received untimed
            seconds = statistics.median(runs)
            result["seconds"][phase] = seconds
            result["repeats"][phase] = len(runs)
            result["msgs_per_s"][phase] = count / seconds
            if exporter is not None:
                result["spans_exported"][phase] = (exporter.count - before) / len(runs)
                if exporter.inner is not None and exporter.count > before:
                    result["export_cpu_us_per_span"][phase] = (
                        (exporter.cpu_s - cpu_before) * 1e6 / (exporter.count - before)
                    )
            if lags:  # the worst the event loop saw over the repeats
                result.setdefault("loop_lag_ms", {})[phase] = max(lags) * 1000
    finally:
        broker.cleanup()
    return result


# ----------------------------------------------------------------------------- outage
def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def outage(spec: dict[str, Any]) -> dict[str, Any]:
    """N sends with 100 % sampling while the OTLP endpoint refuses connections.

    The mock cluster is owned by another process (``mock-owner``): it keeps every
    message in memory, which must not count as our growth.
    """
    library, n = spec["library"], int(spec["n"])
    conf = {"bootstrap.servers": spec["bootstrap"]}
    if library == "ours":
        import tracing

        tracing.configure("bench-outage", endpoint=spec["otlp_endpoint"])
        producer: Any = tracing.TracedProducer(conf)
    else:
        producer = Producer(conf)
    produce, poll = producer.produce, producer.poll
    topic = f"bench-outage-{uuid.uuid4().hex[:10]}"
    produce(topic, VALUE, key=KEYS[0])
    producer.flush(30)
    exceptions: list[str] = []
    samples = []
    start_rss = peak = rss_mb()
    start = time.perf_counter()
    for i in range(n):
        try:
            try:
                produce(topic, VALUE, key=KEYS[i & 63])
            except BufferError:
                _produce(produce, poll, topic, KEYS[i & 63])
            if i % POLL_EVERY == 999:
                poll(0)
        except Exception as exc:  # counted: the target is none at all
            if len(exceptions) < 20:
                exceptions.append(repr(exc))
            else:
                exceptions.append("")
        if i % 50_000 == 49_999:
            now = rss_mb()
            peak = max(peak, now)
            samples.append([i + 1, round(now, 1)])
    try:
        left = producer.flush(120)
    except Exception as exc:
        exceptions.append(repr(exc))
        left = -1
    seconds = time.perf_counter() - start
    end_rss = rss_mb()
    peak = max(peak, end_rss)
    return {
        "library": library,
        "n": n,
        "seconds": seconds,
        "msgs_per_s": n / seconds,
        "undelivered": left,
        "exceptions": len(exceptions),
        "first_exceptions": [e for e in exceptions if e][:5],
        "rss_start_mb": round(start_rss, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_growth_mb": round(peak - start_rss, 1),
        "rss_samples": samples,
    }


def mock_owner() -> None:
    """Own a mock cluster until stdin closes; print its bootstrap address first."""
    broker = Broker("mock", None)
    sys.stdout.write(broker.bootstrap + "\n")
    sys.stdout.flush()
    sys.stdin.read()


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    mode = spec.get("mode", "measure")
    if mode == "mock-owner":
        mock_owner()
        return 0
    result = outage(spec) if mode == "outage" else measure(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: exporters and librdkafka threads may linger; the result is out.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
