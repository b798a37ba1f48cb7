"""The OpenTelemetry internals the write side reads (tracing.write.otel): each works with
the installed release, and each has a public fallback that gives the same answer."""

from __future__ import annotations

import opentelemetry.metrics._internal as metrics_internal
import opentelemetry.trace as trace_api
import pytest
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracing.write import otel


def test_every_internal_read_works_with_the_installed_release():
    # Fails when a supported OpenTelemetry release moves one: the fallback then runs on
    # every message, slower; update tracing/write/otel.py for the new layout.
    otel.load_propagators()  # loaded on first use, as configure() and the wrappers do
    assert [name for name, found in otel.FOUND.items() if not found] == []


def test_without_the_provider_variables_the_public_calls_decide(monkeypatch):
    monkeypatch.delattr(trace_api, "_TRACER_PROVIDER")
    monkeypatch.delattr(metrics_internal, "_METER_PROVIDER")
    tracer_set, meter_set, any_set = otel.GENERIC  # what a release without the variables gets
    assert tracer_set() is True and meter_set() is True and any_set() is True  # then the public calls


def test_the_fast_checks_answer_as_the_generic_ones():
    fast = (otel.tracer_provider_may_be_set, otel.meter_provider_may_be_set, otel.any_provider_may_be_set)
    assert [f() for f in fast] == [g() for g in otel.GENERIC]


def test_the_link_limit_is_the_providers_or_the_environments(monkeypatch):
    assert otel.link_limit(TracerProvider(span_limits=SpanLimits(max_links=7))) == 7
    monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "9")
    assert otel.link_limit(object()) == 9  # a provider without the SDK's limits: the variable
    monkeypatch.delenv("OTEL_SPAN_LINK_COUNT_LIMIT")
    assert otel.link_limit(object()) == 128


def test_a_composite_propagator_whose_layout_changed_is_taken_as_one_custom_propagator():
    inner = TraceContextTextMapPropagator()
    composite = CompositePropagator([inner])
    assert otel.propagator_parts(composite) == [inner]
    del composite._propagators
    assert otel.propagator_parts(composite) == [composite]  # then the generic path handles it


def test_the_root_fast_path_is_installed_only_on_an_sdk_tracer_with_a_ratio_sampler():
    sampler = ParentBased(TraceIdRatioBased(0.5))
    tracer = TracerProvider(sampler=sampler).get_tracer("t")
    assert otel.RootIds.install(tracer, sampler) is not None
    assert otel.RootIds.install(object(), sampler) is None  # no id generator to preload
    assert otel.RootIds.install(tracer, ParentBased(TraceIdRatioBased(0.5))) is None  # not its sampler


@pytest.mark.parametrize("placeholder", [True, False])
def test_the_placeholder_meter_provider_is_recognised(placeholder):
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    provider = metrics.get_meter_provider() if placeholder else MeterProvider()
    if placeholder and not otel.is_placeholder_meter_provider(provider):
        pytest.skip("a global MeterProvider is set in this process")
    assert otel.is_placeholder_meter_provider(provider) is placeholder


def test_the_fast_span_path_installs_on_the_installed_sdk():
    # Fails when a release changes the SDK span's layout (or the supported versions were
    # not updated): spans then take the SDK's own, slower path.
    provider = TracerProvider()
    assert otel.FastSpans.install(provider, provider.get_tracer("t")) is not None


def test_the_current_context_is_the_one_the_api_reads():
    import threading

    from opentelemetry import context

    assert otel.current_context() is context.get_current()
    token = context.attach(context.set_value("k", "v"))
    try:
        assert otel.current_context() is context.get_current()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(otel.current_context() == context.get_current()))
        thread.start()
        thread.join()
        assert seen == [True]
    finally:
        context.detach(token)
