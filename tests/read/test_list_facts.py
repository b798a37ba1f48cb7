"""``list`` from a file reads only each span's summary fields (``iter_file_facts``): the shortcut
gives exactly the chains, counts and order that the general path over whole spans gives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmarks.read_chains import deep_chain, fan_out, many_traces, mixed, write_otlp_lines
from tracing.read.load import iter_file, iter_file_facts, span_facts
from tracing.read.query import ChainFilter, ChainList, _Digest, is_chain, list_chains, list_chains_facts

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted(p.name for p in FIXTURES.glob("*.json*") if not p.name.endswith(".meta.json"))
FILTERS = [
    ChainFilter(),
    ChainFilter(include_all=True),
    ChainFilter(errors=True),
    ChainFilter(service="billing"),
    ChainFilter(since_ns=1_764_230_400_000_000_000),
]


def _both(path: Path, chain_filter: ChainFilter) -> tuple[object, object]:
    general = list_chains(iter_file(path, slim=True), chain_filter, limit=20)
    shortcut = list_chains_facts(iter_file_facts(path), chain_filter, limit=20)
    return general, shortcut


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("chain_filter", FILTERS, ids=lambda f: repr(dataclasses.asdict(f)))
def test_recorded_files_list_the_same_through_facts(name: str, chain_filter: ChainFilter) -> None:
    general, shortcut = _both(FIXTURES / name, chain_filter)
    assert shortcut == general


def test_generated_chains_list_the_same_through_facts(tmp_path: Path) -> None:
    path = tmp_path / "chains.jsonl"
    write_otlp_lines(path, [deep_chain(50), fan_out(40), mixed(), *many_traces(300)])
    for chain_filter in FILTERS:
        general, shortcut = _both(path, chain_filter)
        assert shortcut == general


def test_facts_of_each_span_are_what_the_span_says(tmp_path: Path) -> None:
    path = tmp_path / "chains.jsonl"
    write_otlp_lines(path, [mixed(), *many_traces(50)])
    assert list(iter_file_facts(path)) == [span_facts(s) for s in iter_file(path)]


def test_a_topic_or_message_filter_is_refused_by_the_shortcut(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the spans"):
        list_chains_facts([], ChainFilter(topic="orders"))


def _every_summary_then_filtered(path: Path, f: ChainFilter, limit: int | None) -> ChainList:
    """The selection made the plain way: a summary for every trace, then the filters and order on
    those (what ``list`` shows must not change by making summaries only for the rows shown)."""
    digests: dict[str, _Digest] = {}
    for fact in iter_file_facts(path):
        digests.setdefault(fact[0], _Digest()).add(fact)
    kept, hidden = [], 0
    for trace_id, digest in digests.items():
        summary = digest.summary(trace_id)
        if f.service and f.service not in summary.services:
            continue
        if (f.errors and not summary.errors) or (f.since_ns is not None and summary.start_ns < f.since_ns):
            continue
        if not f.include_all and not is_chain(summary):
            hidden += 1
            continue
        kept.append(summary)
    kept.sort(key=lambda s: (s.start_ns, s.trace_id), reverse=True)
    shown = kept[:limit] if limit is not None else kept
    return ChainList(shown=shown, matching=len(kept), hidden=hidden, traces=len(digests))


@pytest.mark.parametrize("limit", [None, 1, 20])
def test_summaries_made_only_for_the_rows_shown_select_as_every_summary_would(
    tmp_path: Path, limit: int | None
) -> None:
    path = tmp_path / "chains.jsonl"
    write_otlp_lines(path, [deep_chain(30), fan_out(20), mixed(), *many_traces(400)])
    files = [path, *(FIXTURES / name for name in FILES)]
    for chain_filter in FILTERS:
        for file in files:
            got = list_chains_facts(iter_file_facts(file), chain_filter, limit=limit)
            assert got == _every_summary_then_filtered(file, chain_filter, limit), (file.name, chain_filter)
            if file == path and chain_filter == ChainFilter():
                assert got.hidden and got.matching  # batch receive traces hidden, chains kept
