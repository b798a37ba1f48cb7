"""OTLP JSON lines read the fast (typed) way give exactly what the general way gives.

The typed decoder takes the collector's usual shape; any line it cannot read the same way must be
left to the general path (``typed_line`` answers None), never read differently.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.read_chains import audit_traffic, deep_chain, many_traces, mixed, write_otlp_lines
from tests.read.conftest import fixture
from tracing.read.audit_facts import AuditFactsReader, iter_file_audit_facts
from tracing.read.load import (
    LoadError,
    _FactsReader,
    _otlp_line,
    _SpanReader,
    iter_file,
    iter_file_facts,
    parse_otlp,
)

READERS = {
    "full": lambda: _SpanReader(),
    "slim": lambda: _SpanReader(slim=True),
    "facts": _FactsReader,
    "audit": AuditFactsReader,
}

_KEYS = st.sampled_from(
    [
        "messaging.operation.type",
        "messaging.operation",
        "messaging.system",
        "messaging.destination.name",
        "messaging.kafka.message.key",
        "messaging.kafka.offset",
        "messaging.destination.partition.id",
        "messaging.consumer.group.name",
        "messaging.kafka.consumer.group",
        "messaging.kafka.message.offset",
        "messaging.message.id",
        "kafka.record.queue_time_ms",
        "app.event.type",
        "error.type",
        "service.name",
        "exception.type",
        "exception.message",
        "http.method",
    ]
)
_TEXT = st.sampled_from(
    ["send", "process", "receive", "publish", "Deliver", "orders", "", "kafka", "é\u2603", "3", "orders.0.7"]
)
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_PLAIN_VALUE = st.one_of(
    st.builds(lambda t: {"stringValue": t}, _TEXT),
    st.builds(lambda n: {"intValue": str(n)}, _INT64),
    st.builds(lambda n: {"intValue": n}, _INT64),  # a number, not the int64-as-string of OTLP/JSON
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(lambda d: {"doubleValue": d}, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda n: {"doubleValue": n}, st.integers(min_value=-(2**53), max_value=2**53)),
)
_ODD_VALUE = st.one_of(
    st.just({}),
    st.just(None),
    st.builds(lambda t: {"stringValue": t, "intValue": "1"}, _TEXT),  # two kinds: order matters
    st.builds(lambda t: {"intValue": "7", "stringValue": t}, _TEXT),
    st.just({"stringValue": None}),
    st.just({"stringValue": 5}),
    st.just({"boolValue": "true"}),
    st.just({"intValue": "x1"}),
    st.just({"doubleValue": "NaN"}),
    st.just({"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}),
    st.just({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}),
    st.just({"bytesValue": "AAE="}),
    st.just({"stringValue": "a", "unknownValue": 1}),
)
_VALUE = st.one_of(_PLAIN_VALUE, _PLAIN_VALUE, _PLAIN_VALUE, _ODD_VALUE)


@st.composite
def _attributes(draw: Any, odd: bool = True) -> list[dict[str, Any]]:
    items = []
    for _ in range(draw(st.integers(0, 5))):
        item: dict[str, Any] = {"key": draw(_KEYS)}
        if draw(st.sampled_from([True] * 20 + [False])):
            item["value"] = draw(_VALUE if odd else _PLAIN_VALUE)
        items.append(item)
    return items


def _hex(draw: Any, digits: int, odd: bool = True) -> Any:
    value = draw(st.integers(1, 16**digits - 1))
    text = f"{value:0{digits}x}"
    form = draw(st.integers(0, 12))
    if form == 0:
        return text.upper()
    if form == 1:
        return base64.b64encode(bytes.fromhex(text)).decode()
    if form == 2:
        return text.lstrip("0") or "1"  # short: padded
    if form == 3 and odd:
        return draw(st.sampled_from(["xyz", "", 12, None]))  # not an id
    return text


@st.composite
def _span(draw: Any, trace_ids: list[str], odd: bool) -> dict[str, Any]:
    start = draw(st.integers(0, 2**63 - 1))
    raw: dict[str, Any] = {"traceId": draw(st.sampled_from(trace_ids)), "spanId": _hex(draw, 16, odd)}
    optional: dict[str, Any] = {
        "parentSpanId": draw(st.one_of(st.just(""), st.just(None), st.builds(lambda: _hex(draw, 16, odd)))),
        "name": draw(st.one_of(_TEXT, st.just("recv"), st.just(None) if odd else _TEXT)),
        "kind": draw(
            st.one_of(
                st.integers(0, 6),
                st.sampled_from(["SPAN_KIND_PRODUCER", "SPAN_KIND_UNSPECIFIED", "consumer"]),
            )
        ),
        "startTimeUnixNano": draw(st.sampled_from([str(start), start, "x" if odd else str(start)])),
        "endTimeUnixNano": draw(st.sampled_from([str(start + 5), start + 5, "0", 0, None, ""])),
        "attributes": draw(st.one_of(_attributes(odd), st.just(None))),
        "status": draw(
            st.one_of(
                st.just({}),
                st.just(None),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "code": st.sampled_from(
                            [0, 1, 2, "2", "STATUS_CODE_ERROR", "STATUS_CODE_OK", 2.0 if odd else 2]
                        ),
                        "message": st.sampled_from(["", "boom", None]),
                    },
                ),
            )
        ),
        "events": draw(
            st.one_of(
                st.just(None),
                st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "name": st.sampled_from(["exception", "log"]),
                            "timeUnixNano": st.sampled_from(["17", 17]),
                            "attributes": _attributes(odd),
                        },
                    ),
                    max_size=2,
                ),
            )
        ),
        "links": draw(
            st.one_of(
                st.just(None),
                st.lists(
                    st.builds(
                        lambda t, a: {"traceId": t, "spanId": _hex(draw, 16, odd), "attributes": a},
                        st.sampled_from(trace_ids),
                        _attributes(odd=False),
                    ),
                    max_size=2,
                ),
            )
        ),
        "flags": 1,
        "traceState": "",
        "droppedAttributesCount": 0,
    }
    for key, value in optional.items():
        if draw(st.sampled_from([True] * 5 + [False])) or (key == "startTimeUnixNano" and not odd):
            raw[key] = value
    return raw


@st.composite
def otlp_lines(draw: Any) -> str:
    """One OTLP JSON line: mostly the collector's shape, sometimes anything the general path reads."""
    odd = draw(st.integers(0, 2)) == 0  # else only what the typed way should read itself
    trace_ids = [_hex(draw, 32, odd) for _ in range(draw(st.integers(1, 3)))]
    resources = []
    for _ in range(draw(st.integers(0, 3))):
        scopes = [
            {
                "scope": {"name": "tracing", "version": "1"},
                "spans": draw(st.lists(_span(trace_ids, odd), max_size=4)),
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
        resource: dict[str, Any] = {"attributes": draw(_attributes(odd))}
        if draw(st.booleans()):
            resource["attributes"].append({"key": "service.name", "value": {"stringValue": "checkout"}})
        entry: dict[str, Any] = {"resource": draw(st.sampled_from([resource, resource, {}, None]))}
        entry[draw(st.sampled_from(["scopeSpans", "scopeSpans", "instrumentationLibrarySpans"]))] = scopes
        entry["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
        resources.append(entry)
    doc: dict[str, Any] = {"resourceSpans": resources}
    shape = draw(st.sampled_from(["plain"] * 8 + ["result", "null"]))
    if shape == "result":
        doc = {"result": doc}
    elif shape == "null":
        doc = {"resourceSpans": None}
    return json.dumps(doc, ensure_ascii=draw(st.booleans()))


def _general(kind: str, line: str) -> tuple[list[Any] | None, int]:
    reader = READERS[kind]()
    try:
        return list(_otlp_line(json.loads(line), 1, reader)), reader.count
    except LoadError:
        return None, reader.count


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(otlp_lines(), st.sampled_from(sorted(READERS)))
def test_a_line_read_the_typed_way_gives_what_the_general_way_gives(line: str, kind: str) -> None:
    reader = READERS[kind]()
    typed = reader.typed_line(line)
    expected, count = _general(kind, line)
    if typed is None:
        assert reader.count == 0  # left to the general path, nothing counted twice
        return
    assert expected is not None, "the typed way read a line the general way rejects"
    assert typed == expected
    assert reader.count == count == len(typed)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_the_collectors_lines_are_read_the_typed_way(tmp_path: Path) -> None:
    # Otherwise the fast path would be proven equal and never taken.
    path = tmp_path / "spans.jsonl"
    write_otlp_lines(path, [deep_chain(20), mixed(), *many_traces(20), *audit_traffic(20)])
    files = [path, fixture("fanout.otlp.jsonl"), fixture("links.otlp.jsonl")]
    lines = [line for f in files for line in _lines(f) if "resourceSpans" in line]
    for kind in READERS:
        assert all(READERS[kind]().typed_line(line) is not None for line in lines), kind


def test_a_file_reads_the_same_spans_and_facts_as_line_by_line_general_parsing(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    write_otlp_lines(path, [deep_chain(30), mixed(), *many_traces(40)])
    general = [span for line in _lines(path) for span in parse_otlp(json.loads(line))]
    assert list(iter_file(path)) == general
    facts = [fact for line in _lines(path) for fact in _otlp_line(json.loads(line), 1, _FactsReader())]
    assert list(iter_file_facts(path)) == facts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(otlp_lines())
def test_audit_facts_read_the_fast_way_are_the_models(line: str) -> None:
    # The audit's own reading (attributes picked from the typed structs) against the model's rules
    # applied to the spans the general way reads.
    reader = AuditFactsReader()
    typed = reader.typed_line(line)
    expected, _ = _general("audit", line)
    if typed is not None:
        assert typed == expected


def test_the_audits_usual_spans_never_need_the_model(tmp_path: Path, monkeypatch: Any) -> None:
    # Otherwise the fast way would be proven equal and never taken.
    path = tmp_path / "spans.jsonl"
    write_otlp_lines(path, [*audit_traffic(60), *many_traces(20)])

    def by_model(*_: Any) -> Any:
        raise AssertionError("read as a Span")

    monkeypatch.setattr(AuditFactsReader, "_by_model", by_model)
    facts = list(iter_file_audit_facts(path))
    assert len(facts) == sum(1 for line in _lines(path) for _ in parse_otlp(json.loads(line)))
