"""This project installed beside OpenTelemetry contrib's pika and aio-pika instrumentations.

As test_contrib_coexistence.py does for confluent-kafka, on the real RabbitMQ: for each client,
contrib's instrumentation (the version the RabbitMQ benchmark takes) in a venv of its own with
opentelemetry-distro and this project (tests/contrib_venvs.py ``rabbitmq_python``), a publisher
and a consumer under ``opentelemetry-instrument`` in both entry-point load orders, with no
disabling variable and with each one: every message traced once, by the instrumentation that
should win, and the take-over said in exactly one notice line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.contrib_venvs import rabbitmq_python
from tests.e2e.test_contrib_coexistence import _site_packages, _spans
from tests.stack import rabbitmq_problem, rabbitmq_url

pytestmark = pytest.mark.stack

APP = Path(__file__).resolve().parent / "_contrib_rabbitmq_app.py"
COUNT = 3
# client -> (contrib's entry point name, its distribution's dist-info prefix)
CLIENTS = {
    "pika": ("pika", "opentelemetry_instrumentation_pika-"),
    "aio-pika": ("aio-pika", "opentelemetry_instrumentation_aio_pika-"),
}


@pytest.fixture(scope="module")
def url() -> str:
    found = rabbitmq_url()
    problem = rabbitmq_problem(found)
    if problem:
        pytest.fail(problem + "; run `make stack-up`", pytrace=False)
    return found


@pytest.fixture(scope="module", params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _first_on_path(python: Path, client: str, first: str, tmp_path: Path) -> Path:
    """A folder holding a copy of the metadata of the distribution that must load first."""
    prefix = "kafka_event_tracing-" if first == "ours" else CLIENTS[client][1]
    folder = tmp_path / f"{first}-first"
    (found,) = [
        p
        for p in _site_packages(python).iterdir()
        if p.name.startswith(prefix) and p.name.endswith(".dist-info")
    ]
    shutil.copytree(found, folder / found.name)
    return folder


def _run_pair(client: str, url: str, tmp_path: Path, first: str, disabled: str | None) -> dict[str, Any]:
    python = rabbitmq_python(client)
    entry_point = CLIENTS[client][0]
    expected_order = (
        ["kafka_event_tracing", entry_point] if first == "ours" else [entry_point, "kafka_event_tracing"]
    )
    suffix = uuid.uuid4().hex[:8]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "PYTHONPATH": str(_first_on_path(python, client, first, tmp_path)),
        "APP_CLIENT": client,
        "APP_URL": url,
        "APP_EXCHANGE": f"ket-coexist-{suffix}",
        "APP_QUEUE": f"ket-coexist-{suffix}",
        "APP_COUNT": str(COUNT),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **({"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled} if disabled else {}),
    }
    result: dict[str, Any] = {"exchange": env["APP_EXCHANGE"], "entry_point": entry_point}
    for role in ("publish", "consume"):
        # Not run from the checkout: opentelemetry-instrument puts the working directory on
        # sys.path, and the checkout's own metadata would come first.
        proc = subprocess.run(
            [str(python.parent / "opentelemetry-instrument"), str(python), str(APP)],
            env={**env, "APP_ROLE": role, "OTEL_SERVICE_NAME": f"coexist-{role}"},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(python.parent),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        stderr = proc.stderr.splitlines()
        order = next(line.split(": ", 1)[1] for line in stderr if line.startswith("entry point order: "))
        assert order.split(",") == expected_order
        spans = _spans(proc.stdout)
        result[role] = {
            "names": Counter(s["name"] for s in spans),
            "spans": spans,
            "notices": [line for line in stderr if "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in line],
            "carried": [line for line in stderr if line.startswith("traceparent: ")],
        }
    return result


def _assert_ours(result: dict[str, Any], *, notices: int) -> None:
    exchange = result["exchange"]
    published, consumed = result["publish"], result["consume"]
    assert published["names"] == Counter({f"send {exchange}": COUNT})
    assert consumed["names"] == Counter({f"process {exchange}": COUNT})
    # one chain per message: each process span is the child of one of the send spans
    sends = {s["context"]["span_id"] for s in published["spans"]}
    assert sorted(s["parent_id"] for s in consumed["spans"]) == sorted(sends)
    assert consumed["carried"] == ["traceparent: True"] * COUNT
    for side in (published, consumed):
        assert len(side["notices"]) == notices, side["notices"]
        if notices:
            assert (
                f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS={result['entry_point']} to make this explicit"
                in side["notices"][0]
            )


@pytest.mark.parametrize("first", ["ours", "contrib"])
def test_both_installed_each_message_is_traced_once_by_this_project_with_one_notice(
    client: str, url: str, tmp_path: Path, first: str
) -> None:
    _assert_ours(_run_pair(client, url, tmp_path, first, None), notices=1)


@pytest.mark.parametrize("first", ["ours", "contrib"])
def test_contrib_disabled_by_the_variable_this_project_traces_without_a_notice(
    client: str, url: str, tmp_path: Path, first: str
) -> None:
    _assert_ours(_run_pair(client, url, tmp_path, first, CLIENTS[client][0]), notices=0)


@pytest.mark.parametrize("first", ["ours", "contrib"])
def test_this_project_disabled_by_the_variable_contrib_runs_alone_untouched(
    client: str, url: str, tmp_path: Path, first: str
) -> None:
    result = _run_pair(client, url, tmp_path, first, "kafka_event_tracing")
    published, consumed = result["publish"], result["consume"]
    # contrib's spans only (its pre-1.24 attribute names; ours carry messaging.destination.name), no notice
    for span in published["spans"] + consumed["spans"]:
        assert "messaging.destination" in span["attributes"], span
        assert "messaging.destination.name" not in span["attributes"], span
    assert published["notices"] == consumed["notices"] == []
    # contrib's pika instruments BlockingConnection's channel and the channel under it: two
    # nested send spans per publish; aio-pika one. One receive span per delivery, under a send.
    per_publish = 2 if client == "pika" else 1
    assert sum(published["names"].values()) == per_publish * COUNT
    queue = result["exchange"]  # the queue has the exchange's name
    assert [s["name"] for s in consumed["spans"]] == [f"{queue} receive"] * COUNT
    sends = {s["context"]["span_id"] for s in published["spans"]}
    assert {s["parent_id"] for s in consumed["spans"]} <= sends
    assert consumed["carried"] == ["traceparent: True"] * COUNT
