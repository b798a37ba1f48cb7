"""The flow metrics' own cost in instructions, for an A/B that a loaded machine cannot blur.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.metrics_instructions produce on 2000

runs N sends (or consumed messages) through the traced clients, over stand-ins for the
confluent-kafka clients (a delivery report served at once, the same message polled again
and again), at 100 % sampling with a span processor that drops every span, and with the
flow metrics on (the global MeterProvider exactly as ``configure()`` builds it) or off.
:func:`main` with ``--callgrind`` runs each variant at two N under callgrind and prints
the instructions per message (the difference of the two runs over the difference of N:
start-up cancels out) and what the metrics add.

    python -m benchmarks.metrics_instructions --callgrind
    python -m benchmarks.metrics_instructions --profile consume on 20000   # cProfile

``consume`` polls a message carrying a ``traceparent`` and an ``eventchain`` header, as a
traced producer with metrics on sends it; ``consume-plain`` one with a ``traceparent`` only
(what ``python -m benchmarks`` pre-produces).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

TOPIC = "orders"
PHASES = ("produce", "consume", "consume-plain")


class FakeMessage:
    """A confluent-kafka ``Message`` as the traced clients read it."""

    __slots__ = ("_headers", "_offset", "_ts")

    def __init__(self, headers: list[tuple[str, bytes]] | None, offset: int, ts: int) -> None:
        self._headers = headers
        self._offset = offset
        self._ts = ts

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"id-01"

    def value(self) -> bytes:
        return b"x" * 100

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


class FakeProducer:
    """Serves each delivery report at once, as ``poll()`` would."""

    def __init__(self) -> None:
        self.report = FakeMessage(None, 42, 0)

    def produce(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> None:
        callback = kwargs.get("on_delivery")
        if callback is not None:
            callback(None, self.report)

    def poll(self, timeout: float = -1) -> int:
        return 0


class FakeConsumer:
    def __init__(self, message: FakeMessage) -> None:
        self.message = message

    def poll(self, timeout: float = -1) -> FakeMessage:
        return self.message

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        return [self.message]

    def close(self) -> None:
        pass


def setup(metrics_on: bool) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Drop(SpanProcessor):  # the span work is alike in both variants: no export thread
        pass

    resource = Resource.create({"service.name": "bench-metrics"})
    provider = TracerProvider(resource=resource)
    if os.environ.get("BENCH_SPAN_PROCESSOR") == "batch":
        # As configure() sets it up: the SDK's BatchSpanProcessor (its export thread counted too),
        # into a discarding exporter, with a queue that never drops.
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 20))
    else:
        provider.add_span_processor(Drop())
    trace.set_tracer_provider(provider)
    if metrics_on:
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

        from tracing.sdk import configure_metrics

        class Discard(MetricExporter):
            def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis: float = 10_000) -> bool:
                return True

            def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
                pass

        os.environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "3600000")  # no collection while timed
        configure_metrics(resource, exporter=Discard(), set_global=True)


def run(phase: str, metrics_on: bool, n: int) -> None:
    from tracing import TracedConsumer, TracedProducer

    setup(metrics_on)
    conf = {"bootstrap.servers": "127.0.0.1:9092", "group.id": "inventory"}
    if phase == "produce":
        producer = TracedProducer(FakeProducer(), client_config=conf)
        produce = producer.produce
        for _ in range(n):
            produce(TOPIC, b"x" * 100, key=b"id-01")
        return
    now_ms = time.time_ns() // 1_000_000
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    if phase == "consume":
        headers.append(("eventchain", f"1;{now_ms - 5000};checkout>orders".encode()))
    consumer = TracedConsumer(FakeConsumer(FakeMessage(headers, 7, now_ms - 20)), client_config=conf)
    poll = consumer.poll
    for _ in range(n):
        poll(1.0)
    consumer.close()


def _callgrind_ir(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.metrics_instructions",
                *args,
            ],
            check=True,
            capture_output=True,
        )
        with open(out) as found:
            text = found.read()
    match = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
    assert match is not None, "no totals in the callgrind output"
    return int(match.group(1))


def callgrind(phases: tuple[str, ...], low: int, high: int) -> dict[str, dict[str, float]]:
    """Instructions per message (metrics off, on, and what they add) per phase."""
    result: dict[str, dict[str, float]] = {}
    for phase in phases:
        per: dict[str, float] = {}
        for state in ("off", "on"):
            per[state] = (
                _callgrind_ir([phase, state, str(high)]) - _callgrind_ir([phase, state, str(low)])
            ) / (high - low)
        per["added"] = per["on"] - per["off"]
        result[phase] = per
        print(
            f"{phase:14s} off {per['off']:9.0f}  on {per['on']:9.0f}  metrics add {per['added']:8.0f} Ir/msg"
        )
    return result


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--callgrind":
        phases = tuple(argv[1].split(",")) if len(argv) > 1 else PHASES
        callgrind(phases, 500, 2500)
        return 0
    if argv and argv[0] == "--profile":
        import cProfile
        import pstats

        phase, state, n = argv[1], argv[2], int(argv[3])
        profiler = cProfile.Profile()
        profiler.runcall(run, phase, state == "on", n)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    phase, state, n = argv[0], argv[1], int(argv[2])
    run(phase, state == "on", n)
    os._exit(0)  # the metric reader's thread must not add its shutdown


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
