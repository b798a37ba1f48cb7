"""Two more consumers of the demo's orders topic, for the audit test on the real stack.

`python _audit_consumers.py ROLE TOPIC GROUP COUNT` reads the COUNT messages of partition 0, then:
- concurrent: handles them in threads; the last message starts before the one before it (the
  out-of-stock order's ``order.created`` and ``order.cancelled``, one key), so a key's events really
  are processed out of order;
- skipper: handles every message but the second, which gets no process span (a gap inside the
  offsets it processed, so the audit finds it even when it judged that send before it saw the group).
"""

import os
import sys
import threading
import time

from confluent_kafka import TopicPartition

import tracing

role, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
provider = tracing.configure(f"audit-{role}", endpoint=os.environ["KET_OTLP_ENDPOINT"])
consumer = tracing.TracedConsumer(
    {
        "bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"],
        "group.id": group,
        "client.id": role,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
)
consumer.assign([TopicPartition(topic, 0, 0)])
messages = []
deadline = time.monotonic() + 60
while len(messages) < count and time.monotonic() < deadline:
    # consume(): a receive span for the batch; a message gets its process span only in process(msg)
    messages += [m for m in consumer.consume(10, 0.5) if m.error() is None]
if len(messages) != count:
    sys.exit(f"{role}: {len(messages)} messages on {topic}, expected {count}")

if role == "skipper":
    for msg in messages[:1] + messages[2:]:
        with consumer.process(msg):
            pass
else:
    for msg in messages[:-2]:
        with consumer.process(msg):
            pass
    earlier, later = messages[-2], messages[-1]
    later_started = threading.Event()

    def handle_later() -> None:
        with consumer.process(later):
            later_started.set()

    def handle_earlier() -> None:
        later_started.wait(30)
        with consumer.process(earlier):
            pass

    workers = [threading.Thread(target=handle_earlier), threading.Thread(target=handle_later)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
consumer.close()
provider.shutdown()
print(" ".join(f"{m.offset()}:{(m.key() or b'').decode()}" for m in messages))
