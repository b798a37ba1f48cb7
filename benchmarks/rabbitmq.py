"""RabbitMQ in ``make bench``: pika and aio-pika, raw vs this library vs OpenTelemetry contrib's
``opentelemetry-instrumentation-pika`` / ``-aio-pika``, on the local broker (127.0.0.1:5672).

Each contrib package runs under a venv of its own (``.stack/bench-contrib-pika-venv``,
``.stack/bench-contrib-aio-pika-venv``, built once with :func:`benchmarks.contrib_env.build_venv`):
the newest 0.66 pre-release, the client version this project's venv holds and the SDK its pins
select. Every measurement is a fresh interpreter (:mod:`benchmarks.worker_rabbitmq`); a round
runs, per client, raw and then ours/contrib side by side at each sampling, and ratios are taken
within a round, then the median over rounds (as :mod:`benchmarks.report` does for Kafka).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.contrib_env import ROOT, build_venv

URL = "amqp://guest:guest@127.0.0.1:5672/"
CLIENTS = ("pika", "aio-pika")
SAMPLINGS = ("none", "0.01", "1.0")
PHASES = ("publish", "consume")
CONTRIB = {
    "pika": ("opentelemetry-instrumentation-pika", "pika"),
    "aio-pika": ("opentelemetry-instrumentation-aio-pika", "aio-pika"),
}
# (sampling, minimum throughput ratio ours / contrib), for both phases of both clients.
RATIO_TARGETS = (("0.01", 2.0), ("1.0", 1.5))
SAMPLING_LABEL = {"none": "no SDK", "0.01": "1%", "1.0": "100%"}
STYLE = {
    "pika": "publish: basic_publish; consume: basic_consume + start_consuming, basic_ack per message",
    "aio-pika": "publish: await exchange.publish(); consume: queue.iterator() + async with message.process()",
}

_VERSIONS = """
import json, sys
from importlib.metadata import version
print(json.dumps({n: version(n) for n in sys.argv[1:]}))
"""


def venv_dir(client: str) -> Path:
    return ROOT / ".stack" / f"bench-contrib-{client}-venv"


def versions(python: Path | str, names: list[str]) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-c", _VERSIONS, *names], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


def contrib_python(client: str, *, create: bool = True, say: Callable[[str], None] = print) -> Path | None:
    """The python of ``client``'s contrib venv, built (with progress on ``say``) when missing."""
    path = venv_dir(client)
    python, stamp = path / "bin" / "python", path / ".bench-ready"
    if stamp.exists() and python.exists():
        return python
    if not create:
        return None
    package, dist = CONTRIB[client]
    ours = versions(sys.executable, [dist])[dist]
    packages = [f"{package}>=0.66b0,<0.67", f"{dist}=={ours}", "opentelemetry-sdk"]
    if build_venv(path, packages, say=say, label=f"contrib {client} venv") is None:
        return None
    theirs = versions(python, [package, dist, "opentelemetry-sdk"])
    say(f"contrib {client} venv: " + ", ".join(f"{k} {v}" for k, v in theirs.items()))
    stamp.write_text(json.dumps(theirs) + "\n")
    return python


def broker_problem(url: str = URL) -> str | None:
    """None when something answers AMQP's protocol header on the URL's port, else why not."""
    host_port = url.split("@")[-1].split("/")[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port or 5672)), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            sock.settimeout(5)
            if not sock.recv(8):
                return f"{host_port} closed the connection"
    except OSError as exc:
        return f"nothing answers AMQP on {host_port} ({exc})"
    return None


def plan(contrib: dict[str, str]) -> list[dict[str, Any]]:
    """One round: per client, raw, then at each sampling ours and contrib back to back."""
    items = []
    for client in CLIENTS:
        items.append({"client": client, "library": "raw", "sampling": "none"})
        for sampling in SAMPLINGS:
            for library in ("ours", "contrib") if client in contrib else ("ours",):
                items.append({"client": client, "library": library, "sampling": sampling})
    return items


def run_one(python: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("OTEL_SDK_DISABLED", None)
    try:
        out = subprocess.run(
            [python, "-m", "benchmarks.worker_rabbitmq", json.dumps(spec)],
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
        return {"error": f"exit {out.returncode}: " + " | ".join(out.stderr.strip().splitlines()[-3:])}
    return json.loads(lines[-1])


def key(item: dict[str, Any]) -> str:
    return f"{item['client']}/{item['library']}/{item['sampling']}"


def label(k: str) -> str:
    client, library, sampling = k.split("/")
    name = {"raw": "raw", "ours": "this library", "contrib": "otel contrib"}[library]
    return f"{client} {name}" + ("" if library == "raw" else f"  {SAMPLING_LABEL[sampling]}")


def run(
    *,
    n: int,
    rounds: int,
    url: str = URL,
    quick: bool = False,
    contrib: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every variant ``rounds`` times, interleaved; the result with its summary and targets."""
    meta: dict[str, Any] = {"n": n, "rounds": rounds, "broker": url.split("@")[-1], "style": STYLE}
    problem = broker_problem(url)
    if problem:
        say(f"skipped: RabbitMQ: {problem} (start it with `make stack-up`)")
        return {"skipped": problem, "meta": meta}
    pythons: dict[str, str] = {}
    meta["versions"] = {"ours": versions(sys.executable, ["pika", "aio-pika", "opentelemetry-sdk"])}
    for client in CLIENTS if contrib else ():
        python = contrib_python(client, create=not quick, say=say)
        if python is None:
            say(f"skipped: contrib {client}: no venv (run without --quick once to create it)")
        else:
            pythons[client] = str(python)
            meta["versions"][f"contrib {client}"] = json.loads(
                (venv_dir(client) / ".bench-ready").read_text()
            )
    runs = []
    for rnd in range(1, rounds + 1):
        for item in plan(pythons):
            spec = dict(item, n=n, seed=rnd, url=url)
            if quick:
                spec["min_phase_s"] = 0
            interpreter = pythons[item["client"]] if item["library"] == "contrib" else sys.executable
            started = time.monotonic()
            result = run_one(interpreter, spec, timeout=120 + n / 100)
            entry = dict(item, round=rnd, n=n, wall_s=round(time.monotonic() - started, 1))
            if "error" in result:
                entry["error"] = result["error"]
                say(f"[round {rnd}/{rounds}] {label(key(item)):30} FAILED: {result['error']}")
            else:
                entry["msgs_per_s"] = result["msgs_per_s"]
                entry["spans_exported"] = result["spans_exported"]
                rates = "  ".join(f"{p} {result['msgs_per_s'][p]:8,.0f}/s" for p in PHASES)
                say(f"[round {rnd}/{rounds}] {label(key(item)):30} {rates}")
            runs.append(entry)
    summary = summarise(runs)
    return {"meta": meta, "runs": runs, "summary": summary, "targets": targets(summary)}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median rates; per-round ratios ours / contrib and µs per message over raw, then medians."""
    by_round: dict[int, dict[str, dict[str, float]]] = {}
    for r in runs:
        if "msgs_per_s" in r:
            by_round.setdefault(r["round"], {})[key(r)] = r["msgs_per_s"]
    keys = [key(i) for i in plan({c: "" for c in CLIENTS})]
    keys = [k for k in keys if any(k in rnd for rnd in by_round.values())]

    def per_round(a: str, b: str, p: str, f: Callable[[float, float], float]) -> float | None:
        return _median([f(rnd[a][p], rnd[b][p]) for rnd in by_round.values() if a in rnd and b in rnd])

    rates = {
        k: {p: _median([rnd[k][p] for rnd in by_round.values() if k in rnd]) for p in PHASES} for k in keys
    }
    overhead, ratios, ceiling = {}, {}, {}
    for k in keys:
        client, library, sampling = k.split("/")
        raw = f"{client}/raw/none"
        if library != "raw":
            overhead[k] = {p: per_round(k, raw, p, lambda a, b: 1e6 / a - 1e6 / b) for p in PHASES}
        if library == "ours" and f"{client}/contrib/{sampling}" in keys:
            theirs = f"{client}/contrib/{sampling}"
            ratios[f"{client}/{sampling}"] = {p: per_round(k, theirs, p, lambda a, b: a / b) for p in PHASES}
            # what a wrapper costing nothing at all would reach: the raw client over contrib
            ceiling[f"{client}/{sampling}"] = {
                p: per_round(f"{client}/raw/none", theirs, p, lambda a, b: a / b) for p in PHASES
            }
    spans: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        if r.get("spans_exported") and r["sampling"] != "none":
            spans.setdefault(key(r), {p: [] for p in PHASES})
            for p in PHASES:
                spans[key(r)][p].append(r["spans_exported"][p] / r["n"])
    return {
        "rounds": len(by_round),
        "msgs_per_s": rates,
        "overhead_us_over_raw": overhead,
        "ratio_vs_contrib": ratios,
        "raw_vs_contrib": ceiling,
        "spans_exported_per_msg": {k: {p: _median(v[p]) for p in PHASES} for k, v in spans.items()},
    }


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for client in CLIENTS:
        for sampling, minimum in RATIO_TARGETS:
            for phase in PHASES:
                value = summary["ratio_vs_contrib"].get(f"{client}/{sampling}", {}).get(phase)
                found.append(
                    {
                        "target": f"{client} {SAMPLING_LABEL[sampling]}: {phase} vs contrib",
                        "value": value,
                        "want": f">= {minimum}x",
                        "met": value is not None and value >= minimum,
                        "ceiling": summary["raw_vs_contrib"].get(f"{client}/{sampling}", {}).get(phase),
                    }
                )
    return found


def render(result: dict[str, Any]) -> str:
    if "summary" not in result:
        return f"RabbitMQ: skipped ({result.get('skipped')})"
    s, meta = result["summary"], result["meta"]
    lines = [
        f"== RabbitMQ ({meta['broker']}): N={meta['n']:,} msgs per phase, {s['rounds']} round(s), medians ==",
        *(f"  {client}: {style}" for client, style in STYLE.items()),
        f"{'variant':32} {'publish/s':>10} {'consume/s':>10}   µs/msg over raw: "
        f"{'publish':>8} {'consume':>8}",
    ]
    for k, rates in s["msgs_per_s"].items():
        over = s["overhead_us_over_raw"].get(k, {})
        cells = " ".join(f"{'-' if rates[p] is None else format(rates[p], ',.0f'):>10}" for p in PHASES)
        extra = " ".join(f"{'-' if over.get(p) is None else format(over[p], '.1f'):>8}" for p in PHASES)
        lines.append(f"{label(k):32} {cells}   {'':17}{extra}")
    lines += ["", "this library / otel contrib, same round (median of per-round ratios):"]
    lines.append(f"  {'client + sampling':24} {'publish':>8} {'consume':>8}")
    for k, values in s["ratio_vs_contrib"].items():
        client, sampling = k.split("/")
        cells = " ".join(f"{'-' if values[p] is None else format(values[p], '.2f') + 'x':>8}" for p in PHASES)
        lines.append(f"  {client + ' ' + SAMPLING_LABEL[sampling]:24} {cells}")
    lines += ["", "the raw client / otel contrib (what a wrapper costing nothing would reach), same round:"]
    for k, values in s["raw_vs_contrib"].items():
        client, sampling = k.split("/")
        cells = " ".join(f"{'-' if values[p] is None else format(values[p], '.2f') + 'x':>8}" for p in PHASES)
        lines.append(f"  {client + ' ' + SAMPLING_LABEL[sampling]:24} {cells}")
    lines += ["", "spans exported per message (1 = one per publish / delivery, none dropped):"]
    for k, values in s["spans_exported_per_msg"].items():
        cells = " ".join(f"{'-' if values[p] is None else format(values[p], '.2f'):>8}" for p in PHASES)
        lines.append(f"  {label(k):32} {cells}")
    lines += ["", "targets:"]
    for t in result["targets"]:
        shown = "-" if t["value"] is None else f"{t['value']:.2f}"
        line = f"  {t['target']:40} {shown:>8}  want {t['want']:8} {'met' if t['met'] else 'NOT met'}"
        if t.get("ceiling") is not None:
            line += f"  (the raw client reaches {t['ceiling']:.2f}x)"
        lines.append(line)
    return "\n".join(lines)
