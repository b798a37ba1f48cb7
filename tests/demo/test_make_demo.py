"""`make demo`, the first command a new user types: it must work on a fresh checkout, fast."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.stack import REPO_ROOT

SERVICES = ("order-service", "inventory-service", "notification-service", "points-service",
            "user-service", "recommendation-service")


@pytest.fixture(scope="module")
def demo() -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(["make", "demo"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    return proc, time.monotonic() - started


def test_make_demo_exits_0_and_says_how_long_it_took(demo):
    # How fast it runs is for `make bench`; here only that it finishes and reports its time.
    proc, _ = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^Done in \d+\.\d s\.", proc.stdout, re.MULTILINE)


def test_make_demo_names_every_service(demo):
    proc, _ = demo
    for service in SERVICES:
        assert service in proc.stdout, f"{service} not in the demo's output"


def test_make_demo_prints_three_chains_as_trees(demo):
    proc, _ = demo
    roots = re.findall(r"^trace [0-9a-f]{32}\s+(POST /\w+)", proc.stdout, re.MULTILINE)
    assert roots == ["POST /orders", "POST /orders", "POST /users"]
    assert re.search(r"chain 1: .*order \w+ confirmed", proc.stdout)
    assert re.search(r"chain 2: .*order \w+ cancelled", proc.stdout)
    assert re.search(r"chain 3: .*user u-\w+ registered, profile created", proc.stdout)


def test_make_demo_shows_the_duplicate_and_the_failed_sms(demo):
    proc, _ = demo
    assert "⚠ duplicate: already processed" in proc.stdout
    assert "✗ SmsFailed" in proc.stdout
    assert "process notifications.retry" in proc.stdout


def test_make_demo_ends_with_the_audit_of_its_own_run(demo):
    proc, _ = demo
    audit = proc.stdout[proc.stdout.index("the audit of this run"):]
    assert re.search(r"^duplicates: 1 ", audit, re.MULTILINE)
    assert re.search(r"^\s+points\s+orders\s+\d+\s+\d+\s+2\s+[0-9a-f]{32}$", audit, re.MULTILINE)
    assert re.search(r"^\s+notification\s+orders\s+SmsFailed\s+1\s+1\s+0$", audit, re.MULTILINE)
    assert "2 started, 1 finished, 1 compensated (50%)" in audit
    saga = "saga order.created:stock.reserved:order.cancelled: stuck"
    for kind in ("ordering violations", "unconsumed", saga):
        assert re.search(rf"^{re.escape(kind)}: 0\b", audit, re.MULTILINE), kind


def test_make_demo_leaves_its_spans_for_eventchain_and_the_commands_it_prints_work(demo):
    proc, _ = demo
    commands = re.findall(r"^  (\S*eventchain (?:list|tree) .*--file \S+)$", proc.stdout, re.MULTILINE)
    assert len(commands) == 2, proc.stdout[-600:]
    listed, tree = (
        subprocess.run(command.split(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        for command in commands
    )
    assert listed.returncode == 0, listed.stderr
    assert "3 of 3 chains shown" in listed.stdout + listed.stderr
    assert tree.returncode == 0, tree.stderr
    first = re.search(r"^trace ([0-9a-f]{32})\s+POST /orders", proc.stdout, re.MULTILINE)
    assert first is not None and tree.stdout.startswith(f"trace {first.group(1)}  POST /orders")
