"""The demo in one process, on librdkafka's in-process mock cluster: nothing to install or start.

Each service gets its own TracerProvider (its own ``service.name``) and its own traced clients,
exactly as it would in its own process; all providers export to one in-memory exporter, and the
chains are printed from it with the read side's renderer. The services are driven from one thread,
one poll each in turn, until no message is left in flight — so every run tells the same story.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

import tracing
from tracing.demo import scenario
from tracing.demo.events import Topics
from tracing.demo.runtime import Service, Worker, consumer_config, kafka_logger, producer_config
from tracing.demo.services.inventory import InventoryService
from tracing.demo.services.notification import NotificationService, SmsGateway
from tracing.demo.services.order import OrderService
from tracing.demo.services.points import PointsService
from tracing.demo.services.recommendation import RecommendationService
from tracing.demo.services.user import UserService
from tracing.exporters import OtlpJsonSpanExporter
from tracing.read import from_readable_spans, render_chain
from tracing.read.audit import AuditOptions, audit, parse_saga
from tracing.read.audit_render import render_audit

SETTLE_LIMIT_S = 30.0
# Consumers take about half a second to start fetching; events published before that would show
# that start-up as their time waiting in the topic.
WARM_UP_S = 0.8
# The mock cluster answers a fetch only when its wait expires: keep the wait short.
FAST_FETCH = {"fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5}


class EmbeddedRun:
    """The mock cluster, one provider and one set of clients per service, and the workers."""

    def __init__(self, log_stream: Any = None, endpoint: str | None = None) -> None:
        # endpoint: export over OTLP/HTTP there, as a service of the user's would, instead of to memory
        self.endpoint = endpoint
        # The first client starts the mock cluster, which lives as long as this client does.
        self.cluster = Producer({"test.mock.num.brokers": 1, "logger": kafka_logger()})
        broker = next(iter(self.cluster.list_topics(timeout=10).brokers.values()))
        self.bootstrap = f"{broker.host}:{broker.port}"
        self.topics = Topics()
        self.partitions: dict[str, list[int]] = {}
        for name in self.topics.all():
            # The mock cluster creates a topic (4 partitions) on the first metadata request for it.
            metadata = self.cluster.list_topics(topic=name, timeout=10)
            self.partitions[name] = sorted(metadata.topics[name].partitions)
        self.exporter = InMemorySpanExporter()
        self.providers: list[TracerProvider] = []
        self.workers: list[Worker] = []
        self.log_handler = _log_handler(log_stream or sys.stdout)

        self.services: dict[str, Any] = {}
        self.add(OrderService)
        self.add(InventoryService)
        self.add(NotificationService, gateway=SmsGateway(flaky_numbers=[scenario.FLAKY_NUMBER]))
        self.add(PointsService, redeliver_once=scenario.REDELIVERED_EVENT)
        self.add(UserService)
        self.add(RecommendationService)

    def add(self, service_class: type[Service], *, redeliver_once: str | None = None, **options: Any) -> Any:
        """Set one service up as its own process would: provider, traced producer and consumer."""
        name = service_class.name
        if self.endpoint:
            provider = tracing.configure(
                name, endpoint=self.endpoint, protocol="http/protobuf", set_global=False
            )
        else:
            provider = tracing.configure(name, exporter=self.exporter, set_global=False)
        self.providers.append(provider)
        logger = logging.getLogger(name)
        logger.addHandler(self.log_handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        producer = tracing.TracedProducer(producer_config(self.bootstrap, name), tracer_provider=provider)
        service = service_class(
            producer, topics=self.topics, tracer=provider.get_tracer("tracing.demo"), **options
        )
        if service.consumes:
            config = consumer_config(self.bootstrap, service.group or name, name, **FAST_FETCH)
            consumer = tracing.TracedConsumer(config, tracer_provider=provider)
            # assign() rather than subscribe(): no group join to wait for.
            consumer.assign(
                [
                    TopicPartition(topic, p, OFFSET_BEGINNING)
                    for topic in service.consumed_topics()
                    for p in self.partitions[topic]
                ]
            )
            self.workers.append(Worker(service, consumer, redeliver_once=redeliver_once))
        self.services[name] = service
        return service

    def service(self, name: str) -> Any:
        return self.services[name]

    def outcome(self, subject: str) -> str:
        """What became of an order or a user, as the services' own state says."""
        status = self.service("order-service").status.get(subject)
        if status is not None:
            return f"order {subject} {status}"
        profile = subject in self.service("recommendation-service").profiles
        return f"user {subject} registered, " + ("profile created" if profile else "no profile")

    def play(self, step: scenario.Step) -> scenario.Chain:
        """Send one request of the story (the HTTP call, simulated) and run until the chain is done."""
        route = self.service(step.service).routes()[(step.method, step.path)]
        _, answer = route(dict(step.body), {})
        self.settle()
        return scenario.Chain(step, answer)

    def settle(self) -> None:
        """Poll every service in turn until each has handled every message on its partitions.

        Handlers flush what they publish before they return, so once every consumer's position
        has reached the end of each of its partitions, nothing is in flight any more.
        """
        started = time.monotonic()
        while True:
            busy = [worker.poll_once(0.005) for worker in self.workers]
            if not any(busy) and all(_caught_up(worker.consumer) for worker in self.workers):
                return
            if time.monotonic() - started > SETTLE_LIMIT_S:
                raise RuntimeError(f"messages still flowing after {SETTLE_LIMIT_S:.0f} s")

    def warm_up(self, seconds: float) -> None:
        """Poll for a moment first, so that every consumer is fetching before the first event."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for worker in self.workers:
                worker.poll_once(0.005)

    def spans(self) -> list[Any]:
        for provider in self.providers:
            provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        for worker in self.workers:
            worker.consumer.close()
        for provider in self.providers:
            provider.shutdown()
        for name in self.services:
            logging.getLogger(name).removeHandler(self.log_handler)
        self.cluster.flush(5)


def _caught_up(consumer: Any) -> bool:
    """True when the consumer has read every message now stored in its assigned partitions."""
    for tp in consumer.position(consumer.assignment()):
        _, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        if high > 0 and tp.offset < high:  # (an unstarted partition's position is negative)
            return False
    return True


def _log_handler(stream: Any) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("  %(name)-23s %(message)s"))
    return handler


def run(console: Console | None = None) -> int:
    """Run the story, then print its three event chains. Returns the exit code."""
    console = console or _console()
    started = time.monotonic()
    console.print(
        "[bold]Event-chain demo[/]: six services exchange events on librdkafka's in-process "
        "mock cluster, each with its own TracerProvider."
    )
    demo = EmbeddedRun(log_stream=console.file)
    try:
        demo.warm_up(WARM_UP_S)
        chains = []
        for number, step in enumerate(scenario.STEPS, 1):
            console.print(f"\n[bold]{number}. {step.title[0].upper()}{step.title[1:]}[/]")
            chains.append(demo.play(step))
        spans = demo.spans()
        for number, chain in enumerate(chains, 1):
            console.print()
            console.rule(f"[bold]chain {number}: {chain.step.title}[/] — {demo.outcome(chain.subject)}")
            render_chain(spans, console, trace_id=chain.trace_id)
        console.print()
        console.rule(f"[bold]the audit of this run[/] — eventchain audit --saga {scenario.ORDER_SAGA}")
        options = AuditOptions(sagas=(parse_saga(scenario.ORDER_SAGA),))
        render_audit(audit(from_readable_spans(spans), options), console)
        services = sorted({s.resource.attributes.get("service.name") for s in spans})
        console.print()
        console.print(
            f"{len(spans)} spans in {len({s.context.trace_id for s in spans})} traces from "
            f"{len(services)} services:\n  {', '.join(services)}"
        )
        saved = _save(spans)
        if saved is not None:
            command = _eventchain_command()
            console.print(
                f"The spans are in {saved} (OTLP JSON lines), for eventchain to read:\n"
                f"  [bold]{command} list --file {saved}[/]\n"
                f"  [bold]{command} tree {chains[0].trace_id[:12]} --file {saved}[/]"
            )
        console.print(
            f"Done in {time.monotonic() - started:.1f} s. Against a real broker and Jaeger: "
            "[bold]make stack-up[/], then [bold]make demo-live[/]."
        )
    finally:
        demo.close()
    return 0


def _save(spans: list[Any]) -> str | None:
    """The run's spans written as the collector's file exporter writes them, for eventchain to
    read; the path, or None when it cannot be written (the demo does not need it)."""
    folder = os.path.join(tempfile.gettempdir(), "eventchain-demo")
    path = os.path.join(folder, "spans.jsonl")
    try:
        os.makedirs(folder, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # this run's spans only
        exporter = OtlpJsonSpanExporter(path)
        result = exporter.export(spans)
        exporter.shutdown()
    except OSError:
        return None
    return path if result is SpanExportResult.SUCCESS else None


def _eventchain_command() -> str:
    """``eventchain`` when it is on the PATH, else the script beside this interpreter (a venv that
    is not activated, as ``make demo`` runs it), as a path from here when it is under here."""
    if shutil.which("eventchain"):
        return "eventchain"
    script = os.path.join(os.path.dirname(sys.executable), "eventchain")
    if not os.path.exists(script):
        return "python -m tracing"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else script


def _console() -> Console:
    console = Console()
    if not console.is_terminal and console.width < 140:
        console.width = 140  # piped or captured: do not wrap the trees at 80 columns
    return console
