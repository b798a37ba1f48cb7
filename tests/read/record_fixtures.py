"""Record event-chain fixtures from the real stack: the wrappers, real Kafka, real Jaeger.

    make stack-up
    .venv/bin/python -m tests.read.record_fixtures      # writes tests/read/fixtures/real-*

One chain, every case the tree must show, produced by this project's TracedProducer/TracedConsumer:

- ``api`` handles ``POST /orders`` and sends to ``orders``;
- ``shipping`` processes it and fails (an exception in the handler);
- ``billing`` processes it, calls a payment service (a plain CLIENT span) and sends to ``invoices``,
  which nobody consumes; it closes without committing, so a second ``billing`` instance processes
  the same offset again (a duplicate);
- ``audit`` consumes with ``trust="link"``: a new trace with only a link to the send;
- ``reports`` consumes a batch: a receive span (a new trace, one link per message) and one process
  span per message.

Then it reads every trace back from Jaeger and saves what Jaeger answered:
``real-chain.jaeger.json`` (all traces, the shape of a search answer), ``real-main.jaeger.json``
(``/api/traces/{id}`` of the main trace, what the UI downloads), ``real-chain.otlp.jsonl`` (each
trace's ``/api/v3/traces/{id}`` OTLP JSON, one object per line as the collector's file exporter
writes) and ``real-chain.meta.json`` (the ids and names the tests check).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests import stack
from tracing import TracedConsumer, TracedProducer, configure

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Recorded:
    """What one recording produced: the ids and names the tests check."""

    run: str
    main_trace: str
    link_only_trace: str
    batch_trace: str
    orders_topic: str
    invoices_topic: str
    send_span: str
    spans_per_trace: dict[str, int]


class Services:
    """One TracerProvider per service, exporting to the stack and keeping a copy in memory."""

    def __init__(self, otlp_endpoint: str) -> None:
        self.endpoint = otlp_endpoint
        self.memory = InMemorySpanExporter()
        self.providers: dict[str, TracerProvider] = {}

    def __call__(self, name: str) -> TracerProvider:
        if name not in self.providers:
            provider = configure(name, endpoint=self.endpoint, set_global=False)
            provider.add_span_processor(SimpleSpanProcessor(self.memory))
            self.providers[name] = provider
        return self.providers[name]

    def flush(self) -> None:
        for provider in self.providers.values():
            provider.force_flush()


def _poll_one(consumer: TracedConsumer, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            return msg
    raise AssertionError("no message within the timeout")


def _consumer(bootstrap: str, group: str, topic: str, provider: TracerProvider,
              **options: Any) -> TracedConsumer:
    consumer = TracedConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
         "enable.auto.commit": False},
        tracer_provider=provider, **options,
    )
    consumer.subscribe([topic])
    return consumer


def produce_chain(bootstrap: str, otlp_endpoint: str) -> tuple[Recorded, InMemorySpanExporter, Services]:
    """Run the scenario through real Kafka; returns the ids, and the spans as the SDK saw them."""
    run = uuid.uuid4().hex[:8]
    orders = stack.create_topic(bootstrap, f"eventchain-orders-{run}")
    invoices = stack.create_topic(bootstrap, f"eventchain-invoices-{run}")
    services = Services(otlp_endpoint)

    api = services("api")
    producer = TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=api)
    with api.get_tracer("record").start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root:
        producer.produce(orders, b'{"order": 17}', key=b"order-17")
        producer.flush(10)
    main_trace = format(root.get_span_context().trace_id, "032x")

    shipping = _consumer(bootstrap, f"shipping-{run}", orders, services("shipping"))
    msg = _poll_one(shipping)
    try:
        with shipping.process(msg):
            raise ValueError("address missing")
    except ValueError:
        pass
    shipping.close()

    billing_provider = services("billing")
    billing_producer = TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=billing_provider)
    for attempt in (1, 2):
        billing = _consumer(bootstrap, f"billing-{run}", orders, billing_provider)
        msg = _poll_one(billing)
        with billing.process(msg):
            if attempt == 1:
                with billing_provider.get_tracer("record").start_as_current_span(
                        "POST /charges", kind=SpanKind.CLIENT):
                    time.sleep(0.005)
                billing_producer.produce(invoices, b'{"invoice": 17}', key=b"order-17")
                billing_producer.flush(10)
        if attempt == 2:
            billing.commit(msg, asynchronous=False)
        billing.close()  # the first instance leaves without committing: the offset is redelivered

    audit = _consumer(bootstrap, f"audit-{run}", orders, services("audit"), trust="link")
    with audit.process(_poll_one(audit)) as span:
        link_only_trace = format(span.get_span_context().trace_id, "032x")
    audit.close()

    reports = _consumer(bootstrap, f"reports-{run}", orders, services("reports"))
    batch: list[Any] = []
    deadline = time.monotonic() + 30
    while not batch and time.monotonic() < deadline:
        batch = [m for m in reports.consume(10, 1.0) if m.error() is None]
    for msg in batch:
        with reports.process(msg):
            pass
    reports.close()
    services.flush()

    spans = services.memory.get_finished_spans()
    send = next(s for s in spans if s.name == f"send {orders}")
    receive = next(s for s in spans if s.kind == SpanKind.CLIENT and s.resource.attributes.get(
        "service.name") == "reports")
    counts: dict[str, int] = {}
    for span in spans:
        trace_id = format(span.context.trace_id, "032x")
        counts[trace_id] = counts.get(trace_id, 0) + 1
    recorded = Recorded(
        run=run, main_trace=main_trace, link_only_trace=link_only_trace,
        batch_trace=format(receive.context.trace_id, "032x"), orders_topic=orders, invoices_topic=invoices,
        send_span=format(send.context.span_id, "016x"), spans_per_trace=counts,
    )
    return recorded, services.memory, services


def read_back(recorded: Recorded, jaeger_url: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Each trace of the recording as Jaeger answers ``/api/traces/{id}``, once all spans are in."""
    return {trace_id: stack.jaeger_trace(trace_id, expect_spans=count, timeout=timeout, base_url=jaeger_url)
            for trace_id, count in recorded.spans_per_trace.items()}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def save(recorded: Recorded, traces: dict[str, dict[str, Any]], jaeger_url: str, out: Path) -> None:
    """Write the fixture files from what Jaeger answered."""
    out.mkdir(parents=True, exist_ok=True)
    order = [recorded.main_trace] + sorted(t for t in traces if t != recorded.main_trace)
    envelope = {"total": 0, "limit": 0, "offset": 0, "errors": None}
    (out / "real-chain.jaeger.json").write_text(
        json.dumps({"data": [traces[t] for t in order], **envelope}, indent=2) + "\n")
    (out / "real-main.jaeger.json").write_text(
        json.dumps(_get(f"{jaeger_url}/api/traces/{recorded.main_trace}"), indent=2) + "\n")
    lines = [json.dumps(_get(f"{jaeger_url}/api/v3/traces/{t}")["result"], separators=(",", ":"))
             for t in order]
    (out / "real-chain.otlp.jsonl").write_text("\n".join(lines) + "\n")
    (out / "real-chain.meta.json").write_text(json.dumps(asdict(recorded), indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=stack.kafka_bootstrap())
    parser.add_argument("--jaeger", default=stack.jaeger_url())
    parser.add_argument("--otlp", default=stack.otlp_endpoint())
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args()
    trace.set_tracer_provider(TracerProvider())  # nothing of ours goes to a global provider
    recorded, _, _ = produce_chain(args.bootstrap, args.otlp)
    save(recorded, read_back(recorded, args.jaeger), args.jaeger, args.out)
    print(f"recorded trace {recorded.main_trace} (+ {len(recorded.spans_per_trace) - 1} linked) "
          f"into {args.out}")


if __name__ == "__main__":
    main()
