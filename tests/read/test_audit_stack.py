"""`eventchain audit` against the real Jaeger: the live demo's six services on the real broker, plus a
consumer that processes the orders partition concurrently and one that skips a message. The audit
finds exactly the demo's redelivery, retried SMS failure and compensation, and those two."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from tests import stack

pytestmark = pytest.mark.stack

SAGA = "order.created:stock.reserved:order.cancelled"
# Processings the live demo makes on its topics (as the embedded run of the same story does).
DEMO_PROCESSINGS = 17
ORDERS_MESSAGES = 3  # order 1 created; order 2 created, then cancelled (one key)


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        args,
        cwd=stack.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    return proc.stdout


def test_audit_of_the_live_demo_finds_exactly_its_problems_and_the_two_added_ones(real_stack, cli):
    prefix = f"audit-{uuid.uuid4().hex[:8]}-"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    _run(
        [
            stack.venv_python(),
            "-m",
            "tracing.demo",
            "--live",
            "--prefix",
            prefix,
            "--bootstrap",
            real_stack.kafka_bootstrap,
            "--otlp",
            real_stack.otlp_endpoint,
            "--jaeger",
            real_stack.jaeger_url,
        ]
    )
    env = {"KET_KAFKA_BOOTSTRAP": real_stack.kafka_bootstrap, "KET_OTLP_ENDPOINT": real_stack.otlp_endpoint}
    script = str(stack.REPO_ROOT / "tests" / "read" / "_audit_consumers.py")
    seen = {}
    for role in ("concurrent", "skipper"):
        out = _run(
            [stack.venv_python(), script, role, prefix + "orders", prefix + role, str(ORDERS_MESSAGES)], env
        )
        seen[role] = [tuple(item.split(":", 1)) for item in out.split()]
    offsets = seen["concurrent"]
    assert offsets[1][1] == offsets[2][1], f"the last two orders events should share a key: {offsets}"

    args = [
        "audit",
        "--jaeger",
        real_stack.jaeger_url,
        "--since",
        since,
        "--topic",
        prefix + "*",
        "--saga",
        SAGA,
        "--grace",
        "1",
        "--json",
    ]
    expected = DEMO_PROCESSINGS + ORDERS_MESSAGES + (ORDERS_MESSAGES - 1)
    deadline = time.monotonic() + 90
    while True:  # Jaeger indexes spans a little after they are exported
        result = cli(*args)
        assert result.code == 0, result.err
        doc = result.json()
        if doc["processings"] >= expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert doc["processings"] == expected

    orders = prefix + "orders"
    assert [(v["group"], v["topic"], v["key"]) for v in doc["ordering_violations"]] == [
        (prefix + "concurrent", orders, offsets[1][1])
    ]
    assert [(d["group"], d["topic"], d["times"]) for d in doc["duplicates"]] == [
        (prefix + "points", orders, 2)
    ]
    assert [(u["group"], u["topic"], u["offset"]) for u in doc["unconsumed"]] == [
        (prefix + "skipper", orders, int(offsets[1][0]))
    ]
    assert [(f["group"], f["topic"], f["error_type"], f["count"], f["retried"]) for f in doc["failures"]] == [
        (prefix + "notification", orders, "SmsFailed", 1, 1)
    ]
    assert doc["sagas"] == [
        {"rule": SAGA, "started": 2, "finished": 1, "compensated": 1, "stuck": 0, "pending": 0}
    ]
    assert doc["stuck_sagas"] == [] and doc["dead_lettered"] == []

    gate = cli(*args[:-1], "--fail-on", "ordering,unconsumed,stuck")
    assert gate.code == 1
    assert gate.err.strip() == "eventchain: audit failed: 1 ordering, 1 unconsumed"
