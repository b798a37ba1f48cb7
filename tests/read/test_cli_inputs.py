"""What eventchain accepts: files still being written, stdin, gzip, ids as users paste them; what
`list` shows by default and says it hid; finding chains by message; errors that say what to try."""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.read_chains import many_traces, write_otlp_lines
from tests.read.conftest import Result, SeededJaeger, fixture
from tests.read.make_fixtures import BATCH, FANOUT, LINK_ONLY, MAIN, OTHER
from tests.stack import Stack

Cli = Callable[..., Result]
Seed = Callable[[str], SeededJaeger]


def assert_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.out == ""
    assert result.err.startswith("eventchain: error: ") and result.err.count("\n") == 1, result.err
    assert re.search(r"\btry ", result.err), result.err
    for fragment in fragments:
        assert fragment in result.err


# --- input forms -----------------------------------------------------------------------------------


def test_a_truncated_last_line_is_skipped_with_one_warning(cli: Cli, tmp_path: Path) -> None:
    lines = fixture("links.otlp.jsonl").read_text().splitlines()
    path = tmp_path / "being-written.jsonl"
    path.write_text("\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 2]]))
    result = cli("tree", MAIN, "--file", path, "--json")
    assert result.code == 0, result.err
    assert result.json()["trace_id"] == MAIN
    [warning] = result.err.splitlines()
    assert warning.startswith(f"eventchain: warning: skipped the last line (line {len(lines)})")


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(cli: Cli, tmp_path: Path) -> None:
    lines = fixture("links.otlp.jsonl").read_text().splitlines()
    lines[1] = lines[1][:30]
    path = tmp_path / "corrupt.jsonl"
    path.write_text("\n".join(lines))
    assert_error(cli("tree", MAIN, "--file", path), 2, "line 2: not JSON")


def test_a_file_of_one_line_cut_short_is_that_line_skipped_not_a_broken_document(
    cli: Cli, tmp_path: Path
) -> None:
    first = fixture("links.otlp.jsonl").read_text().splitlines()[0]
    path = tmp_path / "first-batch.jsonl"
    path.write_text(first[: len(first) // 2])
    result = cli("list", "--file", path)
    assert result.code == 2 and "Traceback" not in result.err
    warning, error = result.err.splitlines()
    assert warning.startswith("eventchain: warning: skipped the last line (line 1): it is not complete JSON")
    assert "holds no spans" in error and "not JSON" not in error


def test_a_broken_first_line_before_good_ones_is_an_error_naming_line_1(cli: Cli, tmp_path: Path) -> None:
    lines = fixture("links.otlp.jsonl").read_text().splitlines()
    lines[0] = lines[0][:300]
    path = tmp_path / "corrupt-first.jsonl"
    path.write_text("\n".join(lines))
    result = cli("tree", MAIN, "--file", path)
    assert_error(result, 2, "line 1: not JSON", "only a broken last line is skipped")


def test_a_gzip_file_cut_short_shows_the_spans_before_the_cut(cli: Cli, tmp_path: Path) -> None:
    # A file compressed while it was being written: whole lines, then one the cut goes through.
    text = fixture("links.otlp.jsonl").read_text().rstrip("\n")
    tail = json.dumps({"resourceSpans": [], "padding": random.Random(7).randbytes(30_000).hex()})
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(f"{text}\n{tail}\n".encode())[:-200])
    result = cli("tree", MAIN, "--file", path, "--json")
    assert result.code == 0, result.err
    assert result.json()["trace_id"] == MAIN
    assert "skipped the last line" in result.err
    assert "the compressed data ends early" in result.err and "Traceback" not in result.err


def test_file_dash_reads_stdin(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    data = fixture("fanout.jaeger.json").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert cli("tree", "--file", "-", "--json").json()["trace_id"] == FANOUT


@pytest.mark.parametrize("name", ["fanout.otlp.jsonl", "fanout.jaeger.json"])
def test_gzipped_files_are_read_whatever_their_name(cli: Cli, tmp_path: Path, name: str) -> None:
    for target in (tmp_path / f"{name}.gz", tmp_path / "no-suffix"):
        target.write_bytes(gzip.compress(fixture(name).read_bytes()))
        assert cli("tree", FANOUT, "--file", target, "--json").json()["hops"] == 3


def test_a_truncated_gzip_file_is_an_error(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(fixture("fanout.otlp.jsonl").read_bytes())[:200])
    result = cli("tree", FANOUT, "--file", path)
    assert result.code == 2 and "Traceback" not in result.err and str(path) in result.err


@pytest.mark.parametrize("typed", [FANOUT[:8], FANOUT[:12].upper(), FANOUT[:31]])
def test_a_unique_prefix_of_8_or_more_digits_names_a_trace(cli: Cli, typed: str) -> None:
    assert cli("tree", typed, "--file", fixture("fanout.jaeger.json"), "--json").json()["trace_id"] == FANOUT


def test_an_ambiguous_prefix_lists_the_candidates(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    write_otlp_lines(path, many_traces(40))  # ids 00..01 to 00..28: they share their first 30 digits
    assert_error(cli("tree", "0" * 30, "--file", path), 2, "is the start of", "try more digits")


def test_a_short_id_that_matches_nothing_says_how_many_digits_to_give(cli: Cli) -> None:
    # The digits typed, not the zero-padded id they stand for as a 64-bit id.
    assert_error(cli("tree", "4bf92f", "--file", fixture("fanout.jaeger.json")), 2,
                 "trace 4bf92f not found", "at least 8 hex digits")


def test_a_traceparent_names_the_trace_and_marks_its_span(cli: Cli) -> None:
    traceparent = f"00-{FANOUT}-a1b2c3d4e5f60004-01"
    doc = cli("tree", traceparent, "--file", fixture("fanout.jaeger.json"), "--json").json()
    assert doc["trace_id"] == FANOUT
    out = cli("tree", traceparent, "--file", fixture("fanout.jaeger.json"), "--width", "120").out
    *tree, legend = out.splitlines()
    assert legend.endswith("◀ matched")
    [marked] = [line for line in tree if "◀ matched" in line]
    assert "shipping  process orders" in marked


def test_a_jaeger_ui_url_names_the_trace(cli: Cli) -> None:
    url = f"http://jaeger.example:16686/trace/{FANOUT}?uiFind=a1b2c3d4e5f60004"
    doc = cli("tree", url, "--file", fixture("fanout.jaeger.json"), "--json").json()
    assert doc["trace_id"] == FANOUT


def test_a_url_that_is_not_a_trace_page_is_bad_input(cli: Cli) -> None:
    assert_error(cli("tree", "http://jaeger:16686/search", "--file", fixture("fanout.jaeger.json")), 2,
                 "not a Jaeger trace URL")


# --- list: chains by default --------------------------------------------------------------------------


def test_list_shows_chains_and_says_how_many_others_it_hid(cli: Cli) -> None:
    result = cli("list", "--file", fixture("links.otlp.jsonl"), "--width", "120")
    assert result.code == 0
    listed = [line.split()[2] for line in result.out.splitlines()[1:-1]]
    assert listed == [LINK_ONLY, MAIN]  # the 0-hop batch and producer-only traces are hidden
    assert result.out.splitlines()[-1] == (
        "2 of 2 chains shown; 2 other traces without a hop or an error hidden (--all shows them)")


def test_list_all_shows_receive_only_traces_too(cli: Cli) -> None:
    doc = cli("list", "--file", fixture("links.otlp.jsonl"), "--all", "--json").json()
    assert {c["trace_id"] for c in doc} == {MAIN, LINK_ONLY, BATCH, OTHER}


def test_list_ends_with_n_of_m_shown(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    write_otlp_lines(path, many_traces(90))
    result = cli("list", "--file", path, "--limit", "5", "--width", "200")
    assert result.code == 0
    assert len(result.out.splitlines()) == 1 + 5 + 1
    assert result.out.splitlines()[-1] == (
        "5 of 60 chains shown (--limit N shows more); "
        "30 other traces without a hop or an error hidden (--all shows them)")


def test_list_json_stays_json_and_the_count_goes_to_stderr(cli: Cli) -> None:
    result = cli("list", "--file", fixture("links.otlp.jsonl"), "--json")
    assert len(result.json()) == 2 and "2 of 2 chains shown" in result.err


# --- find by message ------------------------------------------------------------------------------------


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    path = tmp_path / "orders.jsonl"
    write_otlp_lines(path, many_traces(30))
    return path


def test_find_by_key(cli: Cli, orders: Path) -> None:
    doc = cli("find", "--key", "order-7", "--file", orders, "--json").json()
    assert [c["trace_id"] for c in doc] == [f"{7:032x}"]


def test_find_by_topic_partition_and_offset(cli: Cli, orders: Path) -> None:
    doc = cli("find", "--topic", "orders", "--partition", "3", "--offset", "11", "--file", orders,
              "--json").json()
    assert [c["trace_id"] for c in doc] == [f"{11:032x}"]
    assert cli("find", "--topic", "orders", "--partition", "2", "--offset", "11", "--file", orders,
               "--json").json() == []


def test_find_by_group(cli: Cli, orders: Path) -> None:
    assert len(cli("find", "--group", "shipping", "--file", orders, "--json").json()) == 20
    assert cli("find", "--group", "nobody", "--file", orders, "--json").json() == []


def test_list_takes_the_same_message_filters(cli: Cli, orders: Path) -> None:
    doc = cli("list", "--key", "order-8", "--file", orders, "--json").json()
    assert [c["trace_id"] for c in doc] == [f"{8:032x}"]


def test_find_tree_marks_the_matching_nodes(cli: Cli, orders: Path) -> None:
    out = cli("find", "--key", "order-7", "--group", "billing", "--file", orders, "--tree",
              "--width", "120").out
    marked = [line for line in out.splitlines()[:-2] if "◀ matched" in line]
    assert len(marked) == 1 and "billing  process orders" in marked[0]
    assert out.splitlines()[-1] == "1 of 1 chain shown"


def test_tree_highlights_a_message_too(cli: Cli) -> None:
    out = cli("tree", FANOUT, "--file", fixture("fanout.otlp.jsonl"), "--group", "shipping",
              "--width", "120").out
    [marked] = [line for line in out.splitlines()[:-1] if "◀ matched" in line]
    assert marked.count("shipping") == 2


def test_find_needs_a_message(cli: Cli, orders: Path) -> None:
    assert_error(cli("find", "--file", orders), 2, "--key")


def test_find_in_jaeger_uses_its_tag_search(cli: Cli, seeded_jaeger: Seed) -> None:
    jaeger = seeded_jaeger("fanout.jaeger.json")
    found = cli("find", "--key", "order-17", "--jaeger", jaeger.url, "--lookback", "1h", "--json")
    assert found.code == 0, found.err
    assert jaeger.id(FANOUT) in [c["trace_id"] for c in found.json()]
    by_offset = cli("find", "--topic", "orders", "--partition", "0", "--offset", "41", "--group", "billing",
                    "--jaeger", jaeger.url, "--lookback", "1h", "--json")
    assert jaeger.id(FANOUT) in [c["trace_id"] for c in by_offset.json()]


# --- Jaeger: ids, timeout ---------------------------------------------------------------------------


def test_jaeger_prefix_and_ui_url(cli: Cli, seeded_jaeger: Seed) -> None:
    jaeger = seeded_jaeger("fanout.jaeger.json")
    full = jaeger.id(FANOUT)
    assert cli("tree", full[:10], "--jaeger", jaeger.url, "--json").json()["trace_id"] == full
    # A URL copied from the Jaeger UI also says which Jaeger to ask.
    url = f"{jaeger.url}/trace/{full}"
    result = cli("tree", url, "--json")
    assert result.code == 0, result.err
    assert result.json()["trace_id"] == full


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        stop = threading.Event()
        accepted: list[socket.socket] = []

        def accept() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()


def test_timeout_bounds_the_wait_for_jaeger(cli: Cli, silent_server: str) -> None:
    result = cli("tree", FANOUT, "--jaeger", silent_server, "--timeout", "0.3")
    assert_error(result, 3, silent_server, "timed out", "--timeout")


def test_a_refused_connection_does_not_suggest_waiting_longer(cli: Cli) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        result = cli("tree", FANOUT, "--jaeger", url, "--timeout", "2")
    assert_error(result, 3, url, "--jaeger URL")
    assert "--timeout" not in result.err


def test_a_bad_timeout_is_a_usage_error(cli: Cli) -> None:
    assert cli("tree", FANOUT, "--timeout", "0").code == 2


# --- every error says what to try next -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["tree", "1" * 32, "--file", str(fixture("fanout.jaeger.json"))], 2),
        (["tree", "--file", str(fixture("links.otlp.jsonl"))], 2),
        (["tree", FANOUT, "--file", "/no/such/file.json"], 2),
        (["tree", FANOUT, "--jaeger", "http://127.0.0.1:9"], 3),
        (["list", "--jaeger", "http://127.0.0.1:9"], 3),
    ],
)
def test_every_error_line_says_what_to_try(cli: Cli, args: list[str], code: int) -> None:
    assert_error(cli(*args), code)


def test_malformed_file_errors_say_what_is_read(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"spans": 3}))
    assert_error(cli("tree", FANOUT, "--file", path), 2, "Jaeger JSON", "OTLP JSON")


def test_unknown_trace_in_jaeger_says_what_to_try(cli: Cli, real_stack: Stack) -> None:
    assert_error(cli("tree", "ab" * 16, "--jaeger", real_stack.jaeger_url), 2, "eventchain list")
