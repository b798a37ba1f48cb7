"""Fixtures for write-side behaviour tests: librdkafka's mock cluster + in-memory spans."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Spans:
    """An SDK provider whose finished spans tests can read."""

    def __init__(self, **provider_kwargs) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider_kwargs)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def finished(self):
        return list(self.exporter.get_finished_spans())

    def named(self, name: str):
        return [s for s in self.finished() if s.name == name]

    def one(self, name: str):
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.finished()]}"
        return found[0]


@pytest.fixture
def spans() -> Spans:
    return Spans()


_counter = itertools.count()


@pytest.fixture
def topic() -> str:
    return f"t{next(_counter)}-{uuid.uuid4().hex[:8]}"


def consumer_conf(bootstrap: str, group: str = "test-group", **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    conf.update(extra)
    return conf


def assign_all(consumer, topic: str, partitions: int = 4) -> None:
    """The mock cluster auto-creates topics with 4 partitions; assign() skips the group join."""
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])


def poll_n(consumer, n: int, timeout: float = 15.0) -> list:
    """Poll until n messages arrived (the last one's span stays open, as in an app)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg)
    assert len(got) == n, f"expected {n} messages, got {len(got)}"
    return got
