"""Loading spans: formats told apart by content, every format giving the same Span records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.read.conftest import fixture
from tests.read.make_fixtures import FANOUT, LEGACY, MAIN, sdk_spans
from tracing.read.load import LoadError, from_readable_spans, normalise_trace_id, read_file
from tracing.read.model import Span


def _key(span: Span) -> tuple[object, ...]:
    return (span.trace_id, span.span_id, span.parent_id, span.name, span.kind, span.service,
            span.start_ns, span.end_ns, span.role, span.topic, span.partition, span.offset,
            span.consumer_group, span.error)


def test_jaeger_json_and_otlp_lines_of_the_same_chain_load_the_same_spans() -> None:
    jaeger = sorted(map(_key, read_file(fixture("fanout.jaeger.json"))))
    otlp = sorted(map(_key, read_file(fixture("fanout.otlp.jsonl"))))
    assert jaeger == otlp
    assert len(jaeger) == 8


def test_format_is_told_by_content_not_by_file_name(tmp_path: Path) -> None:
    misleading = tmp_path / "trace.otlp.jsonl"
    shutil.copy(fixture("fanout.jaeger.json"), misleading)
    other = tmp_path / "download.json"
    shutil.copy(fixture("fanout.otlp.jsonl"), other)
    assert sorted(map(_key, read_file(misleading))) == sorted(map(_key, read_file(other)))


def test_spans_of_one_trace_spread_over_lines_and_resources_are_all_loaded() -> None:
    spans = read_file(fixture("links.otlp.jsonl"))
    main = [s for s in spans if s.trace_id == MAIN]
    assert sorted(s.service for s in main) == ["checkout", "checkout", "ledger"]
    assert len(spans) == 9  # the resourceMetrics line is skipped


def test_jaeger_parent_written_as_follows_from_is_the_parent() -> None:
    # Jaeger writes a parent that is also a link as a FOLLOWS_FROM reference only.
    spans = {s.span_id: s for s in read_file(fixture("fanout.jaeger.json"))}
    assert spans["a1b2c3d4e5f60002"].parent_id == "a1b2c3d4e5f60001"


def test_links_to_other_traces_are_kept() -> None:
    spans = {s.span_id: s for s in read_file(fixture("links.jaeger.json"))}
    link_only = spans["c000000000000001"]
    assert link_only.parent_id is None
    assert [(ref.trace_id, ref.span_id) for ref in link_only.links] == [(MAIN, "b000000000000002")]


def test_a_bare_jaeger_trace_with_a_64_bit_id_loads_with_the_id_padded() -> None:
    spans = read_file(fixture("legacy.jaeger.json"))
    assert {s.trace_id for s in spans} == {LEGACY.rjust(32, "0")}


def test_older_attribute_names_and_kind_only_spans_get_messaging_roles() -> None:
    spans = {s.name: s for s in read_file(fixture("legacy.jaeger.json"))}
    assert (spans["orders send"].role, spans["orders send"].topic, spans["orders send"].partition) == (
        "send", "orders", 3)
    assert spans["orders process"].consumer_group == "legacy"
    assert spans["emit"].role == "send" and spans["consume"].role == "process"
    assert spans["late work"].role is None


def test_error_message_comes_from_the_status_or_the_exception_event() -> None:
    spans = {s.span_id: s for s in read_file(fixture("fanout.jaeger.json"))}
    assert spans["a1b2c3d4e5f60004"].error == "ValueError: address missing"
    links = {s.span_id: s for s in read_file(fixture("links.otlp.jsonl"))}
    assert links["c000000000000003"].error == "disk full"
    assert spans["a1b2c3d4e5f60002"].error is None


def test_protobuf_json_with_base64_ids_and_enum_names_loads() -> None:
    spans = {s.name: s for s in read_file(fixture("sdk.protojson.json"))}
    assert spans["send jobs"].trace_id == "7a3b0000000000000000000000000001"
    assert spans["send jobs"].kind == "producer"
    assert spans["process jobs"].parent_id == spans["send jobs"].span_id
    assert spans["process jobs"].error == "TimeoutError: slow disk"


def test_sdk_readable_spans_load_like_their_otlp_export() -> None:
    in_memory = sorted(map(_key, from_readable_spans(sdk_spans())))
    exported = sorted(map(_key, read_file(fixture("sdk.protojson.json"))))
    assert in_memory == exported


def test_trace_ids_are_normalised_to_32_lower_case_hex_digits() -> None:
    assert normalise_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert normalise_trace_id("3e2f5a1b9c8d7e6f") == "00000000000000003e2f5a1b9c8d7e6f"
    for bad in ("", "xyz", "1" * 33, "4bf9-2f35"):
        with pytest.raises(LoadError, match="not a trace id"):
            normalise_trace_id(bad)


# --- bad files: one line, naming the file and what is wrong -------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"hello world", "not JSON"),
        (b'{"data": [{"traceID": "ab", "spans": [', "not JSON"),
        (b'{"hello": 1}', "neither Jaeger JSON nor OTLP JSON"),
        (b"[1, 2, 3]", "neither Jaeger JSON nor OTLP JSON"),
        (b'{"data": [{"traceID": "ab", "spans": [{"traceID": "ab"}]}]}', "missing 'spanID'"),
        (b'{"data": [{"traceID": "ab", "spans": [{"traceID": "zz", "spanID": "1", "startTime": 1}]}]}',
         "not a 32-digit hex id"),
        (b'{"data": {"a": 1}}', "not a list of traces"),
        (b'{"data": []}', "holds no spans"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}', "missing 'traceId'"),
    ],
)
def test_a_malformed_file_is_a_load_error_naming_the_file(tmp_path: Path, content: bytes,
                                                          problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(LoadError) as caught:
        read_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_a_broken_otlp_line_is_named_by_its_number(tmp_path: Path) -> None:
    lines = fixture("links.otlp.jsonl").read_text().splitlines()
    lines[2] = lines[2][:40]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(LoadError, match=r"spans.jsonl: line 3: not JSON"):
        read_file(path)


def test_a_line_that_is_not_otlp_is_named(tmp_path: Path) -> None:
    lines = fixture("links.otlp.jsonl").read_text().splitlines()
    lines.insert(1, json.dumps({"event": "not a span"}))
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(LoadError, match=r"line 2: not an OTLP JSON object"):
        read_file(path)


def test_missing_file_and_directory_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file"):
        read_file(tmp_path / "nope.json")
    with pytest.raises(LoadError, match="is a directory"):
        read_file(tmp_path)


def test_fanout_fixture_trace_is_the_one_named() -> None:
    assert {s.trace_id for s in read_file(fixture("fanout.otlp.jsonl"))} == {FANOUT}
