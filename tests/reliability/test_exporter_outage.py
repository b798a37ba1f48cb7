"""Jaeger (the OTLP collector) goes away: the app does not notice, and spans flow again after.

A traced producer + consumer pair runs in its own OS process with the real OTLP gRPC
exporter (``tracing.configure``) and the real broker. Jaeger is stopped with
``scripts/stack.sh down jaeger`` for a whole measuring phase and restarted while the
process keeps running; a second process lives its whole life with Jaeger down.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests import stack
from tests.reliability.support import RssSampler, Worker, jaeger_spans, outage, record_figures

WORKER = Path(__file__).with_name("_exporter_worker.py")
MIN_MESSAGES = 3000  # per measuring phase; each message is one send and one process span
PHASE_SECONDS = 8


@pytest.mark.outage
def test_an_exporter_outage_costs_no_message_no_exception_and_little_throughput(real_stack):
    topic = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("exporter-outage"))
    run_id = uuid.uuid4().hex[:8]
    worker = Worker(WORKER, topic, f"reliability-exporter-{run_id}")
    late = None
    try:
        with RssSampler(worker.pid) as rss:
            worker.ask(f"phase warm-up 3 {MIN_MESSAGES}")
            rss.phase = "normal"
            normal = worker.ask(f"phase normal {PHASE_SECONDS} {MIN_MESSAGES}")
            rss.phase = "stopping"
            with outage("jaeger") as jaeger_down:
                rss.phase = "outage"
                during = worker.ask(f"phase outage {PHASE_SECONDS} {MIN_MESSAGES}")
                # A second service lives its whole life with no collector, while the first keeps
                # running (its memory is watched for longer, its throughput no longer compared).
                late = Worker(WORKER, topic + "-late", f"reliability-exporter-late-{run_id}")
                worker.send(f"phase outage-long {PHASE_SECONDS * 2} {MIN_MESSAGES}")
                late_run = late.ask(f"phase whole-run {PHASE_SECONDS} {MIN_MESSAGES}")
                late_quit = late.ask("quit", timeout=120)
                longer = worker.answer()
                rss.phase = "restart"
                outage_seconds = jaeger_down.restart()
            rss.phase = "after"
            after = worker.ask(f"phase after-restart 3 {MIN_MESSAGES // 3}")
            marker = worker.ask("marker")["marker"]
            done = worker.ask("quit", timeout=120)
        assert worker.wait(30) == 0, worker.log()
        assert late.wait(30) == 0, late.log()

        # Spans made after the restart reach Jaeger: the exporter reconnected by itself.
        jaeger_spans(marker, {"marker", f"send {topic}", f"process {topic}"})

        normal_rss = max(rss.of("normal"))
        outage_rss = rss.of("outage") + rss.of("restart")
        third = max(1, len(outage_rss) // 3)
        figures = {
            "messages_tried": done["tried"] + late_quit["tried"],
            "messages_lost": done["lost"] + late_quit["lost"],
            "exceptions": done["exceptions"] + late_quit["exceptions"],
            "out_of_order": done["out_of_order"] + late_quit["out_of_order"],
            "outage_seconds": outage_seconds,
            "rate_normal_msg_s": normal["rate"],
            "rate_outage_msg_s": during["rate"],
            "rate_whole_run_without_collector_msg_s": late_run["rate"],
            "throughput_ratio": round(during["rate"] / normal["rate"], 2),
            "rss_normal_mb": round(normal_rss / 1024, 1),
            "rss_growth_during_outage_mb": round((max(outage_rss) - normal_rss) / 1024, 1),
            "rss_growth_last_third_of_outage_mb": round(
                (max(outage_rss[-third:]) - max(outage_rss[:third])) / 1024, 1
            ),
            "shutdown_seconds_without_collector": late_quit["shutdown_seconds"],
            "spans_after_restart_arrived": True,
        }
        record_figures("exporter_outage", figures)
        for phase in (normal, during, longer, late_run, after):
            assert phase["error"] is None, phase["error"]
        assert figures["exceptions"] == 0
        assert figures["messages_lost"] == 0 and figures["out_of_order"] == 0
        assert figures["throughput_ratio"] >= 0.8, figures
        # The span queue is bounded: dropping spans does not pile up memory.
        assert figures["rss_growth_during_outage_mb"] < 64, figures
        assert figures["rss_growth_last_third_of_outage_mb"] < 16, figures
    finally:
        worker.close()
        if late is not None:
            late.close()
