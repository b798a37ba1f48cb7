"""The demo for real: each service its own OS process, a real Kafka broker, spans to a real Jaeger.

``python -m tracing.demo --live`` expects the local stack (``make stack-up``: Kafka on
127.0.0.1:19092, Jaeger's OTLP receiver on 127.0.0.1:4317 and its query API on 127.0.0.1:16686).
It starts the six services, waits until each is consuming, sends the story's three requests over
HTTP, waits until the traces stop growing in Jaeger, stops the services, and prints each chain read
back from Jaeger's API: trace id, the Jaeger UI link, and the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from tracing.demo import scenario
from tracing.demo.events import Topics
from tracing.demo.runtime import ensure_topics
from tracing.read import JaegerClient, JaegerUnavailable, TraceNotFound, render_chain

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_OTLP = "http://127.0.0.1:4317"
DEFAULT_JAEGER = "http://127.0.0.1:16686"
DEFAULT_AMQP = os.environ.get("KET_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/%2F"
READY_TIMEOUT_S = 60.0
STABLE_S = 3.0  # a trace whose span count has not changed for this long is complete
_READY = re.compile(r"^ready (\S+)(?: http=(\S+))?")


@dataclass
class ServiceProcess:
    """One service running as its own process; its output is read by two threads."""

    module: str
    args: list[str]
    proc: subprocess.Popen[str] | None = None
    name: str = ""
    url: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def start(self, env: dict[str, str], echo: Any | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"tracing.demo.services.{self.module}", *self.args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(echo,), daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            match = _READY.match(line)
            if match:
                self.name, self.url = match.group(1), match.group(2)
                self.ready.set()

    def _read_stderr(self, echo: Any | None) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            if echo is not None:
                echo(f"  {line.rstrip()}")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float) -> int | None:
        """The exit code; a service still running after ``timeout`` is killed (None)."""
        if self.proc is None:
            return 0
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


def stop_all(procs: list[ServiceProcess], timeout: float = 15.0) -> list[str]:
    """SIGTERM every service at once, then wait; returns what did not stop cleanly."""
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + timeout
    problems = []
    for p in procs:
        code = p.wait(max(deadline - time.monotonic(), 0.1))
        if code is None:
            problems.append(f"{p.module} did not stop within {timeout:.0f} s and was killed")
        elif code not in (0, -15):
            problems.append(f"{p.module} exited with code {code}")
    return problems


def services(
    bootstrap: str, prefix: str, sms_fail_share: float, amqp: str | None = None
) -> list[ServiceProcess]:
    common = ["--bootstrap", bootstrap, "--prefix", prefix]
    rabbitmq = ["--amqp", amqp] if amqp else []  # order.created to notification-service through RabbitMQ
    return [
        ServiceProcess("order", [*common, *rabbitmq, "--http-port", "0"]),
        ServiceProcess("inventory", common),
        ServiceProcess(
            "notification",
            [*common, *rabbitmq, "--sms-flaky-number", scenario.FLAKY_NUMBER,
             "--sms-fail-share", str(sms_fail_share)],
        ),
        ServiceProcess("points", [*common, "--redeliver-once", scenario.REDELIVERED_EVENT]),
        ServiceProcess("user", [*common, "--http-port", "0"]),
        ServiceProcess("recommendation", common),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = _console()
    jaeger = JaegerClient(args.jaeger)
    problem = _stack_problem(args.bootstrap, jaeger)
    if problem:
        console.print(
            f"[bold red]The local stack is not reachable[/]: {problem}\n"
            "Start it with [bold]make stack-up[/] (or see --help to point elsewhere)."
        )
        return 2
    started = time.monotonic()
    ensure_topics(args.bootstrap, Topics(args.prefix).all())
    env = dict(os.environ)
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": args.otlp,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: spans reach Jaeger soon after they end
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("OTEL_SERVICE_NAME", None)
    amqp = None if args.no_amqp else args.amqp
    if amqp and _rabbitmq_problem(amqp):
        console.print(f"RabbitMQ: {_rabbitmq_problem(amqp)}; every hop stays on Kafka.", highlight=False)
        amqp = None
    procs = services(args.bootstrap, args.prefix, args.sms_fail_share, amqp)
    console.print("[bold]Event-chain demo, live[/]: six services, each its own process.")
    console.print(
        f"Kafka {args.bootstrap}, spans over OTLP to {args.otlp}, Jaeger {args.jaeger}", highlight=False
    )
    if amqp:
        console.print(
            f"RabbitMQ {_safe(amqp)}: order.created also goes through its 'order-events' exchange to "
            "notification-service", highlight=False,
        )
    echo = (lambda line: console.print(line, markup=False, highlight=False)) if args.verbose else None
    chains: list[scenario.Chain] = []
    try:
        for p in procs:
            p.start(env, echo)
        _wait_ready(procs, console)
        urls = {p.name: p.url for p in procs}
        for number, step in enumerate(scenario.STEPS, 1):
            chain = scenario.Chain(step, _post(f"{urls[step.service]}{step.path}", step.body))
            chains.append(chain)
            console.print(
                f"{number}. {step.title}: {step.method} {step.path} -> {chain.subject}, "
                f"trace {chain.trace_id}",
                highlight=False,
            )
        console.print("Waiting for the traces to settle in Jaeger ...")
        _wait_stable(jaeger, [c.trace_id for c in chains], args.timeout)
        problems = stop_all(procs)
        if problems:
            raise _Failed("; ".join(problems))
        # Stopped services have flushed what they still held: read the final traces.
        _wait_stable(jaeger, [c.trace_id for c in chains], args.timeout, stable_s=1.0)
    except _Failed as exc:
        console.print(f"[bold red]{exc}[/]")
        for p in procs:
            if p.log:
                console.print(f"--- {p.module} (last lines) ---", markup=False)
                console.print("\n".join(list(p.log)[-20:]), markup=False, highlight=False)
        return 1
    finally:
        stop_all(procs)
    for number, chain in enumerate(chains, 1):
        console.print()
        console.rule(f"[bold]chain {number}: {chain.step.title}[/]")
        console.print(f"trace id  {chain.trace_id}", highlight=False)
        console.print(f"Jaeger    {args.jaeger.rstrip('/')}/trace/{chain.trace_id}", highlight=False)
        render_chain(jaeger.trace(chain.trace_id), console, trace_id=chain.trace_id)
    console.print(
        f"\nDone in {time.monotonic() - started:.1f} s. The same trees from the command line: "
        f"[bold]eventchain tree TRACE_ID --jaeger {args.jaeger}[/]"
    )
    return 0


class _Failed(Exception):
    pass


def _stack_problem(bootstrap: str, jaeger: JaegerClient) -> str | None:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "logger": _quiet()}).list_topics(timeout=5)
    except Exception as exc:
        return f"Kafka at {bootstrap} did not answer ({exc})"
    try:
        jaeger.services()
    except JaegerUnavailable as exc:
        return str(exc)
    return None


def _rabbitmq_problem(url: str) -> str | None:
    try:
        import pika
    except ImportError:
        return "pika is not installed (pip install 'kafka-event-tracing[rabbitmq]')"
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        return f"{_safe(url)} did not answer ({type(exc).__name__})"
    return None


def _safe(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _quiet() -> Any:
    import logging

    log = logging.getLogger("tracing.demo.live.librdkafka")
    log.setLevel(logging.CRITICAL)
    return log


def _wait_ready(procs: list[ServiceProcess], console: Console) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    for p in procs:
        while not p.ready.wait(0.2):
            assert p.proc is not None
            if p.proc.poll() is not None:
                raise _Failed(f"{p.module} service exited with code {p.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise _Failed(f"{p.module} service not ready after {READY_TIMEOUT_S:.0f} s")
        where = f" at {p.url}" if p.url else ""
        console.print(f"  {p.name} ready{where} (pid {p.proc.pid if p.proc else '?'})", highlight=False)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except OSError as exc:
        raise _Failed(f"POST {url} failed: {exc}") from None


def _wait_stable(
    jaeger: JaegerClient, trace_ids: list[str], timeout: float, stable_s: float = STABLE_S
) -> None:
    """Wait until no trace has gained a span for ``stable_s`` seconds."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    changed = time.monotonic()
    while True:
        now_counts = {}
        for trace_id in trace_ids:
            try:
                now_counts[trace_id] = len(jaeger.trace(trace_id))
            except TraceNotFound:
                now_counts[trace_id] = 0
        if now_counts != counts:
            counts, changed = now_counts, time.monotonic()
        elif all(counts.values()) and time.monotonic() - changed >= stable_s:
            return
        if time.monotonic() > deadline:
            raise _Failed(f"traces still changing (or missing) in Jaeger after {timeout:.0f} s: {counts}")
        time.sleep(0.25)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tracing.demo --live",
        description="Run the demo's services as separate processes against a real Kafka and Jaeger "
        "(make stack-up), then print each chain read back from Jaeger.",
    )
    p.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help=f"Kafka (default {DEFAULT_BOOTSTRAP})")
    p.add_argument(
        "--otlp", default=DEFAULT_OTLP, help=f"OTLP gRPC endpoint for the spans (default {DEFAULT_OTLP})"
    )
    p.add_argument("--jaeger", default=DEFAULT_JAEGER, help=f"Jaeger query URL (default {DEFAULT_JAEGER})")
    p.add_argument("--prefix", default="", help="prefix for topic and consumer group names (isolates runs)")
    p.add_argument(
        "--amqp",
        default=DEFAULT_AMQP,
        metavar="URL",
        help="RabbitMQ for the order.created hop to notification-service "
        "(default $KET_RABBITMQ_URL or the local stack's; when it does not answer, Kafka only)",
    )
    p.add_argument("--no-amqp", action="store_true", help="every hop on Kafka")
    p.add_argument(
        "--sms-fail-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of SMS sends that fail at random, 0..1 (default 0; one failure is scripted)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the traces (default 60)")
    p.add_argument("--verbose", action="store_true", help="show the services' logs")
    return p


def _console() -> Console:
    console = Console()
    if not console.is_terminal and console.width < 140:
        console.width = 140
    return console
