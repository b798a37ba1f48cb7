"""Is the real local stack (``make stack-up``) there? Benchmarks skip what is missing."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

KAFKA_BOOTSTRAP = "127.0.0.1:19092"
OTLP_ENDPOINT = "http://127.0.0.1:4317"


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host_port(address: str) -> tuple[str, int]:
    address = address.split("://", 1)[-1].split(",")[0]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def kafka_problem(bootstrap: str = KAFKA_BOOTSTRAP) -> str | None:
    """None when the broker answers a metadata request, else why not."""
    host, port = _host_port(bootstrap)
    if not _port_open(host, port):
        return f"nothing listens on {bootstrap}"
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=5)
    except Exception as exc:
        return f"{bootstrap} does not answer metadata requests ({exc})"
    return None


def otlp_problem(endpoint: str = OTLP_ENDPOINT) -> str | None:
    host, port = _host_port(endpoint)
    return None if _port_open(host, port) else f"nothing listens on {endpoint}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A private OTLP sink for the exporter variants: the local stack's Jaeger binary with its own
# in-memory store on a free loopback port, so the benchmark's hundreds of thousands of traces
# never evict what others look for in the shared Jaeger.
JAEGER_BINARY = Path(__file__).resolve().parent.parent / ".stack" / "bin" / "jaeger"
_SINK_CONFIG = """\
service:
  extensions: [jaeger_storage]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}}
  telemetry: {{metrics: {{level: none}}, logs: {{level: warn}}}}
extensions:
  jaeger_storage: {{backends: {{memstore: {{memory: {{max_traces: 100000}}}}}}}}
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
processors:
  batch: {{timeout: 200ms, send_batch_size: 512}}
exporters:
  jaeger_storage_exporter: {{trace_storage: memstore}}
"""


class OtlpSink:
    """A Jaeger (OTLP gRPC in, in-memory store) of our own; ``endpoint`` once started."""

    def __init__(self, workdir: Path) -> None:
        self.endpoint: str | None = None
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> str | None:
        """None when started, else why not."""
        if not JAEGER_BINARY.exists():
            return f"no {JAEGER_BINARY.name} binary in {JAEGER_BINARY.parent} (make stack-up builds it)"
        port = closed_port()
        self._workdir.mkdir(parents=True, exist_ok=True)
        config = self._workdir / "otlp-sink.yaml"
        config.write_text(_SINK_CONFIG.format(port=port))
        log = (self._workdir / "otlp-sink.log").open("wb")
        self._process = subprocess.Popen(
            [str(JAEGER_BINARY), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"the sink exited with {self._process.returncode} (see {log.name})"
            if _port_open("127.0.0.1", port, 0.2):
                self.endpoint = f"http://127.0.0.1:{port}"
                return None
            time.sleep(0.2)
        self.stop()
        return f"the sink did not listen on 127.0.0.1:{port} within {timeout:.0f} s"

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None
