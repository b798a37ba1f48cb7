"""Shared pytest setup.

Tests that need the real local stack (Kafka + Jaeger, started by `make stack-up`)
are marked ``@pytest.mark.stack`` or use the ``real_stack`` fixture (either one
implies the other). When the stack is not reachable they are skipped, except in CI
(CI=true) or with ``--require-stack``, where they fail. ``-m "not stack"`` leaves
them out entirely.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from hypothesis import settings

from tests import stack as stack_helpers

# In CI the fuzz tests draw the same examples every run: a red run is reproducible, and a
# green one does not turn red on an unlucky draw of unrelated code.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if stack_helpers.in_ci():
    settings.load_profile("ci")

_HOW_TO_START = "run `make stack-up` (or `scripts/stack.sh up`) first"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-stack",
        action="store_true",
        default=False,
        help="fail (instead of skip) tests marked 'stack' when the real stack is not reachable; "
        "implied by CI=true",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "real_stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("stack") is None:
            item.add_marker(pytest.mark.stack)
    # Tests that stop and restart Kafka or Jaeger run last: a restarted in-memory Jaeger
    # forgets every trace, which tests holding traces from earlier (session fixtures) need.
    items.sort(key=lambda item: item.get_closest_marker("outage") is not None)


@pytest.fixture(scope="session")
def _stack_probe() -> str | None:
    bootstrap = stack_helpers.kafka_bootstrap()
    jaeger = stack_helpers.jaeger_url()
    problems = [
        p for p in (stack_helpers.kafka_problem(bootstrap), stack_helpers.jaeger_problem(jaeger)) if p
    ]
    return "; ".join(problems) or None


@pytest.fixture(scope="session")
def real_stack(request: pytest.FixtureRequest, _stack_probe: str | None) -> stack_helpers.Stack:
    """The running local stack; skips (fails in CI) when Kafka or Jaeger is not reachable."""
    if _stack_probe:
        message = f"real stack not reachable: {_stack_probe}. {_HOW_TO_START}."
        if stack_helpers.in_ci() or request.config.getoption("--require-stack"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return stack_helpers.Stack(
        kafka_bootstrap=stack_helpers.kafka_bootstrap(),
        jaeger_url=stack_helpers.jaeger_url(),
        otlp_endpoint=stack_helpers.otlp_endpoint(),
        otlp_http_endpoint=stack_helpers.otlp_http_endpoint(),
    )


@pytest.fixture(autouse=True)
def _stack_marker_needs_stack(request: pytest.FixtureRequest) -> None:
    """A test marked `stack` gets the reachability check even if it does not ask for real_stack."""
    if request.node.get_closest_marker("stack") is not None:
        request.getfixturevalue("real_stack")


@pytest.fixture(scope="session")
def mock_cluster() -> Iterator[str]:
    """Bootstrap address of librdkafka's in-process mock cluster, alive for the session (unit tests)."""
    owner = Producer({"test.mock.num.brokers": 1, "log_level": 0})
    broker = next(iter(owner.list_topics(timeout=10).brokers.values()))
    yield f"{broker.host}:{broker.port}"
    owner.flush(5)
