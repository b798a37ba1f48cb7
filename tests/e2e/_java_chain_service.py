"""A Python service between Java services: `python _java_chain_service.py ROLE SERVICE IN_TOPIC OUT_TOPIC`.

`relay` consumes one event of IN_TOPIC (group `SERVICE`) in the drop-in style and sends one event on to
OUT_TOPIC while its process span is current; `sink` consumes one event with `process(msg)`. Both
export over OTLP gRPC to the stack's Jaeger and print `handled TOPIC PARTITION@OFFSET`.
"""

import os
import sys
import time

import tracing

role, service, in_topic, out_topic = sys.argv[1:5]
provider = tracing.configure(service, endpoint=os.environ["KET_OTLP_ENDPOINT"])
conf = {"bootstrap.servers": os.environ["KET_KAFKA_BOOTSTRAP"], "client.id": service}
consumer = tracing.TracedConsumer(
    {**conf, "group.id": service, "auto.offset.reset": "earliest", "enable.auto.commit": False}
)
consumer.subscribe([in_topic])
deadline = time.monotonic() + float(os.environ.get("KET_CHAIN_TIMEOUT", "120"))
msg = None
while msg is None:
    if time.monotonic() > deadline:
        sys.exit(f"{service}: no event on {in_topic} before the timeout")
    polled = consumer.poll(0.5)
    if polled is not None and polled.error() is None:
        msg = polled
if role == "relay":
    producer = tracing.TracedProducer(conf)
    producer.produce(out_topic, (msg.value() or b"") + b" via python", key=msg.key())
    assert producer.flush(30) == 0
else:
    with consumer.process(msg):
        pass
print(f"handled {msg.topic()} {msg.partition()}@{msg.offset()}", flush=True)
consumer.commit(msg, asynchronous=False)
consumer.close()
provider.shutdown()
