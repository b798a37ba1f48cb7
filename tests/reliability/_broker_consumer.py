"""A consumer in the managed loop (``TracedConsumer.run``), for the broker-outage test.

    python _broker_consumer.py TOPIC SERVICE GROUP HANDLER_MS

Prints ``{"assigned": ...}`` once it owns the partition, then handles messages (their
values are sequence numbers; each takes HANDLER_MS of work) until a line ``expect N``
arrived on stdin and every number below N was handled, or 150 s passed since that line
(or stdin closed without one). Prints one JSON line with what it saw.
"""

import json
import logging
import os
import sys
import threading
import time
import traceback

import tracing

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
topic, service, group, handler_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) / 1000
provider = tracing.configure(service, endpoint=os.environ["KET_OTLP_ENDPOINT"])
consumer = tracing.TracedConsumer(
    {
        "bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"],
        "group.id": group,
        "client.id": service,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
)
EXPECT_TIMEOUT = 150  # seconds from the `expect` line to having handled everything
expected: list[int] = []
seen: list[int] = []
distinct: set[int] = set()
deadline: list[float] = []  # set when `expect` arrives
stdin_closed = threading.Event()


def read_expectation():
    for line in sys.stdin:
        if line.startswith("expect "):
            deadline.append(time.monotonic() + EXPECT_TIMEOUT)
            expected.append(int(line.split()[1]))
    stdin_closed.set()


def handler(msg):
    seq = int(msg.value())
    time.sleep(handler_s)
    seen.append(seq)
    if len(seen) % 2000 == 0:
        print(f"{time.strftime('%H:%M:%S')} handled {len(seen)}, last {seq}", file=sys.stderr)
    distinct.add(seq)


def done():
    if not expected:
        return stdin_closed.is_set()  # the test went away without saying what to expect
    if len(distinct) >= expected[0] and all(n in distinct for n in range(expected[0])):
        return True
    return time.monotonic() > deadline[0]


threading.Thread(target=read_expectation, daemon=True).start()
consumer.subscribe(
    [topic], on_assign=lambda c, parts: print(json.dumps({"assigned": len(parts)}), flush=True)
)
exceptions = []
stats = None
try:
    stats = consumer.run(handler, stop=done, handle_signals=False)
except Exception:
    exceptions.append(traceback.format_exc())
consumer.close()
provider.shutdown()
n = expected[0] if expected else 0
print(
    json.dumps(
        {
            "handled": len(seen),
            "distinct": len(distinct),
            "duplicates": len(seen) - len(distinct),
            "missing": sorted(set(range(n)) - distinct)[:20],
            "missing_count": len(set(range(n)) - distinct),
            "stats": vars(stats) if stats is not None else None,
            "timed_out": bool(deadline) and time.monotonic() > deadline[0] and bool(set(range(n)) - distinct),
            "exceptions": exceptions,
        }
    ),
    flush=True,
)
