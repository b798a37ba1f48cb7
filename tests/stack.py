"""Helpers for tests that run against the real local stack (see scripts/stack.sh).

Addresses come from the environment so the same tests can point at another stack:
    KET_KAFKA_BOOTSTRAP   default 127.0.0.1:19092
    KET_JAEGER_URL        default http://127.0.0.1:16686   (query HTTP API)
    KET_OTLP_ENDPOINT     default http://127.0.0.1:4317    (OTLP gRPC receiver)
    KET_OTLP_HTTP_ENDPOINT default http://127.0.0.1:4318   (OTLP HTTP receiver)
    KET_RABBITMQ_URL      default amqp://guest:guest@127.0.0.1:5672/%2F
`make test` (scripts/stack.sh run) sets all four to the stack it runs the tests against.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4317"
DEFAULT_OTLP_HTTP_ENDPOINT = "http://127.0.0.1:4318"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def kafka_bootstrap() -> str:
    return os.environ.get("KET_KAFKA_BOOTSTRAP") or DEFAULT_KAFKA_BOOTSTRAP


def jaeger_url() -> str:
    return (os.environ.get("KET_JAEGER_URL") or DEFAULT_JAEGER_URL).rstrip("/")


def rabbitmq_url() -> str:
    """AMQP URL of the stack's RabbitMQ (``KET_RABBITMQ_URL``)."""
    return os.environ.get("KET_RABBITMQ_URL") or DEFAULT_RABBITMQ_URL


def rabbitmq_problem(url: str) -> str | None:
    """None when an AMQP connection to the broker opens, else a description of the failure."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        return f"RabbitMQ not reachable at {url} ({type(exc).__name__})"
    return None


def otlp_endpoint() -> str:
    """OTLP gRPC endpoint of the stack's collector."""
    return os.environ.get("KET_OTLP_ENDPOINT") or DEFAULT_OTLP_ENDPOINT


def otlp_http_endpoint() -> str:
    """OTLP HTTP base URL of the stack's collector (append /v1/traces for traces)."""
    return (os.environ.get("KET_OTLP_HTTP_ENDPOINT") or DEFAULT_OTLP_HTTP_ENDPOINT).rstrip("/")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Stack:
    """What the `real_stack` fixture hands to tests."""

    kafka_bootstrap: str
    jaeger_url: str
    otlp_endpoint: str
    otlp_http_endpoint: str


# ----------------------------------------------------------------------------- probes


def _silent_logger(*_args: object) -> None:
    return None


def kafka_problem(bootstrap: str, timeout: float = 5.0) -> str | None:
    """None when a metadata request to the broker succeeds, else a description of the failure."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _silent_logger})
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception as exc:
        return f"Kafka at {bootstrap} did not answer a metadata request: {exc}"
    if not md.brokers:
        return f"Kafka at {bootstrap} returned metadata without brokers"
    return None


def jaeger_problem(base_url: str, timeout: float = 5.0) -> str | None:
    """None when Jaeger's query API answers, else a description of the failure."""
    url = base_url.rstrip("/") + "/api/services"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"Jaeger at {base_url} did not answer GET /api/services: {exc}"
    return None


# ---------------------------------------------------------------------------- Jaeger


def _get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


def jaeger_trace(
    trace_id_hex: str,
    *,
    expect_spans: int,
    timeout: float = 30,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Poll Jaeger's GET /api/traces/{id} until the trace has at least `expect_spans` spans.

    Returns the trace object as Jaeger's HTTP API gives it: ``{"traceID", "spans": [...],
    "processes": {"p1": {"serviceName", "tags"}}}``. Spans carry ``spanID``, ``operationName``,
    ``references`` (``refType`` CHILD_OF / FOLLOWS_FROM), ``processID`` and ``tags``.
    Raises AssertionError with what was last seen when the deadline passes.
    """
    trace_id = trace_id_hex.lower().rjust(32, "0")
    url = f"{base_url or jaeger_url()}/api/traces/{urllib.parse.quote(trace_id)}"
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        try:
            status, body = _get_json(url)
        except (urllib.error.URLError, OSError) as exc:
            status, body = 0, f"{exc}"
        if status == 200 and isinstance(body, dict) and body.get("data"):
            trace = body["data"][0]
            if len(trace.get("spans", [])) >= expect_spans:
                return trace
            last = f"{len(trace.get('spans', []))} span(s): " + ", ".join(
                s.get("operationName", "?") for s in trace.get("spans", [])
            )
        else:
            last = f"HTTP {status}: {str(body)[:300]}"
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"trace {trace_id} did not reach {expect_spans} span(s) in Jaeger ({url}) "
                f"within {timeout}s; last seen: {last}"
            )
        time.sleep(0.25)


def span_service(trace: Mapping[str, Any], span: Mapping[str, Any]) -> str:
    """The service.name of a span in a trace returned by `jaeger_trace`."""
    return trace["processes"][span["processID"]]["serviceName"]


def span_parent_id(span: Mapping[str, Any]) -> str | None:
    """The CHILD_OF parent span id of a Jaeger span, or None for a root span."""
    for ref in span.get("references") or []:
        if ref.get("refType") == "CHILD_OF":
            return ref.get("spanID")
    return None


# ----------------------------------------------------------------------------- Kafka

_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")


def unique_topic(prefix: str = "test") -> str:
    """A topic name no other test (or earlier run against the same broker) uses."""
    clean = _TOPIC_CHARS.sub("-", prefix).strip("-.") or "test"
    return f"{clean[:200]}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1, *, timeout: float = 30) -> str:
    """Create a topic with AdminClient and wait until every partition has a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _silent_logger})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=name, timeout=5)
        topic = md.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return name
        if time.monotonic() >= deadline:
            raise AssertionError(f"topic {name} has no leader for every partition after {timeout}s")
        time.sleep(0.2)


# ------------------------------------------------------------------------ processes


def venv_python() -> str:
    """The project's virtualenv python (falls back to the interpreter running the tests)."""
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _python_argv(script_path_or_code: str | os.PathLike[str], args: list[str] | tuple[str, ...]) -> list[str]:
    target = os.fspath(script_path_or_code)
    is_path = isinstance(script_path_or_code, os.PathLike) or (
        "\n" not in target and target.endswith(".py") and Path(target).is_file()
    )
    if is_path:
        return [venv_python(), target, *args]
    return [venv_python(), "-c", target, *args]


def _process_env(env: Mapping[str, str] | None) -> dict[str, str]:
    merged = dict(os.environ)
    merged.setdefault("KET_KAFKA_BOOTSTRAP", kafka_bootstrap())
    merged.setdefault("KET_JAEGER_URL", jaeger_url())
    merged.setdefault("KET_OTLP_ENDPOINT", otlp_endpoint())
    merged.setdefault("KET_OTLP_HTTP_ENDPOINT", otlp_http_endpoint())
    merged.setdefault("KET_RABBITMQ_URL", rabbitmq_url())
    merged["PYTHONUNBUFFERED"] = "1"
    if env:
        merged.update(env)
    return merged


def run_python(
    script_path_or_code: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    args: list[str] | tuple[str, ...] = (),
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a script file or a code string in a separate OS process with the venv python.

    `env` is added to the current environment (which already carries the KET_* addresses).
    With check=True a non-zero exit raises AssertionError showing stdout and stderr.
    """
    argv = _python_argv(script_path_or_code, args)
    proc = subprocess.run(
        argv,
        env=_process_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:2])}... exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def start_python(
    script_path_or_code: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    args: list[str] | tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    """Like run_python but returns at once with the running process (stdout/stderr piped)."""
    return subprocess.Popen(
        _python_argv(script_path_or_code, args),
        env=_process_env(env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
