"""`eventchain audit` as one streaming pass: spans in file order (not time order) within the window
are judged as if in order, what comes too late is counted, and what the auditor holds stays bounded
however long the stream grows."""

from __future__ import annotations

import dataclasses
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.read_chains import audit_traffic, many_traces, write_otlp_lines
from tracing.read.audit import (
    _BUCKET_BASE,
    _PER_LOG,
    EXACT_SAMPLES,
    FOLD_EVERY,
    Audit,
    AuditOptions,
    Auditor,
    OffsetRanges,
    _Quantiles,
    audit,
    audit_of_facts,
    parse_saga,
)
from tracing.read.audit_facts import iter_file_audit_facts
from tracing.read.load import iter_file
from tracing.read.model import Span

from .test_audit import Traffic, _ns


def steady_traffic(orders: int, *, every_ms: float = 10, seed: int = 0, missed: int = 17) -> Traffic:
    """``orders`` order events, one every ``every_ms``, over 8 keys and 2 partitions, processed by
    billing (every 7th processed out of order with the next one of its key, every 11th failed and
    redelivered, every 13th delivered twice) and by shipping (every ``missed``-th never processed;
    0: none)."""
    rng = random.Random(seed)
    t = Traffic()
    offsets = [0, 0]
    held_back: dict[str, tuple[Span, float]] = {}
    for n in range(orders):
        at = n * every_ms
        key = f"k{n % 8}"
        partition = n % 2
        send = t.send("orders", key, partition, offsets[partition], at_ms=at)
        offsets[partition] += 1
        processed_at = at + 2 + rng.random()
        if n % 7 == 0 and key not in held_back:
            held_back[key] = (send, processed_at)  # processed after the key's next event
        else:
            if n % 11 == 0:
                t.process(send, "billing", at_ms=processed_at, error="Timeout")
                t.process(send, "billing", at_ms=processed_at + 1)
            else:
                t.process(send, "billing", at_ms=processed_at)
            if n % 13 == 0:
                t.process(send, "billing", at_ms=processed_at + 2)
            late = held_back.pop(key, None)
            if late is not None:
                t.process(late[0], "billing", at_ms=processed_at + 0.5)
        if not missed or n % missed:
            t.process(send, "shipping", at_ms=at + 3)
    for send, at in held_back.values():
        t.process(send, "billing", at_ms=at)
    return t


def findings(report: Audit) -> dict[str, object]:
    """Everything an audit reports but its window and notes."""
    return {
        "ordering": [
            (v.group, v.topic, v.key, v.first_trace_id, v.second_trace_id) for v in report.ordering_violations
        ],
        "duplicates": [(d.group, d.topic, d.partition, d.offset, d.times) for d in report.duplicates],
        "processings": report.processings,
        "unconsumed": [(u.group, u.partition, u.offset, u.trace_id) for u in report.unconsumed],
        "failures": [(f.group, f.error_type, f.count, f.retried, f.dead_lettered) for f in report.failures],
        "paths": [(p.path, p.group, p.count, p.p50_ms, p.p95_ms, p.p99_ms) for p in report.paths],
    }


def by_end(spans: list[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: s.end_ns)


# --- spans out of time order ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), shift_ms=st.integers(1, 900))
def test_spans_read_out_of_order_within_the_window_are_judged_as_if_in_order(seed, shift_ms):
    spans = by_end(steady_traffic(300, seed=seed).spans)
    rng = random.Random(seed)
    # Each span read up to shift_ms late (a collector writing batches late), all within --grace 1 s.
    shuffled = [
        s
        for _, s in sorted(
            ((s.end_ns + rng.randrange(shift_ms * 10**6), s) for s in spans), key=lambda pair: pair[0]
        )
    ]
    options = AuditOptions(grace_s=1.0, horizon_ns=_ns(10**7))
    in_order, out_of_order = audit(spans, options), audit(shuffled, options)
    assert findings(out_of_order) == findings(in_order)
    assert out_of_order.notes == in_order.notes == []


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_a_stream_many_windows_long_finds_what_one_window_over_all_of_it_finds(seed):
    # 3,000 orders over 30 s, judged with a 1 s window, against a window longer than the stream
    # (nothing leaves the auditor before the end: the whole stream judged at once).
    spans = by_end(steady_traffic(3000, seed=seed).spans)
    streamed = audit(spans, AuditOptions(grace_s=1.0, horizon_ns=_ns(10**9)))
    whole = audit(spans, AuditOptions(grace_s=10**4, horizon_ns=_ns(10**9)))
    assert findings(streamed) == findings(whole)
    assert len(streamed.ordering_violations) > 0 and len(streamed.unconsumed) > 0  # read, and found


def test_the_steady_traffic_findings_are_the_ones_it_was_made_with():
    report = audit(by_end(steady_traffic(1000).spans), AuditOptions(grace_s=1.0))
    # Every 17th never processed by shipping: judged, or (the last ones) still within grace.
    assert len(report.unconsumed) + 6 == len(range(0, 1000, 17))
    assert {u.group for u in report.unconsumed} == {"shipping"}
    assert "6 sends not processed yet but within --grace (1 s): not judged" in report.notes
    (failure,) = report.failures
    assert failure.group == "billing" and failure.count == failure.retried > 0
    assert {d.times for d in report.duplicates} == {2, 3}  # 11th or 13th: twice; both: three times
    assert {v.key for v in report.ordering_violations} == {f"k{n}" for n in range(8)}


# --- too late to judge ------------------------------------------------------------------------------


def test_a_processing_read_after_later_processings_of_its_key_were_judged_is_counted_not_judged():
    t = Traffic()
    early = t.send("orders", "k", 0, 0, at_ms=0)
    late = t.send("orders", "k", 0, 1, at_ms=1)
    latest = t.send("orders", "k", 0, 2, at_ms=2)
    t.process(late, "billing", at_ms=10)
    t.process(latest, "billing", at_ms=30)
    for n in range(1, 6):  # ten seconds of other traffic
        t.process(t.send("orders", f"other{n}", 1, n, at_ms=2_000 * n), "billing", at_ms=2_000 * n + 5)
    t.process(early, "billing", at_ms=20)  # overtaken by offset 1, but read 10 s late
    report = audit(t.spans, AuditOptions(grace_s=1.0))
    assert report.ordering_violations == []
    assert (
        "1 processed message read more than twice --grace (1 s) after later processings of its key: "
        "not checked for ordering" in report.notes
    )
    assert (
        "1 span read more than --grace (1 s) after spans that ended later: joined only with the spans "
        "of its trace still held" in report.notes
    )
    # Its send was judged before the processing came: reported, and the late span said beside it.
    assert [u.trace_id for u in report.unconsumed] == [early.trace_id]
    in_time = audit(t.spans, AuditOptions(grace_s=10.0))
    assert [(v.first_trace_id, v.second_trace_id) for v in in_time.ordering_violations] == [
        (early.trace_id, late.trace_id)
    ]


def test_a_send_judged_before_its_topic_had_a_consuming_group_is_counted_for_that_group():
    t = Traffic()
    t.send("orders", "k", 0, 0, at_ms=0)
    for n in range(1, 6):
        t.process(t.send("orders", "k", 0, n, at_ms=5_000 * n), "billing", at_ms=5_000 * n + 5)
    report = audit(t.spans, AuditOptions(grace_s=1.0))
    assert report.unconsumed == []
    assert "1 send to topics no group processed in the window: not checked for consumers" in report.notes
    assert (
        "1 send judged before a group first processed their topic: checked for it only where its processed "
        "offsets surround them (the last 65,536 judged; 0 found so)" in report.notes
    )


def test_a_group_first_seen_after_sends_were_judged_is_checked_for_the_ones_it_skipped():
    # Jaeger answers in span-end order: a consumer that ran late shows up after the sends it read.
    t = Traffic()
    sends = [t.send("orders", f"k{n}", 0, n, at_ms=1_000 * n) for n in range(4)]
    for n, send in enumerate(sends):
        t.process(send, "billing", at_ms=1_000 * n + 5)
    t.process(t.send("payments", "p", 0, 0, at_ms=15_000), "billing", at_ms=15_005)  # the clock moves on
    for n in (1, 3):  # offset 0 comes before its first: where it may have started
        t.process(sends[n], "audit", at_ms=20_000 + n)
    report = audit(by_end(t.spans), AuditOptions(grace_s=1.0))
    assert [(u.group, u.offset, u.trace_id) for u in report.unconsumed] == [("audit", 2, sends[2].trace_id)]
    assert any("(the last 65,536 judged; 1 found so)" in note for note in report.notes), report.notes


def test_a_send_never_processed_is_reported_while_the_stream_goes_on():
    t = Traffic()
    missed = t.send("orders", "k", 0, 0, at_ms=0)
    for n in range(1, 100):
        t.process(t.send("orders", "k", 0, n, at_ms=1_000 * n), "billing", at_ms=1_000 * n + 5)
    auditor = Auditor(AuditOptions(grace_s=1.0))
    for span in t.spans:
        auditor.add(span)
    assert [u.trace_id for u in auditor.unconsumed] == [missed.trace_id]  # judged, and dropped
    assert missed.span_id not in auditor.pending


# --- bounded memory ---------------------------------------------------------------------------------


def peak_held(spans: list[Span], options: AuditOptions) -> tuple[int, Audit]:
    auditor = Auditor(options)
    peak = 0
    for index, span in enumerate(spans):
        auditor.add(span)
        if index % 50 == 0:
            peak = max(peak, auditor.held)
    return peak, auditor.result()


def test_what_the_auditor_holds_stays_bounded_as_the_stream_grows():
    # Every order processed (no gap in the offsets: a gap is an unconsumed send, a finding).
    options = AuditOptions(grace_s=1.0)
    short, short_report = peak_held(by_end(steady_traffic(2 * EXACT_SAMPLES, missed=0).spans), options)
    long, long_report = peak_held(by_end(steady_traffic(8 * EXACT_SAMPLES, missed=0).spans), options)
    assert long_report.spans > 3.9 * short_report.spans  # read, and read whole
    # 4x the stream, the same window (1 s of traffic: 100 orders, some 500 spans) and keys.
    assert long <= short * 1.1
    assert long < long_report.spans / 4


# --- the pieces -------------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 60)))
def test_offset_ranges_hold_what_a_set_holds_in_as_many_ranges_as_runs(offsets):
    ranges, plain = OffsetRanges(), set()
    for offset in offsets:
        assert ranges.add(offset) == (offset not in plain)
        plain.add(offset)
    assert [o for o in range(-1, 62) if o in ranges] == sorted(plain)
    runs = sum(1 for o in plain if o - 1 not in plain)
    assert len(ranges) == runs


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10**6), count=st.integers(1, 3 * EXACT_SAMPLES), percent=st.sampled_from([50, 95, 99])
)
def test_percentiles_are_exact_while_few_and_within_one_percent_once_many(seed, count, percent):
    rng = random.Random(seed)
    values = [rng.choice((1, -1, 0.001)) * rng.lognormvariate(3, 2) for _ in range(count)]
    series = _Quantiles()
    for value in values:
        series.add(value)
    ordered = sorted(values)
    exact = ordered[min(max(1, -(-len(ordered) * percent // 100)), len(ordered)) - 1]
    if len(values) <= EXACT_SAMPLES:
        assert series.percentile(percent) == exact
    else:
        assert abs(series.percentile(percent) - exact) <= abs(exact) * 0.01


def _one_at_a_time(values: list[float]) -> dict[float, int]:
    """The histogram as each sample bucketed on its own makes it (what the batches must equal)."""
    buckets: dict[float, int] = {}
    for value in values:
        if value == 0:
            middle = 0.0
        else:
            index = math.floor(math.log(abs(value)) * _PER_LOG)
            middle = _BUCKET_BASE ** (index + 0.5) * (1 if value > 0 else -1)
        buckets[middle] = buckets.get(middle, 0) + 1
    return buckets


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), count=st.integers(EXACT_SAMPLES + 1, EXACT_SAMPLES + 3 * FOLD_EVERY))
def test_samples_folded_in_batches_make_the_histogram_one_at_a_time_makes(seed, count):
    rng = random.Random(seed)
    values = [
        rng.choice((1.0, -1.0, 0.0, 1e-6)) * rng.lognormvariate(0, 6) if rng.random() < 0.9 else 0.0
        for _ in range(count)
    ]
    series = _Quantiles()
    for value in values:
        series.add(value)
    series.percentile(50)  # folds what is pending
    assert series.count == len(values)
    assert series.buckets == _one_at_a_time(values)


def test_a_file_audited_from_its_facts_reports_what_its_spans_report(tmp_path):
    # The file path reads AuditFacts straight from the typed structs; the Span path applies the
    # model's rules: the same report, finding for finding and note for note.
    flows, mixed = tmp_path / "flows.jsonl", tmp_path / "mixed.jsonl"
    write_otlp_lines(flows, audit_traffic(3_000), spans_per_line=300)
    write_otlp_lines(mixed, [*audit_traffic(500), *many_traces(300)], spans_per_line=300)
    sagas = (parse_saga("orders:invoices"),)
    for path in (flows, mixed):
        for options in (AuditOptions(), AuditOptions(grace_s=0.5), AuditOptions(sagas=sagas)):
            from_facts = audit_of_facts(iter_file_audit_facts(path), options)
            assert from_facts == audit(iter_file(path), options)
            if path is flows:
                assert from_facts.counts()["duplicates"] == 60  # every 50th flow redelivered: found


# --- older attribute names --------------------------------------------------------------------------

# What other instrumentations record instead of the current names: the OpenTelemetry Java agent
# before the conventions' 1.24 renames (partition as an int), and the older names before those.
_JAVA_AGENT = {
    "messaging.operation.type": "messaging.operation",
    "messaging.consumer.group.name": "messaging.kafka.consumer.group",
    "messaging.destination.partition.id": "messaging.kafka.destination.partition",
    "messaging.kafka.offset": "messaging.kafka.message.offset",
}
_OLDER = {
    **_JAVA_AGENT,
    "messaging.destination.name": "messaging.destination",
    "messaging.consumer.group.name": "messaging.kafka.consumer_group",
    "messaging.destination.partition.id": "messaging.kafka.partition",
}


def _renamed(spans: list[Span], names: dict[str, str]) -> list[Span]:
    out = []
    for span in spans:
        attrs = {names.get(k, k): v for k, v in span.attributes.items()}
        for new in ("messaging.kafka.destination.partition", "messaging.kafka.partition"):
            if new in attrs:
                attrs[new] = int(attrs[new])  # the Java agent records the partition as a number
        out.append(dataclasses.replace(span, attributes=attrs))
    return out


def test_spans_with_older_attribute_names_are_audited_alike():
    spans = by_end(steady_traffic(200).spans)
    options = AuditOptions(grace_s=1)
    expected = findings(audit(spans, options))
    assert expected["unconsumed"] and expected["duplicates"] and expected["ordering"]  # something to find
    for names in (_JAVA_AGENT, _OLDER):
        renamed = _renamed(spans, names)
        assert not any(k in s.attributes for s in renamed for k in names)  # really renamed
        assert findings(audit(renamed, options)) == expected
