"""Building blocks of the write-side contract suite (tests/write/test_contract.py).

Only public OpenTelemetry and kafka-event-tracing API is used: the faults are handed to the
clients through their documented constructor keywords (``tracer_provider``, ``propagator``,
``meter_provider``), so the suite runs unchanged whatever the write side looks like inside.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ERROR_TYPE = "error.type"
SEND_DURATION = "messaging.client.operation.duration"
PROCESS_DURATION = "messaging.process.duration"

# What the app puts on every message; the library may add its own headers, never touch these.
APP_HEADER_KEYS = ("tenant", "seq")


def app_headers(i: int) -> list[tuple[str, bytes]]:
    return [("tenant", b"acme"), ("seq", str(i).encode())]


def payload(i: int) -> tuple[bytes, bytes]:
    """(value, key) of the app's i-th message."""
    return f"order-{i}".encode(), f"key-{i}".encode()


def own_headers(headers: Any) -> list[tuple[str, bytes]]:
    """The app's headers among a message's headers, in order."""
    return [(k, bytes(v)) for k, v in (headers or ()) if k in APP_HEADER_KEYS]


# -- faults -------------------------------------------------------------------------------


class InstrumentationBug(RuntimeError):
    """Raised by the broken SDK parts; it must never reach the app."""


class SpanLedger(SpanProcessor):
    """Records every span an SDK processor sees start and end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: list[int] = []
        self.ended: dict[int, Any] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        with self._lock:
            self.started.append(span.context.span_id)

    def on_end(self, span: Any) -> None:
        with self._lock:
            self.ended[span.context.span_id] = span

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def spans(self, prefix: str) -> list[Any]:
        with self._lock:
            return [s for s in self.ended.values() if s.name.startswith(prefix)]

    def unended(self) -> list[int]:
        with self._lock:
            return [span_id for span_id in self.started if span_id not in self.ended]


class RaisingOnStart(SpanProcessor):
    """A broken SDK part: on_start raises (with ``every=2``: for the first span and every
    second one after it, so that some spans start and the library must end those)."""

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.calls = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.calls += 1
        if (self.calls - 1) % self.every == 0:
            raise InstrumentationBug("span processor on_start")

    def on_end(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class RaisingOnEnd(SpanProcessor):
    """A broken exporter plugin: on_end always raises."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        raise InstrumentationBug("span processor on_end")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class InjectRaises(TraceContextTextMapPropagator):
    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise InstrumentationBug("propagator inject")


class ExtractRaises(TraceContextTextMapPropagator):
    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        raise InstrumentationBug("propagator extract")


class _RaisingCounter(metrics_api.NoOpCounter):
    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        raise InstrumentationBug("counter add")


class _RaisingUpDownCounter(metrics_api.NoOpUpDownCounter):
    def add(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        raise InstrumentationBug("up-down counter add")


class _RaisingHistogram(metrics_api.NoOpHistogram):
    def record(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        raise InstrumentationBug("histogram record")


class _RaisingGauge(metrics_api.NoOpHistogram):
    def set(self, amount: Any, attributes: Any = None, context: Any = None) -> None:
        raise InstrumentationBug("gauge set")

    record = set


class _RaisingMeter(metrics_api.Meter):
    """Every synchronous instrument raises when used; observable ones are never called back."""

    def create_counter(self, name: str, *_: Any, **__: Any) -> Any:
        return _RaisingCounter(name)

    def create_up_down_counter(self, name: str, *_: Any, **__: Any) -> Any:
        return _RaisingUpDownCounter(name)

    def create_histogram(self, name: str, *_: Any, **__: Any) -> Any:
        return _RaisingHistogram(name)

    def create_gauge(self, name: str, *_: Any, **__: Any) -> Any:
        return _RaisingGauge(name)

    def create_observable_counter(self, name: str, *_: Any, **__: Any) -> Any:
        return metrics_api.NoOpObservableCounter(name)

    def create_observable_up_down_counter(self, name: str, *_: Any, **__: Any) -> Any:
        return metrics_api.NoOpObservableUpDownCounter(name)

    def create_observable_gauge(self, name: str, *_: Any, **__: Any) -> Any:
        return metrics_api.NoOpObservableGauge(name)


class RaisingMeterProvider(metrics_api.MeterProvider):
    def get_meter(
        self, name: str, version: Any = None, schema_url: Any = None, attributes: Any = None
    ) -> Any:
        return _RaisingMeter(name, version, schema_url)


# -- one test's instrumentation -------------------------------------------------------------

CLEAN = "clean"
ON_START = "processor-on_start-raises"
ON_START_SOMETIMES = "processor-on_start-raises-every-2nd"
ON_END = "processor-on_end-raises"
INJECT = "propagator-inject-raises"
EXTRACT = "propagator-extract-raises"
METER = "meter-instruments-raise"
DELIVERY_FAILS = "delivery-fails"
CALLBACK_RAISES = "app-delivery-callback-raises"
HANDLER_RAISES = "handler-raises"
HANDLER_RAISES_KAFKA = "handler-raises-KafkaException"


@dataclass
class Instrumentation:
    """The providers one test hands to its clients, with the fault its scenario names."""

    scenario: str
    metrics: bool
    ledger: SpanLedger = field(default_factory=SpanLedger)
    tracer_provider: TracerProvider = field(init=False)
    propagator: Any = field(init=False, default=None)
    meter_provider: Any = field(init=False, default=None)
    reader: InMemoryMetricReader | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        # The breaking processor sits where the SDK cannot help it: before the ledger when
        # it breaks span starts (a refused start never reaches the ledger), after it when it
        # breaks span ends (the ledger has seen the end when the exception comes).
        if self.scenario == ON_START:
            self.tracer_provider.add_span_processor(RaisingOnStart())
        elif self.scenario == ON_START_SOMETIMES:
            self.tracer_provider.add_span_processor(RaisingOnStart(every=2))
        self.tracer_provider.add_span_processor(self.ledger)
        if self.scenario == ON_END:
            self.tracer_provider.add_span_processor(RaisingOnEnd())
        if self.scenario == INJECT:
            self.propagator = InjectRaises()
        elif self.scenario == EXTRACT:
            self.propagator = ExtractRaises()
        if self.scenario == METER:
            self.meter_provider = RaisingMeterProvider()
        elif self.metrics:
            self.reader = InMemoryMetricReader()
            self.meter_provider = MeterProvider(metric_readers=[self.reader])
        else:
            self.meter_provider = metrics_api.NoOpMeterProvider()

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
        }
        if self.propagator is not None:
            kwargs["propagator"] = self.propagator
        return kwargs

    # -- what the metrics say -------------------------------------------------------------
    def points(self, name: str) -> list[Any]:
        if self.reader is None:
            return []
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric_error_types(self, name: str, operation: str | None = None) -> Counter[str]:
        """error.type of every failed measurement of a histogram (weighted by its count)."""
        errors: Counter[str] = Counter()
        for point in self.points(name):
            attrs = point.attributes
            if operation is not None and attrs.get("messaging.operation.name") != operation:
                continue
            if ERROR_TYPE in attrs:
                errors[attrs[ERROR_TYPE]] += point.count
        return errors

    def span_error_types(self, prefix: str) -> Counter[str]:
        return Counter(
            s.attributes[ERROR_TYPE] for s in self.ledger.spans(prefix) if ERROR_TYPE in s.attributes
        )

    # -- the contract's span checks ---------------------------------------------------------
    def assert_every_started_span_ended(self) -> None:
        self.tracer_provider.force_flush()
        unended = self.ledger.unended()
        assert not unended, f"{len(unended)} of {len(self.ledger.started)} started spans were never ended"

    def assert_failures_named_alike(
        self, span_prefix: str, metric: str, operation: str | None = None
    ) -> None:
        """Each failure recorded on a span is recorded on the metric with the same error.type.

        Only where both sides are complete: the metrics are read from an SDK provider and
        every span the library started reached the SDK's processors.
        """
        if self.reader is None or self.scenario in (ON_START, ON_START_SOMETIMES):
            return
        on_spans = self.span_error_types(span_prefix)
        on_metric = self.metric_error_types(metric, operation)
        assert on_spans == on_metric, (
            f"error.type on the {span_prefix!r} spans {dict(on_spans)} != on {metric} {dict(on_metric)}"
        )
