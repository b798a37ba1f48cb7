"""eventchain on traces the OpenTelemetry contrib confluent-kafka instrumentation recorded.

The fixtures come from a real contrib 0.66b1 run through the real broker into the real Jaeger
(tests/read/record_contrib_fixtures.py): pre-1.24 names, ``{topic} send`` / ``recv`` /
``{topic} process``, the offset only inside ``messaging.message.id``, process spans in traces of
their own that link to the send span. Contrib records no consumer group, so none is shown.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tracing.read.load import read_file

FIXTURES = Path(__file__).parent / "fixtures"
FILE = FIXTURES / "contrib.jaeger.json"
META = json.loads((FIXTURES / "contrib.meta.json").read_text())


def _tree(trace_id: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tracing", "tree", trace_id, "--file", str(FILE), "--json", *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def test_contrib_spans_read_with_role_topic_partition_and_offset() -> None:
    spans = read_file(FILE)
    topic = META["topic"]
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == sorted([f"{topic} send", "recv", f"{topic} process"])
    assert {s.role for s in by_name[f"{topic} send"]} == {"send"}
    assert {s.role for s in by_name["recv"]} == {"receive"}
    processes = by_name[f"{topic} process"]
    assert {s.role for s in processes} == {"process"}
    assert {s.topic for s in processes} == {topic}
    assert {s.partition for s in processes} == {0}
    assert sorted(s.offset for s in processes) == [0, 1]


def test_tree_of_a_contrib_send_shows_its_linked_consumer_with_topic_partition_offset_and_wait() -> None:
    for trace_id in META["send_traces"]:
        doc = _tree(trace_id, "--follow-links")
        root = doc["root"]
        assert root["topic"] == META["topic"] and root["kind"] == "producer"
        (consumer,) = root["children"]
        assert consumer["link"] is True
        assert consumer["trace_id"] in META["consumer_traces"]
        assert consumer["service"] == META["services"]["consume"]
        assert (consumer["topic"], consumer["partition"]) == (META["topic"], 0)
        assert consumer["offset"] in (0, 1)
        assert consumer["queue_ms"] is not None and consumer["queue_ms"] >= 0


def test_tree_of_a_contrib_consumer_trace_shows_recv_as_a_receive_over_the_process() -> None:
    offsets = []
    for trace_id in META["consumer_traces"]:
        root = _tree(trace_id)["root"]
        assert root["name"] == "recv" and root["role"] == "receive"
        (process,) = root["children"]
        assert process["role"] == "process" and process["topic"] == META["topic"]
        offsets.append(process["offset"])
    assert sorted(offsets) == [0, 1]
