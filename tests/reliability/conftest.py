"""Reliability tests: the figures each test measured are printed at the end of the run."""

from __future__ import annotations

import json

import pytest

from tests.reliability.support import FIGURES_PATH, session_figures, totals


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "outage: stops and restarts a component of the local stack (other users of it notice)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not session_figures:
        return
    terminalreporter.section("reliability figures")
    for test, figures in session_figures.items():
        shown = {k: v for k, v in figures.items() if k != "recorded_at"}
        terminalreporter.write_line(f"{test}: {json.dumps(shown, sort_keys=True)}")
    terminalreporter.write_line(f"this run, in all: {json.dumps(totals(session_figures), sort_keys=True)}")
    terminalreporter.write_line(f"(merged into {FIGURES_PATH})")
