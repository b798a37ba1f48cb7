"""One RabbitMQ measurement in a fresh interpreter: ``python -m benchmarks.worker_rabbitmq '<json spec>'``.

The spec names the client (``pika``: a ``BlockingConnection``; ``aio-pika``), the library
(``raw``, ``ours``, ``contrib``: the contrib instrumentation of that client, run under its own
venv's interpreter), the sampling (``none`` = no SDK, or a ratio under ``ParentBased``) and the
broker's URL. It prints one JSON line (the last line of stdout) with the throughput of each phase:

- ``publish``: N root publishes of 100 bytes to a direct exchange bound to a queue (pika:
  ``basic_publish``; aio-pika: ``await exchange.publish()``), without publisher confirms so
  the client's own cost is measured rather than N broker round trips; the phase ends with
  one round trip to the broker and the span processor's ``force_flush()``.
- ``consume``: N messages published beforehand (untimed, through the raw AMQP channel, each
  with a ``traceparent`` whose sampled flag is set with the run's ratio, as traced publishers
  send them), consumed with prefetch 1,000 and one ack per message (pika: ``basic_consume`` +
  ``start_consuming``, the callback acks; aio-pika: ``queue.iterator()`` with
  ``async with message.process()``).

Each phase is repeated (a fresh channel each time) until ``MIN_PHASE_S`` of timed work or
``MAX_REPEATS`` and its median taken. Imports neither ``tracing`` (unless the library is
``ours``) nor confluent-kafka: the contrib venvs hold only their client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

VALUE = bytes(range(100))
PREFETCH = 1000
MIN_PHASE_S = 0.5
MAX_REPEATS = 5
PHASES = ("publish", "consume")


class _Counting:
    """A span exporter that counts the spans it is given and discards them."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def setup_sdk(spec: dict[str, Any]) -> tuple[Any, _Counting | None]:
    if spec["sampling"] == "none":
        return None, None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    ratio = float(spec["sampling"])
    sampler = ParentBased(ALWAYS_ON) if ratio >= 1.0 else ParentBased(TraceIdRatioBased(ratio))
    exporter = _Counting()
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"bench-{spec['client']}-{spec['library']}"}),
        sampler=sampler,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)
    return provider, exporter


def traceparents(n: int, ratio: float, seed: int) -> list[str]:
    """N random valid traceparents; the sampled flag set with probability ``ratio``."""
    rnd = random.Random(seed)
    return [
        f"00-{rnd.getrandbits(128) or 1:032x}-{rnd.getrandbits(64) or 1:016x}-"
        f"{1 if rnd.random() < ratio else 0:02x}"
        for _ in range(n)
    ]


# ----------------------------------------------------------------------------- pika
def _pika_instrument(library: str, channel: Any) -> Any:
    if library == "ours":
        from tracing.rabbitmq import TracedBlockingChannel

        return TracedBlockingChannel(channel)
    if library == "contrib":
        from opentelemetry.instrumentation.pika import PikaInstrumentor

        PikaInstrumentor.instrument_channel(channel)
    return channel


def run_pika(spec: dict[str, Any], provider: Any, exporter: _Counting | None) -> dict[str, Any]:
    import pika

    n, library = int(spec["n"]), spec["library"]
    ratio = 1.0 if spec["sampling"] == "none" else float(spec["sampling"])
    connection = pika.BlockingConnection(pika.URLParameters(spec["url"]))
    admin = connection.channel()
    tag = uuid.uuid4().hex[:10]
    exchange, queue = f"bench-{tag}", f"bench-{tag}"
    admin.exchange_declare(exchange, "direct", auto_delete=True)
    admin.queue_declare(queue, exclusive=True)
    admin.queue_bind(queue, exchange, routing_key="orders")
    properties = pika.BasicProperties(content_type="application/octet-stream")

    def publish_once() -> float:
        channel = _pika_instrument(library, connection.channel())
        publish = channel.basic_publish
        start = time.perf_counter()
        for _ in range(n):
            publish(exchange, "orders", VALUE, properties)
        admin.queue_declare(queue, passive=True)  # one round trip: the broker has read them
        if provider is not None:
            provider.force_flush()
        elapsed = time.perf_counter() - start
        channel.close()
        admin.queue_purge(queue)
        return elapsed

    def consume_once(seed: int) -> float:
        for tp in traceparents(n, ratio, seed):
            admin.basic_publish(exchange, "orders", VALUE, pika.BasicProperties(headers={"traceparent": tp}))
        while admin.queue_declare(queue, passive=True).method.message_count < n:
            time.sleep(0.01)
        channel = _pika_instrument(library, connection.channel())
        channel.basic_qos(prefetch_count=PREFETCH)
        got = 0

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            nonlocal got
            ch.basic_ack(method.delivery_tag)
            got += 1
            if got == n:
                ch.stop_consuming()

        start = time.perf_counter()
        channel.basic_consume(queue, on_message)
        channel.start_consuming()
        if provider is not None:
            provider.force_flush()
        elapsed = time.perf_counter() - start
        channel.close()
        return elapsed

    try:
        return _phases(spec, exporter, publish_once, consume_once)
    finally:
        connection.close()


# ----------------------------------------------------------------------------- aio-pika
def run_aio_pika(spec: dict[str, Any], provider: Any, exporter: _Counting | None) -> dict[str, Any]:
    return asyncio.run(_aio_pika(spec, provider, exporter))


async def _aio_pika(spec: dict[str, Any], provider: Any, exporter: _Counting | None) -> dict[str, Any]:
    import aio_pika
    import aiormq

    n, library = int(spec["n"]), spec["library"]
    ratio = 1.0 if spec["sampling"] == "none" else float(spec["sampling"])
    connection = await aio_pika.connect(spec["url"])
    admin = await connection.channel()
    tag = uuid.uuid4().hex[:10]
    exchange_name, queue_name = f"bench-{tag}", f"bench-{tag}"
    exchange = await admin.declare_exchange(exchange_name, aio_pika.ExchangeType.DIRECT, auto_delete=True)
    queue = await admin.declare_queue(queue_name, exclusive=True)
    await queue.bind(exchange, "orders")
    # The untimed input goes through the AMQP channel underneath: neither library wraps it.
    underlay = await admin.get_underlay_channel()
    if library == "contrib":
        from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor

        AioPikaInstrumentor().instrument()

    async def channel() -> Any:
        raw = await connection.channel(publisher_confirms=False)
        if library == "ours":
            from tracing.rabbitmq.aio import TracedChannel

            return TracedChannel(raw)
        return raw

    async def publish_once() -> float:
        ch = await channel()
        ex = await ch.get_exchange(exchange_name, ensure=False)
        publish = ex.publish
        message = aio_pika.Message
        start = time.perf_counter()
        for _ in range(n):
            await publish(message(VALUE, content_type="application/octet-stream"), "orders")
        await queue.declare()  # one round trip: the broker has read them
        if provider is not None:
            provider.force_flush()
        elapsed = time.perf_counter() - start
        await ch.close()
        await queue.purge()
        return elapsed

    async def consume_once(seed: int) -> float:
        for tp in traceparents(n, ratio, seed):
            await underlay.basic_publish(
                VALUE,
                exchange=exchange_name,
                routing_key="orders",
                properties=aiormq.spec.Basic.Properties(headers={"traceparent": tp}),
            )
        while ((await queue.declare()).message_count or 0) < n:
            await asyncio.sleep(0.01)
        ch = await channel()
        await ch.set_qos(prefetch_count=PREFETCH)
        q = await ch.get_queue(queue_name, ensure=False)
        got = 0
        start = time.perf_counter()
        async with q.iterator() as messages:
            async for msg in messages:
                async with msg.process():
                    got += 1
                if got == n:
                    break
        if provider is not None:
            provider.force_flush()
        elapsed = time.perf_counter() - start
        await ch.close()
        return elapsed

    try:
        return await _aphases(spec, exporter, publish_once, consume_once)
    finally:
        await connection.close()


# ----------------------------------------------------------------------------- phases
def _new_result(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": spec, "seconds": {}, "repeats": {}, "msgs_per_s": {}, "spans_exported": {}}


def _record(result: dict[str, Any], phase: str, runs: list[float], n: int, spans: int) -> None:
    seconds = statistics.median(runs)
    result["seconds"][phase] = seconds
    result["repeats"][phase] = len(runs)
    result["msgs_per_s"][phase] = n / seconds
    result["spans_exported"][phase] = spans / len(runs)


def _enough(runs: list[float], spec: dict[str, Any]) -> bool:
    min_s = float(spec.get("min_phase_s", MIN_PHASE_S))
    return bool(runs) and (sum(runs) >= min_s or len(runs) >= MAX_REPEATS)


def _phases(spec: dict[str, Any], exporter: _Counting | None, publish: Any, consume: Any) -> dict[str, Any]:
    result, n = _new_result(spec), int(spec["n"])
    seed = int(spec.get("seed", 1)) * 100
    for phase in PHASES:
        before = exporter.count if exporter is not None else 0
        runs: list[float] = []
        while not _enough(runs, spec):
            runs.append(publish() if phase == "publish" else consume(seed + len(runs)))
        _record(result, phase, runs, n, (exporter.count if exporter else 0) - before)
    return result


async def _aphases(
    spec: dict[str, Any], exporter: _Counting | None, publish: Any, consume: Any
) -> dict[str, Any]:
    result, n = _new_result(spec), int(spec["n"])
    seed = int(spec.get("seed", 1)) * 100
    for phase in PHASES:
        before = exporter.count if exporter is not None else 0
        runs: list[float] = []
        while not _enough(runs, spec):
            runs.append(await (publish() if phase == "publish" else consume(seed + len(runs))))
        _record(result, phase, runs, n, (exporter.count if exporter else 0) - before)
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    provider, exporter = setup_sdk(spec)
    run = run_pika if spec["client"] == "pika" else run_aio_pika
    result = run(spec, provider, exporter)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip teardown: the span processor's thread may linger; the result is out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
