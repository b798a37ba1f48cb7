"""Run by tests/e2e/test_rabbitmq_contrib.py under the contrib pika venv's interpreter (no project
import): OpenTelemetry contrib's pika instrumentation on the real broker. Prints one JSON line.

argv: AMQP URL, queue name. Publishes two messages through an instrumented channel with one
``BasicProperties`` the caller keeps, then one whose ``traceparent`` header is an integer, and
consumes the three with an instrumented ``basic_consume``.
"""

import json
import sys

import pika
from opentelemetry import trace
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.sdk.trace import TracerProvider

url, queue = sys.argv[1], sys.argv[2]
trace.set_tracer_provider(TracerProvider())
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.queue_declare(queue, auto_delete=True)
PikaInstrumentor.instrument_channel(channel)

headers = {"tenant": "acme"}
properties = pika.BasicProperties(headers=headers)
for _ in range(2):
    channel.basic_publish("", queue, b"order", properties)
caller_headers_after = dict(headers)
connection.channel().basic_publish(
    "", queue, b"hostile", pika.BasicProperties(headers={"traceparent": 12345})
)

handled = []


def on_message(ch, method, props, body):
    handled.append(body.decode())
    ch.basic_ack(method.delivery_tag)
    if len(handled) == 3:
        ch.stop_consuming()


channel.basic_consume(queue, on_message)
error = None
try:
    connection.call_later(10, channel.stop_consuming)
    channel.start_consuming()
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"caller_headers_after": caller_headers_after, "handled": handled, "consume_error": error}))
