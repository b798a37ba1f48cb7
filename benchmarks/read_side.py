"""The read side's benchmark: ``eventchain tree``, ``list`` and ``audit`` on big generated files,
against the time ``json.loads`` takes to parse the same file.

    python -m benchmarks --read-only          # just this (part of every full `make bench`)
    python -m benchmarks.read_side            # the same, on its own

Files (OTLP JSON lines, as the collector's file exporter writes them, generated in a temporary
folder): one trace of 20,001 spans (a chain of 10,000 hops), 100,000 spans over 27,300 traces
(short chains, and batch consumers' receive-only traces), and 1,000,006 spans of keyed order flows
for ``audit`` (one flow a millisecond, 143 s of traffic). Each measurement runs in a fresh
interpreter; medians over the rounds. Figures are CPU-time ratios (wall time beside them: on a
shared machine it also counts other processes).
Beside ``json.loads``, the minimal pass (:func:`minimal_pass`) shows the least any Python
implementation must add to the parse, and the typed parse (:func:`typed_parse`) what eventchain's
own parse costs before any span is made. Targets:
``tree`` within 2x of ``json.loads``; ``list`` within 1.5x, its peak RSS under 2x the file's size;
``audit`` within 2x, its peak RSS under 1 GB.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.read_chains import ChainWriter, audit_traffic, deep_chain, many_traces, write_otlp_lines

ROOT = Path(__file__).resolve().parent.parent
TREE_HOPS = 10_000  # 20,001 spans
LIST_TRACES = 27_300  # 100,100 spans
AUDIT_TRACES = 142_858  # 1,000,006 spans
AUDIT_QUICK_TRACES = 1_430  # 10,010 spans with --quick
TARGETS = {
    "tree_vs_json": 2.0,
    "list_vs_json": 1.5,
    "list_rss_vs_file": 2.0,
    "audit_vs_json": 2.0,
    "audit_rss_gb": 1.0,
}
COMMANDS = {
    "tree": ["tree", "--width", "120"],
    "list": ["list"],
    "audit": ["audit"],
}


def generate(folder: Path, quick: bool = False) -> dict[str, dict[str, Any]]:
    """Write the three files; returns their paths, sizes and span counts."""
    scale = 20 if quick else 1
    chains: dict[str, Iterable[ChainWriter]] = {
        "tree": [deep_chain(TREE_HOPS // scale)],
        "list": many_traces(LIST_TRACES // scale),
        "audit": audit_traffic(AUDIT_QUICK_TRACES if quick else AUDIT_TRACES),
    }
    files = {}
    for kind, made in chains.items():
        path = folder / f"{kind}.jsonl"
        spans = write_otlp_lines(path, made)
        files[kind] = {"path": str(path), "spans": spans, "bytes": path.stat().st_size}
    return files


def measure(kind: str, path: str) -> dict[str, float]:
    """In this interpreter: json.loads of the file, then the command on it (output to /dev/null)."""
    if kind in ("json", "floor", "typed"):
        if kind == "typed":
            import tracing.read.load  # noqa: F401 - imported before the clock starts, as for the commands
        started, cpu = time.perf_counter(), time.process_time()
        gc.disable()  # as eventchain does while a command runs
        if kind == "floor":
            minimal_pass(path)
        elif kind == "typed":
            typed_parse(path)
        else:
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    json.loads(line)
        return {
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
            "peak_rss_bytes": _peak_rss(),
        }
    from tracing.cli import main

    args = [*COMMANDS[kind], "--file", path]
    saved = sys.stdout
    started, cpu = time.perf_counter(), time.process_time()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        sys.stdout = sink
        try:
            code = main(args)
        finally:
            sys.stdout = saved
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if code != 0:
        raise SystemExit(f"eventchain {kind} exited {code}")
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_bytes": _peak_rss()}


def minimal_pass(path: str) -> int:
    """What any implementation in Python must do on top of ``json.loads``: visit every span and read
    the fields the commands use (ids, parent, name, kind, times, status, each attribute's key and
    value) into a tuple, counted per trace. No checks, no model, nothing kept, no output: a floor,
    not a command (run, like the commands, with the cyclic collector paused). Returns the number of
    spans."""
    traces: dict[str, int] = {}
    count = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            for resource in json.loads(line)["resourceSpans"]:
                service = resource["resource"]["attributes"][0]["value"]["stringValue"]
                for scope in resource["scopeSpans"]:
                    for raw in scope["spans"]:
                        attributes = [(a["key"], a["value"]) for a in raw["attributes"]]
                        (  # read, then dropped
                            raw["spanId"],
                            raw.get("parentSpanId"),
                            raw["name"],
                            raw["kind"],
                            int(raw["startTimeUnixNano"]),
                            int(raw["endTimeUnixNano"]),
                            raw["status"].get("code"),
                            service,
                            attributes,
                            raw.get("links"),
                        )
                        trace_id = raw["traceId"]
                        traces[trace_id] = traces.get(trace_id, 0) + 1
                        count += 1
    return count


def typed_parse(path: str) -> None:
    """The parse ``eventchain`` does first: every line through the loader's typed msgspec decoder
    (into structs of the fields the read side uses), nothing converted. The floor of the loader."""
    from tracing.read.load import _TYPED_LINE

    decode = _TYPED_LINE.decode
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            decode(line)


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _fresh(kind: str, path: str) -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.read_side", "--measure", kind, path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def run(rounds: int = 3, quick: bool = False, say: Any = print) -> dict[str, Any]:
    """Generate the files, measure each command ``rounds`` times (interleaved with json.loads)."""
    with tempfile.TemporaryDirectory(prefix="eventchain-bench-") as folder:
        # Generated in a child: a process's peak RSS carries over to the children it starts (Linux
        # keeps it across fork and exec), so this one must stay small for the RSS figures to hold.
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.read_side",
                "--generate",
                folder,
                *(["--quick"] if quick else []),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        files = json.loads(out.stdout.strip().splitlines()[-1])
        say(
            "read side: "
            + ", ".join(
                f"{kind} file {files[kind]['spans']:,} spans ({files[kind]['bytes'] / 1e6:.1f} MB)"
                for kind in COMMANDS
            )
        )
        samples: dict[str, list[dict[str, float]]] = {}
        for _ in range(rounds):
            for kind in COMMANDS:
                samples.setdefault(f"json-{kind}", []).append(_fresh("json", files[kind]["path"]))
                samples.setdefault(f"floor-{kind}", []).append(_fresh("floor", files[kind]["path"]))
                samples.setdefault(f"typed-{kind}", []).append(_fresh("typed", files[kind]["path"]))
                samples.setdefault(kind, []).append(_fresh(kind, files[kind]["path"]))
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    # Times are CPU times: on a shared machine wall time also counts the other processes' turns.
    figures = {
        "tree_vs_json": medians["tree"]["cpu_seconds"] / medians["json-tree"]["cpu_seconds"],
        "list_vs_json": medians["list"]["cpu_seconds"] / medians["json-list"]["cpu_seconds"],
        "list_rss_vs_file": medians["list"]["peak_rss_bytes"] / files["list"]["bytes"],
        "audit_vs_json": medians["audit"]["cpu_seconds"] / medians["json-audit"]["cpu_seconds"],
        "audit_rss_gb": medians["audit"]["peak_rss_bytes"] / 1e9,
    }
    wall_figures = {
        f"{kind}_vs_json": medians[kind]["seconds"] / medians[f"json-{kind}"]["seconds"] for kind in COMMANDS
    }
    floors = {
        f"{kind}_vs_json": medians[f"floor-{kind}"]["cpu_seconds"] / medians[f"json-{kind}"]["cpu_seconds"]
        for kind in COMMANDS
    }
    typed_parses = {
        f"{kind}_vs_json": medians[f"typed-{kind}"]["cpu_seconds"] / medians[f"json-{kind}"]["cpu_seconds"]
        for kind in COMMANDS
    }
    return {
        "files": {k: {"spans": v["spans"], "bytes": v["bytes"]} for k, v in files.items()},
        "rounds": rounds,
        "medians": medians,
        "figures": figures,
        "wall_figures": wall_figures,
        "floors": floors,
        "typed_parses": typed_parses,
        "targets": TARGETS,
        "met": {k: figures[k] <= TARGETS[k] for k in TARGETS},
    }


def render(result: dict[str, Any]) -> str:
    """The read side's table: each figure beside its target."""
    m, f, t, met = result["medians"], result["figures"], result["targets"], result["met"]
    wall = result.get("wall_figures", {})
    mb = 1e6
    rows = [
        "eventchain on big files (medians of {} rounds: in-process wall time, its CPU time, whole "
        "process; the cyclic collector paused in each, as eventchain does)".format(result["rounds"]),
    ]
    for kind in COMMANDS:
        for name, label in (
            (f"json-{kind}", f"json.loads, {kind} file"),
            (f"floor-{kind}", "  + minimal pass"),
            (f"typed-{kind}", "msgspec typed parse"),
            (kind, f"eventchain {kind}"),
        ):
            row = m.get(name)
            if row is None:  # a result recorded before this row was measured
                continue
            whole = f"  ({row['process_seconds']:.2f} s)" if name == kind else ""
            rows.append(
                f"  {label:25}  {row['seconds']:7.2f} s  cpu {row.get('cpu_seconds', 0.0):5.2f} s{whole}"
            )
    for kind in ("list", "audit"):
        rows.append(
            f"  {kind + ' peak RSS':25}  {m[kind]['peak_rss_bytes'] / mb:7.0f} MB  (file "
            f"{result['files'][kind]['bytes'] / mb:.0f} MB, {result['files'][kind]['spans']:,} spans; "
            f"json.loads alone {m[f'json-{kind}']['peak_rss_bytes'] / mb:.0f} MB)"
        )
    rows += [
        "",
        "  figure (CPU time)            measured   target   met   (minimal pass; typed parse; wall time)",
    ]
    names = {
        "tree_vs_json": "tree time / json.loads",
        "list_vs_json": "list time / json.loads",
        "list_rss_vs_file": "list peak RSS / file size",
        "audit_vs_json": "audit time / json.loads",
        "audit_rss_gb": "audit peak RSS (GB)",
    }
    for key, label in names.items():
        floor = result.get("floors", {}).get(key)
        typed = result.get("typed_parses", {}).get(key)
        parse = f"{typed:.2f}x; " if typed else ""
        extra = f"   ({floor:.2f}x; {parse}{wall[key]:.2f}x)" if key in wall and floor else ""
        unit = "" if key.endswith("_gb") else "x"
        rows.append(
            f"  {label:27}  {f[key]:7.2f}{unit or ' '}   {t[key]:5.1f}{unit or ' '}   "
            f"{'yes' if met[key] else 'NO '}{extra}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--measure"]:
        print(json.dumps(measure(args[1], args[2])))
        return 0
    if args[:1] == ["--generate"]:
        print(json.dumps(generate(Path(args[1]), quick="--quick" in args)))
        return 0
    quick = "--quick" in args
    result = run(rounds=1 if quick else 3, quick=quick)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
