"""This project installed beside the OpenTelemetry contrib instrumentation of confluent-kafka.

For contrib 0.66b1 and the newest contrib release, each in a venv of its own (with
opentelemetry-distro and this project, editable), a producer and a consumer run under
``opentelemetry-instrument`` against the real broker, in both entry-point load orders, with
no disabling variable and with each one. Every message must be traced once, by the
instrumentation that should win, and the take-over said in exactly one notice line.

The load order of entry points is the order of distributions on ``sys.path``: a folder put
first on ``PYTHONPATH`` holding a copy of one of the two distributions' metadata makes that
one load first (``importlib.metadata`` keeps the first distribution of a name). Each
process reports the order it saw, and the test checks it.

The venvs are tests/contrib_venvs.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.contrib_venvs import VERSIONS, contrib_python
from tests.stack import Stack, create_topic, unique_topic

pytestmark = pytest.mark.stack

HERE = Path(__file__).resolve().parent
APP = HERE / "_contrib_app.py"
COUNT = 3
NOTICE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=confluent_kafka to make this explicit"


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def contrib_venv(request: pytest.FixtureRequest) -> Path:
    return contrib_python(request.param)


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _first_on_path(python: Path, first: str, tmp_path: Path) -> Path:
    """A folder holding a copy of the metadata of the distribution that must load first."""
    prefix = {"ours": "kafka_event_tracing-", "contrib": "opentelemetry_instrumentation_confluent_kafka-"}[
        first
    ]
    folder = tmp_path / f"{first}-first"
    if not folder.exists():
        (found,) = [
            p
            for p in _site_packages(python).iterdir()
            if p.name.startswith(prefix) and p.name.endswith(".dist-info")
        ]
        shutil.copytree(found, folder / found.name)
    return folder


def _spans(stdout: str) -> list[dict[str, Any]]:
    """The console exporter's span documents, one JSON object after another."""
    decoder = json.JSONDecoder()
    spans, i = [], 0
    while True:
        while i < len(stdout) and stdout[i].isspace():
            i += 1
        if i >= len(stdout):
            return spans
        span, i = decoder.raw_decode(stdout, i)
        spans.append(span)


def _run(python: Path, role: str, topic: str, env: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "APP_ROLE": role,
        "APP_TOPIC": topic,
        "APP_COUNT": str(COUNT),
        "APP_GROUP": f"coexist-{uuid.uuid4().hex[:8]}",
        "OTEL_SERVICE_NAME": f"coexist-{role}",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    instrument = python.parent / "opentelemetry-instrument"
    # Not run from the checkout: opentelemetry-instrument puts the working directory on
    # sys.path, and the checkout's own metadata (kafka_event_tracing.egg-info) would come first.
    proc = subprocess.run(
        [str(instrument), str(python), str(APP)],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(python.parent),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _spans(proc.stdout), proc.stderr.splitlines()


def _run_pair(python: Path, stack: Stack, env: dict[str, str], expect_order: list[str] | None = None) -> dict:
    topic = create_topic(stack.kafka_bootstrap, unique_topic("coexist"))
    env = {"APP_BOOTSTRAP": stack.kafka_bootstrap, **env}
    result = {}
    for role in ("produce", "consume"):
        spans, stderr = _run(python, role, topic, env)
        order = next(line.split(": ", 1)[1] for line in stderr if line.startswith("entry point order: "))
        if expect_order is not None:
            assert order.split(",") == expect_order
        result[role] = {
            "names": Counter(s["name"] for s in spans),
            "spans": spans,
            "notices": [line for line in stderr if "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in line],
            "traceparents": [line for line in stderr if line.startswith("traceparent headers: ")],
        }
    result["topic"] = topic
    return result


def _assert_ours(result: dict, *, notices: int) -> None:
    topic = result["topic"]
    produced, consumed = result["produce"], result["consume"]
    assert produced["names"] == Counter({f"send {topic}": COUNT})
    assert consumed["names"] == Counter({f"process {topic}": COUNT})
    # one chain: each process span is the child of one of the send spans
    sends = {s["context"]["span_id"] for s in produced["spans"]}
    assert {s["parent_id"] for s in consumed["spans"]} == sends
    assert consumed["traceparents"] == ["traceparent headers: 1"] * COUNT
    for side in (produced, consumed):
        assert len(side["notices"]) == notices, side["notices"]
        if notices:
            assert NOTICE in side["notices"][0]


def _assert_contrib_alone(result: dict) -> None:
    topic = result["topic"]
    assert result["produce"]["names"] == Counter({f"{topic} send": COUNT})
    assert result["consume"]["names"] == Counter({"recv": COUNT, f"{topic} process": COUNT})
    assert result["consume"]["traceparents"] == ["traceparent headers: 1"] * COUNT
    assert result["produce"]["notices"] == result["consume"]["notices"] == []


ORDERS = {
    "ours": ["kafka_event_tracing", "confluent_kafka"],
    "contrib": ["confluent_kafka", "kafka_event_tracing"],
}


@pytest.mark.parametrize("first", sorted(ORDERS))
def test_both_installed_each_message_is_traced_once_by_this_project_with_one_notice(
    contrib_venv: Path, real_stack: Stack, tmp_path: Path, first: str
) -> None:
    env = {"PYTHONPATH": str(_first_on_path(contrib_venv, first, tmp_path))}
    _assert_ours(_run_pair(contrib_venv, real_stack, env, ORDERS[first]), notices=1)


@pytest.mark.parametrize("first", sorted(ORDERS))
def test_contrib_disabled_by_the_variable_this_project_traces_without_a_notice(
    contrib_venv: Path, real_stack: Stack, tmp_path: Path, first: str
) -> None:
    env = {
        "PYTHONPATH": str(_first_on_path(contrib_venv, first, tmp_path)),
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "confluent_kafka",
    }
    _assert_ours(_run_pair(contrib_venv, real_stack, env, ORDERS[first]), notices=0)


@pytest.mark.parametrize("first", sorted(ORDERS))
def test_this_project_disabled_by_the_variable_contrib_runs_alone_untouched(
    contrib_venv: Path, real_stack: Stack, tmp_path: Path, first: str
) -> None:
    env = {
        "PYTHONPATH": str(_first_on_path(contrib_venv, first, tmp_path)),
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "kafka_event_tracing",
    }
    _assert_contrib_alone(_run_pair(contrib_venv, real_stack, env, ORDERS[first]))


@pytest.mark.parametrize("mode", ["code", "proxied", "subclass"])
def test_in_code_this_project_takes_over_from_contrib_with_one_notice(
    contrib_venv: Path, real_stack: Stack, mode: str
) -> None:
    # Both auto-instrumentations off: only what the code does is in effect (the SDK is configured).
    env = {"APP_MODE": mode, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "confluent_kafka,kafka_event_tracing"}
    _assert_ours(_run_pair(contrib_venv, real_stack, env), notices=1)
