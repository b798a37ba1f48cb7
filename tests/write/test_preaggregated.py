"""The flow metrics' histograms aggregated in place (the MeterProviders configure() builds)
export exactly what the SDK's own histograms export for the same measurements."""

from __future__ import annotations

import threading
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
)
from opentelemetry.sdk.resources import Resource

from tests.write.conftest import assign_all, consumer_conf, poll_n
from tracing import TracedConsumer, TracedProducer
from tracing.sdk import configure_metrics
from tracing.write import metrics as metrics_module
from tracing.write.metrics import WAIT_BUCKETS, FlowMetrics, Instruments, PreAggregated, instruments_of
from tracing.write.recipe import SCOPE
from tracing.write.records import ClientInfo, Received


class Captured(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exports = []

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        pass


def _histograms(metrics_data) -> dict:
    found = {}
    for resource_metrics in metrics_data.resource_metrics if metrics_data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != SCOPE:
                continue
            for metric in scope_metrics.metrics:
                if type(metric.data).__name__ != "Histogram":
                    continue
                found[metric.name] = (
                    metric.unit,
                    metric.description,
                    type(metric.data.aggregation_temporality).__name__,
                    metric.data.aggregation_temporality.name,
                    sorted(
                        (
                            sorted(p.attributes.items()),
                            p.count,
                            p.sum,
                            tuple(p.bucket_counts),
                            tuple(p.explicit_bounds),
                            p.min,
                            p.max,
                        )
                        for p in metric.data.data_points
                    ),
                )
    return found


measurement = st.tuples(
    st.sampled_from(["operation", "process", "queue_time", "chain"]),
    st.sampled_from(
        [{"messaging.destination.name": "orders"}, {"messaging.destination.name": "stock", "x": 1}]
    ),
    st.one_of(st.floats(min_value=0, max_value=5000, allow_nan=False), st.sampled_from(WAIT_BUCKETS)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(measurement, max_size=30), min_size=1, max_size=4))
def test_aggregated_in_place_exports_what_the_sdk_exports(collections):
    sdk_reader = InMemoryMetricReader()
    sdk = Instruments(MeterProvider(metric_readers=[sdk_reader]).get_meter(SCOPE))
    exporter = Captured()
    merged_provider = configure_metrics(Resource.create({}), exporter=exporter, set_global=False)
    local = instruments_of(merged_provider)
    cached: dict = {}
    for measurements in collections:
        for name, attributes, value in measurements:
            # The same dict object per attribute set, as the clients pass them.
            attrs = cached.setdefault(tuple(sorted(attributes.items())), dict(attributes))
            getattr(sdk, name).record(value, attrs)
            getattr(local, name).record(value, attrs)
        expected = _histograms(sdk_reader.get_metrics_data())
        exporter.exports.clear()
        merged_provider.force_flush()
        got = _histograms(exporter.exports[-1]) if exporter.exports else {}
        assert got == expected
    merged_provider.shutdown()


def test_a_configured_provider_aggregates_in_place_and_a_users_provider_through_the_sdk():
    exporter = Captured()
    merged = configure_metrics(Resource.create({}), exporter=exporter, set_global=False)
    assert isinstance(instruments_of(merged).process, type(PreAggregated().histogram("x")))
    users = MeterProvider(metric_readers=[InMemoryMetricReader()])
    assert type(instruments_of(users).process).__module__.startswith("opentelemetry")
    merged.shutdown()


def test_flow_metrics_of_real_traffic_reach_the_configured_exporter(mock_cluster, topic):
    exporter = Captured()
    provider = configure_metrics(Resource.create({}), exporter=exporter, set_global=False)
    producer = TracedProducer({"bootstrap.servers": mock_cluster}, meter_provider=provider)
    for i in range(5):
        producer.produce(topic, b"order", key=b"k%d" % i, partition=0)
    assert producer.flush(15) == 0
    consumer = TracedConsumer(consumer_conf(mock_cluster), meter_provider=provider)
    assign_all(consumer, topic)
    for _ in range(5):
        (msg,) = poll_n(consumer, 1)
        with consumer.process(msg):  # takes over the span poll() opened
            pass
    consumer.close()
    provider.force_flush()
    histograms = _histograms(exporter.exports[-1])
    counts = {name: sum(point[1] for point in found[4]) for name, found in histograms.items()}
    assert counts["messaging.client.operation.duration"] == 5
    assert counts["messaging.process.duration"] == 5
    assert counts["kafka.record.queue_time"] == 5
    assert counts["eventchain.chain.duration"] == 5
    provider.shutdown()


def _counters(metrics_data) -> dict:
    found = {}
    for resource_metrics in metrics_data.resource_metrics if metrics_data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if scope_metrics.scope.name == SCOPE and type(metric.data).__name__ == "Sum":
                    found[metric.name] = sorted(
                        (sorted(p.attributes.items()), p.value) for p in metric.data.data_points
                    )
    return found


topics = st.sampled_from(["orders", "stock"])
partitions = st.sampled_from([0, 3, None, -1])
errors = st.sampled_from([None, None, "_MSG_TIMED_OUT", "ValueError"])
NOW_NS = 1_800_000_000_000 * 1_000_000
# Durations on the bucket boundaries too: a value equal to a bound counts in the bucket it closes.
bounds_ms = [round(b * 1000) for b in WAIT_BUCKETS]
chain_headers = st.one_of(
    st.none(),
    st.builds(
        lambda ago, path: [("eventchain", f"1;{NOW_NS // 1_000_000 - ago};{path}".encode())],
        st.one_of(st.integers(min_value=-100_000, max_value=5_000_000), st.sampled_from(bounds_ms)),
        st.sampled_from(["checkout", "checkout>orders", "a>b>c", "bad path", "x" * 600]),
    ),
    st.just([("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]),
)
durations_ns = st.one_of(
    st.integers(min_value=-5, max_value=20 * 10**9), st.sampled_from([ms * 1_000_000 for ms in bounds_ms])
)
traffic_event = st.one_of(
    st.tuples(st.just("send"), topics, partitions, errors, durations_ns),
    st.tuples(
        st.just("poll"),
        topics,
        partitions,
        st.one_of(st.none(), st.integers(min_value=-1000, max_value=5_000_000), st.sampled_from(bounds_ms)),
        chain_headers,
        st.booleans(),  # trusted
        durations_ns,  # processing
        errors,
    ),
    st.tuples(st.just("batch"), topics, partitions),
)


def _play(flow: FlowMetrics, events, clock: list[int]) -> None:
    instruments = flow.instruments()
    for event in events:
        if event[0] == "send":
            _, topic, partition, error, took = event
            flow.sent(instruments, topic, partition, error, clock[0] - took)
        elif event[0] == "poll":
            _, topic, partition, queued, headers, trusted, took, error = event
            ts = None if queued is None else NOW_NS // 1_000_000 - queued
            received = Received(topic, partition, 1, b"k", 10, False, ts)
            flow.processing(instruments, received, headers, trusted, clock[0], polled=True)
            flow.processed(instruments, received, clock[0], clock[0] + took, error)
        else:
            _, topic, partition = event
            flow.consumed(instruments, Received(topic, partition, 1, None, None, True, None))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(traffic_event, max_size=25), min_size=1, max_size=3),
    st.integers(3, 200),
    st.integers(1, 30),  # folds between collections too, after this many messages
)
def test_the_clients_traffic_exports_the_same_through_the_sdk_and_aggregated_in_place(
    collections, max_paths, fold_every
):
    clock = [NOW_NS]
    client = ClientInfo("kafka", "127.0.0.1", 9092, None, "inventory")
    sdk_reader = InMemoryMetricReader()
    sdk_provider = MeterProvider(metric_readers=[sdk_reader])
    exporter = Captured()
    merged_provider = configure_metrics(Resource.create({}), exporter=exporter, set_global=False)
    flows = (
        FlowMetrics(client, sdk_provider, max_paths=max_paths),
        FlowMetrics(client, merged_provider, max_paths=max_paths),
    )
    with (
        patch.object(metrics_module, "_time_ns", lambda: clock[0]),
        patch.object(metrics_module, "FOLD_EVERY", fold_every),
    ):
        for events in collections:
            for flow in flows:
                _play(flow, events, clock)
            expected = sdk_reader.get_metrics_data()
            exporter.exports.clear()
            merged_provider.force_flush()
            got = exporter.exports[-1] if exporter.exports else None
            assert _histograms(got) == _histograms(expected)
            assert _counters(got) == _counters(expected)
    merged_provider.shutdown()
    sdk_provider.shutdown()


def test_values_added_from_many_threads_while_folding_are_each_counted_once():
    exporter = Captured()
    provider = configure_metrics(Resource.create({}), exporter=exporter, set_global=False)
    instruments = instruments_of(provider)
    series = instruments.queue_time.series({"messaging.destination.name": "orders"})
    count = instruments.consumed.cell({"messaging.destination.name": "orders"})
    per_thread, threads = 20_000, 4
    done = threading.Event()

    def add_values() -> None:
        for i in range(per_thread):
            series.add(0.001 * (i % 7))
            count.add(1)

    def fold_meanwhile() -> None:
        while not done.is_set():
            instruments.fold()

    folder = threading.Thread(target=fold_meanwhile)
    folder.start()
    adders = [threading.Thread(target=add_values) for _ in range(threads)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    done.set()
    folder.join()
    provider.force_flush()
    (point,) = _histograms(exporter.exports[-1])["kafka.record.queue_time"][4]
    assert point[1] == per_thread * threads
    assert sum(point[3]) == per_thread * threads and point[5] == 0 and point[6] == 0.006
    assert series.pending == [] and count.pending == []
    counters = _counters(exporter.exports[-1])
    (observed,) = [value for _, value in counters["messaging.client.consumed.messages"]]
    assert observed == per_thread * threads
    provider.shutdown()
