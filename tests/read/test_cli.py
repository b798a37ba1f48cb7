"""The eventchain command line: output, and an exit code and one-line message for every bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.read.conftest import EXPECTED, FakeJaeger, Result, fixture
from tests.read.make_fixtures import FANOUT, LINK_ONLY, MAIN

Cli = Callable[..., Result]
Jaeger = Callable[..., FakeJaeger]


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.out == ""
    assert result.err.startswith("eventchain: error: ") or result.err.startswith("usage:")
    assert "Traceback" not in result.err
    if result.err.startswith("eventchain: error: "):
        assert result.err.count("\n") == 1, result.err
    for fragment in fragments:
        assert fragment in result.err


# --- tree from files -----------------------------------------------------------------------------


def test_tree_from_a_file_prints_the_tree(cli: Cli) -> None:
    result = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--width", "100")
    assert result.code == 0
    assert result.out == (EXPECTED / "fanout.txt").read_text()


def test_tree_json_from_otlp_lines_matches_the_contract(cli: Cli) -> None:
    result = cli("tree", FANOUT, "--file", fixture("fanout.otlp.jsonl"), "--json")
    assert result.code == 0
    doc = result.json()
    assert (doc["trace_id"], doc["hops"], doc["errors"], doc["services"]) == (
        FANOUT, 3, 1, ["billing", "orders-api", "shipping"])
    assert doc["root"]["children"][0]["name"] == "send orders"


def test_trace_id_may_be_left_out_for_a_file_with_one_trace(cli: Cli) -> None:
    assert cli("tree", "--file", fixture("fanout.jaeger.json"), "--json").json()["trace_id"] == FANOUT


def test_trace_id_is_accepted_in_upper_case_and_without_leading_zeros(cli: Cli) -> None:
    result = cli("tree", "3E2F5A1B9C8D7E6F", "--file", fixture("legacy.jaeger.json"), "--json")
    assert result.json()["trace_id"] == "00000000000000003e2f5a1b9c8d7e6f"


def test_follow_links_from_a_file(cli: Cli) -> None:
    doc = cli("tree", MAIN, "--file", fixture("links.otlp.jsonl"), "--json", "--follow-links").json()
    send = doc["root"]["children"][0]
    assert [(c["trace_id"], c["link"]) for c in send["children"]][:2] == [(MAIN, False), (LINK_ONLY, True)]


def test_all_spans_unfolds_the_json_too(cli: Cli) -> None:
    folded = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--json").json()
    full = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--json", "--all-spans").json()
    assert len(full["root"]["children"]) == 2 and len(folded["root"]["children"]) == 1


def test_svg_export_is_written_and_deterministic(cli: Cli, tmp_path: Path) -> None:
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    for path in (first, second):
        assert cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--svg", path).code == 0
    assert first.read_text().startswith("<svg")
    assert "duplicate" in first.read_text()
    assert first.read_bytes() == second.read_bytes()


def test_python_dash_m_tracing_is_the_same_command(cli: Cli) -> None:
    args = ["tree", FANOUT, "--file", str(fixture("fanout.jaeger.json")), "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    run = subprocess.run([sys.executable, "-m", "tracing", *args], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == cli(*args).json()


def test_help_exits_zero(cli: Cli) -> None:
    result = cli("tree", "--help")
    assert result.code == 0 and "--follow-links" in result.out


# --- bad input: exit 2, one line naming the file and the problem ----------------------------------


def test_unknown_trace_id_in_a_file(cli: Cli) -> None:
    result = cli("tree", "1" * 32, "--file", fixture("fanout.jaeger.json"))
    assert_one_line_error(result, 2, "1" * 32, "fanout.jaeger.json", "not found")


def test_a_trace_id_that_is_not_hex(cli: Cli) -> None:
    assert_one_line_error(cli("tree", "not-a-trace", "--file", fixture("fanout.jaeger.json")), 2,
                          "not a trace id")


def test_a_file_with_several_traces_needs_a_trace_id(cli: Cli) -> None:
    assert_one_line_error(cli("tree", "--file", fixture("links.otlp.jsonl")), 2, "holds 4 traces")


def test_missing_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    assert_one_line_error(cli("tree", FANOUT, "--file", missing), 2, str(missing), "no such file")


def test_directory_instead_of_a_file(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("tree", FANOUT, "--file", tmp_path), 2, str(tmp_path), "directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0)
    assert_one_line_error(cli("tree", FANOUT, "--file", path), 2, str(path), "permission denied")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b'{"spans": 3}', "neither Jaeger JSON nor OTLP JSON"),
        (b'{"data": [{"traceID": "ab", "spans": [{"traceID": "ab", "spanID": "cd"}]}]}', "malformed"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab"}]}]}]}\n{"resourceSpans": 1}\n',
         "malformed"),
    ],
)
def test_malformed_files(cli: Cli, tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    assert_one_line_error(cli("tree", FANOUT, "--file", path), 2, str(path), problem)


def test_unwritable_svg_path(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "tree.svg"
    result = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--svg", target, "--json")
    assert result.code == 2 and str(target) in result.err


def test_jaeger_and_file_together_is_a_usage_error(cli: Cli) -> None:
    result = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--jaeger", "http://x")
    assert result.code == 2 and "not allowed with" in result.err


def test_no_command_is_a_usage_error(cli: Cli) -> None:
    assert cli().code == 2


def test_bad_lookback_and_limit_are_usage_errors(cli: Cli) -> None:
    assert cli("list", "--lookback", "soon").code == 2
    assert cli("list", "--limit", "0").code == 2


# --- Jaeger ---------------------------------------------------------------------------------------


def test_tree_from_jaeger(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    result = cli("tree", FANOUT, "--jaeger", jaeger.url, "--width", "100")
    assert result.code == 0
    assert result.out == (EXPECTED / "fanout.txt").read_text()
    assert jaeger.requests == [f"/api/traces/{FANOUT}"]


def test_jaeger_url_comes_from_the_environment(cli: Cli, fake_jaeger: Jaeger,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    monkeypatch.setenv("EVENTCHAIN_JAEGER_URL", jaeger.url)
    assert cli("tree", FANOUT, "--json").code == 0
    assert jaeger.requests


def test_jaeger_option_overrides_the_environment(cli: Cli, fake_jaeger: Jaeger,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    monkeypatch.setenv("EVENTCHAIN_JAEGER_URL", "http://127.0.0.1:1")
    assert cli("tree", FANOUT, "--jaeger", jaeger.url, "--json").code == 0


def test_unknown_trace_id_in_jaeger(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    assert_one_line_error(cli("tree", "2" * 32, "--jaeger", jaeger.url), 2, "2" * 32, "not found",
                          jaeger.url)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_jaeger_exits_3_naming_the_url(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", url), 3, url)
    assert_one_line_error(cli("list", "--jaeger", url), 3, url)


def test_jaeger_answering_errors_exits_3(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    jaeger.mode = "error"
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", jaeger.url), 3, jaeger.url, "HTTP 500")


def test_something_else_than_jaeger_at_the_url_exits_3(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("fanout.jaeger.json")
    jaeger.mode = "html"
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", jaeger.url), 3, jaeger.url)


def test_a_jaeger_url_that_is_not_http_is_bad_input(cli: Cli) -> None:
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", "localhost:16686"), 2, "localhost:16686")


def test_follow_links_searches_jaeger_for_linking_traces(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("links.jaeger.json")
    doc = cli("tree", MAIN, "--jaeger", jaeger.url, "--json", "--follow-links").json()
    assert "audit" in doc["services"] and "reports" in doc["services"]
    assert any(r.startswith("/api/traces?service=") for r in jaeger.requests)


# --- list -----------------------------------------------------------------------------------------


def test_list_from_jaeger_is_newest_first(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("links.jaeger.json", "fanout.jaeger.json")
    result = cli("list", "--jaeger", jaeger.url, "--json")
    starts = [c["start_ns"] for c in result.json()]
    assert len(starts) == 5 and starts == sorted(starts, reverse=True)


def test_list_filters_by_service_errors_topic_and_limit(cli: Cli, fake_jaeger: Jaeger) -> None:
    jaeger = fake_jaeger("links.jaeger.json", "fanout.jaeger.json")
    ids = lambda *args: [c["trace_id"] for c in cli("list", "--jaeger", jaeger.url, "--json", *args).json()]  # noqa: E731
    assert ids("--service", "shipping") == [FANOUT]
    assert set(ids("--errors")) == {FANOUT, LINK_ONLY}
    assert set(ids("--topic", "orders")) == {FANOUT}
    assert len(ids("--limit", "2")) == 2


def test_list_text_has_one_line_per_chain(cli: Cli) -> None:
    result = cli("list", "--file", fixture("links.otlp.jsonl"), "--width", "120")
    assert result.code == 0
    assert result.out == (EXPECTED / "list.txt").read_text()


def test_list_with_nothing_found_says_so_and_succeeds(cli: Cli) -> None:
    result = cli("list", "--file", fixture("links.otlp.jsonl"), "--service", "nobody")
    assert result.code == 0 and "no event chains found" in result.err


def test_an_unexpected_failure_is_one_line_too(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr("tracing.cli.make_chain", broken)
    assert_one_line_error(cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json")), 1,
                          "ZeroDivisionError", "EVENTCHAIN_DEBUG")


def test_list_from_a_bad_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("list", "--file", tmp_path / "x.json"), 2, "no such file")


def test_a_chain_deeper_than_the_recursion_limit_still_prints_as_json(cli: Cli, tmp_path: Path) -> None:
    spans, parent = [], []
    for i in range(1500):
        op = "send" if i % 2 == 0 else "process"
        spans.append({
            "traceID": "1" * 32, "spanID": f"{i + 1:016x}", "operationName": f"{op} retry",
            "references": [{"refType": "CHILD_OF", "traceID": "1" * 32, "spanID": p} for p in parent],
            "startTime": 1_000_000 + i, "duration": 1, "processID": "p1",
            "tags": [{"key": "messaging.operation.type", "value": op},
                     {"key": "span.kind", "value": "producer" if op == "send" else "consumer"}],
        })
        parent = [f"{i + 1:016x}"]
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({"data": [{"traceID": "1" * 32, "spans": spans,
                                          "processes": {"p1": {"serviceName": "loop"}}}]}))
    result = cli("tree", "--file", path, "--json")
    assert result.code == 0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # json.loads recurses as deep as the document nests
    try:
        assert result.json()["hops"] == 750
    finally:
        sys.setrecursionlimit(limit)
