"""One member of a consumer group in the managed loop (``TracedConsumer.run``), for the rebalance tests.

    python _group_member.py '{"topic": ..., "group": ..., "protocol": "classic"|"consumer",
                              "assignor": ..., "handler_ms": ..., "run": {run() options}}'

Prints one line per handled message, ``h PARTITION OFFSET VALUE`` (flushed before run()
can commit it, so whatever is committed has been reported), and one JSON line per event:
``assigned``, ``revoked`` (with whether every revoked partition's committed offset was
already past the last message handled from it when the user's callback ran, and whether a
partition was revoked that this member did not own), ``lost``, and ``closed`` with run()'s
figures. A line ``stop`` on stdin stops the loop; the consumer then closes.
"""

import json
import os
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition

import tracing

spec = json.loads(sys.argv[1])
config = {
    "bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"],
    "group.id": spec["group"],
    "client.id": spec.get("client_id", "member"),
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
}
if spec["protocol"] == "consumer":
    config["group.protocol"] = "consumer"  # KIP-848: the broker assigns
    if spec.get("assignor"):
        config["group.remote.assignor"] = spec["assignor"]
else:
    config["partition.assignment.strategy"] = spec["assignor"]
    config["session.timeout.ms"] = 6000  # a killed member's partitions move on soon
consumer = tracing.TracedConsumer(config)
# Reads the group's committed offsets from outside (the member's own client cannot ask
# while it is closing); it never joins the group.
checker = Consumer({k: config[k] for k in ("bootstrap.servers", "group.id")})
handler_s = spec["handler_ms"] / 1000
out = sys.stdout
write_lock = threading.Lock()
owned: set[int] = set()
last_handled: dict[int, int] = {}  # partition -> last offset handled since it was assigned


def say(event: dict) -> None:
    with write_lock:
        out.write(json.dumps(event) + "\n")
        out.flush()


def on_assign(c, partitions):
    doubles = [tp.partition for tp in partitions if tp.partition in owned]
    owned.update(tp.partition for tp in partitions)
    say({"event": "assigned", "partitions": sorted(tp.partition for tp in partitions), "doubles": doubles})


def on_revoke(c, partitions):
    revoked = sorted(tp.partition for tp in partitions)
    not_owned = [p for p in revoked if p not in owned]
    handled = {p: last_handled[p] for p in revoked if p in last_handled}
    committed = {}
    if handled:
        asked = [TopicPartition(spec["topic"], p) for p in handled]
        committed = {tp.partition: tp.offset for tp in checker.committed(asked, timeout=10)}
    behind = {p: [committed.get(p), o + 1] for p, o in handled.items() if committed.get(p, -1) < o + 1}
    for p in revoked:
        owned.discard(p)
        last_handled.pop(p, None)
    say({"event": "revoked", "partitions": revoked, "not_owned": not_owned, "commit_behind": behind})


def on_lost(c, partitions):
    for tp in partitions:
        owned.discard(tp.partition)
        last_handled.pop(tp.partition, None)
    say({"event": "lost", "partitions": sorted(tp.partition for tp in partitions)})


def handler(msg):
    if handler_s:
        time.sleep(handler_s)
    last_handled[msg.partition()] = msg.offset()
    with write_lock:
        out.write(f"h {msg.partition()} {msg.offset()} {int(msg.value())}\n")
        out.flush()


stop = threading.Event()


def read_commands():
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


threading.Thread(target=read_commands, daemon=True).start()
consumer.subscribe([spec["topic"]], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
error = None
stats = None
try:
    stats = consumer.run(handler, stop=stop, handle_signals=False, **spec.get("run", {}))
except Exception as exc:  # reported, the test fails on it
    error = f"{type(exc).__name__}: {exc}"
consumer.close()
checker.close()
say(
    {
        "event": "closed",
        "stats": vars(stats) if stats else None,
        "error": error,
        "owned_after_close": sorted(owned),
    }
)
