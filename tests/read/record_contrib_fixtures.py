"""Record traces made by the OpenTelemetry contrib confluent-kafka instrumentation, for eventchain.

    make stack-up
    .venv/bin/python -m tests.read.record_contrib_fixtures   # writes tests/read/fixtures/contrib-*

The real opentelemetry-instrumentation-confluent-kafka 0.66b1 (tests/contrib_venvs.py) runs a
producer and a consumer (tests/e2e/_contrib_app.py) under ``opentelemetry-instrument`` through the
real broker, exporting to the real Jaeger, with this project switched off
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=kafka_event_tracing``). Its spans carry the pre-1.24
names: ``{topic} send`` (PRODUCER), a bare ``recv`` (CONSUMER) parent of ``{topic} process``
(CONSUMER), which links to the send span of another trace; ``messaging.destination``,
``messaging.kafka.partition``, ``messaging.operation=publish|process`` and
``messaging.message.id=topic.partition.offset``.

Saved: ``contrib.jaeger.json`` (every trace of both services, as Jaeger's search answers) and
``contrib.meta.json`` (topic, the send traces and the consumer traces).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests import stack
from tests.contrib_venvs import contrib_python

FIXTURES = Path(__file__).parent / "fixtures"
APP = Path(__file__).resolve().parent.parent / "e2e" / "_contrib_app.py"
COUNT = 2


def _search(service: str, expect: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"service": service, "lookback": "1h", "limit": "50"})
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"{stack.jaeger_url()}/api/traces?{query}", timeout=10) as answer:
            traces = json.load(answer)["data"] or []
        if len(traces) >= expect or time.monotonic() > deadline:
            return traces
        time.sleep(1)


def record() -> dict[str, Any]:
    python = contrib_python("0.66b1")
    run = uuid.uuid4().hex[:8]
    topic = stack.create_topic(stack.kafka_bootstrap(), f"contrib-orders-{run}")
    services = {"produce": f"contrib-api-{run}", "consume": f"contrib-billing-{run}"}
    for role, service in services.items():
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "APP_ROLE": role,
            "APP_TOPIC": topic,
            "APP_COUNT": str(COUNT),
            "APP_GROUP": f"billing-{run}",
            "APP_BOOTSTRAP": stack.kafka_bootstrap(),
            "OTEL_SERVICE_NAME": service,
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "kafka_event_tracing",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_endpoint(),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        proc = subprocess.run(
            [str(python.parent / "opentelemetry-instrument"), str(python), str(APP)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=str(python.parent),
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    sends = _search(services["produce"], COUNT)
    receives = _search(services["consume"], COUNT)
    FIXTURES.mkdir(exist_ok=True)
    (FIXTURES / "contrib.jaeger.json").write_text(json.dumps({"data": sends + receives}, indent=1) + "\n")
    meta = {
        "run": run,
        "topic": topic,
        "services": services,
        "send_traces": sorted(t["traceID"] for t in sends),
        "consumer_traces": sorted(t["traceID"] for t in receives),
    }
    (FIXTURES / "contrib.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


if __name__ == "__main__":
    print(json.dumps(record(), indent=1))
