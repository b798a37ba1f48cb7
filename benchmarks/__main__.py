"""``python -m benchmarks``: raw confluent-kafka vs this library vs the OpenTelemetry contrib
instrumentation, interleaved round by round, on the mock cluster and the real broker; and
the asyncio clients (raw ``confluent_kafka.aio`` vs ``tracing.aio``) with the event loop's lag.
At 100 % sampling the "SDK floor" runs too: the same spans with no wrapper code around
them, the best any instrumentation could do.

    python -m benchmarks                      # everything: 3 rounds, N=50,000, both brokers
    python -m benchmarks --broker mock --rounds 5
    python -m benchmarks --quick              # seconds: tiny N, 1 round, mock only
    python -m benchmarks --outage             # 1 M sends with the OTLP endpoint unreachable
    python -m benchmarks --api async          # only the asyncio clients (confluent_kafka.aio)
    python -m benchmarks --read-only          # only eventchain (tree, list) on big generated files
    python -m benchmarks --loop-only          # only run() vs a plain poll loop (real broker)
    python -m benchmarks --rabbitmq-only      # only pika and aio-pika against contrib's (local RabbitMQ)

The OTLP variants export over gRPC into a Jaeger of their own (the local stack's binary, an
in-memory store on a free loopback port, started and stopped by the run): both libraries into
the same kind of sink, and the shared Jaeger keeps what others look for. ``--otlp-endpoint``
exports into an endpoint of your choice instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import contrib_env, managed_loop, rabbitmq, read_side, report, stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
SAMPLINGS = ("none", "1.0", "0.01")
# asyncio: no SDK and 100 % (discarding exporter); contrib has no asyncio clients.
AIO_SAMPLINGS = ("none", "1.0")
# The flow metrics' cost is measured beside these (no SDK: the metrics alone).
METRICS_SAMPLINGS = ("none", "1.0")
# The SDK floor: where the span work dominates, and where the ratio targets are set; with
# the OTLP exporter it runs the SDK's standard gRPC exporter. Without an SDK, the floor of a
# consumer that carries each message's context on (see benchmarks.worker.carry_floor_consumer).
FLOOR_CONFIGS = (("1.0", "discard"), ("1.0", "otlp"), ("none", "none"))
# The flow metrics recorded through the SDK's record() (KET_PREAGGREGATE=false) beside the
# pre-aggregated ones configure() sets up: only where the targets are set.
METRICS_SDK_CONFIG = ("1.0", "discard")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="messages per phase (default 50,000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds; medians are taken over them (default 3)"
    )
    parser.add_argument("--broker", choices=("mock", "real", "both"), default="both")
    parser.add_argument(
        "--json", type=Path, help="write results here (default benchmarks/results/<time>.json)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny N, 1 round, mock only, no OTLP; a smoke run"
    )
    parser.add_argument(
        "--exporters", default="discard,otlp", help="discard and/or otlp (OTLP into the real Jaeger when up)"
    )
    parser.add_argument(
        "--samplings", default="none,1.0,0.01", help="none (no SDK), 1.0 and/or 0.01 (default: all three)"
    )
    parser.add_argument("--no-contrib", action="store_true", help="leave out the contrib variant")
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="leave out the SDK floor (the bare spans, run at 100%% with the discarding exporter)",
    )
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="leave out the variants with the flow metrics on (a global MeterProvider)",
    )
    parser.add_argument(
        "--api",
        default="sync,async",
        help="sync (Producer/Consumer) and/or async (confluent_kafka.aio clients); default both",
    )
    parser.add_argument(
        "--otlp-endpoint",
        help="export the OTLP variants here (default: a Jaeger of the run's own on a free port)",
    )
    parser.add_argument("--bootstrap", default=stack.KAFKA_BOOTSTRAP, help="the real broker")
    parser.add_argument("--outage", action="store_true", help="only the unreachable-exporter run")
    parser.add_argument("--outage-n", type=int, default=1_000_000)
    parser.add_argument(
        "--read-only", action="store_true", help="only the read side: eventchain tree and list on big files"
    )
    parser.add_argument(
        "--loop-only", action="store_true", help="only the managed loop: run() against a plain poll loop"
    )
    parser.add_argument("--loop-n", type=int, default=200_000, help="messages for the managed loop")
    parser.add_argument(
        "--rabbitmq-only",
        action="store_true",
        help="only RabbitMQ: pika and aio-pika, raw vs this library vs contrib's instrumentations",
    )
    parser.add_argument("--rabbitmq-n", type=int, default=5_000, help="messages per RabbitMQ phase")
    parser.add_argument(
        "--no-rabbitmq", dest="rabbitmq", action="store_false", help="leave out RabbitMQ (on by default)"
    )
    parser.add_argument(
        "--no-read",
        dest="read",
        action="store_false",
        help="leave out the read side (on by default, off in --quick)",
    )
    args = parser.parse_args(argv)
    if args.quick and not args.read_only:
        args.read = False
    if args.quick:
        args.n = min(args.n, 2_000)
        args.rounds = 1
        args.broker = "mock"
        args.exporters = "discard"
    return args


def say(text: str) -> None:
    print(text, flush=True)


def run_worker(python: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    env = dict(os.environ)
    env.pop("OTEL_SDK_DISABLED", None)
    try:
        out = subprocess.run(
            [python, "-m", "benchmarks.worker", json.dumps(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = [line for line in out.stderr.strip().splitlines() if not line.startswith("%")][-3:]
        return {"error": f"exit {out.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1])
    result["stderr_lines"] = len(out.stderr.splitlines())
    return result


# ----------------------------------------------------------------------------- the matrix
def plan(
    args: argparse.Namespace, contrib: str | None, brokers: list[str], otlp: bool
) -> list[dict[str, Any]]:
    """One round: raw, then each configuration as ours/contrib pairs (adjacent, for fair ratios),
    the SDK floor between them at 100 % discard, the flow metrics' variant just before ours;
    then the asyncio clients: raw aio, then ours without SDK and at 100 %."""
    exporters = [e for e in args.exporters.split(",") if e == "discard" or (e == "otlp" and otlp)]
    apis = args.api.split(",")
    round_plan = []
    for broker in brokers:
        samplings = [s for s in SAMPLINGS if s in args.samplings.split(",")]
        if "sync" in apis:
            round_plan.append({"library": "raw", "sampling": "none", "exporter": "none", "broker": broker})
            configs = [("none", "none")] if "none" in samplings else []
            configs += [(s, e) for e in exporters for s in samplings if s != "none"]
            for sampling, exporter in configs:
                libraries = ["ours", "contrib"] if contrib else ["ours"]
                if args.floor and (sampling, exporter) in FLOOR_CONFIGS:
                    # between ours and contrib: both ratios to the floor compare neighbouring runs
                    libraries.insert(1, "floor")
                if args.metrics and exporter != "otlp" and sampling in METRICS_SAMPLINGS:
                    # beside its tracing-only twin, before it: ours stays next to floor and contrib
                    libraries.insert(0, "ours-metrics")
                    if (sampling, exporter) == METRICS_SDK_CONFIG:
                        libraries.insert(0, "ours-metrics-sdk")
                for library in libraries:
                    item = {"library": library, "sampling": sampling, "exporter": exporter, "broker": broker}
                    if library == "floor":
                        # it has no process(msg) to measure; without an SDK, a send has nothing to do
                        item["phases"] = ["poll"] if sampling == "none" else ["produce", "poll"]
                    round_plan.append(item)
        if "async" in apis:
            round_plan.append(
                {"library": "aio-raw", "sampling": "none", "exporter": "none", "broker": broker}
            )
            for sampling in (s for s in AIO_SAMPLINGS if s in samplings):
                exporter = "none" if sampling == "none" else "discard"
                round_plan.append(
                    {"library": "aio-ours", "sampling": sampling, "exporter": exporter, "broker": broker}
                )
    return round_plan


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "n": args.n,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "workload": "100-byte values, keys over 64 ids, traceparent on consumed messages; BatchSpanProcessor",
        "workload_async": "produce: await produce() per message, then flush and await every future; "
        "consume: await poll() per message; loop lag: worst delay of a 5 ms ticker task",
        "skipped": [],
    }
    ours_versions = contrib_env._ours()
    meta["versions"] = {"ours": ours_versions}
    contrib: str | None = None
    if not args.no_contrib:
        python = contrib_env.ensure(create=not args.quick, say=say)
        if python is None:
            meta["skipped"].append("contrib: no contrib venv (run without --quick once to create it)")
        else:
            contrib = str(python)
            meta["versions"]["contrib"] = contrib_env.installed_versions(python)
    brokers = ["mock"] if args.broker in ("mock", "both") else []
    if args.broker in ("real", "both"):
        problem = stack.kafka_problem(args.bootstrap)
        if problem:
            meta["skipped"].append(f"real broker: {problem} (start it with `make stack-up`)")
        else:
            brokers.append("real")
    otlp = "otlp" in args.exporters.split(",")
    sink = None
    if otlp and args.otlp_endpoint is None:
        sink = stack.OtlpSink(ROOT / ".stack" / "run" / f"bench-sink-{os.getpid()}")
        problem = sink.start()
        if problem:
            meta["skipped"].append(f"OTLP exporter variant: {problem}")
            otlp, sink = False, None
        else:
            args.otlp_endpoint = sink.endpoint
            meta["otlp_sink"] = f"Jaeger (in-memory store) on {sink.endpoint}, started for this run"
    elif otlp:
        problem = stack.otlp_problem(args.otlp_endpoint)
        if problem:
            meta["skipped"].append(f"OTLP exporter variant: {problem}")
            otlp = False
        else:
            meta["otlp_sink"] = args.otlp_endpoint
    for line in meta["skipped"]:
        say("skipped: " + line)
    try:
        runs = _run_rounds(args, contrib, brokers, otlp)
    finally:
        if sink is not None:
            sink.stop()
    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return {"meta": meta, "runs": runs}


def _run_rounds(
    args: argparse.Namespace, contrib: str | None, brokers: list[str], otlp: bool
) -> list[dict[str, Any]]:
    round_plan = plan(args, contrib, brokers, otlp)
    timeout = 120 + args.n / 1000 * 15
    runs = []
    for rnd in range(1, args.rounds + 1):
        for item in round_plan:
            spec = dict(item, n=args.n, seed=rnd, otlp_endpoint=args.otlp_endpoint)
            if args.quick:
                spec["min_phase_s"] = 0  # one timed run per phase: a smoke run, not a measurement
            if item["broker"] == "real":
                spec["bootstrap"] = args.bootstrap
            # ours and the floor import this project (the floor: its pinned SDK): our interpreter
            python = contrib if item["library"] == "contrib" else sys.executable
            started = time.monotonic()
            result = run_worker(python, spec, timeout)  # type: ignore[arg-type]
            entry = dict(item, round=rnd, n=args.n, wall_s=round(time.monotonic() - started, 1))
            if "error" in result:
                entry["error"] = result["error"]
                say(f"[round {rnd}/{args.rounds}] {_label(item)}  FAILED: {result['error']}")
            else:
                entry["msgs_per_s"] = result["msgs_per_s"]
                entry["spans_exported"] = result["spans_exported"]
                rates = "  ".join(
                    f"{p} {result['msgs_per_s'][p] / 1000:7.1f}k/s"
                    for p in report.PHASES
                    if p in result["msgs_per_s"]
                )
                if result.get("export_cpu_us_per_span"):
                    entry["export_cpu_us_per_span"] = result["export_cpu_us_per_span"]
                    rates += "  export CPU µs/span " + "/".join(
                        f"{v:.1f}" for v in result["export_cpu_us_per_span"].values()
                    )
                if "loop_lag_ms" in result:
                    entry["loop_lag_ms"] = result["loop_lag_ms"]
                    rates += "  loop lag ms " + "/".join(
                        f"{result['loop_lag_ms'][p]:.1f}" for p in report.PHASES
                    )
                say(f"[round {rnd}/{args.rounds}] {_label(item)}  {rates}")
            runs.append(entry)
    return runs


def _label(item: dict[str, Any]) -> str:
    key = report.variant_key(item["library"], item["sampling"], item["exporter"])
    return f"{item['broker']:4} {report.variant_label(key):42}"


# ----------------------------------------------------------------------------- outage
def measure_outage(args: argparse.Namespace) -> dict[str, Any]:
    """Raw (control) and ours, each with its mock cluster in a separate owner process."""
    port = stack.closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    say(f"outage: {args.outage_n:,} sends, 100 % sampling, OTLP endpoint {endpoint} (nothing listens)")
    results = {}
    for library in ("raw", "ours"):
        owner = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", json.dumps({"mode": "mock-owner"})],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert owner.stdout is not None
            bootstrap = owner.stdout.readline().strip()
            spec = {
                "mode": "outage",
                "library": library,
                "n": args.outage_n,
                "bootstrap": bootstrap,
                "otlp_endpoint": endpoint,
            }
            result = run_worker(sys.executable, spec, timeout=600 + args.outage_n / 1000)
        finally:
            assert owner.stdin is not None
            owner.stdin.close()
            try:
                owner.wait(30)
            except subprocess.TimeoutExpired:
                owner.kill()
        results[library] = result
        if "error" in result:
            say(f"outage: {library}: FAILED {result['error']}")
        else:
            say(
                f"outage: {library:4}: {result['exceptions']} exceptions, RSS {result['rss_start_mb']} -> "
                f"peak {result['rss_peak_mb']} / end {result['rss_end_mb']} MB "
                f"(growth {result['rss_growth_mb']} MB), {result['msgs_per_s'] / 1000:.1f}k msgs/s, "
                f"{result.get('stderr_lines', 0)} log lines"
            )
    return results


# ----------------------------------------------------------------------------- managed loop
def _managed_loop(args: argparse.Namespace) -> dict[str, Any]:
    """run() against the plain loop on the real broker (skipped, and said so, without it)."""
    problem = stack.kafka_problem(args.bootstrap)
    if problem:
        say(f"skipped: managed loop: real broker: {problem} (start it with `make stack-up`)")
        return {"skipped": problem}
    python = None if args.no_contrib else contrib_env.ensure(create=not args.quick, say=say)
    n = min(args.loop_n, 20_000) if args.quick else args.loop_n
    result = managed_loop.run(
        bootstrap=args.bootstrap,
        rounds=args.rounds,
        n=n,
        contrib=str(python) if python else None,
        say=say,
    )
    say("\n" + managed_loop.render(result))
    return result


# ----------------------------------------------------------------------------- RabbitMQ
def _rabbitmq(args: argparse.Namespace) -> dict[str, Any]:
    """pika and aio-pika on the local RabbitMQ (skipped, and said so, without it)."""
    n = min(args.rabbitmq_n, 500) if args.quick else args.rabbitmq_n
    result = rabbitmq.run(n=n, rounds=args.rounds, quick=args.quick, contrib=not args.no_contrib, say=say)
    say("\n" + rabbitmq.render(result))
    return result


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rabbitmq_only:
        data = {"meta": {"started": datetime.now(UTC).isoformat(timespec="seconds"), "mode": "rabbitmq"}}
        data["rabbitmq"] = _rabbitmq(args)
    elif args.loop_only:
        data = {"meta": {"started": datetime.now(UTC).isoformat(timespec="seconds"), "mode": "loop"}}
        data["managed_loop"] = _managed_loop(args)
    elif args.read_only:
        data = {"meta": {"started": datetime.now(UTC).isoformat(timespec="seconds"), "mode": "read"}}
        data["read_side"] = read_side.run(rounds=1 if args.quick else args.rounds, quick=args.quick, say=say)
        say(read_side.render(data["read_side"]))
    elif args.outage:
        data: dict[str, Any] = {
            "meta": {"started": datetime.now(UTC).isoformat(timespec="seconds"), "mode": "outage"},
            "outage": measure_outage(args),
        }
        data["targets"] = report.targets({}, data["outage"])
        say(report.render({}, {"n": 0}, data["targets"]))
    else:
        data = measure_all(args)
        data["summary"] = report.summarise(data["runs"])
        data["targets"] = report.targets(data["summary"], None)
        say(report.render(data["summary"], data["meta"], data["targets"]))
        if args.read:
            data["read_side"] = read_side.run(rounds=args.rounds, say=say)
            say("\n" + read_side.render(data["read_side"]))
        if args.broker in ("real", "both"):
            data["managed_loop"] = _managed_loop(args)
        if args.rabbitmq and args.broker in ("real", "both"):  # a real broker, as the managed loop
            data["rabbitmq"] = _rabbitmq(args)
    path = args.json
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        modes = (
            (args.outage, "outage"),
            (args.read_only, "read"),
            (args.loop_only, "loop"),
            (args.rabbitmq_only, "rabbitmq"),
        )
        prefix = next((name for on, name in modes if on), "bench")
        path = RESULTS_DIR / f"{prefix}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    say(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
