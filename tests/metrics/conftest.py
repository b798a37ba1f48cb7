"""Fixtures for the live metrics tests.

`metrics_stack`: the collector + Prometheus of scripts/metrics-stack.sh, next to the real stack
(Kafka + Jaeger). Used as it is when already running (`make stack-up`); otherwise started here
(which installs Prometheus and builds the collector if needed) and stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.metrics import live
from tests.metrics.flows import Flow, drive, new_flow
from tests.stack import Stack, in_ci

# A cold collector build takes minutes; later starts take seconds.
METRICS_STACK_START_TIMEOUT = 900


@dataclass(frozen=True)
class MetricsStack:
    prometheus_url: str
    otlp_endpoint: str


@pytest.fixture(scope="session")
def metrics_stack(real_stack: Stack, request: pytest.FixtureRequest) -> Iterator[MetricsStack]:
    started_here = False
    problem = live.metrics_stack_problem()
    if problem:
        proc = live.start_metrics_stack(METRICS_STACK_START_TIMEOUT)
        if proc.returncode != 0:
            message = (
                f"metrics stack not running ({problem}) and scripts/metrics-stack.sh up failed:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
            if in_ci() or request.config.getoption("--require-stack"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        started_here = True
    try:
        yield MetricsStack(live.prometheus_url(), live.metrics_otlp())
    finally:
        if started_here:
            live.stop_metrics_stack()


@pytest.fixture(scope="session")
def flow_traffic(real_stack: Stack, metrics_stack: MetricsStack) -> Flow:
    """Event-flow traffic through real Kafka into the metrics stack's collector, in two waves.

    Two waves a few scrapes apart make every counter grow between two Prometheus samples, so
    rate() and histogram_quantile() have something to compute (one wave may land in a single
    connector flush, and a counter seen only once has no rate).
    """
    flow = new_flow(real_stack.kafka_bootstrap, prefix="dash")
    drive(real_stack.kafka_bootstrap, metrics_stack.otlp_endpoint, flow, ok=10, failing=3, slow=2)
    # the connectors flush every 5 s and Prometheus scrapes every 2 s (metrics-stack.sh defaults)
    live.wait_until(
        lambda: live.prom_query(
            f'traces_span_metrics_calls_total{{service_name="{flow.services["billing"]}", '
            f'span_kind="SPAN_KIND_CONSUMER"}}'
        ),
        timeout=60,
        what="the first wave in Prometheus",
    )
    drive(real_stack.kafka_bootstrap, metrics_stack.otlp_endpoint, flow, ok=10, failing=3, slow=2)
    return flow


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
