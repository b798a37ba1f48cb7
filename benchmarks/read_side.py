"""The read side's benchmark: ``eventchain tree`` and ``list`` on big generated files, against the time
``json.loads`` takes to parse the same file.

    python -m benchmarks --read-only          # just this (part of every full `make bench`)
    python -m benchmarks.read_side            # the same, on its own

Files (OTLP JSON lines, as the collector's file exporter writes them, generated in a temporary
folder): one trace of 20,001 spans (a chain of 10,000 hops), and 100,000 spans over 27,300 traces
(short chains, and batch consumers' receive-only traces). Each measurement runs in a fresh
interpreter; medians over the rounds. Targets: ``tree`` within 2x of ``json.loads``; ``list`` within
1.5x, its peak RSS under 2x the file's size.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.read_chains import deep_chain, many_traces, write_otlp_lines

ROOT = Path(__file__).resolve().parent.parent
TREE_HOPS = 10_000  # 20,001 spans
LIST_TRACES = 27_300  # 100,100 spans
TARGETS = {"tree_vs_json": 2.0, "list_vs_json": 1.5, "list_rss_vs_file": 2.0}


def generate(folder: Path, quick: bool = False) -> dict[str, dict[str, Any]]:
    """Write the two files; returns their paths, sizes and span counts."""
    tree_file, list_file = folder / "tree.jsonl", folder / "list.jsonl"
    tree_spans = write_otlp_lines(tree_file, [deep_chain(TREE_HOPS // (20 if quick else 1))])
    list_spans = write_otlp_lines(list_file, many_traces(LIST_TRACES // (20 if quick else 1)))
    return {
        "tree": {"path": str(tree_file), "spans": tree_spans, "bytes": tree_file.stat().st_size},
        "list": {"path": str(list_file), "spans": list_spans, "bytes": list_file.stat().st_size},
    }


def measure(kind: str, path: str) -> dict[str, float]:
    """In this interpreter: json.loads of the file, then the command on it (output to /dev/null)."""
    if kind == "json":
        started = time.perf_counter()
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                json.loads(line)
        return {"seconds": time.perf_counter() - started, "peak_rss_bytes": _peak_rss()}
    from tracing.cli import main

    args = ["tree", "--file", path, "--width", "120"] if kind == "tree" else ["list", "--file", path]
    saved = sys.stdout
    started = time.perf_counter()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        sys.stdout = sink
        try:
            code = main(args)
        finally:
            sys.stdout = saved
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"eventchain {kind} exited {code}")
    return {"seconds": seconds, "peak_rss_bytes": _peak_rss()}


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
            f"read side: tree file {files['tree']['spans']:,} spans ({files['tree']['bytes'] / 1e6:.1f} MB), "
            f"list file {files['list']['spans']:,} spans ({files['list']['bytes'] / 1e6:.1f} MB)"
        )
        samples: dict[str, list[dict[str, float]]] = {
            k: [] for k in ("json-tree", "tree", "json-list", "list")
        }
        for _ in range(rounds):
            for kind, file in (("tree", "tree"), ("list", "list")):
                samples[f"json-{kind}"].append(_fresh("json", files[file]["path"]))
                samples[kind].append(_fresh(kind, files[file]["path"]))
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    figures = {
        "tree_vs_json": medians["tree"]["seconds"] / medians["json-tree"]["seconds"],
        "list_vs_json": medians["list"]["seconds"] / medians["json-list"]["seconds"],
        "list_rss_vs_file": medians["list"]["peak_rss_bytes"] / files["list"]["bytes"],
    }
    return {
        "files": {k: {"spans": v["spans"], "bytes": v["bytes"]} for k, v in files.items()},
        "rounds": rounds,
        "medians": medians,
        "figures": figures,
        "targets": TARGETS,
        "met": {k: figures[k] <= TARGETS[k] for k in TARGETS},
    }


def render(result: dict[str, Any]) -> str:
    """The read side's table: each figure beside its target."""
    m, f, t, met = result["medians"], result["figures"], result["targets"], result["met"]
    mb = 1e6
    rows = [
        "eventchain on big files (medians of {} rounds, in-process time; whole process in brackets)".format(
            result["rounds"]
        ),
        f"  json.loads, tree file      {m['json-tree']['seconds']:7.2f} s",
        f"  eventchain tree            {m['tree']['seconds']:7.2f} s  ({m['tree']['process_seconds']:.2f} s)",
        f"  json.loads, list file      {m['json-list']['seconds']:7.2f} s",
        f"  eventchain list            {m['list']['seconds']:7.2f} s  ({m['list']['process_seconds']:.2f} s)",
        f"  list peak RSS              {m['list']['peak_rss_bytes'] / mb:7.0f} MB"
        f"  (file {result['files']['list']['bytes'] / mb:.0f} MB, "
        f"json.loads alone {m['json-list']['peak_rss_bytes'] / mb:.0f} MB)",
        "",
        "  figure                       measured   target   met",
    ]
    names = {
        "tree_vs_json": "tree time / json.loads",
        "list_vs_json": "list time / json.loads",
        "list_rss_vs_file": "list peak RSS / file size",
    }
    for key, label in names.items():
        rows.append(f"  {label:27}  {f[key]:7.2f}x   {t[key]:5.1f}x   {'yes' if met[key] else 'NO'}")
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
