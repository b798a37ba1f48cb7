"""Generated event chains as OTLP JSON, the way the collector's file exporter writes them.

Used by the read-side benchmark (big files) and the read-side tests (chains of every shape):

    deep_chain(5_000)       root -> send -> process -> send -> ... (5,000 send -> process hops)
    fan_out(5_000)          root -> send -> 5,000 consumers of the same group
    mixed()                 fan-outs, errors, duplicates, plumbing spans, unconsumed sends, deep branches
    many_traces(20_000)     short chains and batch receive-only traces, for ``list``
    audit_traffic(28_600)   keyed order flows over two topics and three groups, for ``audit``

Every span is a messaging span unless said otherwise; ids and times are deterministic.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

START_NS = 1_764_230_400_000_000_000  # a fixed moment, so generated files are the same every run
_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


class ChainWriter:
    """Spans of one trace, added one by one, serialised as OTLP JSON objects (one per line)."""

    def __init__(self, trace_number: int = 1, start_ns: int = START_NS) -> None:
        self.trace_id = f"{trace_number:032x}"
        self.trace_number = trace_number
        self.start_ns = start_ns
        self.spans: list[tuple[str, dict[str, Any]]] = []  # (service, OTLP span)
        self._next = 0

    def span(
        self,
        name: str,
        service: str,
        kind: str,
        parent: str | None,
        offset_us: int,
        duration_us: int,
        attributes: dict[str, Any] | None = None,
        error: str | None = None,
        links: Iterable[tuple[str, str]] = (),
    ) -> str:
        """Add a span starting ``offset_us`` after the trace's start; returns its span id."""
        self._next += 1
        # Unique across traces, as real span ids (random 64 bits) are: a reader that keys anything by
        # span id alone must meet the same load here as on real data.
        span_id = f"{self.trace_number:08x}{self._next:08x}"
        start = self.start_ns + offset_us * 1000
        raw: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": span_id,
            "name": name,
            "kind": _KINDS[kind],
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + duration_us * 1000),
            "attributes": [_attribute(k, v) for k, v in (attributes or {}).items()],
            "status": {"code": 2, "message": error} if error else {},
        }
        if parent:
            raw["parentSpanId"] = parent
        if links:
            raw["links"] = [{"traceId": t, "spanId": s} for t, s in links]
        self.spans.append((service, raw))
        return span_id

    def send(
        self,
        service: str,
        topic: str,
        parent: str | None,
        at_us: int,
        offset: int,
        key: str | None = None,
        partition: int | None = None,
    ) -> str:
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(offset % 4 if partition is None else partition),
            "messaging.kafka.offset": offset,
        }
        if key is not None:
            attributes["messaging.kafka.message.key"] = key
        return self.span(f"send {topic}", service, "producer", parent, at_us, 200, attributes)

    def process(
        self,
        service: str,
        group: str,
        topic: str,
        send: str,
        at_us: int,
        duration_us: int,
        offset: int,
        key: str | None = None,
        error: str | None = None,
        partition: int | None = None,
    ) -> str:
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(offset % 4 if partition is None else partition),
            "messaging.kafka.offset": offset,
        }
        if key is not None:
            attributes["messaging.kafka.message.key"] = key
        if error:
            attributes["error.type"] = error.split(":")[0]
        return self.span(
            f"process {topic}",
            service,
            "consumer",
            send,
            at_us,
            duration_us,
            attributes,
            error=error,
            links=[(self.trace_id, send)],
        )

    def documents(self, spans_per_line: int = 1000) -> list[dict[str, Any]]:
        """OTLP JSON objects of at most ``spans_per_line`` spans, grouped by service in each."""
        return [
            _document(self.spans[begin : begin + spans_per_line])
            for begin in range(0, len(self.spans), spans_per_line)
        ]

    def __len__(self) -> int:
        return len(self.spans)


def deep_chain(hops: int, trace_number: int = 1) -> ChainWriter:
    """A ping-pong chain: ``hops`` send -> process hops, each consumer sending the next event."""
    chain = ChainWriter(trace_number)
    parent = chain.span("POST /start", "api", "server", None, 0, 50 + 30 * hops)
    at = 10
    for hop in range(hops):
        service, group = ("ping", "ping-group") if hop % 2 == 0 else ("pong", "pong-group")
        topic = f"hop-{hop:05d}"
        send = chain.send("api" if hop == 0 else service, topic, parent, at, hop)
        parent = chain.process(service, group, topic, send, at + 20, 10, hop)
        at += 30
    return chain


def fan_out(consumers: int, trace_number: int = 2) -> ChainWriter:
    """One event consumed by ``consumers`` members of the same group (a broadcast, a replay)."""
    chain = ChainWriter(trace_number)
    root = chain.span("POST /orders", "api", "server", None, 0, 500)
    send = chain.send("api", "orders", root, 10, 7, key="order-42")
    for index in range(consumers):
        chain.process(
            "billing", "billing", "orders", send, 300 + index % 97, 20 + index % 13, 7, key="order-42"
        )
    return chain


def mixed(trace_number: int = 3) -> ChainWriter:
    """A chain of every shape: fan-out with findings, plumbing spans, deep branches, dead ends."""
    chain = ChainWriter(trace_number)
    root = chain.span("POST /orders", "api", "server", None, 0, 90_000)
    chain.span("SELECT orders", "api", "client", root, 2, 5)  # plumbing: folded into the root
    send = chain.send("api", "orders", root, 10, 100, key="order-42")
    # 300 like consumers, one failing, one processing a duplicate
    for index in range(300):
        error = "ValueError: address missing" if index == 150 else None
        node = chain.process("shipping", "shipping", "orders", send, 100 + index, 30, 100, error=error)
        if index % 50 == 0:
            chain.span("POST /labels", "shipping", "client", node, 110 + index, 5)
    first = chain.process("billing", "billing", "orders", send, 500, 40, 100)
    chain.process("billing", "billing", "orders", send, 900, 40, 100)  # the duplicate
    # billing sends on: a deep branch of 40 hops, with a wide fan-out at its 20th hop
    parent = first
    at = 1000
    for hop in range(40):
        topic = f"invoices-{hop:02d}"
        out = chain.send("billing", topic, parent, at, hop)
        if hop == 20:
            for index in range(120):
                chain.process("ledger", "ledger", topic, out, at + 30 + index, 8, hop)
        parent = chain.process("billing", f"stage-{hop % 3}", topic, out, at + 20, 10, hop)
        at += 40
    chain.send("billing", "audit", parent, at, 1)  # nobody consumes it
    # many small branches of different groups (no run long enough to fold)
    for index in range(30):
        group = f"group-{index % 5}"
        node = chain.process(f"svc-{index % 5}", group, "orders", send, 3000 + index, 12, 100)
        chain.send(f"svc-{index % 5}", f"out-{index}", node, 3020 + index, index)
    return chain


def many_traces(traces: int, receive_only_every: int = 3) -> list[ChainWriter]:
    """``traces`` traces for ``list``: short chains, and every ``receive_only_every``-th one a batch
    consumer's receive-only trace (one span, no hop).
    """
    result = []
    for number in range(1, traces + 1):
        chain = ChainWriter(number, START_NS + number * 1_000_000)
        if number % receive_only_every == 0:
            chain.span(
                "receive orders",
                "batcher",
                "client",
                None,
                0,
                300,
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "receive",
                    "messaging.batch.message_count": 8,
                },
            )
        else:
            root = chain.span("POST /orders", "api", "server", None, 0, 900)
            send = chain.send("api", "orders", root, 10, number, key=f"order-{number}")
            node = chain.process("billing", "billing", "orders", send, 300, 40, number, key=f"order-{number}")
            chain.span("INSERT invoice", "billing", "client", node, 310, 10)
            chain.process("shipping", "shipping", "orders", send, 320, 50, number, key=f"order-{number}")
        result.append(chain)
    return result


def audit_traffic(traces: int, keys: int = 500, partitions: int = 4) -> Iterator[ChainWriter]:
    """``traces`` order flows for ``audit`` (7 spans each, one flow a millisecond), made one at a
    time (a million spans are never held at once): an order event keyed over ``keys`` keys on
    ``partitions`` partitions (each partition's offsets dense, as Kafka writes them), processed by
    billing and shipping, billing's invoice processed by ledger; every 50th shipping processing
    fails and is redelivered (a retried failure and a duplicate).
    """
    for number in range(1, traces + 1):
        chain = ChainWriter(number, START_NS + number * 1_000_000)
        key = f"order-{number % keys}"
        partition = number % partitions
        offset = number // partitions
        root = chain.span("POST /orders", "api", "server", None, 0, 900)
        send = chain.send("api", "orders", root, 10, offset, key=key, partition=partition)
        node = chain.process(
            "billing", "billing", "orders", send, 300, 40, offset, key=key, partition=partition
        )
        invoice = chain.send("billing", "invoices", node, 320, offset, key=key, partition=partition)
        chain.process("ledger", "ledger", "invoices", invoice, 700, 20, offset, key=key, partition=partition)
        if number % 50 == 0:
            error = "TimeoutError: carrier API"
            chain.process(
                "shipping",
                "shipping",
                "orders",
                send,
                320,
                50,
                offset,
                error=error,
                key=key,
                partition=partition,
            )
            chain.process(
                "shipping", "shipping", "orders", send, 800, 50, offset, key=key, partition=partition
            )
        else:
            chain.span("INSERT invoice", "billing", "client", node, 310, 10)
            chain.process(
                "shipping", "shipping", "orders", send, 320, 50, offset, key=key, partition=partition
            )
        yield chain


def write_otlp_lines(path: Path, chains: Iterable[ChainWriter], spans_per_line: int = 1000) -> int:
    """Write the chains as OTLP JSON lines; returns the number of spans written."""
    count = 0
    pending: list[tuple[str, dict[str, Any]]] = []
    with path.open("w") as out:
        for chain in chains:
            pending.extend(chain.spans)
            count += len(chain)
            while len(pending) >= spans_per_line:
                out.write(json.dumps(_document(pending[:spans_per_line]), separators=(",", ":")) + "\n")
                del pending[:spans_per_line]
        if pending:
            out.write(json.dumps(_document(pending), separators=(",", ":")) + "\n")
    return count


def _document(spans: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for service, raw in spans:
        by_service[service].append(raw)
    return {"resourceSpans": [_resource(service, raws) for service, raws in by_service.items()]}


def _resource(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resource": {"attributes": [_attribute("service.name", service)]},
        "scopeSpans": [{"scope": {"name": "kafka-event-tracing"}, "spans": spans}],
    }


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}
