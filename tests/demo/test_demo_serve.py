"""`python -m tracing.demo --serve` (`make demo-serve`): the demo's services export over OTLP/HTTP to an
`eventchain serve --live` it starts, and the chains are the trees serve prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tracing.demo import scenario

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_through_serve_prints_each_chain_once_as_it_settles_and_exits_cleanly():
    result = subprocess.run(
        [sys.executable, "-m", "tracing.demo", "--serve"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    settled = [line for line in result.stdout.splitlines() if line.startswith("settled ")]
    assert len(settled) == len(scenario.STEPS)  # each chain printed once
    assert len({line.split(":")[0] for line in settled}) == len(scenario.STEPS)
    assert "1 error" in settled[1] and "1 duplicate" in settled[0]
    assert "stopped: stored" in result.stderr
    assert "Traceback" not in result.stderr and "already shutdown" not in result.stderr
    store = result.stdout.split("The spans stay in ", 1)[1].split(":", 1)[0].strip()
    listed = subprocess.run(
        [sys.executable, "-m", "tracing", "list", "--store", store, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[1].rstrip(":") for line in settled} <= set(listed.stdout.replace('"', " ").split())
