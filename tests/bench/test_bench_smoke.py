"""The benchmark runs end to end (``--quick``: tiny N, one round, mock cluster) and its
JSON has the structure the README and later comparisons read. Benchmarks are not tests:
no throughput is asserted beyond being positive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parents[2]


def test_a_quick_run_writes_results_with_positive_throughputs(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-contrib", "--n", "1000", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {"meta", "runs", "summary", "targets"} <= data.keys()
    assert data["meta"]["n"] == 1000 and data["meta"]["rounds"] == 1
    assert all("error" not in r for r in data["runs"]), [r.get("error") for r in data["runs"]]
    rates = data["summary"]["mock"]["msgs_per_s"]
    assert set(rates) == {"raw", "ours/none", "ours/1.0/discard", "ours/0.01/discard"}
    for variant, phases in rates.items():
        assert set(phases) == {"produce", "poll", "process"}, variant
        assert all(v > 0 for v in phases.values()), (variant, phases)
    assert set(data["summary"]["mock"]["overhead_us_over_raw"]) == set(rates) - {"raw"}
    # every consumed or produced message of a 100 % run left exactly one span
    spans = data["summary"]["mock"]["spans_exported_per_msg"]["ours/1.0/discard"]
    assert spans["poll"] >= 0.99 and spans["produce"] >= 0.99
    assert "this library" in run.stdout and "targets:" in run.stdout


def test_ratios_and_overheads_are_taken_within_a_round_then_medians():
    def run(rnd, library, sampling, produce):
        return {
            "round": rnd,
            "broker": "mock",
            "library": library,
            "sampling": sampling,
            "n": 10,
            "exporter": "none" if sampling == "none" else "discard",
            "msgs_per_s": {"produce": produce, "poll": produce, "process": produce},
            "spans_exported": {},
        }

    runs = []
    # round 2 runs twice as fast overall (a quieter machine): ratios must not move
    for rnd, speed in ((1, 1.0), (2, 2.0), (3, 1.0)):
        runs += [
            run(rnd, "raw", "none", 1e6 * speed),
            run(rnd, "ours", "1.0", 30e3 * speed),
            run(rnd, "contrib", "1.0", 20e3 * speed),
            run(rnd, "ours", "none", 5e5 * speed),
        ]
    summary = report.summarise(runs)["mock"]
    assert summary["ratio_vs_contrib"]["1.0/discard"]["produce"] == 1.5
    assert round(summary["overhead_us_over_raw"]["ours/none"]["poll"], 6) == 1.0  # 2 µs - 1 µs, median
    checked = {(t["target"], t["broker"]): t for t in report.targets({"mock": summary}, None)}
    assert checked[("100% produce vs contrib", "mock")]["met"] is True
    assert checked[("100% consume (poll loop) vs contrib", "mock")]["met"] is False
