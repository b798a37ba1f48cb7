"""``tracing.configure()``: one call to set a service up for tracing.

Honours the standard variables: ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` (and ``..._TRACES_ENDPOINT``), ``OTEL_EXPORTER_OTLP_PROTOCOL``
(and ``..._TRACES_PROTOCOL``: ``grpc`` or ``http/protobuf``), ``OTEL_TRACES_SAMPLER``/
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*``; ``OTEL_PROPAGATORS`` is read by the API.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased


def _protocol(protocol: str | None) -> str:
    value = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if value not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTLP protocol must be 'grpc' or 'http/protobuf', not {value!r}")
    return value


def otlp_exporter(endpoint: str | None = None, protocol: str | None = None) -> SpanExporter:
    """An OTLP span exporter for ``endpoint`` (or the standard variables)."""
    if _protocol(protocol) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if endpoint is None:
            return OTLPSpanExporter()
        return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

    if endpoint is None:
        return HTTPExporter()
    # An explicit endpoint is used as-is by the HTTP exporter: add the signal path, as
    # the exporter itself does for OTEL_EXPORTER_OTLP_ENDPOINT.
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HTTPExporter(endpoint=endpoint)


def configure(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    sampler_ratio: float | None = None,
    exporter: SpanExporter | None = None,
    resource_attributes: dict[str, Any] | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Set up a service: resource, sampler, BatchSpanProcessor + OTLP exporter.

    >>> provider = tracing.configure("inventory-service", endpoint="http://127.0.0.1:4317")

    Args:
        service_name: ``service.name``; when None, ``OTEL_SERVICE_NAME`` applies.
        endpoint: OTLP endpoint; default from ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``.
        protocol: ``grpc`` (default) or ``http/protobuf``; default from the variables.
        sampler_ratio: ParentBased(TraceIdRatioBased(ratio)); when None the sampler
            comes from ``OTEL_TRACES_SAMPLER`` (default: parent-based always-on).
        exporter: use this exporter instead of OTLP (tests, console, files).
        set_global: install the provider as the global one (unless one is set already).

    Spans are flushed at interpreter exit. Returns the provider.
    """
    attributes = dict(resource_attributes or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)
    sampler = ParentBased(TraceIdRatioBased(sampler_ratio)) if sampler_ratio is not None else None
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter or otlp_exporter(endpoint, protocol)))
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider
