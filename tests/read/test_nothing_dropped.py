"""Nothing is dropped from a tree: on generated chains of every shape, at every width, with and
without colour, in UTF-8 and in ASCII, every span is printed or counted in a fold marker, and no
line is wider than the terminal.
"""

from __future__ import annotations

import io
import re
from functools import cache

import pytest
from rich.console import Console

from benchmarks.read_chains import ChainWriter, deep_chain, fan_out, mixed
from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.load import parse_otlp
from tracing.read.model import EventChain, Span
from tracing.read.render import ASCII, UNICODE, Glyphs, render_text

WIDTHS = (40, 60, 80, 120, 200)
NARROW = (1, 10, 20, 30)  # laid out for at least 20 columns
SHAPES = {
    "deep-10": lambda: deep_chain(10),
    "deep-15": lambda: deep_chain(15),
    "deep-200": lambda: deep_chain(200),
    "deep-5000": lambda: deep_chain(5_000),
    "fan-out-5000": lambda: fan_out(5_000),
    "mixed": mixed,
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@cache
def spans_of(shape: str) -> list[Span]:
    writer: ChainWriter = SHAPES[shape]()
    return [span for doc in writer.documents() for span in parse_otlp(doc)]


def chain_of(shape: str, unfold: bool = False) -> EventChain:
    return make_chain(spans_of(shape), repeats=not unfold)


def render(chain: EventChain, width: int, colour: bool, glyphs: Glyphs) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=colour,
                      color_system="standard" if colour else None, legacy_windows=False)
    render_text(chain, console, summarise(chain), glyphs)
    return console.file.getvalue()  # type: ignore[attr-defined]


def node_line(glyphs: Glyphs) -> re.Pattern[str]:
    guides = "|".join(re.escape(g) for g in (glyphs.pipe, glyphs.space))
    connectors = "|".join(re.escape(g) for g in (glyphs.tee, glyphs.last))
    markers = re.escape(glyphs.critical) + "|" + re.escape(glyphs.other)
    return re.compile(rf"^(?:(?:{guides})*(?:{connectors}))?(?:{markers}) ")


def accounted_spans(text: str, glyphs: Glyphs) -> tuple[int, int, int]:
    """(node lines, spans counted in "+N spans", spans counted in fold markers)."""
    nodes = node_line(glyphs)
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith(f"{glyphs.critical} critical path"))
    tree = lines[:start]  # the legend (one line, or two when narrow) is not part of the tree
    shown = sum(1 for line in tree if nodes.match(line))
    plumbing = sum(int(n.replace(",", "")) for n in re.findall(r"\+(\d[\d,]*) spans?\b", text))
    folded = sum(int(n.replace(",", "")) for n in re.findall(r"\((\d[\d,]*) spans?\)", text))
    return shown, plumbing, folded


@pytest.mark.parametrize("glyphs", [UNICODE, ASCII], ids=["utf8", "ascii"])
@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_span_is_printed_or_counted(shape: str, width: int, colour: bool, glyphs: Glyphs) -> None:
    chain = chain_of(shape)
    raw = render(chain, width, colour, glyphs)
    text = ANSI.sub("", raw)
    assert ("\x1b[" in raw) is colour
    shown, plumbing, folded = accounted_spans(text, glyphs)
    assert shown + plumbing + folded == len(spans_of(shape))
    assert max(len(line) for line in text.splitlines()) <= width
    if glyphs is ASCII:
        assert text.isascii()
    # Every re-rooted branch is printed: each "continued in [n]" has its section.
    continued = re.findall(r"continued at \[(\d+)\]", text)
    sections = re.findall(rf"^\[(\d+)\] {re.escape(glyphs.deeper)} under", text, re.MULTILINE)
    assert continued == sections


@pytest.mark.parametrize("shape", ["fan-out-5000", "mixed"])
def test_unfold_prints_every_node(shape: str) -> None:
    chain = chain_of(shape, unfold=True)
    text = render(chain, 120, False, UNICODE)
    shown, plumbing, folded = accounted_spans(text, UNICODE)
    assert folded == 0 and shown == sum(1 for _ in chain.hops())
    assert shown + plumbing == len(spans_of(shape))


def test_a_fan_out_folds_into_one_line_with_count_and_spread() -> None:
    text = render(chain_of("fan-out-5000"), 200, False, UNICODE)
    assert len(text.splitlines()) < 20
    # Three shown as examples, the rest on one marker (its spread wraps at 200 columns).
    [marker] = [line for line in text.splitlines() if "more like this" in line]
    assert marker.startswith("    └── … 4,997 more like this:  billing  process orders  group billing  "
                             "(4,997 spans)  ⚠ 4,997 duplicates  waited min ")
    assert re.search(r"waited min [\d.]+ ms / median [\d.]+ ms / max [\d.]+ ms", text)
    assert re.search(r"took min [\d.]+ ms / median [\d.]+ ms / max [\d.]+ ms", text)


def test_findings_are_never_folded() -> None:
    text = render(chain_of("mixed"), 200, False, UNICODE)
    assert "✗ ValueError: address missing" in text
    assert "⚠ duplicate: already processed" in text
    assert "⚠ no consumer seen" in text


def test_deep_chains_keep_every_label_within_half_the_width() -> None:
    text = render(chain_of("deep-200"), 80, False, UNICODE)
    for line in text.splitlines():
        body = line.lstrip("│├└─ ")
        assert len(line) - len(body) <= 40 + 4  # the guides never take more than half
    assert "hop-00199" in text


@pytest.mark.parametrize("width", NARROW)
@pytest.mark.parametrize("shape", ["deep-200", "fan-out-5000", "mixed"])
def test_very_narrow_consoles_still_account_for_every_span(shape: str, width: int) -> None:
    text = render(chain_of(shape), width, False, UNICODE)
    shown, plumbing, folded = accounted_spans(text, UNICODE)
    assert shown + plumbing + folded == len(spans_of(shape))
    assert max(len(line) for line in text.splitlines()) <= max(width, 20)
