"""Event-flow traffic through the real broker, traced and measured with the project's wrappers.

The shape the dashboards are about: three services, two topics, two consumer groups.

    checkout --send--> orders-<run> --process (group inventory-<run>)--> inventory
    inventory --send--> stock-<run>  --process (group billing-<run>)----> billing

Every chain is one trace (each process span is the child of the send span that wrote its
message). Some chains fail in inventory (the handler raises: the process span is ERROR with
error.type), some are slow in billing (the handler sleeps). Each service has its own
TracerProvider (service.name) exporting over OTLP gRPC to the endpoint given, and its own
MeterProvider (same resource) exporting the wrappers' flow metrics there too.

Besides the chains, each run leaves what only the flow metrics show (no span is recorded for
either, as with a sampler that drops them):

- sends the broker rejects (an order larger than the orders topic's max.message.bytes):
  messaging_client_sent_messages_total with error_type="MSG_SIZE_TOO_LARGE";
- a backlog: a few messages on each topic that the consumers have not reached when the run
  ends, so kafka_consumer_lag and kafka_consumer_time_lag_seconds are above 0.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import format_trace_id

import tracing
from tests.stack import create_topic
from tracing.sdk import otlp_metric_exporter


class StockUnavailable(Exception):
    """What the inventory handler raises for an order it cannot serve."""


# The orders topic refuses records larger than this; a rejected order is twice as large. Far above
# a batch of ordinary orders (a few hundred bytes each), so only the oversized ones fail.
ORDERS_MAX_MESSAGE_BYTES = 64 * 1024
OVERSIZED_ORDER_BYTES = 2 * ORDERS_MAX_MESSAGE_BYTES
REJECTED_ERROR_TYPE = "MSG_SIZE_TOO_LARGE"
# Values the consumers recognise as backlog (left unprocessed by the run that wrote them).
BACKLOG_PREFIX = b"backlog:"


@dataclass
class Flow:
    """Names and outcomes of one traffic run."""

    run_id: str
    orders_topic: str
    stock_topic: str
    inventory_group: str
    billing_group: str
    services: dict[str, str]
    ok_traces: list[str] = field(default_factory=list)
    failed_traces: list[str] = field(default_factory=list)
    slow_traces: list[str] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)
    rejected_sends: int = 0  # orders the broker refused (no span: only the flow metrics count them)
    backlog: dict[str, int] = field(default_factory=dict)  # topic -> messages left unprocessed


def new_flow(bootstrap: str, prefix: str = "flows") -> Flow:
    run_id = uuid.uuid4().hex[:8]
    flow = Flow(
        run_id=run_id,
        orders_topic=f"orders-{run_id}",
        stock_topic=f"stock-{run_id}",
        inventory_group=f"inventory-{run_id}",
        billing_group=f"billing-{run_id}",
        services={
            "checkout": f"{prefix}-checkout-{run_id}",
            "inventory": f"{prefix}-inventory-{run_id}",
            "billing": f"{prefix}-billing-{run_id}",
        },
    )
    create_topic(bootstrap, flow.orders_topic, partitions=2)
    create_topic(bootstrap, flow.stock_topic, partitions=2)
    _limit_message_size(bootstrap, flow.orders_topic, ORDERS_MAX_MESSAGE_BYTES)
    return flow


def _limit_message_size(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource], request_timeout=30).values():
        future.result(timeout=30)


# How often each service's BatchSpanProcessor exports (OTEL_BSP_SCHEDULE_DELAY, ms). The SDK's
# default (5 s) would hold a chain's last span back for up to 5 s after it ended; the tail-sampling
# tests need every span of a chain at the collector well within its decision_wait.
EXPORT_DELAY_MS = 200
# How often each service's MeterProvider exports: several times per Prometheus scrape (2 s in
# scripts/metrics-stack.sh), so a scrape sees each phase of the run.
METRIC_EXPORT_MS = 500
# Pause between the two phases of a run. Each phase ends with every meter exported; the pause is
# longer than a scrape interval, so Prometheus records each counter and histogram before the second
# phase makes it grow: rate() has two different samples of one series (a series that appears with
# its final value has no rate).
PHASE_GAP_S = 2.5
# librdkafka statistics (what the lag gauges are computed from) this often: the wrapper's default
# (5 s) is longer than a whole run.
STATS_INTERVAL_MS = 500
BACKLOG = 3  # messages left on each topic


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _providers(flow: Flow, endpoint: str) -> dict[str, TracerProvider]:
    # tracing.configure() builds its BatchSpanProcessor from the standard OTEL_BSP_* variables.
    # set_global=False: no global providers in the test process, and no MeterProvider either
    # (configure() only installs one globally); _meters() makes each service's own.
    with _environ(OTEL_BSP_SCHEDULE_DELAY=str(EXPORT_DELAY_MS)):
        return {
            role: tracing.configure(name, endpoint=endpoint, set_global=False)
            for role, name in flow.services.items()
        }


def _meters(providers: dict[str, TracerProvider], endpoint: str) -> dict[str, MeterProvider]:
    """One MeterProvider per service, on its TracerProvider's resource (same service.name and
    service.instance.id), exporting to `endpoint` every METRIC_EXPORT_MS."""
    return {
        role: MeterProvider(
            resource=provider.resource,
            metric_readers=[
                PeriodicExportingMetricReader(
                    otlp_metric_exporter(endpoint), export_interval_millis=METRIC_EXPORT_MS
                )
            ],
            shutdown_on_exit=False,  # drive() shuts it down
        )
        for role, provider in providers.items()
    }


def _consumer(
    bootstrap: str, group: str, provider: TracerProvider, meter_provider: MeterProvider
) -> tracing.TracedConsumer:
    return tracing.TracedConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": 10000,
            "statistics.interval.ms": STATS_INTERVAL_MS,
        },
        tracer_provider=provider,
        meter_provider=meter_provider,
    )


def _unsampled_producer(bootstrap: str, meter_provider: MeterProvider) -> tracing.TracedProducer:
    """A producer whose sends are counted but never traced: its spans are sampled out, and the
    context it propagates says so, so the process spans of its messages are not recorded either.
    Keeps the rejected orders and the backlog out of the span metrics and tail-sampling counts."""
    return tracing.TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5},
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        meter_provider=meter_provider,
    )


def _wait_assigned(consumer: tracing.TracedConsumer, timeout: float) -> None:
    """Poll until the group has given this consumer its partitions (nothing is produced yet)."""
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() >= deadline:
            raise AssertionError(f"consumer got no partitions within {timeout}s")
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            if not _skip_backlog(consumer, msg):
                raise AssertionError("a message arrived before anything was produced")


def _skip_backlog(consumer: tracing.TracedConsumer, msg: Any) -> bool:
    """Handle a previous run's backlog message by doing nothing; False for any other message.

    Inside a process block all the same: poll() makes each message's context current until the
    next poll of that consumer, and only a process block ends it sooner. Left current, it would
    be the parent of whatever this thread does next (the next orders' root spans, unsampled like
    the backlog's producer, and their eventchain)."""
    if not msg.value().startswith(BACKLOG_PREFIX):
        return False
    with consumer.process(msg):
        pass
    return True


def _drain(
    consumer: tracing.TracedConsumer,
    expected: int,
    handle: Callable[[Any], None],
    timeout: float,
) -> int:
    """Process `expected` messages, each inside its process span; returns how many were handled.

    A previous run's backlog is skipped (its process spans are unsampled: nothing is recorded)."""
    handled = 0
    deadline = time.monotonic() + timeout
    while handled < expected:
        if time.monotonic() >= deadline:
            raise AssertionError(f"processed {handled} of {expected} messages within {timeout}s")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            raise KafkaException(msg.error())
        if _skip_backlog(consumer, msg):
            continue
        try:
            with consumer.process(msg):
                handle(msg)
        except StockUnavailable:
            pass  # recorded on the span; the message counts as handled (a real app would dead-letter it)
        handled += 1
    return handled


def _reject_oversized_order(producer: tracing.TracedProducer, topic: str) -> None:
    """Send one order the broker refuses; fails loudly if it was accepted after all."""
    errors: list[Any] = []
    # One partition for every refusal: one series that grows (a series per partition would each
    # stay at 1, and rate() of a series that never grows is 0).
    producer.produce(
        topic,
        value=b"x" * OVERSIZED_ORDER_BYTES,
        partition=0,
        on_delivery=lambda err, _msg: errors.append(err),
    )
    assert producer.flush(30) == 0, "the oversized order got no delivery report"
    assert errors and errors[0] is not None and errors[0].name() == REJECTED_ERROR_TYPE, (
        f"the broker should have refused an order of {OVERSIZED_ORDER_BYTES} bytes, got {errors}"
    )


def _leave_backlog(
    flow: Flow,
    backlog: dict[str, tuple[tracing.TracedProducer, tracing.TracedConsumer]],
    timeout: float = 20,
) -> None:
    """Write BACKLOG messages to each topic and wait until its consumer's lag gauge counts them.

    The consumer fetches them (so librdkafka learns the new high watermark), then its partitions
    are paused: poll() keeps serving statistics, whose lag now includes the backlog, but hands
    out no message."""
    for topic, (producer, _consumer) in backlog.items():
        for n in range(BACKLOG):
            producer.produce(topic, value=BACKLOG_PREFIX + str(n).encode(), key=f"backlog-{n}".encode())
        assert producer.flush(30) == 0, f"backlog for {topic} was not delivered"
        flow.backlog[topic] = flow.backlog.get(topic, 0) + BACKLOG
    for topic, (_producer, consumer) in backlog.items():
        deadline = time.monotonic() + timeout
        high = {}
        for tp in consumer.assignment():
            high[tp.partition] = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
        # Wait for the fetcher to have seen those high watermarks before pausing.
        while any(
            consumer.get_watermark_offsets(tp, cached=True)[1] < high[tp.partition]
            for tp in consumer.assignment()
        ):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the {topic} consumer did not fetch up to {high}")
            time.sleep(0.1)
        consumer.pause(consumer.assignment())
        assert consumer.lag is not None
        while sum(lag for _attrs, lag, _seconds in consumer.lag.observations()) < BACKLOG:
            if time.monotonic() >= deadline:
                raise AssertionError(f"no lag of {BACKLOG} on {topic}: {list(consumer.lag.observations())}")
            msg = consumer.poll(0.2)
            assert msg is None or msg.error() is not None, "a paused consumer handed out a message"


def drive(
    bootstrap: str,
    endpoint: str,
    flow: Flow,
    *,
    ok: int = 12,
    failing: int = 3,
    slow: int = 2,
    slow_seconds: float = 1.2,
    timeout: float = 90,
) -> Flow:
    """Send ok + failing + slow orders through the two hops and wait until all are processed.

    Consumers are subscribed and assigned before anything is produced, so each chain takes
    about as long as its handlers (the tail-sampling test relies on short chains). Each service
    exports its spans every EXPORT_DELAY_MS and its metrics every METRIC_EXPORT_MS, and flushes
    both to `endpoint` before returning.

    The orders go in two phases, PHASE_GAP_S apart, each with one order the broker rejects. At the
    end, a backlog of BACKLOG messages per topic is left for the lag gauges.
    """
    providers = _providers(flow, endpoint)
    meters = _meters(providers, endpoint)
    producer = tracing.TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5},
        tracer_provider=providers["checkout"],
        meter_provider=meters["checkout"],
    )
    checkout_untraced = _unsampled_producer(bootstrap, meters["checkout"])
    inventory_untraced = _unsampled_producer(bootstrap, meters["inventory"])
    inventory = _consumer(bootstrap, flow.inventory_group, providers["inventory"], meters["inventory"])
    billing = _consumer(bootstrap, flow.billing_group, providers["billing"], meters["billing"])
    inventory_out = tracing.TracedProducer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5},
        tracer_provider=providers["inventory"],
        meter_provider=meters["inventory"],
    )
    try:
        inventory.subscribe([flow.orders_topic])
        billing.subscribe([flow.stock_topic])
        _wait_assigned(inventory, timeout=30)
        _wait_assigned(billing, timeout=30)

        def handle_order(msg: Any) -> None:
            kind = msg.value().decode().split(":", 1)[0]
            if kind == "fail":
                raise StockUnavailable(msg.value().decode())
            inventory_out.produce(flow.stock_topic, value=msg.value(), key=msg.key())
            inventory_out.poll(0)

        def handle_stock(msg: Any) -> None:
            if msg.value().decode().startswith("slow:"):
                time.sleep(slow_seconds)
            else:
                time.sleep(0.01)

        kinds = list(enumerate(["ok"] * ok + ["fail"] * failing + ["slow"] * slow))
        tracer = providers["checkout"].get_tracer("tests.metrics.flows")
        started = time.monotonic()
        flow.processed.setdefault("inventory", 0)
        flow.processed.setdefault("billing", 0)
        for number, phase in enumerate((kinds[0::2], kinds[1::2])):
            if number:
                time.sleep(PHASE_GAP_S)
            # Slow orders go in only once the others of the phase are processed: a chain that
            # waited in its topic behind a slow handler would look slow to tail sampling too.
            waves = ([o for o in phase if o[1] != "slow"], [o for o in phase if o[1] == "slow"])
            for wave in (w for w in waves if w):
                # Each order must start its own chain: nothing a consumer polled may still be current.
                leftover = trace.get_current_span().get_span_context()
                assert not leftover.is_valid, f"a polled message's context is still current: {leftover}"
                for i, kind in wave:
                    # A root span per order (the HTTP request in a real checkout) so the trace id is known.
                    with tracer.start_as_current_span(f"checkout order {kind}") as root:
                        producer.produce(
                            flow.orders_topic, value=f"{kind}:{i}".encode(), key=f"order-{i}".encode()
                        )
                        trace_id = format_trace_id(root.get_span_context().trace_id)
                    traces = {"ok": flow.ok_traces, "fail": flow.failed_traces, "slow": flow.slow_traces}
                    traces[kind].append(trace_id)
                assert producer.flush(30) == 0, "orders were not all delivered"
                if wave is waves[0] or not waves[0]:  # one refused order per phase, amid its traffic
                    _reject_oversized_order(checkout_untraced, flow.orders_topic)
                    flow.rejected_sends += 1
                remaining = max(10.0, timeout - (time.monotonic() - started))
                flow.processed["inventory"] += _drain(inventory, len(wave), handle_order, remaining)
                assert inventory_out.flush(30) == 0, "stock messages were not all delivered"
                to_bill = sum(1 for _, kind in wave if kind != "fail")
                remaining = max(10.0, timeout - (time.monotonic() - started))
                flow.processed["billing"] += _drain(billing, to_bill, handle_stock, remaining)
            for meter in meters.values():
                meter.force_flush(15_000)

        _leave_backlog(
            flow,
            {
                flow.orders_topic: (checkout_untraced, inventory),
                flow.stock_topic: (inventory_untraced, billing),
            },
        )
    finally:
        # Metrics first, while the consumers still report their lag (closing one forgets it).
        for meter in meters.values():
            meter.force_flush(15_000)
        for consumer in (inventory, billing):
            try:
                consumer.close()
            except Exception:
                pass
        for provider in providers.values():
            provider.force_flush(15_000)
            provider.shutdown()
        for meter in meters.values():
            meter.shutdown(15_000)
    return flow
