"""The read side's benchmark runs end to end on small files (``--read-only --quick``) and prints each
figure beside its target. Benchmarks are not tests: no figure is asserted beyond being measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_quick_read_side_run_prints_figures_beside_targets(tmp_path: Path) -> None:
    out = tmp_path / "read.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--read-only", "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    for label in (
        "tree time / json.loads",
        "list time / json.loads",
        "list peak RSS / file size",
        "audit time / json.loads",
        "audit peak RSS (GB)",
    ):
        assert label in run.stdout
    result = json.loads(out.read_text())["read_side"]
    assert set(result["figures"]) == set(result["targets"]) == {"tree_vs_json", "list_vs_json",
                                                                "list_rss_vs_file", "audit_vs_json",
                                                                "audit_rss_gb"}
    assert all(value > 0 for value in result["figures"].values())
    assert all(result["files"][kind]["spans"] > 0 for kind in ("tree", "list", "audit"))
