"""What every demo service shares: a base class, the poll loop, a small HTTP front, the command line.

A service is a :class:`Service` subclass: a handler per event type, the topics it consumes, and
(for the two services people call) HTTP routes. The same object runs in two ways:

- as its own process (``python -m tracing.demo.services.inventory``): :func:`run` configures
  tracing from the ``OTEL_*`` variables, builds the traced clients and handles messages in the
  managed loop (``TracedConsumer.run``) until SIGTERM;
- inside the embedded demo (:mod:`tracing.demo.embedded`), which builds the clients itself and
  drives every service's :class:`Worker` from one thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

import tracing
from tracing.demo.events import Event, Topics

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
FLUSH_TIMEOUT_S = 10.0
# Small enough that a consumer killed without leaving its group does not hold up the next run
# for long (the broker's minimum is 6 s).
SESSION_TIMEOUT_MS = 6000

Route = Callable[[dict[str, Any], Mapping[str, str]], tuple[int, dict[str, Any]]]


def annotate(**attributes: Any) -> None:
    """Record ``app.*`` attributes on the current span (the message's process span in a handler).

    Underscores become dots: ``annotate(order_id="o-1")`` sets ``app.order.id``.
    """
    trace.get_current_span().set_attributes({"app." + k.replace("_", "."): v for k, v in attributes.items()})


class Service:
    """Base of the demo services.

    Subclasses set ``name``, ``group`` and ``consumes`` (names of :class:`Topics` properties) and
    return their handlers from :meth:`handlers`; an event type without a handler is ignored (and
    its span says so).
    """

    name: ClassVar[str]
    group: ClassVar[str | None] = None
    consumes: ClassVar[tuple[str, ...]] = ()
    publishes_amqp: ClassVar[bool] = False
    """True for a service that also publishes to RabbitMQ when given ``--amqp`` (see ``amqp``)."""
    amqp: Any = None
    """The RabbitMQ publisher (:class:`tracing.demo.rabbitmq.AmqpPublisher`), when one is set."""

    def __init__(self, producer: Any, *, topics: Topics | None = None, tracer: Tracer | None = None) -> None:
        self.producer = producer
        self.topics = topics or Topics()
        self.tracer = tracer or trace.get_tracer("tracing.demo")
        self.log = logging.getLogger(self.name)

    # -- what subclasses provide --------------------------------------------------------------------
    def handlers(self) -> Mapping[str, Callable[[Event], None]]:
        """Event type -> handler."""
        return {}

    def routes(self) -> Mapping[tuple[str, str], Route]:
        """(method, path) -> route, for services with an HTTP front."""
        return {}

    def amqp_handlers(self) -> Mapping[str, Callable[[Event], None]]:
        """Event type -> handler, for events consumed from RabbitMQ (with ``--amqp``)."""
        return {}

    def handle_amqp(self, event: Event) -> None:
        """Dispatch one event from RabbitMQ (called inside its delivery's process span)."""
        handler = self.amqp_handlers().get(event.type)
        if handler is None:
            annotate(outcome="ignored")
            return
        try:
            handler(event)
        finally:
            self.producer.flush(FLUSH_TIMEOUT_S)

    # -- shared behaviour ---------------------------------------------------------------------------
    def consumed_topics(self) -> list[str]:
        return [getattr(self.topics, attr) for attr in self.consumes]

    def handle(self, event: Event) -> None:
        """Dispatch one event to its handler (called inside the message's process span)."""
        handler = self.handlers().get(event.type)
        if handler is None:
            annotate(outcome="ignored")
            return
        handler(event)

    def publish(self, topic: str, event: Event, key: str) -> None:
        """Produce an event; its send span is a child of the current span."""
        self.producer.produce(topic, event.encode(), key=key.encode())

    @contextmanager
    def request(self, method: str, route: str, headers: Mapping[str, str] | None = None) -> Iterator[Span]:
        """The SERVER span of one HTTP request; continues the caller's trace if it sent one."""
        parent = propagate.extract(dict(headers)) if headers else None
        attributes = {"http.request.method": method, "http.route": route, "url.path": route}
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except ValueError:
                span.set_attribute("http.response.status_code", 400)  # the client's error, not ours
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_attributes({"http.response.status_code": 500, "error.type": type(exc).__qualname__})
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    def say(self, event: Event, subject: str, text: str) -> None:
        """A log line about one event: ``order.created 1a2b3c4d: reserved 2 x book``."""
        self.log.info("%s %s: %s", event.type, subject, text)


def event_attributes(event: Event) -> dict[str, Any]:
    """What a process span records about its event: id, type, and the order or user it is about."""
    attributes: dict[str, Any] = {"app.event.id": event.event_id, "app.event.type": event.type}
    for key in ("order_id", "user_id"):
        value = event.payload.get(key)
        if isinstance(value, str):
            attributes["app." + key.replace("_", ".")] = value
    return attributes


class Worker:
    """One service's message handling.

    In the embedded demo each message is handled inside ``consumer.process(msg)`` (:meth:`handle`)
    and its offset stored for the next commit only afterwards (at-least-once); as its own process
    a service hands :meth:`handle_in_loop` to the managed loop, which opens the process span and
    commits. Either way the span covers the handler and the flush of what it published. A
    handler's exception marks the span ERROR and is logged; the offset still advances: a handler
    that wants another try publishes a retry itself.

    ``redeliver_once``: the first event of this type is handled, then delivered again, as when a
    consumer restarts or loses its partitions before committing (the demo uses it to show a
    duplicate being detected).
    """

    def __init__(self, service: Service, consumer: Any, *, redeliver_once: str | None = None) -> None:
        self.service = service
        self.consumer = consumer
        self.redeliver_once = redeliver_once

    def poll_once(self, timeout: float) -> bool:
        """Poll once and handle what arrived; True when a message was handled."""
        msg = self.consumer.poll(timeout)
        if msg is None:
            return False
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self.service.log.warning("consumer error: %s", error)
            return False
        self.handle(msg)
        return True

    def handle(self, msg: Any) -> None:
        """Handle one message in its own process block, then store its offset (embedded demo)."""
        redeliver = False
        try:
            with self.consumer.process(msg) as span:
                redeliver = self._handle(msg, span)
        except Exception as exc:
            self._failed(msg, exc)
        if redeliver:
            self.consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        else:
            self.consumer.store_offsets(message=msg)

    def handle_in_loop(self, msg: Any) -> None:
        """The handler given to ``consumer.run()``: its process span is current, it commits."""
        span = trace.get_current_span()
        try:
            redeliver = self._handle(msg, span)
        except Exception as exc:
            # Marked here, not raised: the loop would stop (the demo's handlers publish their retries).
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            self._failed(msg, exc)
            return
        if redeliver:
            self.consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))

    def _handle(self, msg: Any, span: Span) -> bool:
        """Decode and dispatch; True when this message is to be delivered again (``redeliver_once``)."""
        service = self.service
        event = Event.decode(msg.value())
        span.set_attributes(event_attributes(event))
        try:
            service.handle(event)
        finally:
            service.producer.flush(FLUSH_TIMEOUT_S)
        if self.redeliver_once is not None and event.type == self.redeliver_once:
            self.redeliver_once = None
            span.add_event("offset not committed: the message will be delivered again")
            service.log.info(
                "%s: offset %s not committed (simulated): it will be delivered again",
                event.type,
                msg.offset(),
            )
            return True
        return False

    def _failed(self, msg: Any, exc: Exception) -> None:
        self.service.log.warning(
            "%s[%s]@%s failed: %s: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            type(exc).__name__,
            exc,
        )


# -- clients ----------------------------------------------------------------------------------------


def producer_config(bootstrap: str, client_id: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "client.id": client_id, "logger": kafka_logger(), **extra}


def consumer_config(bootstrap: str, group: str, client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "auto.offset.reset": "earliest",
        # Offsets are stored by the Worker after each message is handled, then auto-committed.
        "enable.auto.offset.store": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "logger": kafka_logger(),
        **extra,
    }


def ensure_topics(bootstrap: str, names: list[str], partitions: int = 1, timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet.

    One partition each by default: the order of events is then the order they were published in,
    which keeps the demo's story the same on every run.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _NO_BROKER:  # the client's own request timeout came first
                raise RuntimeError(_no_broker(timeout, name)) from None
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name} at {bootstrap}: {error.str()}") from None
        except TimeoutError:  # no broker answered (its text is empty)
            raise RuntimeError(_no_broker(timeout, name)) from None


def _no_broker(timeout: float, topic: str) -> str:
    return f"no broker answered within {timeout:g} s (creating topic {topic})"


# What the admin client answers when no broker did, before our own wait ran out.
_NO_BROKER = frozenset({KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


def kafka_logger() -> logging.Logger:
    """librdkafka's log, warnings and worse only (not every connection opened and closed)."""
    log = logging.getLogger("librdkafka")
    if log.level == logging.NOTSET:
        log.setLevel(logging.WARNING)
    return log


# -- HTTP front -------------------------------------------------------------------------------------


class HttpFront:
    """A threaded HTTP server for a service's routes: JSON in, JSON out, ``GET /health``."""

    def __init__(self, routes: Mapping[tuple[str, str], Route], host: str, port: int, log: logging.Logger):
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                front._serve(self, "GET")

            def do_POST(self) -> None:
                front._serve(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self.routes = dict(routes)
        self.log = log
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        if method == "GET" and path == "/health":
            return _reply(handler, 200, {"status": "ok"})
        route = self.routes.get((method, path))
        if route is None:
            return _reply(handler, 404, {"error": f"no route {method} {path}"})
        try:
            length = int(handler.headers.get("Content-Length") or 0)
            body = json.loads(handler.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            status, answer = route(body, dict(handler.headers.items()))
        except ValueError as exc:
            status, answer = 400, {"error": str(exc)}
        except Exception as exc:
            self.log.exception("%s %s failed", method, path)
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        _reply(handler, status, answer)


def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


# -- running one service as its own process ---------------------------------------------------------


def parser(service: type[Service], http_port: int | None = None) -> argparse.ArgumentParser:
    """The command line every service shares; a service adds its own options to it."""
    p = argparse.ArgumentParser(
        prog=f"python -m tracing.demo.services.{service.__module__.rsplit('.', 1)[-1]}",
        description=f"{service.name} of the event-chain demo. Tracing is configured from the standard "
        "OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4317).",
    )
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP,
        help=f"Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or {DEFAULT_BOOTSTRAP})",
    )
    p.add_argument("--prefix", default="", help="prefix for topic and consumer group names")
    if service.publishes_amqp or service.amqp_handlers is not Service.amqp_handlers:
        p.add_argument(
            "--amqp",
            metavar="URL",
            help="RabbitMQ AMQP URL: order.created also goes through its 'order-events' exchange "
            "(default: Kafka only)",
        )
    if http_port is not None:
        p.add_argument("--http-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument(
            "--http-port",
            type=int,
            default=http_port,
            help=f"port to listen on, 0 for any free one (default {http_port})",
        )
    if service.consumes:
        p.add_argument(
            "--redeliver-once",
            metavar="EVENT_TYPE",
            help="deliver the first event of this type twice, as after a lost offset commit",
        )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return p


def run(service_class: type[Service], args: argparse.Namespace, **service_options: Any) -> int:
    """Run one service until SIGTERM/SIGINT; prints ``ready ...`` on stdout once it serves."""
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    log = logging.getLogger(service_class.name)
    provider = tracing.configure(service_class.name)
    topics = Topics(args.prefix)
    try:
        ensure_topics(args.bootstrap, topics.all())
    except Exception as exc:
        log.error(
            "Kafka at %s is not usable: %s; start Kafka there, or pass --bootstrap HOST:PORT",
            args.bootstrap,
            str(exc) or type(exc).__name__,
        )
        return 2
    producer = tracing.TracedProducer(producer_config(args.bootstrap, service_class.name))
    service = service_class(producer, topics=topics, **service_options)
    amqp_url = getattr(args, "amqp", None)
    amqp_consumer = None
    if amqp_url:
        from tracing.demo import rabbitmq

        try:
            if service.publishes_amqp:
                service.amqp = rabbitmq.AmqpPublisher(amqp_url, args.prefix)
            if service.amqp_handlers():
                amqp_consumer = rabbitmq.AmqpConsumer(
                    amqp_url, args.prefix, service.handle_amqp, log, event_attributes
                )
        except Exception as exc:
            log.error("RabbitMQ at %s is not usable: %s", amqp_url, str(exc) or type(exc).__name__)
            return 2

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    ready: dict[str, Any] = {"http": None, "assigned": not service.consumes}

    def announce() -> None:
        if ready["assigned"] and (ready["http"] is not None or not service.routes()):
            where = f" http={ready['http']}" if ready["http"] else ""
            topics_text = f" consuming={','.join(service.consumed_topics())}" if service.consumes else ""
            print(f"ready {service.name}{where}{topics_text}", flush=True)

    if amqp_consumer is not None:
        amqp_consumer.start()
    front = None
    if service.routes():
        front = HttpFront(service.routes(), args.http_host, args.http_port, log).start()
        ready["http"] = front.url
        log.info("listening on %s", front.url)
    consumer = worker = None
    if service.consumes:
        group = args.prefix + (service.group or service.name)
        # The managed loop commits (periodically, before a revoke and at stop): no auto-commit.
        consumer = tracing.TracedConsumer(
            consumer_config(args.bootstrap, group, service.name, **{"enable.auto.commit": False})
        )

        def on_assign(_consumer: Any, partitions: list[TopicPartition]) -> None:
            if not ready["assigned"]:
                ready["assigned"] = True
                announce()

        consumer.subscribe(service.consumed_topics(), on_assign=on_assign)
        worker = Worker(service, consumer, redeliver_once=args.redeliver_once)
    else:
        announce()
    try:
        if worker is not None and consumer is not None:
            # SIGTERM/SIGINT set `stop`; the loop finishes the message in hand and commits.
            consumer.run(worker.handle_in_loop, stop=stop, handle_signals=False)
        else:
            stop.wait()
    finally:
        log.info("stopping")
        if front is not None:
            front.stop()
        if consumer is not None:
            consumer.close()
        if amqp_consumer is not None:
            amqp_consumer.close()
        producer.flush(FLUSH_TIMEOUT_S)
        provider.shutdown()
        log.info("stopped")
    return 0
