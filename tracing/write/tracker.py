"""Which message each thread or task is processing: claim, hand-over, end.

A poll opens the polled message's processing in its caller (a thread for the
synchronous clients, an asyncio task for the asynchronous ones) and it stays open
there until that caller's next poll. A ``process(msg)`` block claims it (from the
caller or from another thread or task the message was handed to) and ends it with
the block. Every consumer wrapper holds one :class:`OpenProcessing` and reaches the
process operation through it; none inherits from another.

An open processing is never lost: what is still open when the consumer is closed or
collected, or when the interpreter exits, is ended then, failed with the exception
that was in flight where one is known.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextvars
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

import opentelemetry.metrics._internal as _metrics_internal
import opentelemetry.trace as _trace_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from tracing.write import otel
from tracing.write.operations import Processing, ProcessOperation
from tracing.write.propagation import SPAN_KEY, RemoteParent, report_internal_error

_time_ns = time.time_ns
_get_ident = threading.get_ident
_NO_CONTEXT = Context()
_Token = contextvars.Token
_attach = otel.attach
_current_context = otel.current_context


def in_flight() -> BaseException | None:
    """The exception being handled now, if any."""
    return sys.exc_info()[1]


_live: weakref.WeakSet[OpenProcessing] = weakref.WeakSet()


def _at_exit() -> None:
    """At interpreter exit: end what every live consumer still has open, failed with the
    exception that ended the program, if one did."""
    exc = getattr(sys, "last_value", None)
    for spans in list(_live):
        _end_all(spans.open, spans.handing_over, exc)


def _run_at_exit_before_the_sdk() -> None:
    # atexit runs the last registered first; the SDK's TracerProvider registers its
    # shutdown when built, usually before the clients. Moving ours to the end of the
    # list at each new consumer ends open spans while the SDK still exports them.
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


class OpenProcessing:
    """The open processings of one consumer, one per thread (sync) or task (asyncio).

    ``per_task``: False for the synchronous clients, where the consumer's last poll
    (from any thread) owns the one open processing, as the client's own poll is one
    position; True for asyncio, where each task polling has its own.
    """

    def __init__(self, operation: ProcessOperation, *, per_task: bool) -> None:
        self.operation = operation
        self._per_task = per_task
        self.owner: Callable[[], Any] = _current_task if per_task else threading.get_ident
        self.open: dict[Any, Processing] = {}  # key (task, or None) -> its open processing
        self.handing_over: list[Processing] = []  # ended by a poll unless claimed meanwhile
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        # Sync: ended processings that only carried a context, for the next messages (a deque:
        # append and pop are atomic, for consumers polled from several threads). Bounded: with
        # an SDK, unsampled processings are span-less too but never reused (polled() reuses
        # only without one), and the oldest simply falls out.
        self._spare: collections.deque[Processing] = collections.deque(maxlen=2)
        # Sync: a block claiming the open processing from another thread and a poll (or close)
        # ending it test and set ``claimed`` under this lock, so exactly one of them wins: the
        # block keeps a span the poll has not ended, or opens its own.
        self._claims = threading.Lock()
        # What is open when the consumer is collected is ended then (at exit: _at_exit).
        finalizer = weakref.finalize(self, _end_all, self.open, self.handing_over, None)
        finalizer.atexit = False
        _live.add(self)
        _run_at_exit_before_the_sdk()

    def _key(self) -> Any:
        return _current_task() if self._per_task else None

    # -- the poll side ------------------------------------------------------------
    # end_own() and polled() run for every polled message: the synchronous clients' case
    # (one open processing, keyed None) comes first, with _release() and otel.detach() inlined.
    def end_own(self, end_time: int | None = None) -> None:
        """End the caller's open processing (sync: the consumer's), at its next poll."""
        if self._per_task:
            self._end_task_own(end_time)
            return
        processing = self.open.pop(None, None)
        if processing is None:
            return
        token = processing.token
        if token is not None and processing.owner == _get_ident():
            processing.token = None
            if type(token) is _Token:
                try:
                    token.var.reset(token)
                except (ValueError, RuntimeError):  # made in another context: left alone
                    pass
            else:
                otel.detach(token)
        if processing.span is None and processing.instruments is None:
            # It only carried a context: kept for the next message unless a block holds it. A
            # block claiming it meanwhile from another thread attaches the context it read first,
            # and its claim stays: then no block claims the reused one (they open their own).
            # Unclaimed only once its block has ended (msg None), which no block claims again.
            if processing.msg is None:
                processing.claimed = False
            elif processing.claimed:
                return
            processing.msg = None
            processing.ctx = _NO_CONTEXT
            self._spare.append(processing)
        elif self._unclaimed(processing):
            processing.end(None, end_time)

    def _unclaimed(self, processing: Processing) -> bool:
        """Sync: True when no block claimed ``processing``, and none can any more (the caller
        ends it); False when a block holds it (the block ends it)."""
        with self._claims:
            if processing.claimed:
                return False
            processing.claimed = True
            return True

    def _claimed(self, processing: Processing, msg: Any) -> bool:
        """Sync: ``processing`` was opened for ``msg`` and is now this block's."""
        if processing.msg is not msg or msg is None or processing.claimed:
            return False
        with self._claims:
            if processing.claimed or processing.msg is not msg:
                return False
            processing.claimed = True
            return True

    def _end_task_own(self, end_time: int | None) -> None:
        processing = self.open.pop(_current_task(), None)
        if processing is not None:
            self._release(processing, None, end_time)

    def polled(self, msg: Any) -> None:
        """The client handed ``msg`` to the caller: open its processing there."""
        op = self.operation
        if (
            op.carry_only  # only where otel.any_provider_may_be_set() is these two reads
            and _trace_api._TRACER_PROVIDER is None
            and _metrics_internal._METER_PROVIDER is None
            and not (self._per_task or op.telemetry.resolved or op.flow.resolved)
        ):
            # ProcessOperation.open()'s first branch, the common no-SDK case: the context the
            # message carries is made current, on a Processing reused from an earlier message.
            headers = op.headers(msg)
            if not headers:
                return
            tp = op.propagation.plain_traceparent(headers)
            # As Propagation.context_of(), built here on the common header.
            if tp is not None:
                ctx: Context | None = Context({SPAN_KEY: RemoteParent(tp)})
            else:
                ctx = op.propagation.context_of(headers)
            if ctx is None:
                return
            try:
                reused = self._spare.pop()
            except IndexError:
                self.open[None] = Processing(op, msg, None, None, ctx, _get_ident())
                return
            reused.msg = msg
            reused.ctx = ctx
            reused.owner = _get_ident()
            try:
                reused.token = _attach(ctx)
            except Exception:
                reused.token = None
                report_internal_error("could not make a message's context current")
            self.open[None] = reused
            return
        owner = self.owner()
        processing = self.operation.open(msg, owner, True)
        if processing is None:
            return
        if not self._per_task:
            self.open[None] = processing
            return
        self.open[owner] = processing
        if owner is not None and owner not in self._watched:
            # A task that ends without polling again ends its processing, failed if it failed.
            try:
                self._watched.add(owner)
                owner.add_done_callback(self._task_done)
            except Exception:
                report_internal_error("could not watch a task")

    def hand_over(self) -> Processing | None:
        """Before an asyncio poll: the caller's open processing may still be claimed by a
        task created to handle its message (whose first step runs while this poll waits)."""
        processing = self.open.pop(self._key(), None)
        if processing is not None:
            processing.detach()
            self.handing_over.append(processing)
        return processing

    def handed_over(self, processing: Processing, ended_at: int) -> None:
        """After that poll: end it unless a block claimed it."""
        try:
            self.handing_over.remove(processing)
        except ValueError:
            pass
        if not processing.claimed:
            processing.end(None, ended_at)

    def _task_done(self, task: Any) -> None:
        processing = self.open.pop(task, None)
        if processing is None or processing.claimed:
            return
        exc: BaseException | None
        try:
            exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        except Exception:
            exc = None
        processing.end(exc)

    def _release(self, processing: Processing, exc: BaseException | None, end_time: int | None) -> None:
        if processing.token is not None and processing.owner == self.owner():
            processing.detach()
        if self._per_task:
            if not processing.claimed:
                processing.end(exc, end_time)
        elif self._unclaimed(processing):
            processing.end(exc, end_time)

    def end_all(self, exc: BaseException | None = None) -> None:
        """End every open processing (close, consume), failed with ``exc`` when given."""
        for key, processing in list(self.open.items()):
            del self.open[key]
            self._release(processing, exc, None)

    # -- the block side -----------------------------------------------------------
    def claim(self, msg: Any) -> Processing | None:
        """The processing a poll opened for ``msg``, for a block to take over."""
        if not self._per_task:  # one open processing at most: no search
            processing = self.open.get(None)
            return processing if processing is not None and self._claimed(processing, msg) else None
        for processing in (*self.open.values(), *self.handing_over):
            if processing.msg is msg and not processing.claimed:
                processing.claimed = True
                return processing
        return None

    def block(self, msg: Any, delivered: bool = False) -> ProcessBlock:
        """A block processing ``msg``; ``delivered``: the client pushed it to a callback (no
        poll counted it as consumed)."""
        return ProcessBlock(self, msg, delivered)


def _end_all(open_: dict[Any, Processing], handing_over: list[Processing], exc: BaseException | None) -> None:
    """At collection or exit: end what is still open. Where this runs in the context the
    message's was made current in, and it is still the current one, the context from before
    the poll comes back (else a later span of this thread would be the ended one's child);
    anything made current after it is left alone."""
    for processing in [*open_.values(), *handing_over]:
        token = processing.token
        if type(token) is contextvars.Token and otel.current_context() is processing.ctx:
            processing.detach()
        if not processing.claimed:
            processing.end(exc)
    open_.clear()
    handing_over.clear()


def _current_task() -> Any:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: the thread stands for the task
        return threading.get_ident()


class ProcessBlock:
    """``with consumer.process(msg) as span:`` (or ``async with``): the message's
    processing for exactly the block.

    An exception leaving the block marks the span and the metric failed (one
    ``error.type``), is recorded as an event, and goes on unchanged. ``msg`` may be a
    timeout's None or an error event: then nothing is recorded.
    """

    __slots__ = ("_spans", "_msg", "_delivered", "_processing", "_token")

    def __init__(self, spans: OpenProcessing, msg: Any, delivered: bool = False) -> None:
        self._spans = spans
        self._msg = msg
        self._delivered = delivered
        self._processing: Processing | None = None
        self._token: object = None

    def __enter__(self) -> Span:
        try:
            spans = self._spans
            msg = self._msg
            ctx = _NO_CONTEXT
            if spans._per_task:
                processing = spans.claim(msg)
                if processing is not None:
                    ctx = processing.ctx
            else:  # claim(), inlined for the synchronous clients' one open processing
                processing = spans.open.get(None)
                if processing is not None:
                    # Its context read before its message: a poll may reuse a span-less processing
                    # for the next message meanwhile, and this block must never get that one's.
                    ctx = processing.ctx
                    if not spans._claimed(processing, msg):
                        processing = None
            if processing is not None:  # a poll opened this message's processing: the block takes it over
                if processing.owner != spans.owner() or _current_context() is not ctx:
                    # Handed to another thread or task, or undone since its poll (a block around
                    # that poll has ended): current here, for the block.
                    self._token = otel.attach(ctx)
            elif not spans.operation.provider.is_message(msg):
                return trace.get_current_span()  # a timeout's None, an error event: nothing to record
            else:
                processing = spans.operation.open(msg, spans.owner(), self._delivered)
                if processing is None:
                    return trace.get_current_span()
                processing.claimed = True
                ctx = processing.ctx
            self._processing = processing
            span = processing.span
            if span is not None:
                return span
            found: Span | None = ctx.get(SPAN_KEY)  # type: ignore[assignment]  # only spans go there
            return found if found is not None else trace.get_current_span()
        except Exception:
            report_internal_error("could not start a process span")
            return trace.get_current_span()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        processing = self._processing
        if processing is None:
            return
        self._processing = None
        token, self._token = self._token, None
        if token is not None:
            otel.detach(token)
        else:
            token = processing.token
            if token is not None and processing.owner == self._spans.owner():
                if type(token) is _Token:  # otel.detach(), inlined as in end_own()
                    try:
                        token.var.reset(token)
                        processing.token = None
                    except (ValueError, RuntimeError):
                        # Made in another context (an asyncio task of the polling thread, say):
                        # kept, so the poller's next poll or close restores its own context.
                        pass
                else:
                    processing.token = None
                    otel.detach(token)
        if processing.span is not None or processing.instruments is not None:
            processing.end(exc)
        else:  # it only carried a context: done (no later block takes it), the next poll reuses it
            processing.msg = None

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # For the managed loop: a failure it caught, and its retries.
    def fail(self, exc: BaseException, **attributes: Any) -> None:
        """The handling failed with ``exc``, caught by the caller: recorded when the block ends."""
        if self._processing is not None:
            self._processing.fail(exc, attributes)

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        if self._processing is not None:
            self._processing.add_event(name, attributes)
