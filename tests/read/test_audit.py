"""`eventchain audit` on generated span sets with a known number of each finding, and decoys that
must not be reported; exact counts asserted, absences only after a marker that the data was read."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tracing import semconv as sc
from tracing.read.audit import AuditOptions, audit, parse_saga
from tracing.read.model import Span, SpanEvent

T0_NS = 1_700_000_000_000 * 10**6
_ids = itertools.count(1)


def _id(digits: int) -> str:
    return format(next(_ids), f"0{digits}x")


class Traffic:
    """Spans as the wrappers record them: a send (offset from its delivery), its processings."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def send(
        self,
        topic: str,
        key: str | None,
        partition: int,
        offset: int | None,
        at_ms: float,
        parent: Span | None = None,
    ) -> Span:
        attrs: dict[str, object] = {
            sc.OPERATION_TYPE: "send",
            sc.DESTINATION_NAME: topic,
            sc.PARTITION: str(partition),
        }
        if offset is not None:
            attrs[sc.KAFKA_OFFSET] = offset
        if key is not None:
            attrs[sc.KAFKA_KEY] = key
        span = Span(
            parent.trace_id if parent else _id(32),
            _id(16),
            parent.span_id if parent else None,
            f"send {topic}",
            "producer",
            "producer-svc",
            _ns(at_ms),
            _ns(at_ms + 1),
            attrs,
        )
        self.spans.append(span)
        return span

    def process(
        self, send: Span, group: str, at_ms: float, *, error: str | None = None, event_type: str | None = None
    ) -> Span:
        attrs = {k: v for k, v in send.attributes.items() if k != sc.OPERATION_TYPE}
        attrs[sc.OPERATION_TYPE] = "process"
        attrs[sc.CONSUMER_GROUP] = group
        if event_type:
            attrs[sc.APP_EVENT_TYPE] = event_type
        events = []
        if error:
            attrs[sc.ERROR_TYPE] = error
            events.append(SpanEvent("exception", _ns(at_ms), {sc.EXCEPTION_TYPE: error}))
        span = Span(
            send.trace_id,
            _id(16),
            send.span_id,
            f"process {send.topic}",
            "consumer",
            f"{group}-svc",
            _ns(at_ms),
            _ns(at_ms + 2),
            attrs,
            events,
            status_error=error is not None,
        )
        self.spans.append(span)
        return span


def _ns(ms: float) -> int:
    return T0_NS + int(ms * 10**6)


def run(traffic: Traffic, **options: object) -> object:
    return audit(traffic.spans, AuditOptions(**options))  # type: ignore[arg-type]


# --- ordering -------------------------------------------------------------------------------------


def test_an_event_sent_to_a_retry_topic_and_processed_after_a_later_event_of_its_key_is_one_violation():
    t = Traffic()
    first = t.send("orders", "k-1", 0, 0, at_ms=0)
    second = t.send("orders", "k-1", 0, 1, at_ms=1)
    failed = t.process(first, "billing", at_ms=10, error="Timeout")
    retry = t.send("orders.retry", "k-1", 0, 0, at_ms=11, parent=failed)
    t.process(second, "billing", at_ms=20)
    t.process(retry, "billing", at_ms=30)
    report = run(t)
    assert [
        (v.group, v.topic, v.key, v.first_trace_id, v.second_trace_id) for v in report.ordering_violations
    ] == [("billing", "orders", "k-1", first.trace_id, second.trace_id)]
    assert [(f.group, f.topic, f.error_type, f.count, f.retried) for f in report.failures] == [
        ("billing", "orders", "Timeout", 1, 1)
    ]


def test_a_key_that_moved_partition_is_ordered_by_its_send_times():
    t = Traffic()
    early = t.send("orders", "k-2", 1, 40, at_ms=100)
    late = t.send("orders", "k-2", 2, 3, at_ms=110)  # lower offset, other partition: time decides
    t.process(late, "billing", at_ms=200)
    t.process(early, "billing", at_ms=210)
    report = run(t)
    assert [(v.key, v.first_trace_id, v.second_trace_id) for v in report.ordering_violations] == [
        ("k-2", early.trace_id, late.trace_id)
    ]


def test_concurrent_processing_that_starts_a_later_offset_first_is_one_violation_per_overtaken_event():
    t = Traffic()
    sends = [t.send("orders", "k-3", 0, offset, at_ms=offset) for offset in (5, 6, 7)]
    for at, send in zip((30, 10, 20), sends, strict=True):  # 6, 7, then 5
        t.process(send, "billing", at_ms=at)
    report = run(t)
    assert [(v.first_trace_id, v.second_trace_id) for v in report.ordering_violations] == [
        (sends[0].trace_id, sends[2].trace_id)
    ]


def test_reversed_processing_across_keys_or_groups_and_redeliveries_are_not_violations():
    t = Traffic()
    a, b = t.send("orders", "k-a", 0, 1, at_ms=0), t.send("orders", "k-b", 0, 2, at_ms=1)
    t.process(b, "billing", at_ms=10)
    t.process(a, "billing", at_ms=11)  # different keys
    c, d = t.send("payments", "k-c", 0, 1, at_ms=0), t.send("payments", "k-c", 0, 2, at_ms=1)
    t.process(d, "ledger", at_ms=10)
    t.process(c, "audit", at_ms=11)  # different groups
    t.process(c, "ledger", at_ms=12)  # the marker: ledger processed k-c out of order
    e, f = t.send("orders", "k-e", 0, 3, at_ms=2), t.send("orders", "k-e", 0, 4, at_ms=3)
    t.process(e, "billing", at_ms=20)
    t.process(f, "billing", at_ms=21)
    t.process(e, "billing", at_ms=22)  # redelivered: a duplicate, not a violation
    t.process(f, "audit", at_ms=30)
    report = run(t, topics=("orders", "payments"))
    assert [(v.group, v.key) for v in report.ordering_violations] == [("ledger", "k-c")]
    assert [(d.group, d.offset, d.times) for d in report.duplicates] == [("billing", 3, 2)]


# --- duplicates and unconsumed --------------------------------------------------------------------


def test_duplicates_are_counted_per_group_and_message_with_their_rate():
    t = Traffic()
    sends = [t.send("orders", f"k{i}", 0, i, at_ms=i) for i in range(4)]
    for s in sends:
        t.process(s, "billing", at_ms=10)
        t.process(s, "shipping", at_ms=10)  # fan-out to another group is not a duplicate
    t.process(sends[1], "billing", at_ms=20)
    t.process(sends[1], "billing", at_ms=21)
    t.process(sends[2], "shipping", at_ms=22)
    report = run(t)
    assert [(d.group, d.offset, d.times) for d in report.duplicates] == [
        ("billing", 1, 3),
        ("shipping", 2, 2),
    ]
    assert report.processings == 11
    assert report.duplicate_rate == pytest.approx(3 / 11)


def test_a_send_a_consuming_group_never_processed_is_unconsumed_once_its_grace_has_passed():
    t = Traffic()
    done = t.send("orders", "k1", 0, 0, at_ms=0)
    t.process(done, "billing", at_ms=5)
    missed = t.send("orders", "k2", 0, 1, at_ms=10)
    recent = t.send("orders", "k3", 0, 2, at_ms=119_000)  # 1 s before the horizon: within grace
    t.send("invoices", "k4", 0, 0, at_ms=20)  # no group consumes invoices in the window
    report = run(t, horizon_ns=_ns(120_000), grace_s=60)
    assert [(u.group, u.topic, u.partition, u.offset, u.trace_id) for u in report.unconsumed] == [
        ("billing", "orders", 0, 1, missed.trace_id)
    ]
    assert recent.trace_id not in {u.trace_id for u in report.unconsumed}
    assert "1 send not processed yet but within --grace (60 s): not judged" in report.notes
    assert "1 send to topics no group processed in the window: not checked for consumers" in report.notes


# --- failures, dead letters -----------------------------------------------------------------------


def test_failures_are_grouped_by_group_topic_and_error_type_with_dead_letters_named():
    t = Traffic()
    ok = t.send("orders", "k1", 0, 0, at_ms=0)
    t.process(ok, "billing", at_ms=1)
    for offset in (1, 2):
        bad = t.process(
            t.send("orders", f"k{offset}", 0, offset, at_ms=offset), "billing", at_ms=5, error="ValueError"
        )
        t.send("orders.dlq", f"k{offset}", 0, offset, at_ms=6, parent=bad)
    t.process(t.send("orders", "k3", 0, 3, at_ms=3), "billing", at_ms=7, error="KeyError")
    report = run(t)
    assert [
        (f.group, f.topic, f.error_type, f.count, f.retried, f.dead_lettered) for f in report.failures
    ] == [
        ("billing", "orders", "ValueError", 2, 0, 2),
        ("billing", "orders", "KeyError", 1, 0, 0),
    ]
    assert [(d.topic, d.dlq_topic) for d in report.dead_lettered] == [("orders", "orders.dlq")] * 2


# --- sagas ----------------------------------------------------------------------------------------


def test_sagas_that_neither_finished_nor_compensated_within_grace_are_stuck():
    t = Traffic()
    rule = parse_saga("order.created:order.confirmed:order.cancelled")

    def chain(at_ms: float, *types: str) -> Span:
        send = t.send("orders", "k", 0, None, at_ms=at_ms)
        t.process(send, "orders-svc", at_ms=at_ms + 1, event_type=types[0])
        parent = send
        for event_type in types[1:]:
            parent = t.send("orders", "k", 0, None, at_ms=at_ms + 2, parent=parent)
            t.process(parent, "orders-svc", at_ms=at_ms + 3, event_type=event_type)
        return send

    chain(0, "order.created", "order.confirmed")
    chain(0, "order.created", "order.cancelled")
    stuck = chain(0, "order.created")
    chain(100_000, "order.created")  # 20 s before the horizon: still within grace
    chain(0, "user.registered")  # never started
    report = run(t, sagas=(rule,), horizon_ns=_ns(120_000), grace_s=60)
    (outcome,) = report.sagas
    assert (outcome.started, outcome.finished, outcome.compensated, outcome.stuck, outcome.pending) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert [(s.rule, s.trace_id) for s in report.stuck_sagas] == [(rule.text, stuck.trace_id)]


def test_a_saga_rule_may_name_topics_and_topic_slash_type():
    t = Traffic()
    rule = parse_saga("orders:shipments/shipment.sent")
    start = t.send("orders", "k", 0, 0, at_ms=0)
    t.process(start, "shipping", at_ms=1)
    wrong = t.send("shipments", "k", 0, 0, at_ms=2, parent=start)
    t.process(wrong, "mail", at_ms=3, event_type="shipment.delayed")
    report = run(t, sagas=(rule,), horizon_ns=_ns(600_000))
    assert [s.trace_id for s in report.stuck_sagas] == [start.trace_id]


@pytest.mark.parametrize("text", ["orders", "a:b:c:d", "a::b", "orders/:b"])
def test_a_malformed_saga_rule_says_what_a_rule_looks_like(text):
    with pytest.raises(ValueError, match="try "):
        parse_saga(text)


# --- paths ----------------------------------------------------------------------------------------


def test_paths_report_chain_latency_and_the_wait_in_each_topic():
    t = Traffic()
    for i in range(3):
        order = t.send("orders", f"k{i}", 0, i, at_ms=i * 1000)
        reserve = t.process(order, "inventory", at_ms=i * 1000 + 10)
        stock = t.send("stock", f"k{i}", 0, i, at_ms=i * 1000 + 11, parent=reserve)
        t.process(stock, "notify", at_ms=i * 1000 + 11 + 1 + 20 * (i + 1))
    report = run(t)
    by_path = {(p.path, p.group): p for p in report.paths}
    assert set(by_path) == {("orders", "inventory"), ("orders>stock", "notify")}
    long = by_path[("orders>stock", "notify")]
    assert (long.count, long.p50_ms, long.p99_ms) == (3, 52.0, 72.0)
    assert [(h.topic, h.p50_ms) for h in long.hops] == [("orders", 9.0), ("stock", 40.0)]


# --- clean traffic and the command line --------------------------------------------------------------


def clean_traffic() -> Traffic:
    t = Traffic()
    for i in range(20):
        send = t.send("orders", f"k{i % 4}", i % 2, i // 2, at_ms=i)
        for group in ("billing", "shipping"):
            t.process(send, group, at_ms=100 + i)
    return t


def test_clean_traffic_has_no_findings():
    report = run(clean_traffic(), horizon_ns=_ns(10**6))
    assert report.processings == 40 and report.paths[0].count == 20  # read, and read whole
    assert report.counts() == dict.fromkeys(("ordering", "duplicates", "unconsumed", "failures", "stuck"), 0)
    assert report.notes == []


def _otlp_file(tmp_path: Path, spans: list[Span]) -> Path:
    def value(v: object) -> dict[str, object]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}

    lines = []
    for s in spans:
        raw = {
            "traceId": s.trace_id,
            "spanId": s.span_id,
            "parentSpanId": s.parent_id or "",
            "name": s.name,
            "kind": 4 if s.kind == "producer" else 5,
            "startTimeUnixNano": str(s.start_ns),
            "endTimeUnixNano": str(s.end_ns),
            "attributes": [{"key": k, "value": value(v)} for k, v in s.attributes.items()],
            "status": {"code": 2 if s.status_error else 0},
        }
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": s.service}}]}
        lines.append(
            json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [raw]}]}]})
        )
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_json_document_and_fail_on_exit_codes(cli, tmp_path):
    t = clean_traffic()
    extra = t.send("orders", "k0", 0, 99, at_ms=50)
    t.process(extra, "billing", at_ms=500)
    t.process(extra, "billing", at_ms=501)  # one duplicate; shipping never processed it: unconsumed
    t.send("orders", "k1", 0, 100, at_ms=10**6)  # the latest span: the horizon
    path = _otlp_file(tmp_path, t.spans)

    result = cli("audit", "--file", path, "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert set(doc) >= {
        "window",
        "ordering_violations",
        "duplicates",
        "unconsumed",
        "failures",
        "dead_lettered",
        "stuck_sagas",
        "paths",
    }
    assert doc["window"]["spans"] == len(t.spans) and doc["window"]["traces"] == 22
    assert [(d["group"], d["offset"], d["times"]) for d in doc["duplicates"]] == [("billing", 99, 2)]
    assert [(u["group"], u["offset"]) for u in doc["unconsumed"]] == [("shipping", 99)]
    assert doc["ordering_violations"] == [] and doc["failures"] == [] and doc["stuck_sagas"] == []

    failed = cli("audit", "--file", path, "--fail-on", "unconsumed,ordering")
    assert failed.code == 1
    assert failed.err.strip() == "eventchain: audit failed: 1 unconsumed"
    assert "unconsumed: 1" in failed.out and "shipping" in failed.out
    assert cli("audit", "--file", path, "--fail-on", "ordering,failures,stuck").code == 0
    assert cli("audit", "--file", path, "--max-duplicate-rate", "5%").code == 0
    rate = cli("audit", "--file", path, "--max-duplicate-rate", "0.01")
    assert rate.code == 1 and "duplicate rate 2.38% above 1.00%" in rate.err


def test_cli_bad_arguments_are_one_line_with_what_to_try(cli, tmp_path):
    path = _otlp_file(tmp_path, clean_traffic().spans)
    for args in (
        ["--fail-on", "typos"],
        ["--saga", "orders"],
        ["--max-duplicate-rate", "2"],
        ["--since", "yesterday"],
    ):
        result = cli("audit", "--file", path, *args)
        assert result.code == 2, args
        assert "Traceback" not in result.err
    since = cli("audit", "--file", path, "--since", "yesterday")
    assert since.err.strip().splitlines()[-1].startswith("eventchain: error: --since 'yesterday'")
    missing = cli("audit", "--store", tmp_path / "none.sqlite")
    assert missing.code == 2 and "eventchain serve" in missing.err


def test_cli_text_folds_long_sections_and_says_how_many_more(cli, tmp_path):
    t = Traffic()
    for i in range(25):
        t.process(t.send("orders", f"k{i}", 0, i, at_ms=i), "billing", at_ms=100, error="Boom")
        t.send("orders", f"u{i}", 0, 100 + i, at_ms=i)
    t.send("orders", "last", 0, 999, at_ms=10**6)
    result = cli("audit", "--file", _otlp_file(tmp_path, t.spans), "--width", "100", "--ascii")
    assert result.code == 0
    assert "unconsumed: 25" in result.out
    assert "... 15 more (--json lists every one)" in result.out
    assert all(len(line) <= 100 for line in result.out.splitlines() if "TRACE" not in line)
    result.out.encode("ascii")


def test_a_topic_named_send_is_audited_as_any_other():
    # A message is told apart by its offset, or (without one) by its send span: a topic whose name
    # is the marker of the second kind must not be taken for it.
    t = Traffic()
    sends = [t.send("send", "k", 0, n, at_ms=n) for n in range(3)]
    for send in sends:
        t.process(send, "mailer", at_ms=send.start_ns / 1e6 - T0_NS / 1e6 + 5)
    t.process(sends[1], "mailer", at_ms=20)  # delivered twice
    report = run(t)
    assert [(d.group, d.topic, d.offset, d.times) for d in report.duplicates] == [("mailer", "send", 1, 2)]
    assert report.processings == 4
    assert not report.notes


def test_cli_text_wraps_narrow_cells_inside_their_column_and_keeps_every_character(cli, tmp_path):
    t = Traffic()
    group, error = "notification-service-eu", "ProviderTimeout"
    for i in range(3):
        t.process(t.send("orders.created.v2", f"k{i}", 0, i, at_ms=i), group, at_ms=100, error=error)
    result = cli("audit", "--file", _otlp_file(tmp_path, t.spans), "--width", "44", "--ascii")
    assert result.code == 0, result.err
    section = result.out[result.out.index("failures: 3") :].split("\n\n")[0]
    header, *rows = section.splitlines()[1:]
    assert len(rows) > 1  # the row wrapped
    starts = [header.index(name) for name in ("GROUP", "TOPIC", "ERROR", "COUNT")]
    # The group's column read top to bottom gives the whole name back, nothing cut or elided.
    column = "".join(row[starts[0] : starts[1]].strip() for row in rows)
    assert column == group and "..." not in section
    assert "".join(row[starts[2] : starts[3]].strip() for row in rows) == error
