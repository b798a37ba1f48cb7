"""The managed processing loop: at-least-once handling with retries and a dead-letter topic.

``TracedConsumer.run(handler)`` polls, calls ``handler(msg)`` inside the message's
process span, and commits the offset only after the handler succeeded. A failing
message is retried with exponential backoff; then it is either sent to the
dead-letter topic (original key, value and headers, the trace continued, error
details in headers) and committed, or the loop stops WITHOUT committing it and
re-raises the handler's exception, so a restarted consumer gets it again.

Committing (``commit=``):

- ``"periodic"`` (default): what was handled is committed asynchronously once
  ``commit_every`` messages were handled since the last commit was sent, or
  ``commit_interval`` seconds passed since then; when that time comes and the broker has
  not confirmed the previous asynchronous commit yet (or refused it), this one is made
  synchronously, so at most one commit is ever unconfirmed. What was handled for a
  partition is also committed synchronously before the partition is revoked (eager and
  cooperative rebalances alike, before the user's ``on_revoke``), when the loop stops and
  so before the consumer closes. A SIGKILL therefore delivers again at most the messages
  handled since the last confirmed commit: fewer than ``2 * commit_every``. A clean scale-out
  or scale-in delivers nothing twice.
- ``"after-success"``: a synchronous commit after every message: nothing is handled twice
  even after a crash, at the price of one broker round trip per message.
- None: committing is left to the caller.

Offsets are never committed for a partition no longer owned: a revoked partition's
offsets are committed in the revoke callback (while the group still waits for this
member) and then forgotten; a lost partition's are forgotten (its next owner starts from
the last commit: those messages come again, none is lost). A commit the group coordinator
cannot take right now (the broker restarting, the coordinator moving) does not stop the
loop: commits are cumulative per partition, so the offset goes with the next commit, and
is tried again before ``run`` returns.

Rebalance callbacks run inside ``poll``, between messages: a message being handled
(retries and their backoff included) finishes, gets its one process span, and is committed
before its partition goes to another consumer.

SIGTERM and SIGINT stop the loop between messages: the in-flight message finishes
(and is committed) first. Spans are flushed before ``run`` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from opentelemetry import trace

from tracing.write.rebalance import CommitAnswers

logger = logging.getLogger("tracing.loop")
_monotonic = time.monotonic

# Headers added to a dead-lettered message (the original headers are kept).
DLQ_ORIGINAL_TOPIC = "dlq.original.topic"
DLQ_ORIGINAL_PARTITION = "dlq.original.partition"
DLQ_ORIGINAL_OFFSET = "dlq.original.offset"
DLQ_CONSUMER_GROUP = "dlq.consumer.group"
DLQ_ERROR_TYPE = "dlq.error.type"
DLQ_ERROR_MESSAGE = "dlq.error.message"
DLQ_ATTEMPTS = "dlq.attempts"
_DLQ_KEYS = frozenset(
    {
        DLQ_ORIGINAL_TOPIC,
        DLQ_ORIGINAL_PARTITION,
        DLQ_ORIGINAL_OFFSET,
        DLQ_CONSUMER_GROUP,
        DLQ_ERROR_TYPE,
        DLQ_ERROR_MESSAGE,
        DLQ_ATTEMPTS,
    }
)
_MAX_ERROR_MESSAGE = 1024
_ATTEMPTS = "messaging.process.attempts"  # on a failed process span: how many times it was tried
_FINAL_COMMIT_S = 10.0  # how long run() keeps trying to commit what is pending when it ends
_REVOKE_COMMIT_S = 5.0  # how long a revoke waits for the coordinator (the group waits for us meanwhile)

# Commit errors that pass: the coordinator is loading, moving or out of reach.
_COMMIT_LATER = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.UNSTABLE_OFFSET_COMMIT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RETRY,
        KafkaError._IN_PROGRESS,
    }
)
# Commit errors that mean the group moved on: the partition's next owner starts from the
# last committed offset, so the offset is dropped (the messages may come again, never lost).
_GROUP_MOVED_ON = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError.FENCED_MEMBER_EPOCH,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._STATE,
    }
)


@dataclass
class RunStats:
    """What a ``run()`` did: handy for logs, tests and shutdown messages."""

    processed: int = 0
    failed: int = 0
    retries: int = 0
    dead_lettered: int = 0
    commits_deferred: int = 0  # commits the coordinator could not take; carried to the next one
    stopped_by: str = ""


class _Stop:
    """Stop requests from a signal, an Event, or a callable."""

    def __init__(self, stop: Any) -> None:
        self._event = threading.Event()
        self._hit = False  # read once per message: a plain attribute
        self._check: Callable[[], Any] | None = (
            None if stop is None else stop.is_set if hasattr(stop, "is_set") else stop
        )
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._hit = True
        self._event.set()

    def requested(self) -> bool:
        if self._hit:
            return True
        check = self._check
        if check is None or not check():
            return False
        self.set("stop")
        return True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was requested meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.requested():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.wait(min(left, 0.1))
        return True


def _install_signals(stop: _Stop) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda n, _f: stop.set(signal.Signals(n).name))
    return previous


_COMMIT_MODES = ("periodic", "after-success", None)


def run(
    consumer: Any,
    handler: Callable[[Any], Any],
    *,
    commit: str | None = "periodic",
    commit_interval: float = 1.0,
    commit_every: int = 1000,
    retries: int = 0,
    backoff: float = 0.2,
    max_backoff: float = 10.0,
    dead_letter_topic: str | None = None,
    dead_letter_producer: Any = None,
    stop: Any = None,
    poll_timeout: float = 0.5,
    handle_signals: bool = True,
) -> RunStats:
    """Process messages until stopped; see the module docstring.

    >>> consumer = TracedConsumer({..., "group.id": "inventory", "enable.auto.commit": False})
    >>> consumer.subscribe(["orders"])
    >>> consumer.run(reserve_stock, retries=2, dead_letter_topic="orders.dlq")

    Args:
        consumer: a ``TracedConsumer``, subscribed through it (so that revocations are
            seen) or assigned.
        handler: called with each message inside its process span.
        commit: ``"periodic"`` (default): asynchronous commits every ``commit_every``
            messages or ``commit_interval`` seconds, synchronous ones before a revoke and
            at stop; a crash delivers again fewer than ``2 * commit_every`` messages.
            ``"after-success"``: a synchronous commit after every message (nothing twice
            after a crash; one broker round trip per message). None: you commit.
        commit_interval: seconds between periodic commits (at most).
        commit_every: messages between periodic commits (at most).
        retries: extra attempts after a failure, ``backoff * 2**n`` seconds apart
            (capped at ``max_backoff``); each retry is an event on the span.
        dead_letter_topic: where a message goes when every attempt failed; without
            it the loop stops, uncommitted, and re-raises the handler's exception.
        dead_letter_producer: a ``TracedProducer`` for the dead-letter topic (built
            from the consumer's ``bootstrap.servers`` when omitted).
        stop: a ``threading.Event`` or a callable returning True to stop.
        handle_signals: stop cleanly on SIGTERM/SIGINT (main thread only).
    """
    if commit not in _COMMIT_MODES:
        raise ValueError(f"commit must be 'periodic', 'after-success' or None, not {commit!r}")
    if commit == "periodic" and (commit_every < 1 or commit_interval <= 0):
        raise ValueError("commit_every must be at least 1 and commit_interval above 0")
    config = _config_of(consumer)
    if commit and str(config.get("enable.auto.commit", "")).lower() in ("true", "1"):
        raise ValueError("run() commits after success: build the consumer with 'enable.auto.commit': False")
    stopper = _Stop(stop)
    previous = _install_signals(stopper) if handle_signals else {}
    stats = RunStats()
    dlq = None
    committer = _Committer(consumer, stats, commit == "periodic", commit_interval, commit_every)
    listen = getattr(consumer, "add_partition_listener", None)
    stop_listening = listen(committer) if commit and listen is not None else None
    poll = consumer.poll
    process = consumer.process
    try:
        while not stopper.requested():
            msg = poll(poll_timeout)
            if msg is None:
                if commit:
                    committer.idle()
                continue
            if msg.error() is not None:
                _on_client_error(msg.error())
                continue
            block = process(msg)
            with block:
                try:
                    handler(msg)
                    ok = True
                except Exception as first:
                    ok, error, attempts = _retry(
                        block, msg, handler, first, retries, backoff, max_backoff, stopper, stats
                    )
                if not ok and dead_letter_topic is not None:
                    if dlq is None:
                        dlq = dead_letter_producer or _producer_for(consumer, config)
                    # Sent while the failed processing is current: the dead-letter send
                    # continues the same trace as its child.
                    _dead_letter(dlq, dead_letter_topic, msg, error, attempts, config.get("group.id"))
            if not ok:
                stats.failed += 1
                if dead_letter_topic is None:
                    stats.stopped_by = "handler error"
                    raise error  # type: ignore[misc]  # uncommitted: the next consumer gets it again
                stats.dead_lettered += 1
            else:
                stats.processed += 1
            if commit:
                committer.handled(msg)
        stats.stopped_by = stopper.reason or "stop"
        return stats
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
        try:
            if committer:
                committer.commit_before_leaving()
        finally:
            if stop_listening is not None:
                stop_listening()
            _flush_spans(consumer)
            if dlq is not None and dead_letter_producer is None:
                dlq.flush(10)


def _retry(
    block: Any,
    msg: Any,
    handler: Callable[[Any], Any],
    first: Exception,
    retries: int,
    backoff: float,
    max_backoff: float,
    stopper: _Stop,
    stats: RunStats,
) -> tuple[bool, BaseException | None, int]:
    """The handler failed once with ``first``: retry with backoff; (succeeded, last error, attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if attempt > 1:
                handler(msg)
                return True, None, attempt
            raise first
        except Exception as exc:
            if attempt > retries or stopper.requested():
                block.fail(exc, **{_ATTEMPTS: attempt})
                return False, exc, attempt
            delay = min(max_backoff, backoff * (2 ** (attempt - 1)))
            block.add_event(
                "retry",
                {"retry.attempt": attempt, "retry.delay_s": delay, "exception.type": type(exc).__qualname__},
            )
            stats.retries += 1
            if stopper.wait(delay):
                block.fail(exc, **{_ATTEMPTS: attempt})
                return False, exc, attempt


def _dead_letter(
    producer: Any, topic: str, msg: Any, error: BaseException | None, attempts: int, group: Any
) -> None:
    """Send ``msg`` to the dead-letter topic and wait for the broker to confirm it."""
    headers = [(k, v) for k, v in (msg.headers() or []) if k not in _DLQ_KEYS]
    headers += [
        (DLQ_ORIGINAL_TOPIC, msg.topic()),
        (DLQ_ORIGINAL_PARTITION, str(msg.partition())),
        (DLQ_ORIGINAL_OFFSET, str(msg.offset())),
        (DLQ_ERROR_TYPE, type(error).__qualname__ if error is not None else "unknown"),
        (DLQ_ERROR_MESSAGE, str(error)[:_MAX_ERROR_MESSAGE]),
        (DLQ_ATTEMPTS, str(attempts)),
    ]
    if group:
        headers.append((DLQ_CONSUMER_GROUP, str(group)))
    failures: list[Any] = []
    producer.produce(
        topic, msg.value(), msg.key(), headers=headers, on_delivery=lambda e, m: failures.append(e)
    )
    producer.flush(30)
    if not failures or failures[0] is not None:
        raise RuntimeError(
            f"could not dead-letter {msg.topic()}[{msg.partition()}]@{msg.offset()} to {topic}: "
            f"{failures[0] if failures else 'no delivery report within 30 s'}; the offset is not committed"
        )


class _Committer:
    """Offsets handled and not committed yet, per partition, and when to commit them.

    ``_pending``: handled since the last commit was sent. ``_unconfirmed``: sent in the
    last asynchronous commit, which the broker has not confirmed yet. A commit covers what
    precedes it in its partition, so committing an offset again is harmless.
    """

    def __init__(self, consumer: Any, stats: RunStats, periodic: bool, interval: float, every: int) -> None:
        self._consumer = consumer
        self._stats = stats
        self._periodic = periodic
        self._interval = interval
        self._every = every
        self._pending: dict[tuple[str, int], int] = {}
        self._unconfirmed: dict[tuple[str, int], int] = {}
        self._since = 0  # messages handled since the last commit was sent
        self._sent_at = time.monotonic()
        # Without the answers (a client built elsewhere) every periodic commit is synchronous.
        self._answers: CommitAnswers | None = getattr(consumer, "commit_answers", None)
        self._answered_before = 0  # answers counted when the last asynchronous commit was sent
        self._deferring = False

    def __bool__(self) -> bool:
        return bool(self._pending or self._unconfirmed)

    # -- the loop's side ------------------------------------------------------------
    def handled(self, msg: Any) -> None:
        self._pending[(msg.topic(), msg.partition())] = msg.offset() + 1
        if self._periodic:
            self._since += 1
            if self._since >= self._every or _monotonic() - self._sent_at >= self._interval:
                self._due()
        else:
            self._commit_now()

    def idle(self) -> None:
        """Nothing arrived: commit what is pending once the interval has passed."""
        if self._pending and time.monotonic() - self._sent_at >= self._interval:
            self._due()
        elif self._unconfirmed and self._confirmed():
            self._unconfirmed.clear()

    def _due(self) -> None:
        self._since = 0
        self._sent_at = time.monotonic()
        answers = self._answers
        if answers is None or self._deferring or (self._unconfirmed and not self._confirmed()):
            self._commit_now()
            return
        # The previous asynchronous commit went through: send this one and go on.
        self._unconfirmed = self._pending
        self._pending = {}
        self._answered_before = answers.answered
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._unconfirmed.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException:
            self._commit_now()  # refused at once (e.g. no coordinator yet): the synchronous path sorts it out

    def _confirmed(self) -> bool:
        answers = self._answers
        return answers is not None and answers.answered > self._answered_before and answers.last_ok

    def _commit_now(self) -> bool:
        """Commit everything handled, synchronously; True when nothing is left."""
        offsets = {**self._unconfirmed, **self._pending}
        self._unconfirmed = {}
        self._pending = offsets
        return self._commit(offsets)

    # -- rebalances (called inside poll, between messages) ---------------------------
    def partitions_revoked(self, partitions: list[TopicPartition]) -> None:
        """Commit what was handled for these partitions while they are still ours."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        offsets = {key: o for key, o in {**self._unconfirmed, **self._pending}.items() if key in gone}
        if offsets:
            deadline = time.monotonic() + _REVOKE_COMMIT_S
            while not self._commit(offsets) and time.monotonic() < deadline:
                time.sleep(0.2)
            if offsets:
                logger.warning(
                    "offsets %s not committed before their partitions were revoked: "
                    "the next owner gets those messages again",
                    offsets,
                )
        self._forget(gone)

    def partitions_lost(self, partitions: list[TopicPartition]) -> None:
        """Lost (the group moved on without us): another member may own them, commit nothing."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        dropped = {k: o for k, o in {**self._unconfirmed, **self._pending}.items() if k in gone}
        if dropped:
            logger.warning(
                "partitions lost before offsets %s were committed: "
                "their next owner gets those messages again",
                dropped,
            )
        self._forget(gone)

    def _forget(self, gone: set[tuple[str, int]]) -> None:
        for key in gone:
            self._pending.pop(key, None)
            self._unconfirmed.pop(key, None)

    # -- committing -------------------------------------------------------------------
    def _commit(self, next_offsets: dict[tuple[str, int], int]) -> bool:
        """Commit ``next_offsets`` synchronously, emptying it; True when nothing is left.

        A passing coordinator problem keeps the offsets for the next commit; an error
        that will not pass (authorization, a fatal client error) is raised.
        """
        stats = self._stats
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False) or ()
            errors = [(tp, tp.error) for tp in results if tp.error is not None]
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            errors = [(tp, error) for tp in offsets]
        for tp, error in errors:
            code = error.code() if isinstance(error, KafkaError) else None
            if code == KafkaError._NO_OFFSET:
                continue
            if code in _GROUP_MOVED_ON:
                logger.warning(
                    "offset %s of %s[%s] not committed (%s): the group rebalanced; "
                    "the partition's owner continues from its last commit",
                    tp.offset,
                    tp.topic,
                    tp.partition,
                    error,
                )
                next_offsets.pop((tp.topic, tp.partition), None)
                continue
            if code in _COMMIT_LATER or (isinstance(error, KafkaError) and error.retriable()):
                stats.commits_deferred += 1
                if not self._deferring:
                    logger.warning("commit deferred (%s): it goes with the next one", error)
                self._deferring = True
                return False
            raise KafkaException(error) if isinstance(error, KafkaError) else RuntimeError(str(error))
        if self._deferring:
            logger.info("commits go through again")
        self._deferring = False
        next_offsets.clear()
        return True

    def commit_before_leaving(self) -> None:
        """Keep trying for a few seconds; what stays uncommitted is delivered again later."""
        deadline = time.monotonic() + _FINAL_COMMIT_S
        while True:
            try:
                if self._commit_now():
                    return
            except Exception as exc:
                logger.warning("could not commit before stopping (%s)", exc)
                return
            if time.monotonic() >= deadline:
                logger.warning(
                    "offsets %s not committed before stopping: those messages will be delivered again",
                    self._pending,
                )
                return
            time.sleep(0.5)


def _on_client_error(error: Any) -> None:
    if getattr(error, "fatal", lambda: False)():
        raise KafkaException(error)
    logger.info("consumer reported: %s", error)


def _config_of(consumer: Any) -> dict[str, Any]:
    config = getattr(consumer, "client_config", None)
    return dict(config) if config else {}


def _producer_for(consumer: Any, config: dict[str, Any]) -> Any:
    from tracing.write.clients.producer import TracedProducer

    servers = config.get("bootstrap.servers")
    if not servers:
        raise ValueError(
            "dead_letter_topic needs dead_letter_producer= when the consumer's config is unknown"
        )
    return TracedProducer(
        {"bootstrap.servers": servers, "enable.idempotence": True},
        tracer_provider=getattr(consumer, "tracer_provider", None),
    )


def _flush_spans(consumer: Any) -> None:
    provider = getattr(consumer, "tracer_provider", None) or trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        try:
            flush(5000)
        except Exception:
            logger.debug("span flush failed", exc_info=True)
