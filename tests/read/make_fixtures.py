"""Write the hand-made edge-case fixtures in tests/read/fixtures/ (run it after changing a scenario).

    .venv/bin/python -m tests.read.make_fixtures

Each scenario is a list of spans in a compact form, written out the way each real producer of the
format writes it: Jaeger's JSON as its query API answers (a parent that is also linked shows as a
FOLLOWS_FROM reference only, kind and status as tags, events as logs), OTLP JSON as the collector's
file exporter writes it (one object per line, hex ids, numeric enums, int64 as strings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
T0_MS = 1_795_000_000_000  # 2026-11-18, an arbitrary fixed instant
KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}

FANOUT = "4bf92f3577b34da6a3ce929d0e0e4736"
MAIN = "0af7651916cd43dd8448eb211c80319c"
LINK_ONLY = "5b8efff798038103d269b633813fc60c"
BATCH = "6e0c63257de34c92bf9efcd03927272e"
OTHER = "f1c2d3e4a5b60718293a4b5c6d7e8f90"
LEGACY = "3e2f5a1b9c8d7e6f"  # a 64-bit id, as older Jaeger clients made


@dataclass
class S:
    """One span of a scenario: times in ms after T0."""

    trace: str
    id: str
    name: str
    kind: str
    service: str
    start: float
    end: float
    parent: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)
    status_error: bool = False
    status_message: str | None = None
    exception: tuple[str, str] | None = None


def kafka(op: str, topic: str, partition: int | None = None, offset: int | None = None,
          group: str | None = None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": op,
        "messaging.operation.name": op if op != "receive" else "poll",
        "messaging.destination.name": topic,
    }
    if partition is not None:
        attrs["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attrs["messaging.kafka.offset"] = offset
    if group is not None:
        attrs["messaging.consumer.group.name"] = group
    attrs.update(extra)
    return attrs


def fanout_scenario() -> list[S]:
    """One send consumed by two groups, a redelivery to one of them, an error, an unconsumed send."""
    t = FANOUT
    send = "a1b2c3d4e5f60001"
    return [
        S(t, "a1b2c3d4e5f60000", "POST /orders", "server", "orders-api", 0, 30,
          attrs={"http.request.method": "POST", "http.route": "/orders"}),
        S(t, "a1b2c3d4e5f6000a", "validate order", "internal", "orders-api", 1, 3, parent="a1b2c3d4e5f60000"),
        S(t, send, "send orders", "producer", "orders-api", 4, 9, parent="a1b2c3d4e5f60000",
          attrs=kafka("send", "orders", 0, 41, **{"messaging.kafka.message.key": "order-17"})),
        S(t, "a1b2c3d4e5f60002", "process orders", "consumer", "billing", 24, 40, parent=send,
          links=[(t, send)], attrs=kafka("process", "orders", 0, 41, "billing",
                                         **{"kafka.record.queue_time_ms": 15})),
        S(t, "a1b2c3d4e5f6000b", "POST /charges", "client", "billing", 26, 35, parent="a1b2c3d4e5f60002"),
        S(t, "a1b2c3d4e5f60003", "send invoices", "producer", "billing", 36, 39, parent="a1b2c3d4e5f60002",
          attrs=kafka("send", "invoices", 1, 7)),
        S(t, "a1b2c3d4e5f60004", "process orders", "consumer", "shipping", 21, 27, parent=send,
          links=[(t, send)], attrs=kafka("process", "orders", 0, 41, "shipping"),
          status_error=True, exception=("ValueError", "address missing")),
        S(t, "a1b2c3d4e5f60005", "process orders", "consumer", "billing", 70, 74, parent=send,
          links=[(t, send)], attrs=kafka("process", "orders", 0, 41, "billing")),
    ]


def links_scenario() -> list[S]:
    """A chain with a link-only consumer (its own trace, which goes on) and a batch consumer."""
    send = "b000000000000002"
    other_send = "e000000000000001"
    return [
        S(MAIN, "b000000000000001", "checkout", "internal", "checkout", 0, 5),
        S(MAIN, send, "send payments", "producer", "checkout", 1, 4, parent="b000000000000001",
          attrs=kafka("send", "payments", 2, 1200)),
        S(MAIN, "b000000000000003", "process payments", "consumer", "ledger", 10, 14, parent=send,
          links=[(MAIN, send)], attrs=kafka("process", "payments", 2, 1200, "ledger")),
        S(LINK_ONLY, "c000000000000001", "process payments", "consumer", "audit", 12, 20,
          links=[(MAIN, send)], attrs=kafka("process", "payments", 2, 1200, "audit")),
        S(LINK_ONLY, "c000000000000002", "send audit-log", "producer", "audit", 15, 18,
          parent="c000000000000001", attrs=kafka("send", "audit-log", 0, 3)),
        S(LINK_ONLY, "c000000000000003", "process audit-log", "consumer", "archive", 25, 40,
          parent="c000000000000002", links=[(LINK_ONLY, "c000000000000002")],
          attrs=kafka("process", "audit-log", 0, 3, "archive"), status_error=True,
          status_message="disk full"),
        S(BATCH, "d000000000000001", "poll payments", "client", "reports", 30, 31,
          links=[(MAIN, send), (OTHER, other_send)],
          attrs=kafka("receive", "payments", group="reports", **{"messaging.batch.message_count": 2})),
        S(BATCH, "d000000000000002", "process payments", "consumer", "reports", 31, 45,
          parent="d000000000000001", links=[(MAIN, send), (OTHER, other_send)],
          attrs=kafka("process", "payments", group="reports", **{"messaging.batch.message_count": 2})),
        S(OTHER, other_send, "send payments", "producer", "checkout", 100, 103,
          attrs=kafka("send", "payments", 2, 1201)),
    ]


def legacy_scenario() -> list[S]:
    """Older conventions: `{topic} send`, messaging.destination, publish, kind-only spans, an orphan."""
    t = LEGACY
    return [
        S(t, "f000000000000001", "orders send", "producer", "legacy-producer", 0, 2,
          attrs={"messaging.system": "kafka", "messaging.destination": "orders",
                 "messaging.operation": "publish", "messaging.kafka.partition": 3}),
        S(t, "f000000000000002", "orders process", "consumer", "legacy-consumer", 5, 9,
          parent="f000000000000001",
          attrs={"messaging.system": "kafka", "messaging.destination": "orders",
                 "messaging.operation": "process", "messaging.kafka.partition": 3,
                 "messaging.kafka.consumer_group": "legacy"}),
        S(t, "f000000000000003", "emit", "producer", "legacy-consumer", 7, 8, parent="f000000000000002"),
        S(t, "f000000000000004", "consume", "consumer", "legacy-sink", 12, 13, parent="f000000000000003"),
        S(t, "f000000000000005", "late work", "internal", "legacy-sink", 20, 21, parent="dead00000000beef"),
    ]


def sdk_spans() -> list[Any]:
    """A small chain made with the OpenTelemetry SDK itself (fixed ids and times): ReadableSpans."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    class Counting(IdGenerator):
        def __init__(self) -> None:
            self.n = 0

        def generate_span_id(self) -> int:
            self.n += 1
            return 0x5D00_0000_0000_0000 + self.n

        def generate_trace_id(self) -> int:
            return 0x7A3B_0000_0000_0000_0000_0000_0000_0001

    exporter = InMemorySpanExporter()
    ids = Counting()

    def tracer(service: str) -> trace.Tracer:
        provider = TracerProvider(resource=Resource({"service.name": service}), id_generator=ids)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider.get_tracer("fixtures")

    at = lambda ms: (T0_MS + ms) * 1_000_000  # noqa: E731
    api, worker = tracer("sdk-api"), tracer("sdk-worker")
    root = api.start_span("POST /jobs", kind=SpanKind.SERVER, start_time=at(0))
    send = api.start_span("send jobs", context=trace.set_span_in_context(root), kind=SpanKind.PRODUCER,
                          start_time=at(1), attributes=kafka("send", "jobs", 1, 5))
    send.end(end_time=at(3))
    root.end(end_time=at(4))
    process = worker.start_span(
        "process jobs", context=trace.set_span_in_context(send), kind=SpanKind.CONSUMER,
        links=[Link(send.get_span_context())], start_time=at(9),
        attributes=kafka("process", "jobs", 1, 5, "workers"))
    process.add_event("exception", {"exception.type": "TimeoutError", "exception.message": "slow disk"},
                      timestamp=at(11))
    process.set_status(Status(StatusCode.ERROR))
    process.end(end_time=at(12))
    return list(exporter.get_finished_spans())


# --- writers ------------------------------------------------------------------------------------


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int64"
    elif isinstance(value, float):
        kind = "float64"
    else:
        kind = "string"
    return {"key": key, "type": kind, "value": value}


def to_jaeger(spans: list[S]) -> dict[str, Any]:
    """Jaeger query API JSON, as Jaeger v2 writes it for OTLP spans."""
    traces: dict[str, dict[str, Any]] = {}
    for s in spans:
        trace = traces.setdefault(s.trace, {"traceID": s.trace, "spans": [], "processes": {},
                                            "warnings": None})
        processes = trace["processes"]
        pid = next((p for p, v in processes.items() if v["serviceName"] == s.service), None)
        if pid is None:
            pid = f"p{len(processes) + 1}"
            processes[pid] = {"serviceName": s.service, "tags": [_tag("telemetry.sdk.language", "python")]}
        refs = []
        if s.parent and (s.trace, s.parent) not in s.links:
            refs.append({"refType": "CHILD_OF", "traceID": s.trace, "spanID": s.parent})
        refs += [{"refType": "FOLLOWS_FROM", "traceID": t, "spanID": i} for t, i in s.links]
        tags = [_tag(k, v) for k, v in sorted(s.attrs.items())]
        if s.status_error:
            tags.append(_tag("error", True))
            tags.append(_tag("otel.status_code", "ERROR"))
            if s.status_message:
                tags.append(_tag("otel.status_description", s.status_message))
        tags.append(_tag("otel.scope.name", "fixtures"))
        tags.append(_tag("span.kind", s.kind))
        logs = []
        if s.exception:
            logs.append({"timestamp": round((T0_MS + s.end) * 1000) - 100, "fields": [
                _tag("event", "exception"),
                _tag("exception.message", s.exception[1]),
                _tag("exception.type", s.exception[0]),
            ]})
        trace["spans"].append({
            "traceID": s.trace, "spanID": s.id, "operationName": s.name, "references": refs,
            "startTime": round((T0_MS + s.start) * 1000), "duration": round((s.end - s.start) * 1000),
            "tags": tags, "logs": logs, "processID": pid, "warnings": None,
        })
    return {"data": list(traces.values()), "total": 0, "limit": 0, "offset": 0, "errors": None}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def _attrs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in attrs.items()]


def _otlp_span(s: S) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": s.trace.rjust(32, "0"), "spanId": s.id, "parentSpanId": s.parent or "",
        "flags": 257, "name": s.name, "kind": KINDS[s.kind],
        "startTimeUnixNano": str(round((T0_MS + s.start) * 1_000_000)),
        "endTimeUnixNano": str(round((T0_MS + s.end) * 1_000_000)),
        "attributes": _attrs(s.attrs), "status": {},
    }
    if s.links:
        span["links"] = [{"traceId": t, "spanId": i, "flags": 257} for t, i in s.links]
    if s.status_error:
        span["status"] = {"code": 2, **({"message": s.status_message} if s.status_message else {})}
    if s.exception:
        span["events"] = [{"timeUnixNano": str(round((T0_MS + s.end) * 1_000_000) - 100_000),
                           "name": "exception",
                           "attributes": _attrs({"exception.type": s.exception[0],
                                                 "exception.message": s.exception[1]})}]
    return span


def to_otlp_line(groups: list[tuple[str, list[S]]]) -> str:
    """One file-exporter line: ``groups`` is [(service, spans)], one resource each."""
    resources = [{
        "resource": {"attributes": _attrs({"service.name": service, "telemetry.sdk.language": "python"})},
        "scopeSpans": [{"scope": {"name": "fixtures"}, "spans": [_otlp_span(s) for s in spans]}],
        "schemaUrl": "https://opentelemetry.io/schemas/1.27.0",
    } for service, spans in groups]
    return json.dumps({"resourceSpans": resources}, separators=(",", ":"))


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    write = lambda name, text: (FIXTURES / name).write_text(text)  # noqa: E731

    write("fanout.jaeger.json", json.dumps(to_jaeger(fanout_scenario()), indent=2) + "\n")
    # The same chain as OTLP lines: each span on its own line, as a batching exporter may split them.
    write("fanout.otlp.jsonl", "".join(to_otlp_line([(s.service, [s])]) + "\n" for s in fanout_scenario()))

    by_id = {s.id: s for s in links_scenario()}
    line = lambda *ids: to_otlp_line([(by_id[i].service, [by_id[i]]) for i in ids])  # noqa: E731
    lines = [
        line("b000000000000001"),
        # two resources on one line, spans of two traces
        to_otlp_line([("ledger", [by_id["b000000000000003"]]), ("audit", [by_id["c000000000000001"]])]),
        line("b000000000000002"),  # the same resource again, on a later line
        json.dumps({"resourceMetrics": []}),  # other signals may share the file
        line("c000000000000002", "c000000000000003"),
        to_otlp_line([("reports", [by_id["d000000000000001"], by_id["d000000000000002"]])]),
        line("e000000000000001"),
    ]
    write("links.otlp.jsonl", "\n".join(lines) + "\n")
    write("links.jaeger.json", json.dumps(to_jaeger(links_scenario()), indent=2) + "\n")

    # The plain protobuf JSON mapping (base64 ids, enum names), pretty-printed, from real SDK spans.
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    write("sdk.protojson.json", MessageToJson(encode_spans(sdk_spans())) + "\n")

    # A bare trace object (no "data" wrapper), as some tools save a single trace.
    write("legacy.jaeger.json", json.dumps(to_jaeger(legacy_scenario())["data"][0], indent=2) + "\n")


if __name__ == "__main__":
    main()
