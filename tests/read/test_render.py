"""Rendering: the tree as text at a fixed width (golden files), the JSON contract, SVG export.

Golden files live in fixtures/expected/; after an intended change of the view, regenerate them with
``EVENTCHAIN_UPDATE_GOLDEN=1 pytest tests/read`` and review the diff.
"""

from __future__ import annotations

import io
import os
import re

import pytest
from rich.console import Console

from tests.read.conftest import EXPECTED, fixture, plain_console
from tests.read.make_fixtures import FANOUT, MAIN, sdk_spans
from tracing.read import make_chain, render_chain
from tracing.read.analyse import summarise
from tracing.read.load import read_file
from tracing.read.render import format_ms, render_list, render_text, to_json


def check_golden(name: str, text: str) -> None:
    path = EXPECTED / name
    if os.environ.get("EVENTCHAIN_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def rendered(file: str, trace_id: str | None = None, width: int = 100, **options: bool) -> str:
    spans = read_file(fixture(file))
    chain = make_chain(spans, trace_id, **options)
    console = plain_console(width)
    render_text(chain, console, summarise(chain))
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("golden", "file", "trace_id", "options"),
    [
        ("fanout.txt", "fanout.jaeger.json", FANOUT, {}),
        ("fanout-all-spans.txt", "fanout.otlp.jsonl", FANOUT, {"all_spans": True}),
        ("links.txt", "links.otlp.jsonl", MAIN, {}),
        ("links-follow.txt", "links.otlp.jsonl", MAIN, {"follow_links": True}),
        ("legacy.txt", "legacy.jaeger.json", None, {}),
        ("sdk.txt", "sdk.protojson.json", None, {}),
    ],
)
def test_tree_text_at_100_columns(golden: str, file: str, trace_id: str | None,
                                  options: dict[str, bool]) -> None:
    check_golden(golden, rendered(file, trace_id, **options))


def test_tree_text_wraps_the_same_way_at_60_columns() -> None:
    check_golden("fanout-60.txt", rendered("fanout.jaeger.json", FANOUT, width=60))


def test_header_line_names_trace_root_services_hops_duration_and_errors() -> None:
    first = rendered("fanout.jaeger.json", FANOUT).splitlines()[0]
    assert first == f"trace {FANOUT}  POST /orders  3 services  3 hops  74 ms  1 error"


def test_each_finding_is_spelled_out_in_the_tree() -> None:
    text = rendered("fanout.jaeger.json", FANOUT)
    assert "waited 15 ms in orders" in text
    assert "✗ ValueError: address missing" in text
    assert "⚠ duplicate" in text
    assert "⚠ no consumer seen" in text
    assert "+1 span" in text


def test_errors_are_red_in_a_colour_terminal() -> None:
    chain = make_chain(read_file(fixture("fanout.jaeger.json")), FANOUT)
    console = Console(file=io.StringIO(), width=100, color_system="standard", force_terminal=True)
    render_text(chain, console, summarise(chain))
    assert re.search(r"\x1b\[1;31m[^\x1b]*✗ ValueError: address missing", console.file.getvalue())


def test_list_text_at_120_columns() -> None:
    spans = read_file(fixture("links.otlp.jsonl"))
    ids = sorted({s.trace_id for s in spans})
    summaries = sorted((summarise(make_chain(spans, t)) for t in ids),
                       key=lambda s: s.start_ns, reverse=True)
    console = plain_console(120)
    render_list(summaries, console)
    check_golden("list.txt", console.file.getvalue())  # type: ignore[attr-defined]


NODE_KEYS = {"span_id", "trace_id", "service", "name", "kind", "topic", "consumer_group", "partition",
             "offset", "duration_ms", "queue_ms", "error", "duplicate", "unconsumed", "link", "children"}


def _nodes(node: dict) -> list[dict]:  # type: ignore[type-arg]
    return [node, *(n for child in node["children"] for n in _nodes(child))]


def test_json_document_has_the_contract_keys() -> None:
    chain = make_chain(read_file(fixture("links.otlp.jsonl")), MAIN, follow_links=True)
    doc = to_json(chain, summarise(chain))
    assert {"trace_id", "services", "hops", "duration_ms", "errors", "root"} <= doc.keys()
    for node in _nodes(doc["root"]):
        assert NODE_KEYS <= node.keys()


def test_json_values_describe_the_hops() -> None:
    chain = make_chain(read_file(fixture("fanout.jaeger.json")), FANOUT)
    doc = to_json(chain, summarise(chain))
    assert (doc["trace_id"], doc["services"], doc["hops"], doc["duration_ms"], doc["errors"]) == (
        FANOUT, ["billing", "orders-api", "shipping"], 3, 74.0, 1)
    by_id = {n["span_id"]: n for n in _nodes(doc["root"])}
    billing = by_id["a1b2c3d4e5f60002"]
    assert {k: billing[k] for k in ("service", "name", "kind", "topic", "consumer_group", "partition",
                                    "offset", "duration_ms", "queue_ms", "error", "duplicate",
                                    "unconsumed", "link")} == {
        "service": "billing", "name": "process orders", "kind": "consumer", "topic": "orders",
        "consumer_group": "billing", "partition": 0, "offset": 41, "duration_ms": 16.0,
        "queue_ms": 15.0, "error": None, "duplicate": False, "unconsumed": False, "link": False}
    assert by_id["a1b2c3d4e5f60004"]["error"] == "ValueError: address missing"
    assert by_id["a1b2c3d4e5f60005"]["duplicate"] is True
    assert by_id["a1b2c3d4e5f60003"]["unconsumed"] is True
    assert doc["root"]["folded"] == 1


def test_json_follows_the_folding_rules_and_all_spans_unfolds() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    folded = to_json(make_chain(spans, FANOUT), summarise(make_chain(spans, FANOUT)))
    full_chain = make_chain(spans, FANOUT, all_spans=True)
    full = to_json(full_chain, summarise(full_chain))
    assert len(_nodes(folded["root"])) == 6
    assert len(_nodes(full["root"])) == 8


def test_json_marks_stitched_spans_as_links() -> None:
    chain = make_chain(read_file(fixture("links.otlp.jsonl")), MAIN, follow_links=True)
    doc = to_json(chain, summarise(chain))
    links = [n for n in _nodes(doc["root"]) if n["link"]]
    assert [(n["service"], n["name"]) for n in links] == [("audit", "process payments"),
                                                           ("reports", "poll payments")]


def test_render_chain_prints_a_tree_from_sdk_spans_in_memory() -> None:
    console = plain_console()
    render_chain(sdk_spans(), console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "send jobs" in text and "process jobs" in text and "waited 6.0 ms in jobs" in text


def test_render_chain_follows_links_among_the_spans_it_is_given() -> None:
    console = plain_console()
    render_chain(read_file(fixture("links.otlp.jsonl")), console, trace_id=MAIN)
    assert "↪ link" in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0.42, "0.42 ms"), (1.84, "1.8 ms"), (15.2, "15 ms"), (1520, "1.52 s"), (185_000, "3m 05s"),
     (-3.0, "-3.0 ms")],
)
def test_durations_read_naturally(ms: float, text: str) -> None:
    assert format_ms(ms) == text


def test_an_error_message_wraps_between_words_and_keeps_every_character() -> None:
    text = rendered("fanout.jaeger.json", FANOUT, width=34)
    lines = [line.lstrip("│ ") for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("✗ ValueError"))
    # "✗ ValueError: address missing" is wider than the label's column here: it breaks at a space.
    assert lines[start : start + 2] == ["✗ ValueError: address", "missing"]
