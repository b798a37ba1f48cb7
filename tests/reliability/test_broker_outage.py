"""The real broker goes away mid-stream and comes back: the managed loop loses nothing.

A producer process sends a steady stream; a consumer process handles it in
``TracedConsumer.run`` with its default (periodic) commits. Kafka is stopped with
``scripts/stack.sh down kafka`` and started again while both keep running.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests import stack
from tests.reliability.support import Worker, jaeger_spans, outage, record_figures

HERE = Path(__file__).parent
RATE = 100  # messages/s
# The consumer has a backlog when the broker goes away: it is handling prefetched
# messages and committing them while the broker stops and while it comes back.
BURST = 1000
HANDLER_MS = 2
OUTAGE_SECONDS = 10  # at least, after the broker has stopped (its restart adds more)


def tags(span):
    return {t["key"]: t["value"] for t in span.get("tags", [])}


@pytest.mark.outage
def test_a_broker_outage_loses_nothing_fails_the_send_spans_and_the_chain_resumes(real_stack):
    topic = stack.create_topic(real_stack.kafka_bootstrap, stack.unique_topic("broker-outage"))
    run_id = uuid.uuid4().hex[:8]
    consumer = Worker(
        HERE / "_broker_consumer.py",
        *(topic, f"reliability-consumer-{run_id}", f"reliability-{run_id}", str(HANDLER_MS)),
    )
    producer = None
    try:
        assert consumer.answer(timeout=60)["assigned"] == 1
        producer = Worker(
            HERE / "_broker_producer.py", *(topic, f"reliability-producer-{run_id}", str(RATE), str(BURST))
        )
        assert producer.answer(timeout=60)["started"]
        time.sleep(5)
        with outage("kafka") as kafka_down:
            time.sleep(OUTAGE_SECONDS)
            outage_seconds = kafka_down.restart()
        time.sleep(5)
        producer.send("stop")
        sent = producer.answer(timeout=150)
        consumer.send(f"expect {sent['sent']}")
        seen = consumer.answer(timeout=180)
        assert producer.wait(30) == 0, producer.log()
        assert consumer.wait(30) == 0, consumer.log()

        figures = {
            "messages_tried": sent["sent"],
            "messages_lost": seen["missing_count"],
            "exceptions": len(sent["exceptions"]) + len(seen["exceptions"]),
            "duplicates_redelivered": seen["duplicates"],
            "commits_deferred": (seen["stats"] or {}).get("commits_deferred"),
            "failed_deliveries_resent": sent["failed_deliveries"],
            "error_send_spans": sent["error_send_spans"],
            "outage_seconds": outage_seconds,
        }
        record_figures("broker_outage", figures)
        logs = f"\n--- consumer ---\n{consumer.log()}\n--- producer ---\n{producer.log()}"
        assert seen["exceptions"] == [] and sent["exceptions"] == [], f"{seen}\n{sent}{logs}"
        assert sent["undelivered"] == [] and seen["missing"] == [], f"{sent}\n{seen}{logs}"
        # Deliveries failed during the outage, and each failure is an ERROR send span.
        assert sent["failed_deliveries"] > 0
        assert sent["error_send_spans"] == sent["failed_deliveries"]
        assert sent["error_types"] == ["_MSG_TIMED_OUT"], sent["error_types"]
        failed = stack.jaeger_trace(sent["failed_send_trace"], expect_spans=1)["spans"][0]
        assert tags(failed)["error"] is True and tags(failed)["error.type"] == "_MSG_TIMED_OUT"
        # After the restart the chain is whole again: the producer's span, its send, the process span.
        spans = jaeger_spans(sent["marker_trace"], {"after-restart", f"send {topic}", f"process {topic}"})
        # (Jaeger shows a parent that is also a link as FOLLOWS_FROM, first in the references.)
        assert spans[f"process {topic}"]["references"][0]["spanID"] == spans[f"send {topic}"]["spanID"]
    finally:
        if producer is not None:
            producer.close()
        consumer.close()
