"""``python -m tracing.demo --serve`` (``make demo-serve``): the embedded demo's services export over
OTLP/HTTP to an ``eventchain serve --live`` this starts, and the chains are the trees it prints as
they settle: what a developer sees of their own services, with no collector or Jaeger.

The spans are kept in a store in a new temporary folder (named at the end, for ``eventchain list
--store``); the user's default store is not touched.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from rich.console import Console

from tracing.demo import scenario
from tracing.demo.embedded import WARM_UP_S, EmbeddedRun, _console

SETTLE_S = 1.0
WAIT_S = 60.0


class _Serve:
    """An ``eventchain serve --live`` process; its lines are passed on to this terminal as they come."""

    def __init__(self, store: Path, width: int, color: bool) -> None:
        command = [
            sys.executable, "-m", "tracing", "serve", "--http", "127.0.0.1:0", "--store", str(store),
            "--live", "--settle", str(SETTLE_S), "--width", str(width),
            "--color", "always" if color else "never",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        for stream, lines, sink in (
            (self.proc.stdout, self.out, sys.stdout),
            (self.proc.stderr, self.err, sys.stderr),
        ):
            threading.Thread(target=self._pass_on, args=(stream, lines, sink), daemon=True).start()

    def _pass_on(self, stream: IO[str] | None, lines: list[str], sink: IO[str]) -> None:
        for line in stream or ():
            sink.write(line)
            sink.flush()
            with self._changed:
                lines.append(line)
                self._changed.notify_all()

    def wait_for(self, lines: list[str], text: str) -> str | None:
        """The first line holding ``text`` (None when serve exits or WAIT_S passes without one)."""
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while True:
                found = next((x for x in lines if text in x), None)
                if found is not None or self.proc.poll() is not None or time.monotonic() > deadline:
                    return found
                self._changed.wait(timeout=0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def run(console: Console | None = None) -> int:
    """Start serve, run the story with every service exporting to it, print its trees; the exit code."""
    console = console or _console()
    width = console.width
    store = Path(tempfile.mkdtemp(prefix="eventchain-demo-")) / "spans.sqlite"
    serve = _Serve(store, width, console.is_terminal and console.color_system is not None)
    listening = serve.wait_for(serve.err, "listening:")
    if listening is None:
        serve.stop()
        console.print("eventchain serve did not start (its lines are above): run make venv, then try again")
        return 1
    url = listening.split("http://", 1)[1].split("/v1/traces", 1)[0]
    console.print(
        f"[bold]Event-chain demo through eventchain serve[/]: six services on librdkafka's in-process mock "
        f"cluster export over OTLP/HTTP to http://{url}; serve prints each chain when it settles."
    )
    missing = []
    demo = EmbeddedRun(log_stream=console.file, endpoint=f"http://{url}")
    try:
        demo.warm_up(WARM_UP_S)
        for number, step in enumerate(scenario.STEPS, 1):
            console.print(f"\n[bold]{number}. {step.title[0].upper()}{step.title[1:]}[/]")
            chain = demo.play(step)
            for provider in demo.providers:
                provider.force_flush()  # the batch processors send now, not in up to 5 s
            if serve.wait_for(serve.out, f"settled {chain.trace_id}") is None:
                missing.append(chain.trace_id)
    finally:
        demo.close()
        code = serve.stop()
    if missing:
        console.print(f"serve printed no tree for {', '.join(missing)}: its lines above say why")
    console.print(
        f"\nThe spans stay in {store}: [bold]eventchain list --store {store}[/] "
        f"(and tree, find, audit) read them.",
        soft_wrap=True,
    )
    return 1 if missing or code else 0
