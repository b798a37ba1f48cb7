"""A traced producer + consumer pair in one process, for the exporter-outage test.

    python _exporter_worker.py TOPIC SERVICE

Exports with the real OTLP gRPC exporter (``tracing.configure``) to KET_OTLP_ENDPOINT and
talks to the real broker at KET_KAFKA_BOOTSTRAP. Reads commands from stdin, one per
line, and answers each with one JSON line on stdout:

    phase LABEL SECONDS MIN_MESSAGES   rounds of produce-then-consume until both are reached
    marker                             once the span queue is drained, one message sent under
                                       a root span; answers its trace id
    quit                               shut the tracer provider down and exit

Every message's value is its sequence number; the consumer checks each arrives, in order.
"""

import json
import os
import sys
import time
import traceback

from confluent_kafka import TopicPartition

import tracing

ROUND = 500
topic, service = sys.argv[1], sys.argv[2]
bootstrap = os.environ["KET_KAFKA_BOOTSTRAP"]
provider = tracing.configure(service, endpoint=os.environ["KET_OTLP_ENDPOINT"])
producer = tracing.TracedProducer({"bootstrap.servers": bootstrap, "linger.ms": 5})
consumer = tracing.TracedConsumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": service,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
)
consumer.assign([TopicPartition(topic, 0, 0)])
sent = 0  # next sequence number to produce
expected = 0  # next sequence number the consumer should see
totals = {"tried": 0, "lost": 0, "exceptions": 0, "out_of_order": 0}
tracer = provider.get_tracer("reliability-worker")


def one_round(n):
    """Produce n messages, then consume them; returns how many never arrived."""
    global sent, expected
    first = sent
    for _ in range(n):
        producer.produce(topic, str(sent).encode(), partition=0)
        sent += 1
        producer.poll(0)
    if producer.flush(30) != 0:
        raise RuntimeError("deliveries still outstanding after 30 s")
    deadline = time.monotonic() + 30
    while expected < sent and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            continue
        value = int(msg.value())
        if value != expected:
            totals["out_of_order"] += 1
        expected = value + 1
    totals["tried"] += sent - first
    missing = sent - expected
    totals["lost"] += missing
    expected = sent
    return missing


def phase(label, seconds, min_messages):
    started = time.monotonic()
    done = lost = 0
    error = None
    while done < min_messages or time.monotonic() - started < seconds:
        try:
            lost += one_round(ROUND)
        except Exception:
            totals["exceptions"] += 1
            error = traceback.format_exc()
        done += ROUND
    elapsed = time.monotonic() - started
    return {
        "phase": label,
        "messages": done,
        "seconds": round(elapsed, 2),
        "rate": round(done / elapsed, 1),
        "lost": lost,
        "error": error,
    }


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "phase":
        answer = phase(words[1], float(words[2]), int(words[3]))
    elif words[0] == "marker":
        # A full span queue drops new spans (that is what keeps memory bounded): drain it
        # first, so the marker's spans are not among the dropped.
        provider.force_flush(30_000)
        with tracer.start_as_current_span("marker") as span:
            one_round(1)
        consumer.poll(0)  # ends the marker message's process span (drop-in style)
        answer = {"marker": format(span.get_span_context().trace_id, "032x")}
    elif words[0] == "quit":
        started = time.monotonic()
        producer.flush(10)
        consumer.close()
        provider.shutdown()
        answer = {"quit": True, "shutdown_seconds": round(time.monotonic() - started, 2), **totals}
    else:
        answer = {"error": f"unknown command {line.strip()!r}"}
    print(json.dumps(answer), flush=True)
    if words[0] == "quit":
        break
