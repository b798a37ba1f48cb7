"""The managed loop through rebalances, on the real broker: members join, leave and are killed
mid-stream, and every message is handled — none twice on a clean change, and after a SIGKILL
fewer than ``2 * commit_every`` again.

Each member is a process running ``TracedConsumer.run`` with the default commits
(``_group_member.py``); a producer keeps a stream going (a backlog first, then a steady rate)
while the group changes, so the rebalance happens while messages are being handled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests import stack
from tests.reliability.support import record_figures

HERE = Path(__file__).parent
PARTITIONS = 4
BACKLOG = 3000
RATE = 400  # messages/s after the backlog, while the group changes
HANDLER_MS = 1.0
WAIT_S = 180  # for any one condition; the test says what it saw when it runs out

# (group.protocol, assignor): the classic protocol's eager and cooperative assignors, and
# KIP-848's broker-side assignment (librdkafka 2.12+ with Kafka 4.x; Kafka 4.1 here).
GROUPS = [
    pytest.param("classic", "range", id="classic-range"),
    pytest.param("classic", "roundrobin", id="classic-roundrobin"),
    pytest.param("classic", "cooperative-sticky", id="classic-cooperative-sticky"),
    pytest.param("consumer", "uniform", id="kip848-consumer-uniform"),
]


class Member:
    """A group member process; its reports are read in the background."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.handled: list[int] = []
        self.events: list[dict[str, Any]] = []
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_group_member.py"), json.dumps({**spec, "client_id": name})],
            env={**os.environ, "KET_KAFKA_BOOTSTRAP": stack.kafka_bootstrap(), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("h "):
                parts = line.split()
                if len(parts) == 4:  # a line cut by SIGKILL is not a handled message
                    self.handled.append(int(parts[3]))
            elif line.startswith("{"):
                self.events.append(json.loads(line))

    def named(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == kind]

    def stop(self) -> dict[str, Any]:
        """Stop the loop cleanly; its ``closed`` report."""
        self.proc.stdin.write("stop\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        self.proc.wait(60)
        self._reader.join(30)
        (closed,) = self.named("closed") or [None]
        assert closed is not None, f"{self.name} closed without a report:\n{self.log()}"
        return closed

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(30)

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-6000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


class Stream:
    """Sends a backlog, then a steady rate, until stopped; values are sequence numbers."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.sent = 0
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": stack.kafka_bootstrap(), "linger.ms": 5})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self._send(BACKLOG)
        self._producer.flush(30)
        self._thread.start()
        return self

    def _send(self, n: int) -> None:
        for _ in range(n):
            self._producer.produce(self.topic, str(self.sent).encode(), partition=self.sent % PARTITIONS)
            self.sent += 1
        self._producer.poll(0)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._send(RATE // 20)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(30)
        assert self._producer.flush(30) == 0, "the stream's messages were not all delivered"
        return self.sent


def wait_for(what: str, condition: Any, members: list[Member], seconds: float = WAIT_S) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {m.name} ({len(m.handled)} handled) ---\n{m.log()}" for m in members)
            raise AssertionError(f"waited {seconds} s for {what}:\n{logs}")
        time.sleep(0.1)


def group_spec(topic: str, protocol: str, assignor: str, **run: Any) -> dict[str, Any]:
    return {
        "topic": topic,
        "group": f"rebalance-{uuid.uuid4().hex[:8]}",
        "protocol": protocol,
        "assignor": assignor,
        "handler_ms": HANDLER_MS,
        "run": run,
    }


def all_handled(members: list[Member], n: int) -> bool:
    seen: set[int] = set()
    for m in members:
        seen.update(m.handled)
    return len(seen) >= n and all(i in seen for i in range(n))


def twice(members: list[Member]) -> dict[int, int]:
    counts = Counter(v for m in members for v in m.handled)
    return {v: c for v, c in counts.items() if c > 1}


def check_revocations(member: Member) -> None:
    """Every revocation was of partitions the member owned, each once, after their commit."""
    for e in member.named("assigned"):
        assert e["doubles"] == [], f"{member.name} was assigned partitions it owned: {e}"
    for e in member.named("revoked"):
        assert e["not_owned"] == [], f"{member.name}: on_revoke for partitions it did not own: {e}"
        assert e["commit_behind"] == {}, f"{member.name}: on_revoke ran before the commit: {e}"


@pytest.fixture
def topic(real_stack):
    return stack.create_topic(
        real_stack.kafka_bootstrap, stack.unique_topic("rebalance"), partitions=PARTITIONS
    )


@pytest.mark.parametrize(("protocol", "assignor"), GROUPS)
@pytest.mark.parametrize("commits", ["default", "interval"])
def test_a_member_joining_mid_stream_makes_no_duplicates(topic, protocol, assignor, commits):
    run = {} if commits == "default" else {"commit_interval": 0.5, "commit_every": 100_000}
    spec = group_spec(topic, protocol, assignor, **run)
    members: list[Member] = []
    stream = Stream(topic)
    try:
        first = Member("first", spec)
        members.append(first)
        stream.start()
        wait_for("the first member to handle 500 messages", lambda: len(first.handled) >= 500, members)
        second = Member("second", spec)
        members.append(second)
        wait_for("the second member to handle 300 messages", lambda: len(second.handled) >= 300, members)
        # Taken while both handle the stream: the first gave partitions up mid-stream.
        assert first.named("revoked"), f"the first member saw no revocation: {first.events}"
        sent = stream.stop()
        wait_for(f"all {sent} messages to be handled", lambda: all_handled(members, sent), members)
        closed = [m.stop() for m in members]
        assert [c["error"] for c in closed] == [None, None], closed
        assert twice(members) == {}, f"handled twice: {dict(list(twice(members).items())[:20])}"
        for m in members:
            check_revocations(m)
            assert m.named("closed")[0]["owned_after_close"] == []  # each assignment revoked once
        record_figures(
            f"rebalance_join_{protocol}_{assignor}_{commits}",
            {"messages_tried": sent, "messages_lost": 0, "duplicates": 0, "exceptions": 0},
        )
    finally:
        stream.stop() if not stream._stop.is_set() else None
        for m in members:
            m.close()


@pytest.mark.parametrize(("protocol", "assignor"), GROUPS)
def test_a_member_leaving_mid_stream_makes_no_duplicates(topic, protocol, assignor):
    spec = group_spec(topic, protocol, assignor)
    members: list[Member] = []
    stream = Stream(topic)
    try:
        first, second = Member("first", spec), Member("second", spec)
        members += [first, second]
        stream.start()
        wait_for(
            "both members to handle 300 messages",
            lambda: len(first.handled) >= 300 and len(second.handled) >= 300,
            members,
        )
        left = second.stop()  # mid-stream: it has a backlog and handled-but-uncommitted offsets
        assert left["error"] is None, left
        after = len(first.handled)
        wait_for("the first member to take over", lambda: len(first.handled) >= after + 500, members)
        sent = stream.stop()
        wait_for(f"all {sent} messages to be handled", lambda: all_handled(members, sent), members)
        assert first.stop()["error"] is None
        assert twice(members) == {}, f"handled twice: {dict(list(twice(members).items())[:20])}"
        for m in members:
            check_revocations(m)
        record_figures(
            f"rebalance_leave_{protocol}_{assignor}",
            {"messages_tried": sent, "messages_lost": 0, "duplicates": 0, "exceptions": 0},
        )
    finally:
        stream.stop() if not stream._stop.is_set() else None
        for m in members:
            m.close()


@pytest.mark.parametrize(
    ("protocol", "assignor"),
    [pytest.param("classic", "range", id="classic-range"), pytest.param("consumer", "uniform", id="kip848")],
)
def test_a_member_killed_mid_stream_loses_nothing_and_repeats_less_than_two_commit_intervals(
    topic, protocol, assignor
):
    commit_every = 200
    spec = group_spec(topic, protocol, assignor, commit_every=commit_every, commit_interval=5.0)
    members: list[Member] = []
    stream = Stream(topic)
    try:
        first, second = Member("first", spec), Member("second", spec)
        members += [first, second]
        stream.start()
        wait_for(
            "both members to handle 500 messages",
            lambda: len(first.handled) >= 500 and len(second.handled) >= 500,
            members,
        )
        second.kill()
        # The broker gives the killed member's partitions away after its session timeout.
        after = len(first.handled)
        wait_for("the first member to take over", lambda: len(first.handled) >= after + 1000, members)
        sent = stream.stop()
        wait_for(f"all {sent} messages to be handled", lambda: all_handled(members, sent), members)
        assert first.stop()["error"] is None
        repeated = twice(members)
        figures = {
            "messages_tried": sent,
            "messages_lost": 0,
            "exceptions": 0,
            "duplicates_after_sigkill": sum(c - 1 for c in repeated.values()),
            "duplicate_bound": 2 * commit_every - 1,
        }
        record_figures(f"rebalance_sigkill_{protocol}_{assignor}", figures)
        assert max(repeated.values(), default=1) <= 2, repeated
        assert len(repeated) <= 2 * commit_every - 1, figures
        check_revocations(first)
    finally:
        stream.stop() if not stream._stop.is_set() else None
        for m in members:
            m.close()
