"""Jaeger (the OTLP collector) goes away: the app does not notice, and spans flow again after.

A traced producer + consumer pair runs in its own OS process with the real OTLP gRPC
exporter (``tracing.configure``) and the real broker. Jaeger is stopped with
``scripts/stack.sh down jaeger`` several times, each time for a whole measuring sample, and
restarted while the process keeps running; the last outage is a long one, during which a second
process lives its whole life with Jaeger down.

Throughput is compared sample by sample: each outage sample against the normal samples just
before and just after it (so a machine that gets busier or quieter during the run does not count
as an effect of the outage), and the median of those ratios is recorded as a figure, not asserted:
speed belongs to ``make bench``. What is asserted is behaviour: every sample, outage or not,
handled all its messages (none lost, none out of order, no exception), the memory stayed bounded,
and spans made after the restart arrived.
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path

import pytest

from tests import stack
from tests.reliability.support import RssSampler, Worker, find_spans, outage, record_figures

WORKER = Path(__file__).with_name("_exporter_worker.py")
MIN_MESSAGES = 2000  # per sample; each message is one send and one process span
SAMPLE_SECONDS = 5
CYCLES = 3  # outage samples, each between two normal samples


@pytest.mark.outage
def test_an_exporter_outage_costs_no_message_no_exception_and_no_unbounded_memory(real_stack):
    topic = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("exporter-outage"))
    run_id = uuid.uuid4().hex[:8]
    worker = Worker(WORKER, topic, f"reliability-exporter-{run_id}")
    late = None
    normal: list[dict] = []
    during: list[dict] = []
    outage_seconds = 0.0
    try:
        with RssSampler(worker.pid) as rss:
            worker.ask(f"phase warm-up 3 {MIN_MESSAGES}")
            for cycle in range(CYCLES):
                rss.phase = "normal"
                normal.append(worker.ask(f"phase normal-{cycle} {SAMPLE_SECONDS} {MIN_MESSAGES}"))
                rss.phase = "stopping"
                with outage("jaeger") as jaeger_down:
                    rss.phase = "outage"
                    during.append(worker.ask(f"phase outage-{cycle} {SAMPLE_SECONDS} {MIN_MESSAGES}"))
                    if cycle == CYCLES - 1:
                        # A second service lives its whole life with no collector, while the first
                        # keeps running (its memory is watched for longer, its throughput no longer
                        # compared).
                        rss.phase = "outage-long"
                        late = Worker(WORKER, topic + "-late", f"reliability-exporter-late-{run_id}")
                        worker.send(f"phase outage-long {SAMPLE_SECONDS * 3} {MIN_MESSAGES}")
                        late_run = late.ask(f"phase whole-run {SAMPLE_SECONDS} {MIN_MESSAGES}")
                        late_quit = late.ask("quit", timeout=120)
                        longer = worker.answer()
                    rss.phase = "restart"
                    outage_seconds += jaeger_down.restart()
            rss.phase = "normal"
            normal.append(worker.ask(f"phase normal-{CYCLES} {SAMPLE_SECONDS} {MIN_MESSAGES}"))
            rss.phase = "after"
            marker = worker.ask("marker")["marker"]
            done = worker.ask("quit", timeout=120)
        assert worker.wait(30) == 0, worker.log()
        assert late.wait(30) == 0, late.log()

        # Spans made after the last restart reach Jaeger: the exporter reconnected by itself.
        expected = {"marker", f"send {topic}", f"process {topic}"}
        arrived = sorted(expected & set(find_spans(marker, expected)))

        # Each outage sample against the mean of the normal samples on either side of it.
        ratios = [
            o["rate"] / statistics.mean((before["rate"], after["rate"]))
            for o, before, after in zip(during, normal[:-1], normal[1:], strict=True)
        ]
        normal_rss = max(rss.of("normal"))
        outage_rss = rss.of("outage") + rss.of("outage-long") + rss.of("restart")
        long_rss = rss.of("outage-long")
        third = max(1, len(long_rss) // 3)
        figures = {
            "messages_tried": done["tried"] + late_quit["tried"],
            "messages_lost": done["lost"] + late_quit["lost"],
            "exceptions": done["exceptions"] + late_quit["exceptions"],
            "out_of_order": done["out_of_order"] + late_quit["out_of_order"],
            "outage_seconds": round(outage_seconds, 1),
            "outages": CYCLES,
            "rate_normal_msg_s": round(statistics.median(p["rate"] for p in normal), 1),
            "rate_outage_msg_s": round(statistics.median(p["rate"] for p in during), 1),
            "rates_normal_msg_s": [p["rate"] for p in normal],
            "rates_outage_msg_s": [p["rate"] for p in during],
            "rate_whole_run_without_collector_msg_s": late_run["rate"],
            "throughput_ratio": round(statistics.median(ratios), 2),
            "rss_normal_mb": round(normal_rss / 1024, 1),
            "rss_growth_during_outage_mb": round((max(outage_rss) - normal_rss) / 1024, 1),
            "rss_growth_last_third_of_long_outage_mb": round(
                (max(long_rss[-third:]) - max(long_rss[:third])) / 1024, 1
            ),
            "shutdown_seconds_without_collector": late_quit["shutdown_seconds"],
            "spans_after_restart_arrived": len(arrived),
            "spans_after_restart_expected": len(expected),
        }
        record_figures("exporter_outage", figures)
        for phase in (*normal, *during, longer, late_run):
            assert phase["error"] is None, phase["error"]
            # The app kept going through every outage: each sample sent and handled all it tried.
            assert phase["messages"] >= MIN_MESSAGES and phase["lost"] == 0, phase
        assert figures["exceptions"] == 0
        assert figures["messages_lost"] == 0 and figures["out_of_order"] == 0
        assert arrived == sorted(expected), f"spans of trace {marker} in Jaeger after the restart: {arrived}"
        # The span queue is bounded: dropping spans does not pile up memory.
        assert figures["rss_growth_during_outage_mb"] < 64, figures
        assert figures["rss_growth_last_third_of_long_outage_mb"] < 16, figures
    finally:
        worker.close()
        if late is not None:
            late.close()
