"""eventchain on any terminal and in any pipe: ASCII where UTF-8 cannot print, no traceback ever,
exit 0 when the reader goes away, colour and width on request, the version."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.read_chains import deep_chain, fan_out, many_traces, write_otlp_lines
from tests.read.conftest import Result, fixture
from tests.read.make_fixtures import FANOUT
from tracing.version import __version__

Cli = Callable[..., Result]
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "NO_COLOR")}
    return subprocess.run([sys.executable, "-m", "tracing", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=120, check=False, cwd=ROOT,
                          encoding="utf-8", errors="replace", **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("big")
    files = {"deep": folder / "deep.jsonl", "many": folder / "many.jsonl", "wide": folder / "wide.jsonl"}
    write_otlp_lines(files["deep"], [deep_chain(3_000)])
    write_otlp_lines(files["many"], many_traces(3_000))
    write_otlp_lines(files["wide"], [fan_out(500)])
    return files


C_LOCALE = {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, C_LOCALE],
                         ids=["PYTHONIOENCODING=ascii", "LANG=C"])
@pytest.mark.parametrize("command", [["tree", FANOUT], ["list", "--all"], ["find", "--key", "order-17"]])
def test_a_terminal_without_utf8_gets_ascii_and_no_traceback(env: dict[str, str], command: list[str]) -> None:
    done = run(*command, "--file", str(fixture("fanout.otlp.jsonl")), env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.isascii() and done.stdout.strip()
    if command[0] == "tree":
        assert "x ValueError: address missing" in done.stdout and "`-- " in done.stdout


def test_ascii_flag_forces_ascii_glyphs(cli: Cli) -> None:
    out = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--ascii", "--width", "100").out
    assert out.isascii()
    assert "* orders-api  POST /orders" in out and "! duplicate: already processed" in out


def test_names_the_output_cannot_encode_are_escaped_not_fatal(tmp_path: Path) -> None:
    text = fixture("fanout.otlp.jsonl").read_text().replace('"shipping"', '"expédition"')
    path = tmp_path / "accents.jsonl"
    path.write_text(text)
    done = run("tree", FANOUT, "--file", str(path), env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "exp\\xe9dition" in done.stdout


@pytest.mark.parametrize("command", [["tree"], ["tree", "--json"], ["list", "--all", "--limit", "3000"],
                                     ["find", "--key", "order-7"], ["find", "--key", "order-7", "--tree"]])
def test_the_reader_going_away_exits_0_quietly(big_files: dict[str, Path], command: list[str]) -> None:
    source = big_files["deep"] if command[0] == "tree" else big_files["many"]
    base = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    with subprocess.Popen([sys.executable, "-m", "tracing", *command, "--file", str(source)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base, cwd=ROOT) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline()
        process.stdout.close()  # like `| head -1`
        err = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert code == 0, err
    assert err == ""


def test_colour_always_and_never(cli: Cli) -> None:
    args = ("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--width", "100")
    coloured = cli(*args, "--color", "always").out
    plain = cli(*args, "--color", "never").out
    assert "\x1b[" in coloured and "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_no_color_in_the_environment_keeps_the_text(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--color", "always").out
    assert "\x1b[3" not in out  # no colour codes (bold may stay)
    assert "ValueError: address missing" in out


@pytest.mark.parametrize("width", [40, 60])
def test_width_is_honoured_by_tree_and_list(cli: Cli, width: int) -> None:
    tree = cli("tree", FANOUT, "--file", fixture("fanout.jaeger.json"), "--width", str(width)).out
    assert max(len(line) for line in tree.splitlines()) <= width
    listed = cli("list", "--file", fixture("links.otlp.jsonl"), "--all", "--width", str(width)).out
    ids = re.findall(r"\b[0-9a-f]{32}\b", listed)
    assert len(ids) == 4  # the trace id is never cut, whatever else goes


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"eventchain {__version__}"


def test_unfold_prints_every_like_sibling(cli: Cli, big_files: dict[str, Path]) -> None:
    folded = cli("tree", "--file", big_files["wide"], "--width", "120").out
    unfolded = cli("tree", "--file", big_files["wide"], "--width", "120", "--unfold").out
    assert "497 more like this" in folded
    assert unfolded.count("process orders") == 500 and "more like this" not in unfolded


def test_a_5000_span_deep_chain_prints_every_hop(cli: Cli, big_files: dict[str, Path]) -> None:
    out = cli("tree", "--file", big_files["deep"], "--width", "80").out
    for hop in (0, 1500, 2999):
        assert f"process hop-{hop:05d}" in out
