"""A traced producer that keeps sending through a broker outage, for the broker-outage test.

    python _broker_producer.py TOPIC SERVICE RATE BURST

Sends sequence numbers 0, 1, 2, ...: the first BURST at once (a backlog for the
consumer), then RATE messages/s until a line ``stop`` arrives on stdin. A delivery that
fails (the broker is gone longer than ``message.timeout.ms``) is sent again, as an app
that must not lose events does. Then one last message under a
root span ``after-restart``, and everything is flushed. Prints one JSON line: what was
sent, what failed, the send spans of the failed deliveries, the last message's trace id.
Spans go to KET_OTLP_ENDPOINT and to memory (to count them here).
"""

import json
import os
import sys
import threading
import time

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import tracing

topic, service, rate, burst = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
provider = tracing.configure(service, endpoint=os.environ["KET_OTLP_ENDPOINT"])
memory = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(memory))
producer = tracing.TracedProducer(
    {
        "bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"],
        "client.id": service,
        "message.timeout.ms": 5000,  # fail deliveries during the outage instead of queueing them
    }
)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

delivered: set[int] = set()
failed_deliveries = 0
to_resend: list[int] = []
exceptions: list[str] = []


def on_delivery(err, msg):
    global failed_deliveries
    seq = int(msg.value())
    if err is None:
        delivered.add(seq)
    else:
        failed_deliveries += 1
        to_resend.append(seq)


def send(seq):
    try:
        producer.produce(topic, str(seq).encode(), key=str(seq).encode(), on_delivery=on_delivery)
    except BufferError:
        to_resend.append(seq)  # local queue full: try again later, like the app would
    except Exception as exc:
        exceptions.append(repr(exc))
        to_resend.append(seq)


def resend_failed():
    while to_resend:
        send(to_resend.pop(0))


for seq in range(burst):
    send(seq)
    producer.poll(0)
producer.flush(30)
print(json.dumps({"started": True}), flush=True)
seq = burst
started = time.monotonic()
while not stop.is_set():
    send(seq)
    seq += 1
    producer.poll(0)
    resend_failed()
    time.sleep(max(0.0, started + (seq - burst) / rate - time.monotonic()))
tracer = provider.get_tracer("reliability-producer")
with tracer.start_as_current_span("after-restart") as marker:
    send(seq)
seq += 1
deadline = time.monotonic() + 90
while len(delivered) < seq and time.monotonic() < deadline:
    producer.poll(0.2)
    resend_failed()
producer.flush(30)

sends = [s for s in memory.get_finished_spans() if s.name == f"send {topic}"]
failed_sends = [s for s in sends if s.status.status_code is StatusCode.ERROR]
provider.shutdown()
print(
    json.dumps(
        {
            "sent": seq,
            "delivered": len(delivered),
            "undelivered": sorted(set(range(seq)) - delivered)[:20],
            "failed_deliveries": failed_deliveries,
            "send_spans": len(sends),
            "error_send_spans": len(failed_sends),
            "error_types": sorted({str(s.attributes.get("error.type")) for s in failed_sends}),
            "failed_send_trace": format(failed_sends[0].context.trace_id, "032x") if failed_sends else None,
            "marker_trace": format(marker.get_span_context().trace_id, "032x"),
            "exceptions": exceptions[:5],
        }
    ),
    flush=True,
)
