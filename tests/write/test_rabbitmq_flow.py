"""RabbitMQ on the real broker: the flow metrics (sent, consumed, operation and process
durations, the chain duration over a path through RabbitMQ and the real Kafka), and
``tracing.instrument()`` / ``opentelemetry-instrument`` tracing unedited pika and aio-pika code."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from tests import stack
from tests.write.test_flow_metrics import Metrics
from tracing import TracedConsumer, TracedProducer
from tracing.write.metrics import CHAIN_HEADER, parse_chain

pika = pytest.importorskip("pika")
aio_pika = pytest.importorskip("aio_pika")

from tracing.rabbitmq import TracedBlockingChannel  # noqa: E402
from tracing.rabbitmq.aio import TracedChannel  # noqa: E402

N = 5
WAIT = 30.0


@pytest.fixture(scope="module")
def amqp_url(request: pytest.FixtureRequest) -> str:
    url = stack.rabbitmq_url()
    problem = stack.rabbitmq_problem(url)
    if problem:
        message = f"{problem}; run `make stack-up`"
        if stack.in_ci() or request.config.getoption("--require-stack"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def meters() -> Metrics:
    return Metrics()


def _names() -> tuple[str, str]:
    run = uuid.uuid4().hex[:10]
    return f"orders-{run}", f"notifications-{run}"


def _declare(url: str, exchange: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    channel.queue_declare(queue, arguments={"x-expires": 120_000})
    channel.queue_bind(queue, exchange, "order.#")
    connection.close()


def _series(meters: Metrics, name: str) -> dict[tuple, float]:
    """A metric's series as {sorted attributes: count or value}."""
    return {
        tuple(sorted(p.attributes.items())): getattr(p, "count", None) or getattr(p, "value", 0)
        for p in meters.points(name)
    }


def _consume_pika(connection, channel, queue: str, n: int, handle=None) -> list:  # noqa: ANN001
    seen: list = []

    def on_message(ch, method, properties, body) -> None:  # noqa: ANN001
        if handle is not None:
            handle(properties, body)
        ch.basic_ack(method.delivery_tag)
        seen.append(properties)

    channel.basic_consume(queue, on_message)
    deadline = time.monotonic() + WAIT
    while len(seen) < n and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    assert len(seen) == n, f"{len(seen)} of {n} delivered from {queue}"
    return seen


@pytest.mark.stack
def test_pika_sends_and_deliveries_are_counted_and_timed_with_rabbitmq_labels(amqp_url, meters):
    exchange, queue = _names()
    _declare(amqp_url, exchange, queue)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = TracedBlockingChannel(connection.channel(), meter_provider=meters.provider)
    channel.confirm_delivery()
    for i in range(N):
        channel.basic_publish(exchange, "order.created", b'{"id": %d}' % i)
    _consume_pika(connection, channel, queue, N)
    connection.close()

    base = {"messaging.system": "rabbitmq", "messaging.destination.name": exchange,
            "server.address": "127.0.0.1", "server.port": 5672}
    sent = _series(meters, "messaging.client.sent.messages")
    assert sent == {tuple(sorted({**base, "messaging.operation.name": "send"}.items())): N}
    consumed = _series(meters, "messaging.client.consumed.messages")
    assert sum(consumed.values()) == N
    assert all(dict(k)["messaging.system"] == "rabbitmq" for k in consumed)
    assert all(dict(k)["messaging.destination.name"] == exchange for k in consumed)
    assert sum(_series(meters, "messaging.client.operation.duration").values()) == N  # publish to ack
    processed = _series(meters, "messaging.process.duration")
    assert sum(processed.values()) == N
    assert {dict(k)["messaging.operation.name"] for k in processed} == {"process"}
    # RabbitMQ has no lag of Kafka's shape: no lag series at all
    assert not meters.points("messaging.kafka.consumer.lag")


@pytest.mark.stack
def test_aio_pika_sends_and_deliveries_are_counted_with_the_default_exchange_named(amqp_url, meters):
    queue = f"ledger-{uuid.uuid4().hex[:10]}"

    async def scenario() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = TracedChannel(await connection.channel(), meter_provider=meters.provider)
            traced_queue = await channel.declare_queue(queue, arguments={"x-expires": 120_000})
            for i in range(N):
                await channel.default_exchange.publish(aio_pika.Message(b"%d" % i), queue)
            got = 0
            async with traced_queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        got += 1
                    if got == N:
                        break

    asyncio.run(asyncio.wait_for(scenario(), WAIT))
    sent = _series(meters, "messaging.client.sent.messages")
    assert [dict(k)["messaging.destination.name"] for k in sent] == ["amq.default"]
    assert sum(sent.values()) == N
    assert sum(_series(meters, "messaging.client.consumed.messages").values()) == N
    assert sum(_series(meters, "messaging.process.duration").values()) == N


def test_the_chain_duration_follows_one_path_through_rabbitmq_and_kafka(real_stack, amqp_url, meters):
    """exchange (pika) -> Kafka topic -> default exchange (aio-pika): the last consumer's
    chain duration is measured from the first publish, along ``{exchange}>{topic}>amq.default``."""
    exchange, queue = _names()
    ledger = f"ledger-{uuid.uuid4().hex[:10]}"
    _declare(amqp_url, exchange, queue)
    topic = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("mixed"))
    kafka = {"bootstrap.servers": real_stack.kafka_bootstrap}
    started_ms = time.time_ns() // 1_000_000

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = TracedBlockingChannel(connection.channel(), meter_provider=meters.provider)
    channel.confirm_delivery()
    channel.basic_publish(exchange, "order.created", b'{"id": 1}')
    producer = TracedProducer(kafka, meter_provider=meters.provider)

    def onward(properties, body) -> None:  # noqa: ANN001
        producer.produce(topic, body)
        assert producer.flush(WAIT) == 0

    (first,) = _consume_pika(connection, channel, queue, 1, handle=onward)
    connection.close()
    assert parse_chain(first.headers[CHAIN_HEADER]).path == exchange

    consumer = TracedConsumer({**kafka, "group.id": "points", "auto.offset.reset": "earliest"},
                              meter_provider=meters.provider)
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + WAIT
    msg = None
    while msg is None and time.monotonic() < deadline:
        polled = consumer.poll(0.5)
        msg = polled if polled is not None and polled.error() is None else None
    assert msg is not None, f"nothing on {topic}"

    async def publish_and_consume() -> str:
        amqp = await aio_pika.connect(amqp_url)
        async with amqp:
            aio = TracedChannel(await amqp.channel(), meter_provider=meters.provider)
            traced_queue = await aio.declare_queue(ledger, arguments={"x-expires": 120_000})
            with consumer.process(msg):
                await aio.default_exchange.publish(aio_pika.Message(msg.value()), ledger)
            async with traced_queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        return str(message.headers[CHAIN_HEADER])
        raise AssertionError("no message")

    carried = asyncio.run(asyncio.wait_for(publish_and_consume(), WAIT))
    consumer.close()
    chain = parse_chain(carried)
    path = f"{exchange}>{topic}>amq.default"
    assert chain is not None and chain.path == path and chain.start_ms >= started_ms
    durations = {p.attributes["eventchain.path"]: p for p in meters.points("eventchain.chain.duration")}
    assert set(durations) == {exchange, f"{exchange}>{topic}", path}
    assert durations[path].attributes["messaging.system"] == "rabbitmq"
    assert durations[f"{exchange}>{topic}"].attributes["messaging.system"] == "kafka"
    assert durations[path].count == 1
    assert durations[path].sum >= durations[f"{exchange}>{topic}"].sum  # later hops, longer chain


# --- tracing.instrument() and opentelemetry-instrument ------------------------------------------

_APP = """
import asyncio, os, sys, aio_pika, pika
url, queue = os.environ["KET_RABBITMQ_URL"], sys.argv[1]

async def aio_app():
    for connect in (aio_pika.connect, aio_pika.connect_robust):
        connection = await connect(url)
        async with connection:
            async with connection.channel() as channel:      # one style...
                await channel.declare_queue(queue, arguments={"x-expires": 120000})
                await channel.default_exchange.publish(aio_pika.Message(b"x"), queue)
            channel = await connection.channel()             # ...and the other
            q = await channel.get_queue(queue)
            async with q.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        break

def pika_app():
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_publish("", queue, b"y")
    for method, properties, body in channel.consume(queue, inactivity_timeout=30):
        channel.basic_ack(method.delivery_tag)
        break
    channel.cancel()
    connection.close()

asyncio.run(asyncio.wait_for(aio_app(), 60))
pika_app()
"""


def _check_app_spans(finished: list) -> None:
    by_name: dict[str, list] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    assert sorted((name, len(s)) for name, s in by_name.items()) == [
        ("process amq.default", 3), ("send amq.default", 3)]
    sends = {s.context.span_id: s for s in by_name["send amq.default"]}
    for process in by_name["process amq.default"]:
        assert process.parent is not None and process.parent.span_id in sends  # one trace per message
        assert process.attributes["messaging.system"] == "rabbitmq"


@pytest.mark.stack
def test_instrument_traces_unedited_aio_pika_and_pika_code_once_per_message(amqp_url, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(f"""
        import tracing
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = tracing.configure("app", exporter=exporter)
        tracing.instrument()
        {textwrap.indent(_APP, "        ").strip()}
        provider.force_flush()
        import json
        print(json.dumps([[s.name, format(s.context.span_id, "x"),
                           format(s.parent.span_id, "x") if s.parent else None]
                          for s in exporter.get_finished_spans()]))
    """))
    _run_and_check([sys.executable, str(script), f"instr-{uuid.uuid4().hex[:10]}"], amqp_url)


@pytest.mark.stack
def test_opentelemetry_instrument_traces_pika_and_aio_pika_through_the_entry_point(amqp_url, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(f"""
        import tracing
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = tracing.configure("app", exporter=exporter)
        # --- the unedited app ---
        {textwrap.indent(_APP, "        ").strip()}
        provider.force_flush()
        import json
        print(json.dumps([[s.name, format(s.context.span_id, "x"),
                           format(s.parent.span_id, "x") if s.parent else None]
                          for s in exporter.get_finished_spans()]))
    """))
    bin_dir = Path(sys.executable).parent
    _run_and_check([str(bin_dir / "opentelemetry-instrument"), sys.executable, str(app),
                    f"auto-{uuid.uuid4().hex[:10]}"], amqp_url)


def _run_and_check(argv: list[str], amqp_url: str) -> None:
    import json

    env = {**os.environ, "KET_RABBITMQ_URL": amqp_url, "OTEL_TRACES_EXPORTER": "none",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    names = sorted(name for name, _, _ in spans)
    assert names == ["process amq.default"] * 3 + ["send amq.default"] * 3, names
    sends = {span_id for name, span_id, _ in spans if name.startswith("send")}
    parents = [parent for name, _, parent in spans if name.startswith("process")]
    assert set(parents) == sends  # each message processed once, as the child of its own send
