"""This library's pika wrapper beside OpenTelemetry contrib's pika instrumentation, on the real
RabbitMQ: the same three publishes and one ``basic_consume``, observable differences only.

Contrib runs under its own venv (the benchmark's, ``benchmarks.rabbitmq.contrib_python``: the
newest 0.66 pre-release of ``opentelemetry-instrumentation-pika``), through
``_contrib_pika_app.py``, which does exactly what ``_ours`` below does.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.stack import rabbitmq_problem, rabbitmq_url

pika = pytest.importorskip("pika")

pytestmark = pytest.mark.stack

APP = Path(__file__).resolve().parent / "_contrib_pika_app.py"


@pytest.fixture(scope="module")
def url() -> str:
    found = rabbitmq_url()
    problem = rabbitmq_problem(found)
    if problem:
        pytest.fail(problem + "; run `make stack-up`", pytrace=False)
    return found


def _contrib(url: str, queue: str) -> dict[str, Any]:
    from benchmarks.rabbitmq import contrib_python

    python = contrib_python("pika")
    assert python is not None, "could not build the contrib pika venv"
    out = subprocess.run(
        [str(python), str(APP), url, queue], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ours(url: str, queue: str) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider

    from tracing.rabbitmq import TracedBlockingChannel

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        raw = connection.channel()
        raw.queue_declare(queue, auto_delete=True)
        channel = TracedBlockingChannel(raw, tracer_provider=TracerProvider())
        headers = {"tenant": "acme"}
        properties = pika.BasicProperties(headers=headers)
        for _ in range(2):
            channel.basic_publish("", queue, b"order", properties)
        caller_headers_after = dict(headers)
        hostile = pika.BasicProperties(headers={"traceparent": 12345})
        connection.channel().basic_publish("", queue, b"hostile", hostile)
        handled: list[str] = []

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
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
    finally:
        connection.close()
    return {"caller_headers_after": caller_headers_after, "handled": handled, "consume_error": error}


def test_contrib_writes_into_the_callers_headers_and_dies_on_a_hostile_one_ours_does_neither(url):
    contrib = _contrib(url, f"ket-contrib-pika-{uuid.uuid4().hex[:8]}")
    ours = _ours(url, f"ket-ours-pika-{uuid.uuid4().hex[:8]}")

    # contrib injects into the caller's own headers dict: it now carries the last span's traceparent
    assert set(contrib["caller_headers_after"]) == {"tenant", "traceparent"}
    # an integer traceparent makes contrib's consumer raise out of start_consuming: never handled
    assert contrib["handled"] == ["order", "order"]
    assert contrib["consume_error"] == "TypeError"

    assert ours == {
        "caller_headers_after": {"tenant": "acme"},
        "handled": ["order", "order", "hostile"],
        "consume_error": None,
    }
