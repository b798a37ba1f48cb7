"""The two lifecycles of the write side: one send operation and one process operation.

Every wrapper of every client reaches OpenTelemetry (tracer, meter, propagator) only
through these, and every method here that a wrapper calls contains the failures of
the instrumentation itself: a broken span processor, exporter plugin, propagator or
meter is reported (rate-limited, see :func:`report_internal_error`) and the message
goes on. The app's own exceptions (a handler's, the client's) are never touched.

Each call picks its mode from what is configured now:

- **off**: no SDK, no MeterProvider, and no incoming context: nothing is done;
- **propagate**: no SDK, but a context to carry (an incoming message's): it flows on;
- **trace**: an SDK tracer: the span (or, when its sampler drops it anyway, the
  span context the SDK would have made, without the SDK);
- **metrics** on or off, independently: counts, durations, queue time, chain header.

Order of a send: chain header -> span -> inject -> (the client sends) -> delivery or
refusal -> span ended with the outcome -> metrics. Order of a process: extract -> span
-> context made current -> (the app handles) -> outcome -> span ended -> metrics.
Either way the outcome is named once (``error.type``, by the client's provider) for
the span and the metric alike.

The environment can switch the wrappers down, read when a client is built
(:func:`switched_by_environment`): ``OTEL_SDK_DISABLED=true`` turns them off (no span, no
metric, no header written, no context made current); ``KET_PROPAGATION_ONLY=true`` keeps
only propagation (trace context in and out, nothing recorded, no ``eventchain`` header).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Tracer, TracerProvider

from tracing.write import otel
from tracing.write.metrics import CHAIN_HEADER, FlowMetrics, Instruments
from tracing.write.propagation import (
    SPAN_KEY,
    Extracted,
    Propagation,
    env_true,
    replace_headers,
    report_internal_error,
)
from tracing.write.providers import Provider
from tracing.write.recipe import CHAIN_KEY, Telemetry, describe, mark_failed
from tracing.write.records import ClientInfo, Delivery, Extra, Headers, Received, Send

_get_current = context_api.get_current
_get_current_span = trace.get_current_span
_time_ns = time.time_ns
_attach = otel.attach
PARENT = "parent"
LINK = "link"
# What a send records and carries: the tracer (None: no SDK), the flow metrics' instruments
# (None: off), and without either, the current span context to carry on.
Plan = tuple[Tracer | None, Instruments | None, SpanContext | None]
OFF = "off"
PROPAGATION_ONLY = "propagation only"


def switched_by_environment() -> str | None:
    """``PROPAGATION_ONLY`` when ``KET_PROPAGATION_ONLY=true``, else ``OFF`` when
    ``OTEL_SDK_DISABLED=true``, else None (the configured SDK and meters decide)."""
    if env_true("KET_PROPAGATION_ONLY"):
        return PROPAGATION_ONLY
    return OFF if env_true("OTEL_SDK_DISABLED") else None


# ----------------------------------------------------------------------------
# Send
# ----------------------------------------------------------------------------
class SendOperation:
    """The send lifecycle of one producer."""

    __slots__ = (
        "provider",
        "telemetry",
        "flow",
        "propagation",
        "_meter_given",
        "_str_headers",
        "_switched",
        "_quiet",
    )

    def __init__(
        self,
        provider: Provider,
        client: ClientInfo,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: Any = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self.provider = provider
        self.telemetry = Telemetry(client, tracer_provider)
        self.flow = FlowMetrics(client, meter_provider)
        self.propagation = Propagation(propagator)
        self._meter_given = meter_provider is not None
        self._switched = switched_by_environment()
        self._str_headers = provider.header_value("-") == "-"  # the client takes str values
        # Nothing given and nothing switched: only a global provider or a current span can
        # make a send do anything (prepare()'s first check; False: the general path alone).
        self._quiet = tracer_provider is None and meter_provider is None and self._switched is None

    def prepare(self, ctx: Context) -> Plan | None:
        """What a send made now records and carries; None in mode off (nothing to record,
        no context to carry: the client's own call will do)."""
        try:
            if (
                self._quiet
                and SPAN_KEY not in ctx
                and not otel.any_provider_may_be_set()
                and self.telemetry.resolved_tracer is None
                and self.flow.resolved_instruments is None
            ):
                return None  # no SDK, no meters, no span current: the common no-SDK send, at once
            if self._switched is not None:  # nothing recorded; in propagation only, the context flows
                if self._switched == OFF:
                    return None
                current = _get_current_span(ctx).get_span_context()
                return (None, None, current) if current.is_valid else None
            telemetry = self.telemetry
            tracer = telemetry.resolved_tracer if telemetry.resolved else telemetry.tracer()
            flow = self.flow
            if flow.resolved:
                instruments = flow.resolved_instruments
            elif self._meter_given or otel.meter_provider_may_be_set():
                instruments = flow.instruments()
            else:
                instruments = None  # no MeterProvider anywhere: not even a call to find out
            if tracer is None and instruments is None:
                current = _get_current_span(ctx).get_span_context()
                return (None, None, current) if current.is_valid else None
            return (tracer, instruments, None)
        except Exception:
            report_internal_error("could not read the tracing configuration")
            return None

    def start(
        self,
        plan: Plan,
        destination: str,
        key: Any,
        partition: int | None,
        tombstone: bool,
        headers: Headers,
        ctx: Context,
        extra: Extra = (),
    ) -> tuple[Headers, Sending | None]:
        """Begin one send: the headers to send (a new list, never the caller's) and the
        send in flight, to settle with its delivery or refusal (None: nothing to report,
        no span recorded and no metrics)."""
        tracer, instruments, carried = plan
        started = _time_ns() if instruments is not None else 0
        span: Span | None = None
        chain = None
        try:
            if instruments is not None:
                value = self.flow.chain_to_send(ctx, destination, started)
                chain = (CHAIN_HEADER, value if self._str_headers else self.provider.header_value(value))
            if tracer is not None:
                telemetry = self.telemetry
                span = telemetry.skipped_send(ctx)
                if span is None:
                    send = Send(destination, key, partition, tombstone, extra)
                    span = telemetry.start_send(tracer, send, ctx)
                carried = span.get_span_context()
                if type(span) is NonRecordingSpan or not span.is_recording():
                    span = None  # unsampled: nothing to end, nothing to report
            elif carried is None:
                carried = _get_current_span(ctx).get_span_context()
        except Exception:
            report_internal_error("could not start a send span")
        sent = headers
        try:
            if carried is not None and carried.is_valid:
                if self._str_headers:  # _inject(), inlined: the common case
                    sent = self.propagation.inject(headers, carried, ctx, chain)
                else:
                    sent = self._inject(headers, carried, ctx, chain)
            elif chain is not None:
                sent = replace_headers(headers, [chain])
        except Exception:
            # The span (if any) still ends with the delivery: only the headers are the app's own.
            report_internal_error("could not inject trace context")
        if span is None and instruments is None:
            return sent, None
        return sent, Sending(self, span, instruments, destination, started)

    def _inject(
        self, headers: Headers, carried: SpanContext, ctx: Context, chain: tuple[str, Any] | None
    ) -> Headers:
        if self._str_headers:
            injected: Headers = self.propagation.inject(headers, carried, ctx, chain)
            return injected
        encode = self.provider.header_value
        new = self.propagation.inject(None, carried, ctx, chain) or []
        return replace_headers(headers, [(k, encode(v) if type(v) is str else v) for k, v in new])


class Sending:
    """One send in flight: ended once, by its delivery report or by the client's refusal.

    Also the delivery callback: ``sending(*report)`` takes the report in the client's own
    shape (``(err, msg)``, a future), settles the span and the metrics, then calls the
    app's callback with the same arguments, outside any containment.
    """

    __slots__ = ("op", "span", "instruments", "destination", "started", "user_callback")

    def __init__(
        self,
        op: SendOperation,
        span: Span | None,
        instruments: Instruments | None,
        destination: str,
        started: int,
    ) -> None:
        self.op = op
        self.span = span
        self.instruments = instruments
        self.destination = destination
        self.started = started
        self.user_callback: Callable[..., Any] | None = None

    def __call__(self, *report: Any) -> None:
        if self.span is not None or self.instruments is not None:
            try:
                delivery = self.op.provider.delivery(*report)
            except Exception:
                report_internal_error("could not read a delivery report")
                delivery = Delivery(None, None, "_UNREADABLE_REPORT")
            self.settle(delivery)
        if self.user_callback is not None:
            self.user_callback(*report)  # the app's exceptions surface where the client raises them

    def settle(self, delivery: Delivery) -> None:
        """End the span with the delivery and count it; once."""
        span, self.span = self.span, None
        instruments, self.instruments = self.instruments, None
        if span is not None:
            try:
                if delivery.settled:
                    self.op.telemetry.end_send(span, delivery)
                else:
                    span.end()  # the outcome is unknown: no error claimed
            except Exception:
                report_internal_error("could not record a delivery report")
        if instruments is not None and delivery.settled:
            try:
                self.op.flow.sent(
                    instruments, self.destination, delivery.partition, delivery.error, self.started
                )
            except Exception:
                report_internal_error("could not record a delivery in the metrics")

    def refused(self, exc: BaseException, partition: int | None = None) -> None:
        """The client refused the message (raised): nothing was sent."""
        try:
            error = self.op.provider.error_type(exc)
        except Exception:
            error = type(exc).__qualname__
        span = self.span
        if span is not None:
            try:
                span.record_exception(exc)
            except Exception:
                report_internal_error("could not record a refused send")
        if not isinstance(exc, Exception):  # cancelled, interrupted: not a failed send
            self.settle(Delivery(None, None, None, None, False))
            return
        self.settle(Delivery(partition, None, error, describe(exc)))


# ----------------------------------------------------------------------------
# Process
# ----------------------------------------------------------------------------
def trust_policy(trust: str | Mapping[str, str]) -> Callable[[str], bool]:
    """A function destination -> link_only, from ``"parent"``/``"link"`` or a per-topic mapping."""
    if isinstance(trust, str):
        if trust not in (PARENT, LINK):
            raise ValueError(f"trust must be 'parent' or 'link', not {trust!r}")
        link_only = trust == LINK
        return lambda destination: link_only
    modes = dict(trust)
    for destination, mode in modes.items():
        if mode not in (PARENT, LINK):
            raise ValueError(f"trust for topic {destination!r} must be 'parent' or 'link', not {mode!r}")
    default = modes.pop("*", PARENT) == LINK
    per_topic = {destination: mode == LINK for destination, mode in modes.items()}
    return lambda destination: per_topic.get(destination, default)


class ProcessOperation:
    """The process lifecycle (and the batch receive) of one consumer."""

    __slots__ = (
        "provider",
        "telemetry",
        "flow",
        "propagation",
        "_trust",
        "_link_only",
        "_given",
        "_switched",
        "carry_only",
        "headers",
    )

    def __init__(
        self,
        provider: Provider,
        client: ClientInfo,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: Any = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
    ) -> None:
        self.provider = provider
        self.telemetry = Telemetry(client, tracer_provider)
        self.flow = FlowMetrics(client, meter_provider)
        self.propagation = Propagation(propagator, baggage_keys=baggage_keys)
        self._trust = trust_policy(trust)
        # The same answer for every destination: no per-message lookup.
        self._link_only: bool | None = trust == LINK if isinstance(trust, str) else None
        self._given = tracer_provider is not None or meter_provider is not None
        self._switched = switched_by_environment()
        # Nothing given, nothing switched, every topic trusted: then, while no global provider
        # is set, a message only carries its context on (open()'s first check; OpenProcessing
        # reads the global providers itself, so only where otel reads them plainly).
        self.carry_only = (
            not self._given
            and self._switched is None
            and self._link_only is False
            and otel.PROVIDERS_READ_PLAINLY
        )
        self.headers = provider.headers

    def open(self, msg: Any, owner: Any, polled: bool) -> Processing | None:
        """Begin processing ``msg``: its span, its context made current in the caller,
        its metrics. None when there is nothing to record and no context to carry.

        ``polled``: the client just handed ``msg`` to the app (counted as consumed).
        """
        try:  # one try for the whole recipe: this runs for every polled message
            if self.carry_only and not (
                self.telemetry.resolved or self.flow.resolved or otel.any_provider_may_be_set()
            ):
                # The common no-SDK case, first and alone (OpenProcessing.polled has it in one frame).
                carried = self.propagation.context_of(self.headers(msg))
                return Processing(self, msg, None, None, carried, owner) if carried is not None else None
            provider = self.provider
            link_only = self._link_only
            if link_only is None:
                link_only = self._trust(provider.destination(msg))
            switched = self._switched
            if switched is not None and (switched == OFF or link_only):
                return None  # switched off by the environment, or propagation only from an untrusted topic
            if switched is not None or not (
                self._given or self.telemetry.resolved or self.flow.resolved or otel.any_provider_may_be_set()
            ):
                # No SDK at all: no span, no metric; only the incoming context flows on.
                if link_only:
                    return None
                carried = self.propagation.context_of(provider.headers(msg))
                return Processing(self, msg, None, None, carried, owner) if carried is not None else None
            telemetry = self.telemetry
            tracer = telemetry.resolved_tracer if telemetry.resolved else telemetry.tracer()
            flow = self.flow
            instruments = flow.resolved_instruments if flow.resolved else flow.instruments()
            headers = provider.headers(msg)
            if instruments is not None:
                return self._open_measured(msg, owner, polled, tracer, link_only, instruments, headers)
            if tracer is None:
                # No SDK: nothing to record, but a send made while handling the message must
                # still carry the incoming trace (unless the topic is not trusted).
                if link_only:
                    return None
                carried = self.propagation.context_of(headers)
                return Processing(self, msg, None, None, carried, owner) if carried is not None else None
            if not headers:
                received = provider.received(msg)
                span, ctx = telemetry.start_process(tracer, received, None, link_only, _time_ns())
                return Processing(self, msg, received, span, ctx, owner)
            tp = self.propagation.plain_traceparent(headers)  # the common header: validated once
            if tp is not None and telemetry.skip_remote_unsampled and not link_only:
                # An unsampled producer under a parent-based sampler (99 % of messages at 1 %):
                # nothing to record; the context flows on, the header never parsed.
                skipped = telemetry.skipped_child(tp)
                if skipped is not None:
                    return Processing(self, msg, None, None, Context({SPAN_KEY: skipped}), owner)
            received = provider.received(msg)
            extracted = self._extracted(headers, tp, link_only)
            span, ctx = telemetry.start_process(tracer, received, extracted, link_only, _time_ns())
            return Processing(self, msg, received, span, ctx, owner)
        except Exception:
            report_internal_error("could not start a process span")
            return None

    def _extracted(self, headers: Headers, plain: bytes | None, link_only: bool) -> Extracted | None:
        """The producer's context from non-empty headers; ``plain``: their plain ``traceparent``
        (:meth:`Propagation.plain_traceparent`), read without a second scan."""
        if plain is not None:
            return Extracted.of_plain(plain)
        return self.propagation.extract(headers, keep_baggage=not link_only)

    def _open_measured(
        self,
        msg: Any,
        owner: Any,
        polled: bool,
        tracer: Any,
        link_only: bool,
        instruments: Instruments,
        headers: Headers,
    ) -> Processing:
        """:meth:`_open` with the flow metrics on: queue time, chain duration, the chain carried on."""
        started = _time_ns()
        flow = self.flow
        received = self.provider.received(msg)
        chain = flow.processing(instruments, received, headers, not link_only, started, polled)
        span = None
        if tracer is None:
            carried = None if link_only else self.propagation.context_of(headers)
            ctx = context_api.set_value(CHAIN_KEY, chain, carried)
        else:
            extracted = (
                self._extracted(headers, self.propagation.plain_traceparent(headers), link_only)
                if headers
                else None
            )
            span, ctx = self.telemetry.start_process(tracer, received, extracted, link_only, started, chain)
        processing = Processing(self, msg, received, span, ctx, owner)
        processing.instruments = instruments
        processing.started = started
        return processing

    def received_batch(self, messages: Sequence[Any] | Iterable[Any], started_ns: int) -> None:
        """A batch receive returned ``messages``: count them, record one receive span
        linking to each message that carries a context."""
        if self._switched is not None:
            return  # nothing recorded
        try:
            provider = self.provider
            delivered = [m for m in messages if provider.is_message(m)]
            if not delivered:
                return
            records = [provider.received(m) for m in delivered]
            flow = self.flow
            instruments = flow.resolved_instruments if flow.resolved else flow.instruments()
            if instruments is not None:
                for received in records:
                    flow.consumed(instruments, received, "consume")
            tracer = self.telemetry.tracer()
            if tracer is None:
                return
            extract = self.propagation.extract
            batch = [(r, extract(provider.headers(m))) for r, m in zip(records, delivered, strict=True)]
            self.telemetry.receive_span(tracer, batch, started_ns)
        except Exception:
            report_internal_error("could not record a receive span")


class Processing:
    """One message being processed: its span (when recorded), the context made current
    for it, its metrics. Ended once, with the outcome.

    ``owner`` (a thread, or an asyncio task) made ``ctx`` current; ``token`` undoes that.
    A ``process(msg)`` block may claim it, from the owner or from elsewhere: the block
    then ends it, and the owner's next poll only restores its own context.
    """

    __slots__ = (
        "op",
        "msg",
        "received",
        "span",
        "ctx",
        "token",
        "owner",
        "claimed",
        "instruments",
        "started",
        "failure",
    )

    def __init__(
        self,
        op: ProcessOperation,
        msg: Any,
        received: Received | None,
        span: Span | None,
        ctx: Context,
        owner: Any,
    ) -> None:
        self.op = op
        self.msg = msg
        self.received = received
        self.span = span if span is None or type(span) is not NonRecordingSpan else None
        self.ctx = ctx
        try:
            self.token: object = _attach(ctx)
        except Exception:
            self.token = None
            report_internal_error("could not make a message's context current")
        self.owner = owner
        self.claimed = False
        self.instruments: Instruments | None = None
        self.started = 0
        self.failure: tuple[BaseException, dict[str, Any]] | None = None

    def detach(self) -> None:
        """Restore the owner's context (once; a no-op from any other context)."""
        token, self.token = self.token, None
        if token is not None:
            try:
                otel.detach(token)
            except Exception:
                report_internal_error("could not restore the context")

    def fail(self, exc: BaseException, attributes: Mapping[str, Any] | None = None) -> None:
        """The handling failed with ``exc`` (caught by the caller): recorded when it ends."""
        self.failure = (exc, dict(attributes or {}))

    def add_event(self, name: str, attributes: Mapping[str, Any]) -> None:
        span = self.span
        if span is not None:
            try:
                span.add_event(name, attributes)
            except Exception:
                report_internal_error("could not record an event")

    def end(self, exc: BaseException | None = None, end_time: int | None = None) -> None:
        """End the span and record the metrics, failed when ``exc`` (or a recorded
        failure) says so; once. Never raises."""
        span, self.span = self.span, None
        instruments, self.instruments = self.instruments, None
        if span is None and instruments is None:
            return
        extra: Mapping[str, Any] = {}
        if exc is None and self.failure is not None:
            exc, extra = self.failure
        error = None
        try:
            if exc is not None:
                error = self.op.provider.error_type(exc)
        except Exception:
            error = type(exc).__qualname__
        ended = end_time if end_time is not None else _time_ns()
        if span is not None:
            try:
                if exc is not None and error is not None:
                    mark_failed(span, error, describe(exc), exc)
                    if extra and span.is_recording():
                        span.set_attributes(extra)
                span.end(ended)
            except Exception:
                report_internal_error("could not end a process span")
        if instruments is not None and self.received is not None:
            try:
                self.op.flow.processed(instruments, self.received, self.started, ended, error)
            except Exception:
                report_internal_error("could not record a processing in the metrics")
