"""Readiness probes for the local stack, used by scripts/stack.sh.

    stack_ready.py kafka  BOOTSTRAP PID TIMEOUT_S [CLUSTER_ID]
    stack_ready.py jaeger QUERY_URL PID TIMEOUT_S OTLP_HOST:PORT...
    stack_ready.py rabbitmq AMQP_URL PID TIMEOUT_S [NODE_NAME]

Exit codes: 0 ready, 1 timed out, 2 the process exited while we waited.
Kafka counts as ready when a real metadata request (AdminClient.list_topics)
returns a broker and, when CLUSTER_ID is given, that broker belongs to our
cluster (a broker started elsewhere on the same port does not count). Jaeger
counts as ready when GET /api/services answers 200 with JSON and the OTLP
ports accept connections. RabbitMQ counts as ready when a real AMQP connection (pika) logs in
and opens a channel and, when NODE_NAME is given, the broker's cluster name is that node's.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

PROGRESS_EVERY_S = 10.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _wait(name: str, pid: int, timeout_s: float, probe: Callable[[], str | None]) -> int:
    """Call probe() until it returns None (ready). It returns a reason string while not ready."""
    start = time.monotonic()
    next_report = start + PROGRESS_EVERY_S
    reason = "no answer yet"
    while True:
        if not _alive(pid):
            print(f"{name}: process {pid} exited during startup", file=sys.stderr)
            return 2
        reason = probe() or ""
        if not reason:
            return 0
        now = time.monotonic()
        if now - start >= timeout_s:
            print(f"{name}: not ready after {timeout_s:.0f}s ({reason})", file=sys.stderr)
            return 1
        if now >= next_report:
            print(f"  ... waiting for {name} ({now - start:.0f}s, {reason})", flush=True)
            next_report = now + PROGRESS_EVERY_S
        time.sleep(0.5)


def _kafka_probe(bootstrap: str, cluster_id: str | None) -> Callable[[], str | None]:
    from confluent_kafka.admin import AdminClient

    def silent(*_args: object) -> None:
        return None

    def probe() -> str | None:
        # A fresh client per attempt: librdkafka backs off reconnects on its own
        # otherwise, which only delays the first successful answer.
        admin = AdminClient(
            {
                "bootstrap.servers": bootstrap,
                "socket.connection.setup.timeout.ms": 2000,
                "reconnect.backoff.max.ms": 500,
                "logger": silent,
            }
        )
        try:
            md = admin.list_topics(timeout=3)
        except Exception as exc:  # KafkaException while the broker is starting
            return f"metadata request failed: {exc}"
        if not md.brokers:
            return "metadata has no brokers yet"
        if cluster_id and md.cluster_id != cluster_id:
            return f"the broker answering has cluster id {md.cluster_id}, ours is {cluster_id}"
        return None

    return probe


def _tcp_open(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _jaeger_probe(query_url: str, otlp: list[str]) -> Callable[[], str | None]:
    url = query_url.rstrip("/") + "/api/services"

    def probe() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status != 200:
                    return f"GET {url} -> HTTP {resp.status}"
                json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"GET {url} failed: {exc}"
        closed = [hp for hp in otlp if not _tcp_open(hp)]
        if closed:
            return f"OTLP port(s) not open yet: {', '.join(closed)}"
        return None

    return probe


def _rabbitmq_probe(url: str, node: str | None) -> Callable[[], str | None]:
    import pika

    params = pika.URLParameters(url)
    params.socket_timeout = 2
    params.blocked_connection_timeout = 2
    params.connection_attempts = 1

    def probe() -> str | None:
        try:
            connection = pika.BlockingConnection(params)
        except Exception as exc:  # AMQPConnectionError while the node boots
            return f"AMQP connection failed: {type(exc).__name__} {exc}".strip()
        try:
            connection.channel().close()
            name = connection._impl.server_properties.get("cluster_name")
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
        except Exception as exc:
            return f"AMQP channel failed: {type(exc).__name__} {exc}".strip()
        finally:
            try:
                connection.close()
            except Exception:
                pass
        if node and name and name != node:
            return f"the broker answering is {name}, ours is {node}"
        return None

    return probe


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("kafka", "jaeger", "rabbitmq"):
        print(__doc__, file=sys.stderr)
        return 64
    what, target, pid, timeout_s = argv[0], argv[1], int(argv[2]), float(argv[3])
    if what == "kafka":
        cluster_id = argv[4] if len(argv) > 4 else None
        return _wait("kafka", pid, timeout_s, _kafka_probe(target, cluster_id))
    if what == "rabbitmq":
        return _wait("rabbitmq", pid, timeout_s, _rabbitmq_probe(target, argv[4] if len(argv) > 4 else None))
    return _wait("jaeger", pid, timeout_s, _jaeger_probe(target, argv[4:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
