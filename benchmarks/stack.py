"""Is the real local stack (``make stack-up``) there? Benchmarks skip what is missing."""

from __future__ import annotations

import socket

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
