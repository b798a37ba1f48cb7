"""Load on ``eventchain serve``: sender processes export with the OTLP exporter ``tracing.configure()``
builds (the SDK's OTLP/HTTP protobuf exporter, or its OTLP/gRPC exporter with this library's span
encoder) into one ``serve`` on loopback, at a target rate, for a while.

    python -m benchmarks.serve_load                         # 4 senders, 20,000 spans/s, 30 s, OTLP/HTTP
    python -m benchmarks.serve_load --protocol grpc --seconds 10

Each sender builds batches of 512 spans (the batch processor's default), three spans per trace (a
send and two process spans with the messaging attributes our clients record), every span new, and
hands them to the exporter, paced to its share of the rate; a batch answered 503 / UNAVAILABLE is
retried by the exporter itself. Figures: spans acknowledged, spans taken in per second (acknowledged
over the sending time), spans stored (the store's count after ``serve`` stopped, which must equal the
acknowledged ones, or exceed them only by batches whose answer came too late for the exporter),
requests turned away, and ``serve``'s peak memory and CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 512
SPANS_PER_TRACE = 3
WAIT_S = 120.0


@dataclass
class LoadResult:
    senders: int
    protocol: str
    target_spans_per_s: int
    seconds: float
    sent: int
    acknowledged: int
    failed: int
    stored: int
    turned_away: int
    spans_per_s: float
    serve_peak_rss_mib: float
    serve_cpu_s: float

    def line(self) -> str:
        return (
            f"{self.senders} senders, OTLP {self.protocol}, target {self.target_spans_per_s:,} spans/s for "
            f"{self.seconds:.0f} s: {self.acknowledged:,} of {self.sent:,} spans acknowledged "
            f"({self.spans_per_s:,.0f} spans/s taken in), {self.stored:,} stored, {self.failed:,} given up "
            f"by the exporters, {self.turned_away:,} requests turned away; serve peak RSS "
            f"{self.serve_peak_rss_mib:.0f} MiB, CPU {self.serve_cpu_s:.1f} s"
        )


# --- one sender process -------------------------------------------------------------------------------


def _batches(service: str) -> Any:
    """Endless batches of new spans: per trace a send and two process spans, as our clients record."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    resource = Resource.create({"service.name": service})
    scope = InstrumentationScope("kafka-event-tracing", "0")
    flags = TraceFlags(TraceFlags.SAMPLED)
    send_attrs = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "orders",
        "messaging.destination.partition.id": "1",
        "messaging.kafka.message.key": "order-42",
        "messaging.client.id": service,
        "server.address": "127.0.0.1",
        "server.port": 19092,
    }
    while True:
        batch = []
        now = time.time_ns()
        for _ in range(BATCH // SPANS_PER_TRACE):
            trace_id = int.from_bytes(os.urandom(16), "big") or 1
            send = SpanContext(trace_id, int.from_bytes(os.urandom(8), "big") or 1, False, flags)
            batch.append(
                ReadableSpan(
                    "send orders",
                    send,
                    None,
                    resource,
                    send_attrs,
                    kind=SpanKind.PRODUCER,
                    start_time=now,
                    end_time=now + 200_000,
                    instrumentation_scope=scope,
                )
            )
            for group in ("inventory", "points"):
                process = SpanContext(trace_id, int.from_bytes(os.urandom(8), "big") or 1, False, flags)
                attrs = {
                    **send_attrs,
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.consumer.group.name": group,
                    "messaging.kafka.offset": 7,
                }
                batch.append(
                    ReadableSpan(
                        "process orders",
                        process,
                        send,
                        resource,
                        attrs,
                        kind=SpanKind.CONSUMER,
                        start_time=now + 1_000_000,
                        end_time=now + 1_500_000,
                        instrumentation_scope=scope,
                    )
                )
        yield batch


def sender(endpoint: str, protocol: str, rate: float, seconds: float, name: str) -> dict[str, int]:
    """Export for ``seconds`` at about ``rate`` spans/s; counts of what was sent and acknowledged."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    from tracing.sdk import otlp_exporter

    # The exporter configure() builds (over gRPC: this library's span encoder in the SDK's exporter).
    exporter = otlp_exporter(endpoint, "grpc" if protocol == "grpc" else "http/protobuf")
    sent = acknowledged = failed = 0
    started = time.monotonic()
    for batch in _batches(name):
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        ahead = sent / rate - elapsed
        if ahead > 0:
            time.sleep(ahead)  # pacing to the target rate, not a wait for a condition
        sent += len(batch)
        if exporter.export(batch) is SpanExportResult.SUCCESS:
            acknowledged += len(batch)
        else:
            failed += len(batch)
    exporter.shutdown()
    return {"sent": sent, "acknowledged": acknowledged, "failed": failed}


# --- the run -----------------------------------------------------------------------------------------


def _wait_line(lines: list[str], word: str, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = next((x for x in lines if word in x), None)
        if line is not None:
            return line
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited ({proc.returncode}): {' | '.join(lines)}")
        time.sleep(0.05)
    raise RuntimeError(f"serve did not print {word!r} within {WAIT_S:.0f} s: {' | '.join(lines)}")


def _proc_status(pid: int) -> tuple[float, float]:
    """Peak RSS (MiB) and CPU seconds of a running process, from /proc."""
    peak = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return peak, (int(fields[11]) + int(fields[12])) / ticks


def run(
    senders: int = 4,
    rate: int = 20_000,
    seconds: float = 30.0,
    protocol: str = "http",
    store: Path | None = None,
    serve_args: tuple[str, ...] = (),
) -> LoadResult:
    """Start ``serve`` and the senders, wait for them, stop ``serve``; what it took in and kept."""
    from tracing.read.store import SpanStore

    folder = None
    if store is None:
        folder = tempfile.TemporaryDirectory(prefix="serve-load-")
        store = Path(folder.name) / "spans.sqlite"
    command = [
        sys.executable,
        "-m",
        "tracing",
        "serve",
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
        "--store",
        str(store),
        "--max-spans",
        "0",
        *serve_args,
    ]
    serve = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    err: list[str] = []
    threading.Thread(
        target=lambda: err.extend(x.rstrip("\n") for x in serve.stderr or ()), daemon=True
    ).start()
    try:
        line = _wait_line(err, "listening:", serve)
        http_port = line.split("http://127.0.0.1:")[1].split("/")[0]
        grpc_port = line.split("OTLP/gRPC on 127.0.0.1:")[1].split(";")[0]
        protocols = ("http", "grpc") if protocol == "both" else (protocol,)
        share = rate / senders
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.serve_load",
                    "--sender",
                    f"http://127.0.0.1:{grpc_port if protocols[n % len(protocols)] == 'grpc' else http_port}",
                    "--protocol",
                    protocols[n % len(protocols)],
                    "--rate",
                    str(share),
                    "--seconds",
                    str(seconds),
                    "--name",
                    f"sender-{n}",
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for n in range(senders)
        ]
        started = time.monotonic()
        counts = [json.loads(p.communicate(timeout=seconds + 10 * WAIT_S)[0]) for p in procs]
        elapsed = time.monotonic() - started
        peak, cpu = _proc_status(serve.pid)
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=WAIT_S)
        closing = _wait_line(err, "stopped:", serve)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    turned_away = 0
    for part in closing.split("stopped: ", 1)[1].split("; "):
        if "turned away" in part:
            turned_away = int(part.split()[0].replace(",", ""))
    with SpanStore.open(store) as reader:
        stored = reader.stats().spans
    if folder is not None:
        folder.cleanup()
    acknowledged = sum(c["acknowledged"] for c in counts)
    return LoadResult(
        senders=senders,
        protocol=protocol,
        target_spans_per_s=rate,
        seconds=elapsed,
        sent=sum(c["sent"] for c in counts),
        acknowledged=acknowledged,
        failed=sum(c["failed"] for c in counts),
        stored=stored,
        turned_away=turned_away,
        spans_per_s=acknowledged / elapsed if elapsed else 0.0,
        serve_peak_rss_mib=peak,
        serve_cpu_s=cpu,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--senders", type=int, default=4, help="sender processes (default 4)")
    parser.add_argument(
        "--rate", type=float, default=20_000, help="target spans/s, all senders (default 20,000)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the senders send (default 30)")
    parser.add_argument(
        "--protocol",
        choices=("http", "grpc", "both"),
        default="http",
        help="OTLP/HTTP, OTLP/gRPC, or both (every other sender)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--sender", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--name", default="sender", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sender:
        print(json.dumps(sender(args.sender, args.protocol, args.rate, args.seconds, args.name)))
        return 0
    result = run(args.senders, int(args.rate), args.seconds, args.protocol)
    print(json.dumps(asdict(result)) if args.json else result.line())
    print(
        f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)",
        file=sys.stderr,
    )
    return 0 if result.stored >= result.acknowledged else 1


if __name__ == "__main__":
    raise SystemExit(main())
