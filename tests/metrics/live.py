"""Helpers for the live metrics tests: the metrics stack, collector processes, Prometheus and Jaeger.

Addresses of the metrics stack (scripts/metrics-stack.sh) come from the environment:
    KET_PROMETHEUS_URL       default http://127.0.0.1:19090
    KET_METRICS_OTLP         default http://127.0.0.1:14317   (the collector's OTLP gRPC receiver)
    KET_METRICS_HEALTH_URL   default http://127.0.0.1:13134   (the collector's health check)
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import stack
from tests.metrics.collector_configs import COLLECTOR_BIN, CONFIG_DIR, JAEGER_BIN, REPO_ROOT

METRICS_STACK = REPO_ROOT / "scripts" / "metrics-stack.sh"


def prometheus_url() -> str:
    return (os.environ.get("KET_PROMETHEUS_URL") or "http://127.0.0.1:19090").rstrip("/")


def metrics_otlp() -> str:
    return os.environ.get("KET_METRICS_OTLP") or "http://127.0.0.1:14317"


def metrics_health_url() -> str:
    return (os.environ.get("KET_METRICS_HEALTH_URL") or "http://127.0.0.1:13134").rstrip("/")


# --------------------------------------------------------------------------------- HTTP


def get_json(url: str, params: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[int, Any]:
    """(status, JSON body) of a GET; (0, reason) when nothing answers."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        return stack._get_json(url, timeout)
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def get_text(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free right now (all held open until chosen, so distinct)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def host_port(endpoint: str) -> str:
    """`http://127.0.0.1:4317` -> `127.0.0.1:4317`."""
    parsed = urllib.parse.urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
    return f"{parsed.hostname}:{parsed.port}"


# --------------------------------------------------------------------------- Prometheus


def prom_query(expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    status, body = get_json(f"{prometheus_url()}/api/v1/query", params)
    if status != 200 or body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected {expr!r}: HTTP {status} {str(body)[:500]}")
    return body["data"]["result"]


def prom_query_range(expr: str, *, seconds: int = 300, step: int = 5) -> list[dict[str, Any]]:
    end = time.time()
    params = {"query": expr, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}", "step": str(step)}
    status, body = get_json(f"{prometheus_url()}/api/v1/query_range", params)
    if status != 200 or body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected {expr!r}: HTTP {status} {str(body)[:500]}")
    return body["data"]["result"]


def prom_exemplars(expr: str, *, seconds: int = 900) -> list[dict[str, Any]]:
    end = time.time()
    params = {"query": expr, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}"}
    status, body = get_json(f"{prometheus_url()}/api/v1/query_exemplars", params)
    if status != 200 or body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected exemplar query {expr!r}: HTTP {status} {str(body)[:500]}")
    return [ex for series in body["data"] for ex in series.get("exemplars", [])]


def prom_label_values(selector: str | None, label: str) -> list[str]:
    params = {"match[]": selector} if selector else {}
    status, body = get_json(f"{prometheus_url()}/api/v1/label/{label}/values", params)
    if status != 200 or body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected label_values({selector}, {label}): {str(body)[:500]}")
    return list(body["data"])


def sample_values(result: list[dict[str, Any]]) -> list[float]:
    """Every sample value of an instant or range query result, as floats (NaN included)."""
    values: list[float] = []
    for series in result:
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        values.extend(float(v) for _, v in points)
    return values


def has_positive_sample(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(v) and v > 0 for v in sample_values(result))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_total(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples of metric `name` in Prometheus text format whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        found = dict(_LABEL.findall(match.group(2) or ""))
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            total += float(match.group(3))
    return total


# ------------------------------------------------------------------------------- Jaeger


def jaeger_search(base_url: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
    query = {"lookback": "1h", **params}
    status, body = get_json(f"{base_url.rstrip('/')}/api/traces", query)
    if status != 200 or not isinstance(body, dict):
        raise AssertionError(f"Jaeger search {query} failed: HTTP {status} {str(body)[:300]}")
    return body.get("data") or []


def jaeger_has_trace(base_url: str, trace_id: str) -> bool:
    status, body = get_json(f"{base_url.rstrip('/')}/api/traces/{trace_id}")
    return status == 200 and isinstance(body, dict) and bool(body.get("data"))


def span_tags(span: Mapping[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags") or []}


# ---------------------------------------------------------------------------- processes


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def _wait_ready(proc: Process, health_url: str, ports: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if http_ok(health_url) and all(port_open(p) for p in ports):
            return
        if time.monotonic() >= deadline:
            proc.stop()
            raise AssertionError(f"{proc.name} not ready within {timeout}s:\n{proc.log_tail()}")
        time.sleep(0.2)


@dataclass
class CollectorPorts:
    otlp_grpc: int
    otlp_http: int
    metrics: int
    health: int
    telemetry: int

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}/metrics"

    @property
    def telemetry_url(self) -> str:
        """The collector's own metrics (otelcol_*), in Prometheus text format."""
        return f"http://127.0.0.1:{self.telemetry}/metrics"


@contextmanager
def collector(
    name: str, configs: tuple[str, ...], env: Mapping[str, str], log_dir: Path, *, timeout: float = 30
) -> Iterator[CollectorPorts]:
    """Run otelcol-events with collector-config files on free loopback ports; stop it afterwards."""
    if not COLLECTOR_BIN.exists():
        raise AssertionError(f"no collector at {COLLECTOR_BIN}: run scripts/collector/build.sh")
    ports = CollectorPorts(*free_ports(5))
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTLP_", "TAIL_", "KAFKA_", "GATEWAY_"))},
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports.otlp_grpc}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports.otlp_http}",
        "PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{ports.metrics}",
        "COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{ports.health}",
        "COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
        "COLLECTOR_TELEMETRY_PORT": str(ports.telemetry),
        **env,
    }
    argv = [str(COLLECTOR_BIN)] + [f"--config=file:{CONFIG_DIR / c}" for c in configs]
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=log_dir)
    proc = Process(name, popen, log)
    try:
        # An agent or a Kafka-fed gateway has no prometheus exporter / OTLP receiver running.
        wait_ports = [ports.otlp_grpc] if "otlp" in _receivers_used(configs) else []
        _wait_ready(proc, f"http://127.0.0.1:{ports.health}/", wait_ports, timeout)
        yield ports
    finally:
        proc.stop()


def _receivers_used(configs: tuple[str, ...]) -> set[str]:
    from tests.metrics.collector_configs import merged

    config = merged(configs)
    used: set[str] = set()
    for pipeline in config["service"]["pipelines"].values():
        used.update(r.split("/")[0] for r in pipeline.get("receivers") or [])
    return used


@contextmanager
def jaeger_spm(prom_url: str, log_dir: Path, *, timeout: float = 30) -> Iterator[str]:
    """Run Jaeger v2 with collector-config/jaeger-spm.yaml on free ports; yields its query URL."""
    if not JAEGER_BIN.exists():
        raise AssertionError(f"no Jaeger at {JAEGER_BIN}: run scripts/stack.sh up")
    grpc, http, query, query_grpc, health = free_ports(5)
    env = {
        **os.environ,
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{query}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "PROMETHEUS_URL": prom_url,
    }
    log = log_dir / "jaeger-spm.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [str(JAEGER_BIN), f"--config=file:{CONFIG_DIR / 'jaeger-spm.yaml'}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
        )
    proc = Process("jaeger-spm", popen, log)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{health}/status", [query, grpc], timeout)
        yield f"http://127.0.0.1:{query}"
    finally:
        proc.stop()


# ------------------------------------------------------------------------ metrics stack


def metrics_stack_problem() -> str | None:
    if not http_ok(f"{prometheus_url()}/-/ready"):
        return f"Prometheus at {prometheus_url()} is not ready"
    if not http_ok(f"{metrics_health_url()}/"):
        return f"the collector's health check at {metrics_health_url()} does not answer"
    if not port_open(int(host_port(metrics_otlp()).rsplit(":", 1)[1])):
        return f"the collector's OTLP port ({metrics_otlp()}) is closed"
    return None


def start_metrics_stack(timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(METRICS_STACK), "up"], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def stop_metrics_stack() -> None:
    subprocess.run(
        ["bash", str(METRICS_STACK), "down"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def wait_until(check: Any, *, timeout: float, interval: float = 1.0, what: str = "condition") -> Any:
    """Call check() until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last: {last}")
        time.sleep(interval)
