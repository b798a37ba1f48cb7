"""The benchmark runs end to end (``--quick``: tiny N, one round, mock cluster; the sync and
the asyncio clients) and its JSON has the structure the README and later comparisons read.
Benchmarks are not tests: no throughput is asserted beyond being positive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert set(rates) == {
        "raw",
        "ours/none",
        "ours/1.0/discard",
        "ours/0.01/discard",
        "ours-metrics/none",
        "ours-metrics/1.0/discard",
        "floor/1.0/discard",
        "aio-raw",
        "aio-ours/none",
        "aio-ours/1.0/discard",
    }
    for variant, phases in rates.items():
        assert set(phases) == {"produce", "poll", "process"}, variant
        if variant.startswith("floor/"):  # it has no process(msg): that phase is not run
            assert phases.pop("process") is None
        assert all(v > 0 for v in phases.values()), (variant, phases)
    assert set(data["summary"]["mock"]["overhead_us_over_raw"]) == set(rates) - {"raw", "aio-raw"}
    # every consumed or produced message of a 100 % run left exactly one span, sync and asyncio
    for variant in ("ours/1.0/discard", "aio-ours/1.0/discard"):
        spans = data["summary"]["mock"]["spans_exported_per_msg"][variant]
        assert spans["poll"] >= 0.99 and spans["produce"] >= 0.99, (variant, spans)
    # the SDK floor recorded its one span per message in each phase it runs
    spans = data["summary"]["mock"]["spans_exported_per_msg"]["floor/1.0/discard"]
    assert set(spans) == {"produce", "poll"}
    assert all(0.99 <= v <= 1.01 for v in spans.values()), spans
    # without contrib there is no floor/contrib ratio, but this library / the floor is there
    assert data["summary"]["mock"]["floor_ratio_vs_contrib"] == {}
    assert set(data["summary"]["mock"]["ours_vs_floor"]) == {"1.0/discard"}
    assert "this library / SDK floor" in run.stdout
    # the asyncio runs measured their event loop: a lag for every phase, none for sync runs
    lag = data["summary"]["mock"]["loop_lag_ms"]
    assert set(lag) == {"aio-raw", "aio-ours/none", "aio-ours/1.0/discard"}
    assert all(v is not None and v >= 0 for phases in lag.values() for v in phases.values()), lag
    assert set(data["summary"]["mock"]["aio_ratio_vs_sync"]) == set(lag)
    # the flow metrics' cost is reported beside tracing, for no SDK and for 100 %
    assert set(data["summary"]["mock"]["metrics_cost_us"]) == {"none", "1.0/discard"}
    assert "flow metrics: µs/msg" in run.stdout
    assert "this library" in run.stdout and "targets:" in run.stdout
    assert "aio: this library" in run.stdout and "loop lag ms" in run.stdout


def _run(rnd, library, sampling, rates, lag=None):
    """One measured run as the benchmark records it; ``rates``: one for every phase, or per phase."""
    rates = rates if isinstance(rates, tuple) else (rates,) * len(report.PHASES)
    entry = {
        "round": rnd,
        "broker": "mock",
        "library": library,
        "sampling": sampling,
        "n": 10,
        "exporter": "none" if sampling == "none" else "discard",
        "msgs_per_s": dict(zip(report.PHASES, rates, strict=True)),
        "spans_exported": {},
    }
    if lag is not None:
        entry["loop_lag_ms"] = dict.fromkeys(report.PHASES, lag)
    return entry


def test_ratios_and_overheads_are_taken_within_a_round_then_medians():
    runs = []
    # round 2 runs twice as fast overall (a quieter machine): ratios must not move
    for rnd, speed in ((1, 1.0), (2, 2.0), (3, 1.0)):
        runs += [
            _run(rnd, "raw", "none", 1e6 * speed),
            _run(rnd, "ours", "1.0", 30e3 * speed),
            _run(rnd, "contrib", "1.0", 20e3 * speed),
            _run(rnd, "ours", "none", 5e5 * speed),
        ]
    summary = report.summarise(runs)["mock"]
    assert summary["ratio_vs_contrib"]["1.0/discard"]["produce"] == 1.5
    assert round(summary["overhead_us_over_raw"]["ours/none"]["poll"], 6) == 1.0  # 2 µs - 1 µs, median
    checked = {(t["target"], t["broker"]): t for t in report.targets({"mock": summary}, None)}
    assert checked[("100% produce vs contrib", "mock")]["met"] is True
    assert checked[("100% consume (poll loop) vs contrib", "mock")]["met"] is False


def test_asyncio_variants_are_measured_against_the_raw_aio_clients_and_their_sync_twins():
    def run(library, sampling, rate, lag=None):
        return _run(1, library, sampling, rate, lag)

    runs = [
        run("raw", "none", 1e6),
        run("ours", "1.0", 40e3),
        run("aio-raw", "none", 100e3, lag=2.0),
        run("aio-ours", "1.0", 20e3, lag=30.0),
    ]
    summary = report.summarise(runs)["mock"]
    # overhead over the raw aio clients (50 µs - 10 µs), not over the sync raw client
    assert round(summary["overhead_us_over_raw"]["aio-ours/1.0/discard"]["poll"], 6) == 40.0
    assert "aio-raw" not in summary["overhead_us_over_raw"]
    assert summary["aio_ratio_vs_raw_aio"]["aio-ours/1.0/discard"]["produce"] == 0.2
    assert summary["aio_ratio_vs_sync"]["aio-ours/1.0/discard"]["produce"] == 0.5
    assert summary["aio_ratio_vs_sync"]["aio-raw"]["poll"] == 0.1
    assert summary["loop_lag_ms"] == {
        "aio-raw": {"produce": 2.0, "poll": 2.0, "process": 2.0},
        "aio-ours/1.0/discard": {"produce": 30.0, "poll": 30.0, "process": 30.0},
    }
    assert list(summary["msgs_per_s"]) == ["raw", "ours/1.0/discard", "aio-raw", "aio-ours/1.0/discard"]


def test_the_sdk_floor_is_compared_with_contrib_and_ours_round_by_round():
    def run(rnd, library, rates):
        return _run(rnd, library, "none" if library == "raw" else "1.0", rates)

    # (produce, poll, process) per round; round 2 is faster for the floor than for contrib, so
    # the median of per-round ratios differs from the ratio of the median rates
    runs = [
        run(1, "raw", (1e6, 1e6, 1e6)),
        run(1, "ours", (30e3, 60e3, 40e3)),
        run(1, "floor", (40e3, 80e3, 50e3)),
        run(1, "contrib", (20e3, 20e3, 20e3)),
        run(2, "raw", (1e6, 1e6, 1e6)),
        run(2, "ours", (54e3, 72e3, 45e3)),
        run(2, "floor", (60e3, 90e3, 50e3)),
        run(2, "contrib", (40e3, 30e3, 25e3)),
    ]
    summary = report.summarise(runs)["mock"]
    # floor / contrib: round 1 (2.0, 4.0), round 2 (1.5, 3.0); the median of two is the mean.
    # No process ratio: the floor has no process(msg) (older runs repeated its poll loop there).
    assert summary["floor_ratio_vs_contrib"]["1.0/discard"] == pytest.approx(
        {"produce": 1.75, "poll": 3.5, "process": None}
    )
    # ours / floor: round 1 (0.75, 0.75), round 2 (0.9, 0.8)
    assert summary["ours_vs_floor"]["1.0/discard"] == pytest.approx(
        {"produce": 0.825, "poll": 0.775, "process": None}
    )
    assert list(summary["msgs_per_s"]) == [
        "raw",
        "ours/1.0/discard",
        "floor/1.0/discard",
        "contrib/1.0/discard",
    ]
    checked = {t["target"]: t for t in report.targets({"mock": summary}, None)}
    assert checked["100% produce vs contrib"]["floor"] == pytest.approx(1.75)
    assert checked["100% consume (poll loop) vs contrib"]["floor"] == pytest.approx(3.5)
    assert "floor" not in checked["1% produce vs contrib"]
    text = report.render({"mock": summary}, {"n": 10}, list(checked.values()))
    assert "SDK floor (one bare span per message, same attributes) / otel contrib" in text
    assert "(SDK floor reaches 1.75x)" in text
