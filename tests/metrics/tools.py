"""The programs the structural tests run, and what a test does when one is missing.

`make test` runs `scripts/metrics-stack.sh install` before pytest: it installs Prometheus (which
brings promtool) and builds the collector; `scripts/stack.sh` builds Jaeger. Outside CI a missing
program skips the test that needs it; under CI (CI=true) it fails it, since nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

from tests.stack import in_ci


def promtool() -> str | None:
    """promtool next to KET_PROMETHEUS_BIN (when set), else the one on PATH."""
    prometheus = os.environ.get("KET_PROMETHEUS_BIN")
    if prometheus:
        candidate = Path(prometheus).parent / "promtool"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("promtool")


def missing(what: str, how: str) -> NoReturn:
    """Skip the current test because `what` is missing (`how` says how to get it); fail under CI."""
    message = f"{what} not found: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: `make test` must have prepared it before pytest)", pytrace=False)
    pytest.skip(message)
