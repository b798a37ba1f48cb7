"""A demo service pointed at an address where no Kafka answers says so, and what to do."""

from __future__ import annotations

import logging

import pytest

from tracing.demo import runtime
from tracing.demo.services.inventory import InventoryService

NOBODY = "127.0.0.1:9"  # the discard port: nothing listens there


def test_creating_topics_where_no_broker_answers_names_the_timeout():
    with pytest.raises(RuntimeError) as raised:
        runtime.ensure_topics(NOBODY, ["orders"], timeout=2)
    assert str(raised.value) == "no broker answered within 2 s (creating topic orders)"


def test_a_service_that_cannot_use_kafka_logs_why_and_what_to_do(monkeypatch, caplog):
    original = runtime.ensure_topics

    def unreachable(bootstrap, names, partitions=1, timeout=30.0):  # the real one, sooner
        return original(bootstrap, names, partitions, timeout=1)

    monkeypatch.setattr(runtime, "ensure_topics", unreachable)
    monkeypatch.setattr(runtime.tracing, "configure", lambda name: None)
    args = runtime.parser(InventoryService).parse_args(["--bootstrap", NOBODY])
    with caplog.at_level(logging.ERROR):
        assert runtime.run(InventoryService, args) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"Kafka at {NOBODY} is not usable: no broker answered within 1 s (creating topic orders); "
        "start Kafka there, or pass --bootstrap HOST:PORT"
    ]
