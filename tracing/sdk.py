"""``tracing.configure()``: one call to set a service up for traces and flow metrics.

Honours the standard variables: ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` (and ``..._TRACES_ENDPOINT``, ``..._METRICS_ENDPOINT``),
``OTEL_EXPORTER_OTLP_PROTOCOL`` (and ``..._TRACES_PROTOCOL``, ``..._METRICS_PROTOCOL``:
``grpc`` or ``http/protobuf``), ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``,
``OTEL_BSP_*``, ``OTEL_METRICS_EXPORTER`` (``otlp`` or ``none``),
``OTEL_METRIC_EXPORT_INTERVAL``; ``OTEL_PROPAGATORS`` is read by the API, when
``configure()`` runs (a propagator it names that is not installed is named, with the
extra that installs it). ``OTEL_SDK_DISABLED=true``: nothing is exported, and the wrappers
record and inject nothing (see :mod:`tracing.write.operations`).

The SDK is imported by :func:`configure`, not by ``import tracing``.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tracing.write import otel
from tracing.write.metrics import PreAggregated, preaggregate
from tracing.write.propagation import report_internal_error

PROTOCOLS = ("grpc", "http/protobuf")


def _protocol(protocol: str | None, signal: str = "TRACES") -> str:
    source = "protocol="
    value = protocol
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if value:
            break
        value, source = os.environ.get(name), name
    value = (value or "grpc").strip()
    if value not in PROTOCOLS:
        # http/json included: the OpenTelemetry Python exporters have no JSON encoding.
        raise ValueError(
            f"{source} {value!r} is not an OTLP protocol the exporters support: "
            f"use {' or '.join(map(repr, PROTOCOLS))}"
        )
    return value


def _otlp(signal: str, endpoint: str | None, protocol: str | None) -> Any:
    """The OTLP exporter of one signal (``traces`` or ``metrics``) for ``endpoint``."""
    grpc = _protocol(protocol, signal.upper()) == "grpc"
    Exporter: Any
    if signal == "traces":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
    elif grpc:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Exporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Exporter
    if endpoint is None:
        return Exporter()
    if grpc:
        return Exporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    # An explicit endpoint is used as-is by the HTTP exporter: add the signal path, as
    # the exporter itself does for OTEL_EXPORTER_OTLP_ENDPOINT.
    path = "/v1/" + signal
    if not endpoint.rstrip("/").endswith(path):
        endpoint = endpoint.rstrip("/") + path
    return Exporter(endpoint=endpoint)


def otlp_exporter(endpoint: str | None = None, protocol: str | None = None) -> SpanExporter:
    """An OTLP span exporter for ``endpoint`` (or the standard variables).

    Over gRPC (the default) it encodes spans with this library's encoder: the same request,
    several times cheaper (``KET_FAST_OTLP=false``: the exporter's own encoder)."""
    exporter: SpanExporter = _otlp("traces", endpoint, protocol)
    if os.environ.get("KET_FAST_OTLP", "true").strip().lower() not in ("false", "0", "no", "off"):
        otel.with_fast_encoding(exporter)
    return exporter


def otlp_metric_exporter(endpoint: str | None = None, protocol: str | None = None) -> MetricExporter:
    """An OTLP metric exporter for ``endpoint`` (or the standard variables)."""
    exporter: MetricExporter = _otlp("metrics", endpoint, protocol)
    return exporter


def _preaggregation_wanted() -> bool:
    return os.environ.get("KET_PREAGGREGATE", "true").strip().lower() not in ("false", "0", "no", "off")


class _MergingExporter(MetricExporter):
    """Exports what the SDK collected plus the flow metrics' histograms aggregated in place."""

    def __init__(self, inner: MetricExporter, aggregated: PreAggregated) -> None:
        temporality, aggregation = otel.exporter_preferences(inner)
        super().__init__(preferred_temporality=temporality, preferred_aggregation=aggregation)
        self._inner = inner
        self._aggregated = aggregated

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        try:
            metrics_data = self._aggregated.merged_into(metrics_data)
        except Exception:
            report_internal_error("could not add the flow metrics' histograms to an export")
        if not any(rm.scope_metrics for rm in metrics_data.resource_metrics):
            return MetricExportResult.SUCCESS  # nothing at all this time: nothing to send
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis=timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def configure_metrics(
    resource: Resource,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    exporter: MetricExporter | None = None,
    set_global: bool = True,
) -> MeterProvider | None:
    """The MeterProvider of :func:`configure`; None when ``OTEL_METRICS_EXPORTER=none``."""
    if exporter is None:
        from tracing import exporters  # OTEL_METRICS_EXPORTER: otlp, console, otlp_file, none

        exporter = exporters.metric_exporter(lambda: otlp_metric_exporter(endpoint, protocol))
        if exporter is None:
            return None
    # The flow metrics' histograms are aggregated in place and merged into each export
    # (one SDK record() per message each would cost more than the rest of the message's
    # tracing); KET_PREAGGREGATE=false, or an exporter that wants them otherwise than
    # cumulative explicit buckets, records them through the SDK instead.
    aggregated = None
    if _preaggregation_wanted() and otel.histograms_are_cumulative(exporter):
        aggregated = PreAggregated()
        exporter = _MergingExporter(exporter, aggregated)
    # The export interval comes from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
    reader = PeriodicExportingMetricReader(exporter)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    if aggregated is not None and otel.collect_even_when_empty(reader, resource):
        preaggregate(provider, aggregated)
    if set_global and otel.is_placeholder_meter_provider(metrics.get_meter_provider()):
        metrics.set_meter_provider(provider)
    return provider


def configure(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    sampler_ratio: float | None = None,
    exporter: SpanExporter | None = None,
    resource_attributes: dict[str, Any] | None = None,
    set_global: bool = True,
    metrics_endpoint: str | None = None,
    metric_exporter: MetricExporter | None = None,
    traces_file: str | None = None,
) -> TracerProvider:
    """Set up a service: resource, sampler, BatchSpanProcessor + OTLP exporter, and a
    MeterProvider exporting the flow metrics over OTLP.

    >>> provider = tracing.configure("inventory-service", endpoint="http://127.0.0.1:4317")

    Args:
        service_name: ``service.name``; when None, ``OTEL_SERVICE_NAME`` applies.
        endpoint: OTLP endpoint; default from ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.
        protocol: ``grpc`` (default) or ``http/protobuf``; default from the variables.
        sampler_ratio: ParentBased(TraceIdRatioBased(ratio)); when None the sampler
            comes from ``OTEL_TRACES_SAMPLER`` (default: parent-based always-on).
        exporter: use this exporter instead of OTLP (tests, console, files).
        set_global: install the providers as the global ones (unless set already);
            False: no metrics (pass a MeterProvider to the wrappers instead).
        metrics_endpoint: OTLP endpoint for the metrics; default
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, else ``endpoint``, else
            ``OTEL_EXPORTER_OTLP_ENDPOINT``. ``OTEL_METRICS_EXPORTER=none``: no metrics.
        metric_exporter: use this metric exporter instead of OTLP.
        traces_file: the file ``OTEL_TRACES_EXPORTER=otlp_file`` appends OTLP JSON lines to
            (default ``KET_TRACES_FILE``); see :mod:`tracing.exporters` for every value.

    Spans are flushed at interpreter exit. Returns the provider.

    Raises ValueError (one line saying what to change) for an OTLP protocol other than
    ``grpc`` or ``http/protobuf`` and for a propagator named in ``OTEL_PROPAGATORS`` that
    is not installed (:class:`~tracing.write.otel.MissingPropagatorError`).
    """
    from tracing.write import otel

    otel.load_propagators()
    attributes = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)
    sampler = ParentBased(TraceIdRatioBased(sampler_ratio)) if sampler_ratio is not None else None
    provider = TracerProvider(resource=resource, sampler=sampler)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":  # as the SDK reads it
        # Its tracers record nothing; installed anyway, so other instrumentations record nothing either.
        if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        return provider  # and nothing to export: no exporter, no metrics
    from tracing import exporters  # OTEL_TRACES_EXPORTER: otlp, console, otlp_file, none

    chosen = (
        [exporter]
        if exporter
        else exporters.span_exporters(lambda: otlp_exporter(endpoint, protocol), traces_file)
    )
    for span_exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    if not set_global:
        exporters.register_exit_probe()
        return provider  # wrappers find a MeterProvider only globally or when given one
    if metrics_endpoint is None and not os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        metrics_endpoint = endpoint  # one endpoint for both signals, as OTEL_EXPORTER_OTLP_ENDPOINT
    configure_metrics(
        resource,
        endpoint=metrics_endpoint,
        protocol=protocol,
        exporter=metric_exporter,
        set_global=set_global,
    )
    exporters.register_exit_probe()  # after the providers: at exit it runs before their flush
    return provider
