"""The eventchain command line: output, and an exit code and one-line message for every bad input."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.read.conftest import EXPECTED, Result, SeededJaeger, fixture
from tests.read.make_fixtures import BATCH, FANOUT, LINK_ONLY, MAIN, OTHER
from tests.stack import Stack

Cli = Callable[..., Result]
Seed = Callable[[str], SeededJaeger]


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


# --- Jaeger: the fixture traces sent to the real Jaeger of the local stack -------------------------


def test_tree_from_jaeger(cli: Cli, seeded_jaeger: Seed) -> None:
    jaeger = seeded_jaeger("fanout.jaeger.json")
    result = cli("tree", jaeger.id(FANOUT), "--jaeger", jaeger.url, "--width", "100")
    assert result.code == 0, result.err
    assert result.out == jaeger.expected((EXPECTED / "fanout.txt").read_text())


def test_jaeger_url_comes_from_the_environment(cli: Cli, seeded_jaeger: Seed,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    jaeger = seeded_jaeger("fanout.jaeger.json")
    monkeypatch.setenv("EVENTCHAIN_JAEGER_URL", jaeger.url)
    result = cli("tree", jaeger.id(FANOUT), "--json")
    assert result.code == 0, result.err
    assert result.json()["trace_id"] == jaeger.id(FANOUT)


def test_jaeger_option_overrides_the_environment(cli: Cli, seeded_jaeger: Seed,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    jaeger = seeded_jaeger("fanout.jaeger.json")
    monkeypatch.setenv("EVENTCHAIN_JAEGER_URL", f"http://127.0.0.1:{_closed_port()}")
    assert cli("tree", jaeger.id(FANOUT), "--jaeger", jaeger.url, "--json").code == 0


def test_unknown_trace_id_in_jaeger(cli: Cli, real_stack: Stack) -> None:
    unknown = os.urandom(16).hex()  # Jaeger answers 404 for a trace it does not hold
    assert_one_line_error(cli("tree", unknown, "--jaeger", real_stack.jaeger_url), 2, unknown,
                          "not found", real_stack.jaeger_url)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_jaeger_exits_3_naming_the_url(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", url), 3, url)
    assert_one_line_error(cli("list", "--jaeger", url), 3, url)


def test_jaeger_rejecting_a_query_exits_3_with_its_reason(cli: Cli, real_stack: Stack) -> None:
    # Jaeger reads `limit` as a 64-bit number: a larger one is answered with HTTP 400 and the reason.
    result = cli("list", "--jaeger", real_stack.jaeger_url, "--service", "orders-api", "--all",
                 "--limit", str(10**20))
    assert_one_line_error(result, 3, real_stack.jaeger_url, "HTTP 400", "/api/traces",
                          "value out of range")


@pytest.mark.parametrize("where", ["health check", "path that is not the API"])
def test_something_else_than_jaeger_at_the_url_exits_3(cli: Cli, real_stack: Stack, where: str) -> None:
    # Jaeger's health check answers "404 page not found" in plain text; a path under the query
    # port that is not the API gets the UI's HTML page with HTTP 200.
    query = urllib.parse.urlsplit(real_stack.jaeger_url)
    url = (f"http://{query.hostname}:13133" if where == "health check"
           else real_stack.jaeger_url + "/not-the-api")
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", url), 3, url, "did not answer Jaeger's JSON API")
    assert_one_line_error(cli("list", "--jaeger", url), 3, url, "did not answer Jaeger's JSON API")


def test_a_jaeger_url_that_is_not_http_is_bad_input(cli: Cli) -> None:
    assert_one_line_error(cli("tree", FANOUT, "--jaeger", "localhost:16686"), 2, "localhost:16686")


def test_follow_links_searches_jaeger_for_linking_traces(cli: Cli, seeded_jaeger: Seed) -> None:
    jaeger = seeded_jaeger("links.jaeger.json")
    result = cli("tree", jaeger.id(MAIN), "--jaeger", jaeger.url, "--follow-links", "--width", "100")
    assert result.code == 0, result.err
    # The audit and reports traces only link to the chain: found by searching, stitched in.
    assert result.out == jaeger.expected((EXPECTED / "links-follow.txt").read_text())


# --- list from Jaeger: the shared Jaeger holds other traces too, so the claims are about ours ------


def _seeded_lists(cli: Cli, seeded_jaeger: Seed) -> Callable[..., list[dict[str, Any]]]:
    """``chains("--errors")``: `eventchain list --json` over the time since the fixtures were sent."""
    links, fanout = seeded_jaeger("links.jaeger.json"), seeded_jaeger("fanout.jaeger.json")
    oldest = min(s.start_ns for s in [*links.spans, *fanout.spans])
    lookback = f"{math.ceil((time.time_ns() - oldest) / 1e9) + 60}s"

    def chains(*args: str) -> list[dict[str, Any]]:
        result = cli("list", "--jaeger", links.url, "--json", "--lookback", lookback, *args)
        assert result.code == 0, result.err
        return result.json()

    return chains


def _ours(seeded_jaeger: Seed) -> dict[str, str]:
    """Trace id in Jaeger -> the fixture's name for it, for the five fixture chains."""
    links, fanout = seeded_jaeger("links.jaeger.json"), seeded_jaeger("fanout.jaeger.json")
    names = {links.id(t): t for t in (MAIN, LINK_ONLY, BATCH, OTHER)}
    names[fanout.id(FANOUT)] = FANOUT
    return names


def test_list_from_jaeger_is_newest_first(cli: Cli, seeded_jaeger: Seed) -> None:
    chains = _seeded_lists(cli, seeded_jaeger)("--limit", "1000", "--all")
    starts = [c["start_ns"] for c in chains]
    assert starts == sorted(starts, reverse=True)
    ours = _ours(seeded_jaeger)
    listed = [ours[c["trace_id"]] for c in chains if c["trace_id"] in ours]
    assert len(listed) == 5
    # The links fixture's traces start 0, 12, 30 and 100 ms after each other: newest first.
    assert [t for t in listed if t != FANOUT] == [OTHER, BATCH, LINK_ONLY, MAIN]


def test_list_filters_by_service_errors_topic_and_limit(cli: Cli, seeded_jaeger: Seed) -> None:
    chains = _seeded_lists(cli, seeded_jaeger)
    ours = _ours(seeded_jaeger)

    def listed(found: list[dict[str, Any]]) -> set[str]:
        return {ours[c["trace_id"]] for c in found if c["trace_id"] in ours}

    by_service = chains("--service", "shipping", "--limit", "1000")
    assert listed(by_service) == {FANOUT}
    assert all("shipping" in c["services"] for c in by_service)
    with_errors = chains("--errors", "--limit", "1000")
    assert listed(with_errors) == {FANOUT, LINK_ONLY}
    assert all(c["errors"] for c in with_errors)
    assert listed(chains("--topic", "orders", "--limit", "1000")) == {FANOUT}
    assert len(chains("--limit", "2")) == 2


def test_list_text_has_one_line_per_chain(cli: Cli) -> None:
    result = cli("list", "--file", fixture("links.otlp.jsonl"), "--width", "120", "--all")
    assert result.code == 0
    assert result.out == (EXPECTED / "list.txt").read_text() + "4 of 4 chains shown\n"


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
