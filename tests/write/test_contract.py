"""The write side's contract: instrumentation never breaks the app, at every entry point.

One set of scenarios runs over every client and every way of sending or consuming:

- send side: ``TracedProducer.produce`` (flow metrics off and on), ``TracedAIOProducer.produce``
  (a future), ``TracedAIOKafkaProducer.send`` and ``send_and_wait``;
- process side: ``TracedConsumer`` drop-in ``poll``, ``with process(msg)``, ``consume`` +
  ``process``, ``run(handler)`` (flow metrics off and on); ``TracedAIOConsumer`` drop-in
  ``poll`` and ``messages()`` + ``async with process(msg)``; ``TracedAIOKafkaConsumer``
  drop-in ``getone``, ``getmany`` + ``process``, ``async for`` + ``process``.

Scenarios: nothing broken (the control), a span processor raising in ``on_start`` and one
raising in ``on_end`` (and one raising in ``on_start`` for every second span only, so that
the spans that do start must be ended), a propagator raising in ``inject`` (send side) and in ``extract``
(process side), a meter whose instruments raise, a handler that raises (process side), a
delivery that fails (send side).

For each: the app sees exactly what it would see without the library (every message with
its value, key and own headers; its own exceptions, the very objects; no others); every span
started is ended once the client is closed; a failure is named by the same ``error.type`` on
the span and on the duration metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition as AIOKafkaTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

import tracing
import tracing.aio
from tests.write.contract_support import (
    CALLBACK_RAISES,
    CLEAN,
    DELIVERY_FAILS,
    EXTRACT,
    HANDLER_RAISES,
    HANDLER_RAISES_KAFKA,
    INJECT,
    METER,
    ON_END,
    ON_START,
    ON_START_SOMETIMES,
    PROCESS_DURATION,
    SEND_DURATION,
    Instrumentation,
    app_headers,
    own_headers,
    payload,
)

N = 3  # messages per test
WAIT = 30.0  # seconds: generous, for a busy machine; a passing test never waits this long
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300, "log_level": 0}


def expected(n: int = N) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [(*payload(i), app_headers(i)) for i in range(n)]


# ==========================================================================================
# Send side
# ==========================================================================================


class Sent:
    """What the app saw of its sends: per message, delivered or the failure; any exception."""

    def __init__(self) -> None:
        self.delivered: list[tuple[bytes, bytes]] = []  # (value, key) as reported back
        self.failures: list[Any] = []  # the error the client reported per failed message
        self.raised: list[BaseException] = []  # exceptions out of the client's methods


def produce_sync(bootstrap_conf: dict, topic: str, inst: Instrumentation) -> Sent:
    sent = Sent()
    producer = tracing.TracedProducer(dict(bootstrap_conf), **inst.client_kwargs())

    def on_delivery(err: Any, msg: Message) -> None:
        if err is None:
            sent.delivered.append((msg.value(), msg.key()))
        else:
            sent.failures.append(err)

    try:
        for i in range(N):
            value, key = payload(i)
            returned = producer.produce(
                topic, value, key, partition=0, headers=app_headers(i), on_delivery=on_delivery
            )
            assert returned is None
        assert producer.flush(WAIT) == 0
    except Exception as exc:  # recorded: the contract says none may come
        sent.raised.append(exc)
    return sent


def produce_aio(bootstrap_conf: dict, topic: str, inst: Instrumentation) -> Sent:
    async def scenario() -> Sent:
        sent = Sent()
        producer = tracing.aio.TracedAIOProducer(dict(bootstrap_conf), **inst.client_kwargs())
        try:
            futures = []
            for i in range(N):
                value, key = payload(i)
                future = await producer.produce(topic, value, key, partition=0, headers=app_headers(i))
                assert isinstance(future, asyncio.Future)
                futures.append(future)
            async with asyncio.timeout(WAIT):
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    sent.failures.append(outcome)
                else:
                    sent.delivered.append((outcome.value(), outcome.key()))
        except Exception as exc:
            sent.raised.append(exc)
        finally:
            await producer.close()
        return sent

    return asyncio.run(scenario())


def _aiokafka_send(wait: bool) -> Callable[[dict, str, Instrumentation], Sent]:
    def send(bootstrap_conf: dict, topic: str, inst: Instrumentation) -> Sent:
        async def scenario() -> Sent:
            sent = Sent()
            failing = bootstrap_conf.get("fail_after_start")
            client = AIOKafkaProducer(
                bootstrap_servers=bootstrap_conf["bootstrap.servers"],
                request_timeout_ms=500 if failing else 40000,
            )
            producer = tracing.aio.TracedAIOKafkaProducer(client, **inst.client_kwargs())
            await producer.start()
            try:
                if failing:
                    await producer.partitions_for(topic)  # its metadata is known ...
                    failing()  # ... and then its broker goes away
                futures = []
                for i in range(N):
                    value, key = payload(i)
                    if wait:
                        try:
                            async with asyncio.timeout(WAIT):
                                metadata = await producer.send_and_wait(
                                    topic, value, key=key, partition=0, headers=app_headers(i)
                                )
                        except AIOKafkaError as exc:
                            sent.failures.append(exc)
                        else:
                            assert metadata.topic == topic and metadata.partition == 0
                            sent.delivered.append((value, key))
                    else:
                        future = await producer.send(
                            topic, value, key=key, partition=0, headers=app_headers(i)
                        )
                        futures.append((value, key, future))
                for value, key, future in futures:
                    try:
                        async with asyncio.timeout(WAIT):
                            metadata = await future
                    except AIOKafkaError as exc:
                        sent.failures.append(exc)
                    else:
                        assert metadata.topic == topic and metadata.partition == 0
                        sent.delivered.append((value, key))
            except Exception as exc:
                sent.raised.append(exc)
            finally:
                await producer.stop()
            return sent

        return asyncio.run(scenario())

    return send


SENDERS: dict[str, tuple[Callable[[dict, str, Instrumentation], Sent], bool]] = {
    # entry point: (how the app sends, flow metrics on)
    "sync-produce-metrics-off": (produce_sync, False),
    "sync-produce-metrics-on": (produce_sync, True),
    "aio-produce": (produce_aio, True),
    "aiokafka-send": (_aiokafka_send(wait=False), True),
    "aiokafka-send_and_wait": (_aiokafka_send(wait=True), True),
}
SEND_SCENARIOS = [CLEAN, ON_START, ON_START_SOMETIMES, ON_END, INJECT, METER, DELIVERY_FAILS, CALLBACK_RAISES]


def _send_cases() -> list[Any]:
    cases = []
    for entry, (_, metrics) in SENDERS.items():
        for scenario in SEND_SCENARIOS:
            if scenario == METER and not metrics:
                continue  # a broken meter turns the metrics on: the metrics-on entry covers it
            if scenario == CALLBACK_RAISES and not entry.startswith("sync"):
                continue  # only confluent-kafka's Producer takes a delivery callback to compare with
            cases.append(pytest.param(entry, scenario, id=f"{entry}-{scenario}"))
    return cases


def read_back(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """The messages on partition 0 of ``topic``, as a plain consumer sees them."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "contract-reader", "enable.auto.commit": False}
    )
    reader.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + WAIT
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = reader.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append((msg.value(), msg.key(), own_headers(msg.headers())))
    finally:
        reader.close()
    return got


@pytest.fixture
def private_cluster() -> Any:
    """A mock cluster of this test's own, and a function that takes it down."""
    owner: list[Any] = [Producer({"test.mock.num.brokers": 1, "log_level": 0})]
    broker = next(iter(owner[0].list_topics(timeout=10).brokers.values()))

    def take_down() -> None:
        owner.clear()  # the mock cluster goes with the client that owns it
        gc.collect()

    yield f"{broker.host}:{broker.port}", take_down
    owner.clear()


def callback_raises(producer: Any, topic: str) -> tuple[list[Any], list[Any], int]:
    """The app's delivery callback raises for its second message: the reports it got, what
    its produce() and flush() calls raised, and what the last flush() returned."""
    error = LookupError("the app's delivery callback")
    reports: list[Any] = []
    raised: list[Any] = []

    def on_delivery(err: Any, msg: Message) -> None:
        reports.append((err, msg.value(), msg.key()))
        if len(reports) == 2:
            raise error

    try:
        for i in range(N):
            value, key = payload(i)
            assert producer.produce(topic, value, key, partition=0, on_delivery=on_delivery) is None
        deadline = time.monotonic() + WAIT
        while len(reports) < N and time.monotonic() < deadline:
            try:
                producer.flush(WAIT)
            except LookupError as exc:
                raised.append("the app's error" if exc is error else repr(exc))
    except Exception as exc:  # anything else the app would see
        raised.append(repr(exc))
    return reports, raised, producer.flush(WAIT)


@pytest.mark.parametrize(("entry", "scenario"), _send_cases())
def test_send_contract(entry, scenario, mock_cluster, topic, request):
    send, metrics = SENDERS[entry]
    inst = Instrumentation(scenario, metrics)
    if scenario == CALLBACK_RAISES:  # compared with the plain client, step by step
        conf = {"bootstrap.servers": mock_cluster, "log_level": 0}
        without = callback_raises(Producer(conf), f"{topic}-plain")
        assert callback_raises(tracing.TracedProducer(conf, **inst.client_kwargs()), topic) == without
        inst.assert_every_started_span_ended()
        inst.assert_failures_named_alike("send ", SEND_DURATION, "send")
        return
    if scenario != DELIVERY_FAILS:
        conf: dict[str, Any] = {"bootstrap.servers": mock_cluster}
    elif entry.startswith("aiokafka"):
        address, take_down = request.getfixturevalue("private_cluster")
        conf = {"bootstrap.servers": address, "fail_after_start": take_down}
    else:
        conf = dict(UNREACHABLE)

    sent = send(conf, topic, inst)

    # The app sees what it would see without the library.
    assert sent.raised == [], f"the app saw exceptions of the instrumentation: {sent.raised!r}"
    if scenario == DELIVERY_FAILS:
        assert sent.delivered == []
        assert len(sent.failures) == N
        for failure in sent.failures:
            if entry.startswith("aiokafka"):
                assert isinstance(failure, AIOKafkaError)
            else:
                err = failure.args[0] if isinstance(failure, KafkaException) else failure
                assert err.code() == KafkaError._MSG_TIMED_OUT
    else:
        assert sent.failures == []
        assert sent.delivered == [(value, key) for value, key, _ in expected()]
        assert read_back(mock_cluster, topic, N) == expected()

    # Every span started is ended; a failure is named alike on the span and the metric.
    inst.assert_every_started_span_ended()
    inst.assert_failures_named_alike("send ", SEND_DURATION, "send")
    if scenario == CLEAN:  # the control: the suite sees the library's spans and metrics
        assert len(inst.ledger.spans(f"send {topic}")) == N
        if metrics:
            assert sum(p.count for p in inst.points(SEND_DURATION)) == N
    if scenario == DELIVERY_FAILS and inst.reader is not None:
        assert sum(inst.metric_error_types(SEND_DURATION, "send").values()) == N


# ==========================================================================================
# Process side
# ==========================================================================================


class Seen:
    """What the app's handler got, and what came out of the client."""

    def __init__(self, n: int, raise_at: int | None, error: BaseException | None) -> None:
        self.n = n
        self.raise_at = raise_at
        self.error = error
        self.messages: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        self.raised: list[BaseException] = []
        self.done = threading.Event()

    def handle(self, msg: Any) -> None:
        """The app's handler: remembers the message; raises the app's error where asked."""
        if isinstance(msg, Message):
            self.messages.append((msg.value(), msg.key(), own_headers(msg.headers())))
        else:  # an aiokafka ConsumerRecord
            self.messages.append((msg.value, msg.key, own_headers(msg.headers)))
        if self.raise_at is not None and len(self.messages) == self.raise_at + 1:
            assert self.error is not None
            raise self.error
        if len(self.messages) >= self.n:
            self.done.set()

    def more(self, deadline: float) -> bool:
        return not self.done.is_set() and time.monotonic() < deadline


def seed(bootstrap: str, topic: str) -> None:
    """N messages on partition 0, written without the library, each with a trace to continue."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(N):
        value, key = payload(i)
        producer.produce(
            topic, value, key, partition=0, headers=[*app_headers(i), ("traceparent", TRACEPARENT)]
        )
    assert producer.flush(WAIT) == 0


def _sync_consumer(bootstrap: str, topic: str, inst: Instrumentation) -> tracing.TracedConsumer:
    consumer = tracing.TracedConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"contract-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        **inst.client_kwargs(),
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def _sync(loop: Callable[[tracing.TracedConsumer, Seen], None]) -> Callable[..., None]:
    def consume(bootstrap: str, topic: str, inst: Instrumentation, seen: Seen) -> None:
        consumer = _sync_consumer(bootstrap, topic, inst)
        try:
            loop(consumer, seen)
        except BaseException as exc:
            seen.raised.append(exc)
            consumer.close()  # as an app would on its way out: the exception is in flight
        else:
            consumer.close()

    return consume


@_sync
def sync_poll(consumer: tracing.TracedConsumer, seen: Seen) -> None:
    deadline = time.monotonic() + WAIT
    while seen.more(deadline):
        msg = consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        seen.handle(msg)  # drop-in: the message's span is current until the next poll


@_sync
def sync_process(consumer: tracing.TracedConsumer, seen: Seen) -> None:
    deadline = time.monotonic() + WAIT
    while seen.more(deadline):
        msg = consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        with consumer.process(msg):
            seen.handle(msg)


@_sync
def sync_consume(consumer: tracing.TracedConsumer, seen: Seen) -> None:
    deadline = time.monotonic() + WAIT
    while seen.more(deadline):
        for msg in consumer.consume(N, 0.2):
            if msg.error() is not None:
                continue
            with consumer.process(msg):
                seen.handle(msg)


@_sync
def sync_run(consumer: tracing.TracedConsumer, seen: Seen) -> None:
    stop = threading.Event()

    def handler(msg: Any) -> None:
        seen.handle(msg)
        if seen.done.is_set():
            stop.set()

    bound = threading.Timer(WAIT, stop.set)  # should the messages never come
    bound.start()
    try:
        consumer.run(handler, stop=stop)
    finally:
        bound.cancel()


async def _aio_consumer(bootstrap: str, topic: str, inst: Instrumentation) -> Any:
    consumer = tracing.aio.TracedAIOConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"contract-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        **inst.client_kwargs(),
    )
    await consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


async def _aiokafka_consumer(bootstrap: str, topic: str, inst: Instrumentation) -> Any:
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"contract-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumer = tracing.aio.TracedAIOKafkaConsumer(client, **inst.client_kwargs())
    await consumer.start()
    consumer.assign([AIOKafkaTopicPartition(topic, 0)])
    return consumer


def _async(build: Callable[..., Any], close: str) -> Callable[..., Callable[..., None]]:
    def wrap(loop: Callable[[Any, Seen], Any]) -> Callable[..., None]:
        def consume(bootstrap: str, topic: str, inst: Instrumentation, seen: Seen) -> None:
            async def scenario() -> None:
                consumer = await build(bootstrap, topic, inst)
                try:
                    async with asyncio.timeout(WAIT):
                        await loop(consumer, seen)
                except BaseException as exc:
                    seen.raised.append(exc)
                    await getattr(consumer, close)()  # the exception is in flight
                else:
                    await getattr(consumer, close)()

            asyncio.run(scenario())

        return consume

    return wrap


@_async(_aio_consumer, "close")
async def aio_poll(consumer: Any, seen: Seen) -> None:
    while not seen.done.is_set():
        msg = await consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        seen.handle(msg)  # drop-in: the span is current in this task until its next poll


@_async(_aio_consumer, "close")
async def aio_messages(consumer: Any, seen: Seen) -> None:
    async with contextlib.aclosing(consumer.messages(0.2)) as messages:
        async for msg in messages:
            async with consumer.process(msg):
                seen.handle(msg)
            if seen.done.is_set():
                return


@_async(_aiokafka_consumer, "stop")
async def aiokafka_getone(consumer: Any, seen: Seen) -> None:
    while not seen.done.is_set():
        seen.handle(await consumer.getone())  # drop-in: current until this task's next getone


@_async(_aiokafka_consumer, "stop")
async def aiokafka_getmany(consumer: Any, seen: Seen) -> None:
    while not seen.done.is_set():
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                async with consumer.process(record):
                    seen.handle(record)


@_async(_aiokafka_consumer, "stop")
async def aiokafka_iterate(consumer: Any, seen: Seen) -> None:
    async for record in consumer:
        async with consumer.process(record):
            seen.handle(record)
        if seen.done.is_set():
            return


CONSUMERS: dict[str, tuple[Callable[..., None], bool]] = {
    # entry point: (how the app consumes, flow metrics on)
    "sync-poll-metrics-off": (sync_poll, False),
    "sync-poll-metrics-on": (sync_poll, True),
    "sync-process-metrics-off": (sync_process, False),
    "sync-process-metrics-on": (sync_process, True),
    "sync-consume+process-metrics-off": (sync_consume, False),
    "sync-consume+process-metrics-on": (sync_consume, True),
    "sync-run-metrics-off": (sync_run, False),
    "sync-run-metrics-on": (sync_run, True),
    "aio-poll": (aio_poll, True),
    "aio-messages+process": (aio_messages, True),
    "aiokafka-getone": (aiokafka_getone, True),
    "aiokafka-getmany+process": (aiokafka_getmany, True),
    "aiokafka-async-for+process": (aiokafka_iterate, True),
}
DROP_IN = {"sync-poll-metrics-off", "sync-poll-metrics-on", "aio-poll", "aiokafka-getone"}
PROCESS_SCENARIOS = [
    CLEAN,
    ON_START,
    ON_START_SOMETIMES,
    ON_END,
    EXTRACT,
    METER,
    HANDLER_RAISES,
    HANDLER_RAISES_KAFKA,
]


def _process_cases() -> list[Any]:
    cases = []
    for entry, (_, metrics) in CONSUMERS.items():
        for scenario in PROCESS_SCENARIOS:
            if scenario == METER and not metrics:
                continue
            cases.append(pytest.param(entry, scenario, id=f"{entry}-{scenario}"))
    return cases


def _app_error(scenario: str) -> BaseException | None:
    if scenario == HANDLER_RAISES:
        return ValueError("cannot parse order")
    if scenario == HANDLER_RAISES_KAFKA:  # e.g. an onward produce that timed out
        return KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
    return None


@pytest.mark.parametrize(("entry", "scenario"), _process_cases())
def test_process_contract(entry, scenario, mock_cluster, topic):
    consume, metrics = CONSUMERS[entry]
    inst = Instrumentation(scenario, metrics)
    error = _app_error(scenario)
    raise_at = 1 if error is not None else None  # the second message fails
    seed(mock_cluster, topic)
    seen = Seen(N, raise_at, error)

    consume(mock_cluster, topic, inst, seen)

    # The app sees what it would see without the library.
    if error is None:
        assert seen.raised == [], f"the app saw exceptions of the instrumentation: {seen.raised!r}"
        assert seen.messages == expected()
    else:
        assert len(seen.raised) == 1 and seen.raised[0] is error, (
            f"the app's own exception should come out unchanged, got {seen.raised!r}"
        )
        assert seen.messages == expected(raise_at + 1)

    # Every span started is ended; a failure is named alike on the span and the metric.
    inst.assert_every_started_span_ended()
    inst.assert_failures_named_alike("process ", PROCESS_DURATION)
    if scenario == CLEAN:  # the control: the suite sees the library's spans and metrics
        assert len(inst.ledger.spans(f"process {topic}")) == N
        if metrics:
            assert sum(p.count for p in inst.points(PROCESS_DURATION)) == N
    if error is not None and inst.reader is not None and entry not in DROP_IN:
        # A handler that failed inside process() / run(): its failure is on the metric.
        assert sum(inst.metric_error_types(PROCESS_DURATION).values()) == 1


# ==========================================================================================
# RabbitMQ: the same scenarios over pika's blocking channel and aio-pika, on the real broker
# ==========================================================================================
#
# Send side: ``TracedBlockingChannel.basic_publish`` (publisher confirms on; a failed delivery
# is an unroutable mandatory message, which pika raises), ``TracedExchange.publish``.
# Process side: pika's ``basic_consume`` callbacks, the ``consume()`` generator, ``basic_get``;
# aio-pika's ``queue.consume(callback)``, ``queue.iterator()`` + ``message.process()``, ``queue.get()``.

import os  # noqa: E402
import uuid  # noqa: E402

AMQP_URL = os.environ.get("KET_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture(scope="session")
def rabbitmq_url(request: Any) -> str:
    """The stack's RabbitMQ; skipped when it does not answer (failed in CI or with --require-stack)."""
    pika = pytest.importorskip("pika")
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except Exception as exc:
        message = f"RabbitMQ not reachable at {AMQP_URL} ({type(exc).__name__}); run `make stack-up`"
        if os.environ.get("CI", "").lower() == "true" or request.config.getoption("--require-stack"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return AMQP_URL


def _amqp_expected(n: int = N) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """As :func:`expected`, headers sorted: an AMQP table is a map, its order not kept."""
    return [(value, key, sorted(headers)) for value, key, headers in expected(n)]


def _amqp_own(headers: Any) -> list[tuple[str, bytes]]:
    return sorted(
        (k, v.encode() if isinstance(v, str) else bytes(v))
        for k, v in (headers or {}).items()
        if k in ("tenant", "seq")
    )


def _amqp_queue(url: str) -> str:
    import pika

    name = f"contract-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare(name, auto_delete=False, arguments={"x-expires": 120_000})
    connection.close()
    return name


def _amqp_read_back(url: str, queue: str, n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < n and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        got.append((body, properties.message_id.encode(), _amqp_own(properties.headers)))
    connection.close()
    return got


def pika_publish(url: str, queue: str, inst: Instrumentation, fail: bool) -> Sent:
    import pika
    from pika.exceptions import UnroutableError

    sent = Sent()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = tracing.rabbitmq.TracedBlockingChannel(connection.channel(), **inst.client_kwargs())
    channel.confirm_delivery()
    try:
        for i in range(N):
            value, key = payload(i)
            headers = dict(app_headers(i))
            properties = pika.BasicProperties(headers=headers, message_id=key.decode())
            try:
                target = f"{queue}-nowhere" if fail else queue
                channel.basic_publish("", target, value, properties, mandatory=True)
            except UnroutableError as exc:
                sent.failures.append(exc)
            else:
                sent.delivered.append((value, key))
            assert properties.headers is headers and headers == dict(app_headers(i))  # untouched
    except Exception as exc:
        sent.raised.append(exc)
    finally:
        connection.close()
    return sent


def aio_pika_publish(url: str, queue: str, inst: Instrumentation, fail: bool) -> Sent:
    import aio_pika

    async def scenario() -> Sent:
        sent = Sent()
        connection = await aio_pika.connect(url)
        try:
            channel = tracing.rabbitmq.aio.TracedChannel(await connection.channel(), **inst.client_kwargs())
            exchange = channel.default_exchange
            for i in range(N):
                value, key = payload(i)
                headers = {k: v.decode() for k, v in app_headers(i)}  # aio-pika refuses bytes values
                message = aio_pika.Message(value, headers=headers, message_id=key.decode())
                await exchange.publish(message, queue)
                assert message.headers == {k: v.decode() for k, v in app_headers(i)}  # untouched
                sent.delivered.append((value, key))
        except Exception as exc:
            sent.raised.append(exc)
        finally:
            await connection.close()
        return sent

    return asyncio.run(scenario())


AMQP_SENDERS = {"pika-basic_publish": pika_publish, "aio-pika-publish": aio_pika_publish}
AMQP_SEND_SCENARIOS = [CLEAN, ON_START, ON_START_SOMETIMES, ON_END, INJECT, METER, DELIVERY_FAILS]


def _amqp_send_cases() -> list[Any]:
    return [
        pytest.param(entry, scenario, id=f"{entry}-{scenario}")
        for entry in AMQP_SENDERS
        for scenario in AMQP_SEND_SCENARIOS
        if not (scenario == DELIVERY_FAILS and entry != "pika-basic_publish")
    ]


@pytest.mark.parametrize(("entry", "scenario"), _amqp_send_cases())
def test_rabbitmq_send_contract(entry, scenario, rabbitmq_url):
    import tracing.rabbitmq
    import tracing.rabbitmq.aio  # noqa: F401

    inst = Instrumentation(scenario, True)
    queue = _amqp_queue(rabbitmq_url)
    sent = AMQP_SENDERS[entry](rabbitmq_url, queue, inst, scenario == DELIVERY_FAILS)

    assert sent.raised == [], f"the app saw exceptions of the instrumentation: {sent.raised!r}"
    if scenario == DELIVERY_FAILS:
        assert sent.delivered == [] and len(sent.failures) == N
        assert sum(inst.metric_error_types(SEND_DURATION, "send").values()) == N
    else:
        assert sent.failures == []
        assert sent.delivered == [(value, key) for value, key, _ in expected()]
        assert _amqp_read_back(rabbitmq_url, queue, N) == _amqp_expected()
    inst.assert_every_started_span_ended()
    inst.assert_failures_named_alike("send ", SEND_DURATION, "send")
    if scenario == CLEAN:
        spans = inst.ledger.spans("send amq.default")
        assert len(spans) == N
        assert all(s.attributes["messaging.rabbitmq.destination.routing_key"] == queue for s in spans)
        assert sum(p.count for p in inst.points(SEND_DURATION)) == N


def _amqp_seed(url: str) -> str:
    import pika

    queue = _amqp_queue(url)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for i in range(N):
        value, key = payload(i)
        headers = {**dict(app_headers(i)), "traceparent": TRACEPARENT.decode()}
        properties = pika.BasicProperties(headers=headers, message_id=key.decode())
        channel.basic_publish("", queue, value, properties)
    connection.close()
    return queue


class _AmqpSeen(Seen):
    def handle(self, msg: Any) -> None:  # (body, properties) of pika, or an aio-pika message
        body, properties = msg if isinstance(msg, tuple) else (msg.body, msg)
        self.messages.append((body, properties.message_id.encode(), _amqp_own(properties.headers)))
        if self.raise_at is not None and len(self.messages) == self.raise_at + 1:
            assert self.error is not None
            raise self.error
        if len(self.messages) >= self.n:
            self.done.set()


def _pika(loop: Callable[..., None]) -> Callable[..., None]:
    def consume(url: str, queue: str, inst: Instrumentation, seen: Seen) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = tracing.rabbitmq.TracedBlockingChannel(connection.channel(), **inst.client_kwargs())
        try:
            loop(channel, queue, seen)
        except BaseException as exc:
            seen.raised.append(exc)
        finally:
            channel.close()
            connection.close()

    return consume


@_pika
def pika_basic_consume(channel: Any, queue: str, seen: Seen) -> None:
    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        seen.handle((body, properties))
        ch.basic_ack(method.delivery_tag)
        if seen.done.is_set():
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.connection.call_later(WAIT, channel.stop_consuming)
    channel.start_consuming()


@_pika
def pika_consume(channel: Any, queue: str, seen: Seen) -> None:
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.2):
        if method is not None:
            seen.handle((body, properties))  # drop-in: current until the next one
            channel.basic_ack(method.delivery_tag)
        if seen.done.is_set():
            break
    channel.cancel()


@_pika
def pika_basic_get(channel: Any, queue: str, seen: Seen) -> None:
    deadline = time.monotonic() + WAIT
    while seen.more(deadline):
        method, properties, body = channel.basic_get(queue)
        if method is None:
            time.sleep(0.05)
            continue
        seen.handle((body, properties))
        channel.basic_ack(method.delivery_tag)


def _aio_amqp(loop: Callable[..., Any]) -> Callable[..., None]:
    def consume(url: str, queue: str, inst: Instrumentation, seen: Seen) -> None:
        import aio_pika

        async def scenario() -> None:
            connection = await aio_pika.connect(url)
            channel = tracing.rabbitmq.aio.TracedChannel(await connection.channel(), **inst.client_kwargs())
            traced = await channel.get_queue(queue)
            try:
                async with asyncio.timeout(WAIT):
                    await loop(traced, seen)
            except BaseException as exc:
                seen.raised.append(exc)
            finally:
                traced.close_spans()
                await connection.close()

        asyncio.run(scenario())

    return consume


@_aio_amqp
async def aio_pika_consume(queue: Any, seen: Seen) -> None:
    async def on_message(message: Any) -> None:
        async with message.process(requeue=False):
            seen.handle(message)

    await queue.consume(on_message)
    while not seen.done.is_set():
        await asyncio.sleep(0.05)


@_aio_amqp
async def aio_pika_iterator(queue: Any, seen: Seen) -> None:
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                seen.handle(message)
            if seen.done.is_set():
                return


@_aio_amqp
async def aio_pika_get(queue: Any, seen: Seen) -> None:
    while not seen.done.is_set():
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        seen.handle(message)  # drop-in: current in this task until its next get
        await message.ack()


AMQP_CONSUMERS = {
    "pika-basic_consume": pika_basic_consume,
    "pika-consume": pika_consume,
    "pika-basic_get": pika_basic_get,
    "aio-pika-consume": aio_pika_consume,
    "aio-pika-iterator+process": aio_pika_iterator,
    "aio-pika-get": aio_pika_get,
}
AMQP_DROP_IN = {"pika-consume", "pika-basic_get", "aio-pika-get"}


def _amqp_process_cases() -> list[Any]:
    return [
        pytest.param(entry, scenario, id=f"{entry}-{scenario}")
        for entry in AMQP_CONSUMERS
        for scenario in [CLEAN, ON_START, ON_START_SOMETIMES, ON_END, EXTRACT, METER, HANDLER_RAISES]
        # aio-pika logs a consume callback's exception itself: the app never sees it
        if not (scenario == HANDLER_RAISES and entry == "aio-pika-consume")
    ]


@pytest.mark.parametrize(("entry", "scenario"), _amqp_process_cases())
def test_rabbitmq_process_contract(entry, scenario, rabbitmq_url):
    import tracing.rabbitmq
    import tracing.rabbitmq.aio  # noqa: F401

    inst = Instrumentation(scenario, True)
    error = _app_error(scenario)
    raise_at = 1 if error is not None else None
    queue = _amqp_seed(rabbitmq_url)
    seen = _AmqpSeen(N, raise_at, error)

    AMQP_CONSUMERS[entry](rabbitmq_url, queue, inst, seen)

    if error is None:
        assert seen.raised == [], f"the app saw exceptions of the instrumentation: {seen.raised!r}"
        assert seen.messages == _amqp_expected()
    else:
        assert len(seen.raised) == 1 and seen.raised[0] is error, seen.raised
        assert seen.messages == _amqp_expected(raise_at + 1)
    inst.assert_every_started_span_ended()
    inst.assert_failures_named_alike("process ", PROCESS_DURATION)
    if scenario == CLEAN:
        spans = inst.ledger.spans("process amq.default")
        assert len(spans) == N
        for span in spans:
            assert span.parent is not None and span.parent.trace_id == int(TRACEPARENT[3:35], 16)
            assert span.attributes["messaging.destination.subscription.name"] == queue
            assert span.attributes["messaging.destination.name"] == ""
            assert isinstance(span.attributes["messaging.rabbitmq.message.delivery_tag"], int)
        # ack / nack / reject are events on the process span (message.process() acks through ack())
        events = [[e.name for e in s.events] for s in spans]
        assert all("ack" in names for names in events), events
        assert sum(p.count for p in inst.points(PROCESS_DURATION)) == N
    if error is not None and entry not in AMQP_DROP_IN:
        assert sum(inst.metric_error_types(PROCESS_DURATION).values()) == 1
