"""Helpers for the reliability tests: figures, stack outages, memory of a subprocess.

Figures go to ``.stack/reliability-figures.json`` (one entry per test, merged) and are
printed, so the README can quote what a run measured.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.stack import (
    REPO_ROOT,
    in_ci,
    jaeger_trace,
    kafka_bootstrap,
    otlp_endpoint,
    venv_python,
)

FIGURES_PATH = REPO_ROOT / ".stack" / "reliability-figures.json"
STACK_SCRIPT = REPO_ROOT / "scripts" / "stack.sh"

# Figures recorded by this pytest session, printed in the terminal summary.
session_figures: dict[str, dict[str, Any]] = {}


# ------------------------------------------------------------------------------ figures


TOTALLED = ("messages_tried", "messages_lost", "exceptions", "outage_seconds")


def totals(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The README's headline figures, summed over the tests' entries."""
    summed: dict[str, Any] = {
        name: round(sum(e.get(name) or 0 for key, e in entries.items() if key != "totals"), 1)
        for name in TOTALLED
    }
    summed["outages_survived"] = sum(
        1 for key, e in entries.items() if key != "totals" and e.get("outage_seconds")
    )
    return summed


def record_figures(test: str, figures: dict[str, Any]) -> None:
    """Merge one test's figures into the figures file (and its totals) and print them."""
    entry = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    session_figures[test] = entry
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(FIGURES_PATH.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = json.loads(FIGURES_PATH.read_text()) if FIGURES_PATH.exists() else {}
        except ValueError:
            current = {}
        current[test] = entry
        current["totals"] = totals(current)
        tmp = FIGURES_PATH.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        tmp.replace(FIGURES_PATH)
    print(f"figures {test}: {json.dumps(entry, sort_keys=True)}")


# ------------------------------------------------------------------------------ outages


def _stack(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    # Restarting a component is part of whatever started the stack: `up` must not turn a
    # stack that a test run started into one started by hand (it would stay up afterwards).
    env = {**os.environ, "KET_STACK_FROM_RUN": "1"}
    return subprocess.run(
        [str(STACK_SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _status_line(component: str) -> list[str]:
    status = _stack("status", timeout=60)
    for line in status.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == component:
            return fields
    raise AssertionError(f"stack.sh status said nothing about {component}:\n{status.stdout}{status.stderr}")


def component_state(component: str) -> str:
    """``up``, ``starting``, ``down`` or ``foreign`` (answers, but not started from this checkout)."""
    return _status_line(component)[1]


def _host_port(address: str) -> str:
    return address.split("://", 1)[-1].rstrip("/")


def _require_controllable(component: str) -> None:
    """Skip (fail in CI) unless the tests talk to this checkout's stack, which it can stop."""
    import pytest

    fields = _status_line(component)
    # "kafka up pid N bootstrap HOST:PORT ..." / "jaeger up pid N OTLP grpc HOST:PORT ..."
    marker = {"kafka": "bootstrap", "jaeger": "grpc"}[component]
    served = fields[fields.index(marker) + 1] if marker in fields else "?"
    used = _host_port({"kafka": kafka_bootstrap, "jaeger": otlp_endpoint}[component]())
    problem = None
    if fields[1] != "up":
        problem = f"{component} is {fields[1]}: only a stack started from this checkout can be stopped"
    elif served != used:
        problem = f"the tests use {component} at {used}, this checkout's stack serves {served}"
    if problem:
        if in_ci():
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


class Outage:
    """One stack component, stopped; ``restart()`` brings it back and measures the gap."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.stopped_at = 0.0
        self.ready_at: float | None = None

    def stop(self) -> None:
        self.stopped_at = time.monotonic()
        result = _stack("down", self.component)
        if result.returncode != 0 or component_state(self.component) != "down":
            raise AssertionError(f"could not stop {self.component}:\n{result.stdout}{result.stderr}")

    def restart(self) -> float:
        """Start the component again and wait until it answers; returns the outage in seconds."""
        if self.ready_at is None:
            result = _stack("up")
            if result.returncode != 0:
                raise AssertionError(f"could not restart {self.component}:\n{result.stdout}{result.stderr}")
            self.ready_at = time.monotonic()
        return self.seconds

    @property
    def seconds(self) -> float:
        end = self.ready_at if self.ready_at is not None else time.monotonic()
        return round(end - self.stopped_at, 1)


@contextlib.contextmanager
def outage(component: str) -> Iterator[Outage]:
    """Stop ``kafka`` or ``jaeger`` of the local stack; it is running again afterwards, whatever happens."""
    _require_controllable(component)
    handle = Outage(component)
    try:
        handle.stop()
        yield handle
    finally:
        handle.restart()


def find_spans(trace_id: str, names: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The spans of a trace by name: as soon as Jaeger has one of each name in ``names``, else
    whatever it has when ``timeout`` passes (nothing when it does not know the trace).

    (An export retried after a slow answer can store a span twice: names, not counts.)
    """
    deadline = time.monotonic() + timeout
    spans: dict[str, dict[str, Any]] = {}
    while True:
        left = max(1.0, deadline - time.monotonic())
        try:
            trace = jaeger_trace(trace_id, expect_spans=1, timeout=left)
        except AssertionError:  # not in Jaeger (yet) when the time was up
            return spans
        spans = {s["operationName"]: s for s in trace["spans"]}
        if names <= set(spans) or time.monotonic() >= deadline:
            return spans
        time.sleep(0.5)


def jaeger_spans(trace_id: str, names: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The spans of a trace by name, once Jaeger has one of each name in ``names`` (fails if not)."""
    spans = find_spans(trace_id, names, timeout)
    assert names <= set(spans), f"trace {trace_id} has {sorted(spans)}, not all of {sorted(names)}"
    return spans


# ------------------------------------------------------------------------- measuring


class Deadline:
    """A ``stop`` for ``TracedConsumer.run``: true once ``done()`` holds or ``seconds`` have passed.

    A loop that never gets where the test expects ends after ``seconds`` (``expired`` is then
    True), and the test says what it got instead of running into pytest's timeout.
    """

    def __init__(self, seconds: float, done: Callable[[], bool] = lambda: False) -> None:
        self.seconds = seconds
        self.done = done
        self.expired = False
        self._end = time.monotonic() + seconds

    def __call__(self) -> bool:
        if self.done():
            return True
        self.expired = time.monotonic() >= self._end
        return self.expired


class ExceptionCount:
    """Counts the exceptions raised by the calls made under ``watch()``; they still propagate.

    Tests record ``len(count)`` as their ``exceptions`` figure (in a ``finally``, so a run that
    hit one records it too).
    """

    def __init__(self) -> None:
        self.raised: list[str] = []

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.raised.append(f"{type(exc).__name__}: {exc}")
            raise

    def __len__(self) -> int:
        return len(self.raised)


# ------------------------------------------------------------------------------ memory


def rss_kb(pid: int) -> int | None:
    """Resident set size of a process from /proc, in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples a process's RSS in the background, each sample tagged with the current phase."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.phase = "start"
        self.samples: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_kb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), self.phase, value))
            self._stop.wait(self.interval)

    def of(self, phase: str) -> list[int]:
        return [kb for _, p, kb in self.samples if p == phase]


# ------------------------------------------------------------------------------ workers


class Worker:
    """A Python script in its own OS process: send it a line, read its JSON answers.

    stdout carries one JSON object per line; stderr goes to a file (shown on failure).
    """

    def __init__(self, script: Path, *args: str) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [venv_python(), str(script), *args],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "KET_KAFKA_BOOTSTRAP": kafka_bootstrap(),
                "KET_OTLP_ENDPOINT": otlp_endpoint(),
                "PYTHONUNBUFFERED": "1",
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put("")

    @property
    def name(self) -> str:
        return Path(self.proc.args[1]).name  # type: ignore[index]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, command: str) -> None:
        try:
            self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            unread = []
            while not self._lines.empty():
                unread.append(self._lines.get())
            raise AssertionError(
                f"{self.name} exited ({self.proc.wait(10)}) before {command!r}; it said:\n"
                f"{''.join(unread)}\n--- stderr ---\n{self.log()}"
            ) from None

    def answer(self, timeout: float = 90) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if not line:
            raise AssertionError(f"{self.name} gave no answer (exit {self.proc.poll()}):\n{self.log()}")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 90) -> dict[str, Any]:
        self.send(command)
        return self.answer(timeout)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-8000:]

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.stderr.close()
