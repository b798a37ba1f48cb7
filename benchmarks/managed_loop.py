"""The managed loop's benchmark: ``TracedConsumer.run()`` with its default commits against the loop
people write by hand, a plain confluent-kafka ``poll()`` loop committing asynchronously every
1,000 messages or second, on the real broker, over the same messages, in the same run.

    python -m benchmarks --loop-only          # just this (part of every full `make bench`)
    python -m benchmarks.managed_loop         # the same, on its own

Both consume N pre-produced messages (100-byte values, a ``traceparent`` header) from a topic
of 4 partitions as members of a fresh consumer group (``subscribe``), with an empty handler; the
clock starts once the first message arrived and librdkafka has prefetched, and stops after the
last commit. Without an SDK: ``run()`` against the plain loop. At 100 % sampling (spans to a
discarding exporter through a BatchSpanProcessor): ``run()`` against the plain loop instrumented
by the OpenTelemetry contrib package (its own venv, see ``contrib_env``). Each measurement runs
in a fresh interpreter; variants interleave round by round; medians. Target: 0.25x or better.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.25
COMMIT_EVERY = 1000
COMMIT_INTERVAL_S = 1.0
PREFETCH_S = 1.5
# (variant, sampling): the baseline of each pair first.
VARIANTS = [("plain", "none"), ("run", "none"), ("contrib-plain", "1.0"), ("run", "1.0")]


# ----------------------------------------------------------------------------- one measurement
def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """In this interpreter: consume the topic with one variant; messages per second."""
    from benchmarks.worker import setup_sdk

    provider, exporter = setup_sdk({**spec, "exporter": "discard", "library": spec["variant"]})
    conf = {
        "bootstrap.servers": spec["bootstrap"],
        "group.id": f"bench-loop-{uuid.uuid4().hex[:10]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    n = spec["n"]
    clock: dict[str, float] = {}
    if spec["variant"] == "run":
        from tracing import TracedConsumer

        consumer: Any = TracedConsumer(conf)
        consumer.subscribe([spec["topic"]])
        got = [0]

        def handler(msg: Any) -> None:
            got[0] += 1
            if got[0] == 1:
                time.sleep(PREFETCH_S)  # let librdkafka prefetch the rest
                clock["start"] = time.perf_counter()

        consumer.run(handler, stop=lambda: got[0] >= n, handle_signals=False)
    else:
        consumer = _plain_consumer(spec["variant"], conf, spec["topic"])
        _plain_loop(consumer, n, clock)
    if provider is not None:
        provider.force_flush()
    elapsed = time.perf_counter() - clock["start"]
    consumer.close()
    return {
        "msgs_per_s": (n - 1) / elapsed,
        "spans_exported": exporter.count if exporter is not None else None,
    }


def _plain_consumer(variant: str, conf: dict[str, Any], topic: str) -> Any:
    from confluent_kafka import Consumer

    raw = Consumer(conf)
    raw.subscribe([topic])  # before wrapping: the contrib proxy passes no subscribe
    if variant == "plain":
        return raw
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    return ConfluentKafkaInstrumentor.instrument_consumer(raw)


def _plain_loop(consumer: Any, n: int, clock: dict[str, float]) -> None:
    """What people write: poll, handle, an asynchronous commit every 1,000 messages or second."""
    poll, commit = consumer.poll, getattr(consumer, "_consumer", consumer).commit
    handle: Callable[[Any], None] = lambda msg: None  # noqa: E731
    got = 0
    since = 0
    last = time.monotonic()
    while got < n:
        msg = poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        handle(msg)
        got += 1
        if got == 1:
            time.sleep(PREFETCH_S)
            clock["start"] = time.perf_counter()
            last = time.monotonic()
            continue
        since += 1
        if since >= COMMIT_EVERY or time.monotonic() - last >= COMMIT_INTERVAL_S:
            commit(asynchronous=True)
            since, last = 0, time.monotonic()
    poll(0)  # ends contrib's span of the last message, as the next poll would
    commit(asynchronous=False)


# ----------------------------------------------------------------------------- the driver
def _preproduce(bootstrap: str, n: int) -> str:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from benchmarks.worker import KEYS, PARTITIONS, VALUE, traceparents

    topic = f"bench-loop-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=15)[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, tp in enumerate(traceparents(n, 1.0, 7)):
        while True:
            try:
                producer.produce(topic, VALUE, KEYS[i % len(KEYS)], headers=[("traceparent", tp)])
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    return topic


def run(
    *, bootstrap: str, rounds: int, n: int, contrib: str | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """Every variant ``rounds`` times, interleaved; medians and the ratios to the target."""
    say(f"managed loop: pre-producing {n:,} messages to the real broker at {bootstrap}")
    topic = _preproduce(bootstrap, n)
    rates: dict[str, list[float]] = {}
    errors: list[str] = []
    for rnd in range(1, rounds + 1):
        for variant, sampling in VARIANTS:
            key = f"{variant}@{sampling}"
            python = contrib if variant == "contrib-plain" else sys.executable
            if python is None:
                errors.append(f"{key}: no contrib venv")
                continue
            spec = {"variant": variant, "sampling": sampling, "bootstrap": bootstrap, "topic": topic, "n": n}
            out = subprocess.run(
                [python, "-m", "benchmarks.managed_loop", json.dumps(spec)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300 + n / 1000,
            )
            lines = out.stdout.strip().splitlines()
            if out.returncode != 0 or not lines:
                tail = [x for x in out.stderr.strip().splitlines() if not x.startswith("%")][-3:]
                errors.append(f"{key}: exit {out.returncode}: {' | '.join(tail)}")
                say(f"[round {rnd}/{rounds}] {key:18} FAILED: {errors[-1]}")
                continue
            rate = json.loads(lines[-1])["msgs_per_s"]
            rates.setdefault(key, []).append(rate)
            say(f"[round {rnd}/{rounds}] {key:18} {rate / 1000:8.1f}k msgs/s")
    medians = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {}
    for ours, base in (("run@none", "plain@none"), ("run@1.0", "contrib-plain@1.0")):
        if ours in medians and base in medians:
            ratios[f"{ours} / {base}"] = medians[ours] / medians[base]
    return {
        "n": n,
        "rounds": rounds,
        "msgs_per_s": medians,
        "ratios": ratios,
        "errors": errors,
        "target": TARGET,
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"managed loop, real broker, N={result['n']:,}, medians of {result['rounds']} round(s):"]
    for key, rate in result["msgs_per_s"].items():
        lines.append(f"  {key:20} {rate / 1000:8.1f}k msgs/s")
    for name, ratio in result["ratios"].items():
        verdict = "met" if ratio >= result["target"] else "NOT met"
        lines.append(f"  {name:38} {ratio:5.2f}x  (target {result['target']}x: {verdict})")
    for error in result["errors"]:
        lines.append(f"  failed: {error}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv:  # a worker: one measurement
        print(json.dumps(measure(json.loads(argv[0]))), flush=True)
        return 0
    from benchmarks import contrib_env, stack

    problem = stack.kafka_problem(stack.KAFKA_BOOTSTRAP)
    if problem:
        print(f"managed loop: {problem}; start the broker with `make stack-up`", file=sys.stderr)
        return 2
    python = contrib_env.ensure(create=True, say=print)
    result = run(
        bootstrap=stack.KAFKA_BOOTSTRAP,
        rounds=3,
        n=200_000,
        contrib=str(python) if python else None,
        say=print,
    )
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
