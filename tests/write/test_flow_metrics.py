"""Flow metrics on the mock cluster, read back through the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from confluent_kafka import Producer, TopicPartition
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tests.write.conftest import Spans, assign_all, consumer_conf, poll_n
from tracing import TracedConsumer, TracedProducer
from tracing.aio import TracedAIOConsumer
from tracing.write.metrics import CHAIN_HEADER, MAX_HOPS, MAX_PATHS, OTHER_PATH, parse_chain

SYSTEM = "messaging.system"
OPERATION = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
GROUP = "messaging.consumer.group.name"
ERROR = "error.type"


class Metrics:
    """A MeterProvider whose data points tests can read."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self._data = None

    def collect(self) -> None:
        self._data = self.reader.get_metrics_data()

    def points(self, name: str) -> list:
        if self._data is None:
            self.collect()
        found = []
        for resource in self._data.resource_metrics if self._data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str) -> float:
        """Sum of a counter, or count of a histogram, over all its series."""
        return sum(getattr(p, "count", None) or getattr(p, "value", 0) for p in self.points(name))

    def unit(self, name: str) -> str:
        for resource in self._data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric.unit
        raise AssertionError(f"no metric {name}")


@pytest.fixture
def meters() -> Metrics:
    return Metrics()


def header(msg, key):
    values = [v for k, v in msg.headers() or [] if k == key]
    assert len(values) <= 1, f"{key} repeated: {values}"
    return values[0] if values else None


def produce_orders(bootstrap, topic, n, *, meters, spans=None, keys=64, **extra):
    producer = TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5},
        tracer_provider=spans.provider if spans else None,
        meter_provider=meters.provider,
    )
    for i in range(n):
        producer.produce(topic, b"x" * 100, f"order-{i % keys}".encode(), **extra)
    assert producer.flush(15) == 0
    return producer


def test_sent_and_consumed_counts_equal_the_messages_with_the_conventions_labels(
    spans, meters, mock_cluster, topic
):
    produce_orders(mock_cluster, topic, 200, meters=meters, spans=spans)
    consumer = TracedConsumer(
        consumer_conf(mock_cluster, "inventory"),
        tracer_provider=spans.provider,
        meter_provider=meters.provider,
    )
    assign_all(consumer, topic)
    poll_n(consumer, 200)
    consumer.close()  # ends the last message's processing

    assert meters.total("messaging.client.sent.messages") == 200
    assert meters.total("messaging.client.consumed.messages") == 200
    assert meters.total("messaging.client.operation.duration") == 200
    assert meters.total("messaging.process.duration") == 200
    sent = meters.points("messaging.client.sent.messages")
    assert {frozenset(p.attributes) for p in sent} == {
        frozenset({SYSTEM, OPERATION, DESTINATION, PARTITION, "server.address", "server.port"})
    }
    assert {p.attributes[OPERATION] for p in sent} == {"send"}
    consumed = meters.points("messaging.client.consumed.messages")
    assert {frozenset(p.attributes) for p in consumed} == {
        frozenset({SYSTEM, OPERATION, DESTINATION, PARTITION, GROUP, "server.address", "server.port"})
    }
    assert {(p.attributes[OPERATION], p.attributes[GROUP]) for p in consumed} == {("poll", "inventory")}
    # 64 keys over 4 partitions: one series per partition, not per key.
    assert len(sent) == 4 and len(consumed) == 4
    for p in meters.points("messaging.client.operation.duration"):
        assert p.attributes["messaging.operation.type"] == "send"
        assert 0 < p.sum / p.count < 10  # seconds, produce() to delivery report
    assert meters.unit("messaging.client.operation.duration") == "s"
    assert meters.unit("messaging.client.sent.messages") == "{message}"


def test_advised_duration_buckets_are_used(meters, mock_cluster, topic):
    produce_orders(mock_cluster, topic, 3, meters=meters)
    point = meters.points("messaging.client.operation.duration")[0]
    assert tuple(point.explicit_bounds) == (
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        2.5,
        5,
        7.5,
        10,
    )


def test_a_failed_delivery_is_counted_with_its_error_type(meters, topic):
    producer = TracedProducer(
        {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300, "log_level": 0},
        meter_provider=meters.provider,
    )
    reports = []
    producer.produce(topic, b"x", on_delivery=lambda err, msg: reports.append(err))
    producer.flush(15)
    assert len(reports) == 1 and reports[0] is not None  # the app's callback still ran
    (point,) = meters.points("messaging.client.sent.messages")
    assert point.value == 1 and point.attributes[ERROR] == "_MSG_TIMED_OUT"


def test_process_duration_carries_the_handlers_error_type(spans, meters, mock_cluster, topic):
    produce_orders(mock_cluster, topic, 2, meters=meters, partition=0)
    consumer = TracedConsumer(consumer_conf(mock_cluster), meter_provider=meters.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    (first,) = poll_n(consumer, 1)
    with pytest.raises(KeyError), consumer.process(first):
        raise KeyError("sku")
    (second,) = poll_n(consumer, 1)
    with consumer.process(second):
        time.sleep(0.02)
    by_error = {p.attributes.get(ERROR): p for p in meters.points("messaging.process.duration")}
    assert set(by_error) == {"KeyError", None}
    assert by_error[None].count == 1 and by_error[None].sum >= 0.02
    assert by_error["KeyError"].count == 1


def test_queue_time_is_recorded_per_topic_and_group(meters, mock_cluster, topic):
    produce_orders(mock_cluster, topic, 20, meters=meters, partition=0)
    time.sleep(0.1)  # the records wait in the topic
    consumer = TracedConsumer(consumer_conf(mock_cluster, "points"), meter_provider=meters.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    poll_n(consumer, 20)
    consumer.close()
    (point,) = meters.points("kafka.record.queue_time")
    assert dict(point.attributes) == {SYSTEM: "kafka", DESTINATION: topic, GROUP: "points"}
    assert point.count == 20 and point.min >= 0.1 and point.max < 60


def chain_hop(bootstrap, source, onward, group, meters, spans=None):
    """A service: consume one message from ``source``, produce onward to ``onward``."""
    consumer = TracedConsumer(
        consumer_conf(bootstrap, group),
        tracer_provider=spans.provider if spans else None,
        meter_provider=meters.provider,
    )
    consumer.assign([TopicPartition(source, 0, 0)])
    (msg,) = poll_n(consumer, 1)
    producer = TracedProducer(
        {"bootstrap.servers": bootstrap},
        tracer_provider=spans.provider if spans else None,
        meter_provider=meters.provider,
    )
    caller_headers = [("eventchain", b"1;5;forged"), ("event-type", b"stock.reserved")]
    with consumer.process(msg):
        producer.produce(onward, b"reserved", msg.key(), partition=0, headers=caller_headers)
    assert producer.flush(15) == 0
    assert caller_headers == [("eventchain", b"1;5;forged"), ("event-type", b"stock.reserved")]
    consumer.close()
    return msg


def read_one(bootstrap, topic):
    raw = __import__("confluent_kafka").Consumer(consumer_conf(bootstrap, "reader"))
    raw.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        msg = raw.poll(0.2)
        if msg is not None and msg.error() is None:
            raw.close()
            return msg
    raise AssertionError("no message")


@pytest.mark.parametrize("tracing_mode", ["sampled", "sampling 0 %", "no SDK"])
def test_the_chain_header_carries_start_and_path_onward_whatever_the_sampling(
    tracing_mode, meters, mock_cluster, topic
):
    spans = {
        "sampled": Spans(),
        "sampling 0 %": Spans(sampler=ParentBased(TraceIdRatioBased(0))),
        "no SDK": None,
    }[tracing_mode]
    orders, stock = topic + "-orders", topic + "-stock"
    before_ms = time.time_ns() // 1_000_000
    produce_orders(mock_cluster, orders, 1, meters=meters, spans=spans, partition=0)
    first = chain_hop(mock_cluster, orders, stock, "inventory", meters, spans)
    started = parse_chain(header(first, CHAIN_HEADER))
    assert started is not None and started.path == orders and started.start_ms >= before_ms

    onward = read_one(mock_cluster, stock)
    carried = parse_chain(header(onward, CHAIN_HEADER))  # replaced the caller's forged one, once
    assert carried == (started.start_ms, f"{orders}>{stock}")
    assert header(onward, "event-type") == b"stock.reserved"
    time.sleep(0.05)
    chain_hop(mock_cluster, stock, topic + "-sms", "notification", meters, spans)

    paths = {p.attributes["eventchain.path"]: p for p in meters.points("eventchain.chain.duration")}
    assert set(paths) == {orders, f"{orders}>{stock}"}
    last = paths[f"{orders}>{stock}"]
    assert dict(last.attributes) == {
        SYSTEM: "kafka",
        "eventchain.path": f"{orders}>{stock}",
        GROUP: "notification",
    }
    assert last.count == 1 and last.sum >= 0.05  # measured from the chain's first send
    assert meters.total("messaging.client.sent.messages") == 3


@pytest.mark.parametrize(
    "value",
    [
        b"garbage",
        b"1;99999999999999;orders",
        b"1;12;",
        b"1;12;a>>b",
        "1;12;caf\u00e9".encode(),
        b"2;12;orders",
        None,
    ],
)
def test_a_malformed_chain_header_starts_a_new_chain_and_the_message_is_intact(
    value, meters, mock_cluster, topic
):
    raw = Producer({"bootstrap.servers": mock_cluster})
    raw.produce(topic, b"payload", b"k", partition=0, headers=[("eventchain", value)])
    raw.flush(15)
    consumer = TracedConsumer(consumer_conf(mock_cluster), meter_provider=meters.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    (msg,) = poll_n(consumer, 1)
    assert msg.value() == b"payload" and msg.headers() == [("eventchain", value)]
    consumer.close()
    (point,) = meters.points("eventchain.chain.duration")
    assert point.attributes["eventchain.path"] == topic  # the chain begins at this record
    assert point.sum < 60


def test_paths_are_capped_in_length_and_in_number(meters, mock_cluster, topic):
    raw = Producer({"bootstrap.servers": mock_cluster})
    long_path = ">".join(f"hop{i}" for i in range(MAX_HOPS))
    raw.produce(topic, b"x", partition=0, headers=[("eventchain", f"1;12;{long_path}".encode())])
    for i in range(MAX_PATHS + 30):
        raw.produce(topic, b"x", partition=0, headers=[("eventchain", f"1;12;p{i}".encode())])
    raw.flush(15)
    consumer = TracedConsumer(consumer_conf(mock_cluster), meter_provider=meters.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, meter_provider=meters.provider)
    msg = poll_n(consumer, 1)[0]
    with consumer.process(msg):  # a hop past the cap keeps the first and the newest topics
        producer.produce(topic + "-next", b"x", partition=0)
    producer.flush(15)
    poll_n(consumer, MAX_PATHS + 30)
    consumer.close()
    paths = {p.attributes["eventchain.path"] for p in meters.points("eventchain.chain.duration")}
    assert len(paths) == MAX_PATHS + 1 and OTHER_PATH in paths
    onward = parse_chain(header(read_one(mock_cluster, topic + "-next"), CHAIN_HEADER))
    hops = onward.path.split(">")
    assert len(hops) == MAX_HOPS and hops[0] == "hop0" and hops[1] == ".." and hops[-1] == topic + "-next"


def test_without_a_meter_provider_nothing_is_added(spans, mock_cluster, topic):
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, tracer_provider=spans.provider)
    producer.produce(topic, b"x", partition=0)
    producer.flush(15)
    msg = read_one(mock_cluster, topic)
    assert header(msg, CHAIN_HEADER) is None
    assert header(msg, "traceparent") is not None


def test_statistics_are_turned_on_only_for_metrics_and_the_apps_callback_is_kept():
    from tracing.write.lag import STATS_INTERVAL_MS, ConsumerLag, with_lag_statistics

    conf = {"group.id": "g"}
    assert with_lag_statistics(conf, ConsumerLag("g"), enable=False) == conf  # no MeterProvider: untouched
    on = with_lag_statistics(conf, ConsumerLag("g"), enable=True)
    assert on["statistics.interval.ms"] == STATS_INTERVAL_MS and callable(on["stats_cb"])
    assert "stats_cb" not in conf  # the caller's dict is not modified
    seen = []
    lag = ConsumerLag("g")
    mine = with_lag_statistics({"statistics.interval.ms": 1000, "stats_cb": seen.append}, lag, enable=False)
    assert mine["statistics.interval.ms"] == 1000  # the app's own interval is kept
    mine["stats_cb"]('{"topics": {}}')
    assert seen == ['{"topics": {}}']
    mine["stats_cb"]("not json")  # a report we cannot read still reaches the app's callback
    assert seen[-1] == "not json"


def stats_consumer(bootstrap, meters, reports, group="lagging"):
    conf = consumer_conf(
        bootstrap,
        group,
        **{"statistics.interval.ms": 100, "stats_cb": lambda s: reports.append(json.loads(s))},
    )
    return TracedConsumer(conf, meter_provider=meters.provider)


def lag_points(meters, name="kafka.consumer.lag"):
    meters.collect()
    return {p.attributes[PARTITION]: p for p in meters.points(name)}


def wait_for(predicate, timeout=15.0, step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_consumer_lag_comes_from_statistics_and_the_apps_stats_cb_still_runs(meters, mock_cluster, topic):
    produce_orders(mock_cluster, topic, 100, meters=meters, partition=0)
    reports: list = []
    consumer = stats_consumer(mock_cluster, meters, reports)
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumed = poll_n(consumer, 10)
    consumer.commit(consumed[-1], asynchronous=False)  # committed offset 10: 90 behind

    def lag_is(value):
        point = lag_points(meters).get("0")
        return point is not None and point.value == value

    extra = []  # what polls made while waiting for a statistics report handed over

    def serve():
        msg = consumer.poll(0)
        if msg is not None and msg.error() is None:
            extra.append(msg)

    consumer.pause([TopicPartition(topic, 0)])  # no more messages while the report comes
    wait_for(lambda: lag_is(90), step=serve)
    consumer.resume([TopicPartition(topic, 0)])
    point = lag_points(meters)["0"]
    assert dict(point.attributes) == {SYSTEM: "kafka", DESTINATION: topic, PARTITION: "0", GROUP: "lagging"}
    assert reports and "topics" in reports[-1]  # the app's own callback got every report
    assert lag_points(meters, "kafka.consumer.time_lag")["0"].value > 0

    rest = extra + poll_n(consumer, 90 - len(extra))
    consumer.commit(rest[-1], asynchronous=False)
    wait_for(lambda: lag_is(0), step=serve)
    assert lag_points(meters, "kafka.consumer.time_lag")["0"].value == 0
    consumer.close()


def test_asyncio_consumers_count_and_report_lag(meters, mock_cluster, topic):
    produce_orders(mock_cluster, topic, 30, meters=meters, partition=0)
    reports: list = []

    async def app_stats(stats_json):  # AIOConsumer awaits its callbacks
        reports.append(stats_json)

    async def scenario():
        conf = consumer_conf(
            mock_cluster, "async-group", **{"statistics.interval.ms": 100, "stats_cb": app_stats}
        )
        consumer = TracedAIOConsumer(conf, meter_provider=meters.provider)
        await consumer.assign([TopicPartition(topic, 0, 0)])
        got = 0
        async for msg in consumer.messages(timeout=0.2):
            async with consumer.process(msg):
                got += 1
            if got == 30:
                break
        # A statistics report made before the last messages were consumed may still arrive
        # first: wait for the one that has caught up (on a loaded machine it can lag behind).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            point = lag_points(meters).get("0")
            if point is not None and point.value == 0:
                break
            await consumer.poll(0.1)
        lag = lag_points(meters)["0"].value
        await consumer.close()
        return lag

    # Nothing committed: the lag counts from the consumed position, and all 30 were consumed.
    assert asyncio.run(scenario()) == 0
    assert meters.total("messaging.client.consumed.messages") == 30
    assert meters.total("messaging.process.duration") == 30
    assert reports
    assert lag_points(meters) == {}  # a closed consumer reports no partitions


def test_instrument_gives_consumers_built_from_a_config_their_lag(meters, mock_cluster, topic):
    import confluent_kafka

    import tracing

    produce_orders(mock_cluster, topic, 12, meters=meters, partition=0)
    tracing.instrument(meter_provider=meters.provider)
    try:
        consumer = confluent_kafka.Consumer(
            consumer_conf(mock_cluster, "instrumented", **{"statistics.interval.ms": 100})
        )
    finally:
        tracing.uninstrument()
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumed = poll_n(consumer, 2)
    consumer.commit(consumed[-1], asynchronous=False)
    consumer.pause([TopicPartition(topic, 0)])
    wait_for(
        lambda: lag_points(meters).get("0") is not None and lag_points(meters)["0"].value == 10,
        step=lambda: consumer.poll(0),
    )
    assert lag_points(meters)["0"].attributes[GROUP] == "instrumented"
    consumer.close()


def test_root_sends_carry_the_chain_begun_in_their_own_millisecond_per_topic(monkeypatch):
    """The header of a chain begun by a send is built once per millisecond and topic: each send
    still carries its own millisecond and topic, whatever the order of sends."""
    import tracing.write.operations as operations

    sent = []

    class Recording:
        def produce(self, topic, value=None, key=None, **kwargs):
            sent.append((topic, dict(kwargs.get("headers") or [])))
            kwargs["on_delivery"](None, None)

        def poll(self, timeout=-1):
            return 0

    clock = iter([1_000_000_100, 1_000_000_900, 1_000_000_950])
    clock = iter([*clock, 1_001_000_000, 1_001_000_001, 1_001_999_999, 1_002_000_000])
    monkeypatch.setattr(operations, "_time_ns", lambda: next(clock, 1_002_000_000))
    producer = TracedProducer(Recording(), client_config={}, meter_provider=Metrics().provider)
    for topic in ("orders", "orders", "stock", "orders", "orders", "stock", "stock"):
        producer.produce(topic, b"v")
    headers = [(topic, h[CHAIN_HEADER]) for topic, h in sent]
    assert headers == [
        ("orders", "1;1000;orders"),
        ("orders", "1;1000;orders"),
        ("stock", "1;1000;stock"),
        ("orders", "1;1001;orders"),
        ("orders", "1;1001;orders"),
        ("stock", "1;1001;stock"),
        ("stock", "1;1002;stock"),
    ]
