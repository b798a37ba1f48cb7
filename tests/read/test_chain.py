"""Building the chain: causality order, folding, orphans, link stitching."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.read.conftest import fixture
from tests.read.make_fixtures import BATCH, FANOUT, LINK_ONLY, MAIN
from tracing.read import make_chain
from tracing.read.chain import build_chain, fold, trace_ids
from tracing.read.load import read_file
from tracing.read.model import Hop, Span


def _names(hop: Hop) -> list[object]:
    """The tree as nested [service/name, [children...]] for readable assertions."""
    return [f"{hop.span.service}/{hop.span.name}", [_names(c) for c in hop.children]]


def test_the_tree_follows_parent_references_with_children_in_start_order() -> None:
    chain = build_chain(read_file(fixture("fanout.jaeger.json")), FANOUT)
    assert chain.root.span.name == "POST /orders"
    send = chain.root.children[1]
    assert send.span.name == "send orders"
    assert [c.span.service for c in send.children] == ["shipping", "billing", "billing"]
    assert [c.span.start_ns for c in send.children] == sorted(c.span.start_ns for c in send.children)


def test_non_messaging_spans_fold_into_their_nearest_messaging_ancestor() -> None:
    chain = fold(build_chain(read_file(fixture("fanout.jaeger.json")), FANOUT))
    assert [h.span.name for h in chain.root.children] == ["send orders"]
    assert [s.name for s in chain.root.folded] == ["validate order"]
    billing = chain.root.children[0].children[1]
    assert [s.name for s in billing.folded] == ["POST /charges"]
    assert [h.span.name for h in billing.children] == ["send invoices"]


def test_folding_keeps_every_span_either_shown_or_counted() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    chain = fold(build_chain(spans, FANOUT))
    shown = [h.span.span_id for h in chain.hops()]
    folded = [s.span_id for h in chain.hops() for s in h.folded]
    assert sorted(shown + folded) == sorted(s.span_id for s in spans)


def test_all_spans_shows_the_unfolded_tree() -> None:
    chain = make_chain(read_file(fixture("fanout.jaeger.json")), FANOUT, all_spans=True)
    assert len(list(chain.hops())) == 8
    assert all(not h.folded for h in chain.hops())


def test_a_span_in_error_is_never_folded() -> None:
    spans = read_file(fixture("fanout.jaeger.json"))
    charge = next(s for s in spans if s.name == "POST /charges")
    charge.status_error, charge.status_message = True, "card declined"
    chain = fold(build_chain(spans, FANOUT))
    assert chain.find(charge.span_id) is not None


def test_a_span_whose_parent_is_missing_hangs_under_the_root_as_an_orphan() -> None:
    spans = read_file(fixture("legacy.jaeger.json"))
    chain = build_chain(spans, spans[0].trace_id)
    orphan = chain.find("f000000000000005")
    assert orphan is not None and orphan.orphan
    assert orphan in chain.root.children


def test_parent_references_in_a_loop_lose_no_span() -> None:
    def span(span_id: str, parent: str | None, start: int) -> Span:
        return Span("1" * 32, span_id, parent, span_id, "internal", "svc", start, start + 1)

    spans = [span("a" * 16, None, 0), span("b" * 16, "c" * 16, 5), span("c" * 16, "b" * 16, 6)]
    chain = build_chain(spans, "1" * 32)
    assert sorted(h.span.span_id for h in chain.hops()) == sorted(s.span_id for s in spans)
    only_loop = build_chain(spans[1:], "1" * 32)
    assert sorted(h.span.span_id for h in only_loop.hops()) == ["b" * 16, "c" * 16]


def test_without_follow_links_other_traces_stay_out() -> None:
    chain = build_chain(read_file(fixture("links.otlp.jsonl")), MAIN)
    assert {h.span.trace_id for h in chain.hops()} == {MAIN}


def test_follow_links_stitches_link_only_and_batch_consumers_under_the_linked_send() -> None:
    chain = build_chain(read_file(fixture("links.otlp.jsonl")), MAIN, follow_links=True)
    send = chain.find("b000000000000002")
    assert send is not None
    assert [(c.span.service, c.span.trace_id, c.link) for c in send.children] == [
        ("ledger", MAIN, False),
        ("audit", LINK_ONLY, True),
        ("reports", BATCH, True),
    ]
    # The linked trace comes with its own subtree, down to its last consumer.
    assert _names(send.children[1]) == [
        "audit/process payments",
        [["audit/send audit-log", [["archive/process audit-log", []]]]],
    ]


def test_an_unrelated_trace_in_the_same_file_is_not_stitched() -> None:
    chain = build_chain(read_file(fixture("links.otlp.jsonl")), MAIN, follow_links=True)
    assert chain.find("e000000000000001") is None


def test_trace_ids_lists_traces_earliest_first() -> None:
    assert trace_ids(read_file(fixture("links.otlp.jsonl")))[0] == MAIN


# --- properties over random trees ----------------------------------------------------------------

_KINDS = ["internal", "server", "client", "producer", "consumer"]


@st.composite
def random_trace(draw: st.DrawFn) -> list[Span]:
    n = draw(st.integers(1, 40))
    spans = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, max(i - 1, 0)))) if i else None
        if parent is not None and draw(st.booleans()) and draw(st.booleans()):
            parent_id = "dead0000beef0000"  # a lost parent now and then
        else:
            parent_id = None if parent is None else f"{parent + 1:016x}"
        start = draw(st.integers(0, 10_000)) * 1000
        spans.append(Span(
            trace_id="1" * 32, span_id=f"{i + 1:016x}", parent_id=parent_id, name=f"s{i}",
            kind=draw(st.sampled_from(_KINDS)), service=draw(st.sampled_from(["a", "b", "c"])),
            start_ns=start, end_ns=start + draw(st.integers(0, 5_000)) * 1000,
            status_error=draw(st.booleans()) and draw(st.booleans()),
        ))
    return spans


@settings(max_examples=150, deadline=None)
@given(random_trace(), st.booleans())
def test_every_span_is_shown_once_or_folded_once(spans: list[Span], all_spans: bool) -> None:
    chain = make_chain(spans, "1" * 32, all_spans=all_spans)
    shown = [h.span.span_id for h in chain.hops()]
    folded = [s.span_id for h in chain.hops() for s in h.folded]
    assert sorted(shown + folded) == sorted(s.span_id for s in spans)
    assert all(h.span.is_messaging or h.span.error or h is chain.root or h.orphan
               for h in chain.hops()) or all_spans


@settings(max_examples=150, deadline=None)
@given(random_trace())
def test_the_critical_path_is_one_unbroken_path_from_the_root(spans: list[Span]) -> None:
    chain = make_chain(spans, "1" * 32)
    hop = chain.root
    assert hop.critical
    marked = 1
    while True:
        critical = [c for c in hop.children if c.critical]
        assert len(critical) <= 1
        if not critical:
            break
        hop = critical[0]
        marked += 1
    assert marked == sum(1 for h in chain.hops() if h.critical)
