"""The managed processing loop: at-least-once handling with retries and a dead-letter topic.

``TracedConsumer.run(handler)`` polls, calls ``handler(msg)`` inside the message's
process span, and commits the offset only after the handler succeeded. A failing
message is retried with exponential backoff; then it is either sent to the
dead-letter topic (original key, value and headers, the trace continued, error
details in headers) and committed, or the loop stops WITHOUT committing it and
re-raises the handler's exception, so a restarted consumer gets it again.

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

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from tracing import semconv as sc
from tracing.write.recipe import _error_type

logger = logging.getLogger("tracing.loop")

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


@dataclass
class RunStats:
    """What a ``run()`` did: handy for logs, tests and shutdown messages."""

    processed: int = 0
    failed: int = 0
    retries: int = 0
    dead_lettered: int = 0
    stopped_by: str = ""


class _Stop:
    """Stop requests from a signal, an Event, or a callable."""

    def __init__(self, stop: Any) -> None:
        self._event = threading.Event()
        self._user = stop
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._event.set()

    def requested(self) -> bool:
        if self._event.is_set():
            return True
        user = self._user
        if user is None:
            return False
        hit = user.is_set() if hasattr(user, "is_set") else bool(user())
        if hit:
            self.set("stop")
        return hit

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
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, lambda n, _f: stop.set(signal.Signals(n).name))
    return previous


def run(
    consumer: Any,
    handler: Callable[[Any], Any],
    *,
    commit: str | None = "after-success",
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
        consumer: a ``TracedConsumer`` (subscribed or assigned).
        handler: called with each message inside its process span.
        commit: ``"after-success"`` commits each message's offset synchronously once it
            was handled (or dead-lettered); None leaves committing to you.
        retries: extra attempts after a failure, ``backoff * 2**n`` seconds apart
            (capped at ``max_backoff``); each retry is an event on the span.
        dead_letter_topic: where a message goes when every attempt failed; without
            it the loop stops, uncommitted, and re-raises the handler's exception.
        dead_letter_producer: a ``TracedProducer`` for the dead-letter topic (built
            from the consumer's ``bootstrap.servers`` when omitted).
        stop: a ``threading.Event`` or a callable returning True to stop.
        handle_signals: stop cleanly on SIGTERM/SIGINT (main thread only).
    """
    if commit not in ("after-success", None):
        raise ValueError(f"commit must be 'after-success' or None, not {commit!r}")
    config = _config_of(consumer)
    if commit and str(config.get("enable.auto.commit", "")).lower() in ("true", "1"):
        raise ValueError("run() commits after success: build the consumer with 'enable.auto.commit': False")
    stopper = _Stop(stop)
    previous = _install_signals(stopper) if handle_signals else {}
    stats = RunStats()
    dlq = None
    try:
        while not stopper.requested():
            msg = consumer.poll(poll_timeout)
            if msg is None:
                continue
            if msg.error() is not None:
                _on_client_error(msg.error())
                continue
            with consumer.process(msg) as span:
                ok, error, attempts = _attempts(
                    span, msg, handler, retries, backoff, max_backoff, stopper, stats
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
                consumer.commit(message=msg, asynchronous=False)
        stats.stopped_by = stopper.reason or "stop"
        return stats
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
        _flush_spans(consumer)
        if dlq is not None and dead_letter_producer is None:
            dlq.flush(10)


def _attempts(
    span: Any,
    msg: Any,
    handler: Callable[[Any], Any],
    retries: int,
    backoff: float,
    max_backoff: float,
    stopper: _Stop,
    stats: RunStats,
) -> tuple[bool, BaseException | None, int]:
    """Run the handler, retrying with backoff; (succeeded, last error, attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            handler(msg)
            return True, None, attempt
        except Exception as exc:
            if attempt > retries or stopper.requested():
                _mark_failed(span, exc, attempt)
                return False, exc, attempt
            delay = min(max_backoff, backoff * (2 ** (attempt - 1)))
            span.add_event(
                "retry",
                {"retry.attempt": attempt, "retry.delay_s": delay, "exception.type": type(exc).__qualname__},
            )
            stats.retries += 1
            if stopper.wait(delay):
                _mark_failed(span, exc, attempt)
                return False, exc, attempt


def _mark_failed(span: Any, exc: BaseException, attempts: int) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_attribute(sc.ERROR_TYPE, _error_type(exc))
        span.set_attribute("messaging.process.attempts", attempts)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_MESSAGE]))


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


def _on_client_error(error: Any) -> None:
    if getattr(error, "fatal", lambda: False)():
        from confluent_kafka import KafkaException

        raise KafkaException(error)
    logger.info("consumer reported: %s", error)


def _config_of(consumer: Any) -> dict[str, Any]:
    config = getattr(consumer, "client_config", None)
    return dict(config) if config else {}


def _producer_for(consumer: Any, config: dict[str, Any]) -> Any:
    from tracing.write.producer import TracedProducer

    servers = config.get("bootstrap.servers")
    if not servers:
        raise ValueError(
            "dead_letter_topic needs dead_letter_producer= when the consumer's config is unknown"
        )
    return TracedProducer(
        {"bootstrap.servers": servers, "enable.idempotence": True},
        tracer_provider=getattr(consumer, "_tracer_provider", None),
    )


def _flush_spans(consumer: Any) -> None:
    provider = getattr(consumer, "_tracer_provider", None) or trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        try:
            flush(5000)
        except Exception:
            logger.debug("span flush failed", exc_info=True)
