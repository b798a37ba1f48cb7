"""TracedConsumer: a confluent-kafka consumer whose messages continue their producer's trace.

Three consuming styles, exactly ONE ``process {topic}`` span per message in each:

- drop-in: ``msg = consumer.poll(1.0)`` opens the message's process span and makes it
  current; it ends at the next ``poll``/``consume``/``close``.
- block: ``with consumer.process(msg): ...`` — the span covers exactly the block (and
  takes over the span ``poll`` opened for that same message).
- batch: ``consume(n, t)`` records one ``receive`` span with a link per message; each
  message handled inside ``process(msg)`` gets its own process span.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import opentelemetry.metrics._internal as _metrics_internal
import opentelemetry.trace as _trace_api
from confluent_kafka.cimpl import Consumer as _Consumer
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, TracerProvider

from tracing.write.lag import ConsumerLag, with_lag_statistics
from tracing.write.metrics import CHAIN_KEY, FlowMetrics
from tracing.write.propagation import SPAN_KEY, Extracted, Propagation, report_internal_error
from tracing.write.recipe import Telemetry, link_limit, server_of

_get_ident = threading.get_ident
_time_ns = time.time_ns


def _attach_function() -> Any:
    """``context_api.attach``, or the contextvar's own ``set`` it calls in the default
    runtime (two Python calls fewer on every polled message; the same token)."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(var) is contextvars.ContextVar:
        return var.set
    return context_api.attach


_attach = _attach_function()


# Providers named in the environment are loaded by the API's public calls: then the
# hot path always asks them (through Telemetry/FlowMetrics).
_PROVIDERS_FROM_ENV = bool({"OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"} & set(os.environ))
PARENT = "parent"
LINK = "link"


class _Open:
    """A process span that is open, and the context that made it current.

    ``owner`` (a thread, or an asyncio task) attached ``ctx``; ``token`` undoes that.
    A ``process(msg)`` block may claim the span, from the owner or from elsewhere: it
    then ends the span, and the owner's next poll only restores its own context.
    """

    __slots__ = ("msg", "span", "ctx", "token", "owner", "claimed", "flow", "instruments", "started")

    def __init__(self, msg: Any, span: Span | None, ctx: Context, owner: Any) -> None:
        self.msg = msg
        self.span = span
        self.ctx = ctx
        self.token = _attach(ctx)
        self.owner = owner
        self.claimed = False
        self.flow: FlowMetrics | None = None  # set when the processing is measured

    def detach(self) -> None:
        """Restore the owner's context (once; a no-op from any other context)."""
        token, self.token = self.token, None
        if token is not None:
            _detach(token)

    def end(self, exc: BaseException | None = None, end_time: int | None = None) -> None:
        flow, self.flow = self.flow, None
        if flow is not None:
            try:
                ended = end_time if end_time is not None else _time_ns()
                flow.processed(self.instruments, self.msg, self.started, ended, exc)
            except Exception:
                report_internal_error("could not record a processing in the metrics")
        span, self.span = self.span, None
        if span is not None:
            if exc is not None:
                Telemetry.fail(span, exc)
            else:
                span.end(end_time)


def _detach(token: Any) -> None:
    """Undo an attach, if this is the context that made it.

    A token can only be reset in the context (thread, asyncio task) that set it. From
    another one we leave that context alone rather than corrupt ours, and say nothing:
    it is how the app chose to use the client, not an error.
    """
    if type(token) is contextvars.Token:
        try:
            token.var.reset(token)
        except ValueError:
            pass
    else:  # a custom OTEL_PYTHON_CONTEXT runtime
        context_api.detach(token)


class Processing:
    """``with consumer.process(msg) as span:`` — the message's process span for the block.

    An exception marks the span ERROR, is recorded as an event and re-raised unchanged.
    """

    __slots__ = ("_consumer", "_msg", "_open", "_token")

    def __init__(self, consumer: TracedConsumer, msg: Any) -> None:
        self._consumer = consumer
        self._msg = msg
        self._open: _Open | None = None
        self._token: Any = None

    def __enter__(self) -> Span:
        consumer = self._consumer
        opened = consumer._claim(self._msg)
        if opened is not None:  # poll() opened this message's span: the block takes it over
            if opened.owner != consumer._owner():
                # Handed to another thread or task: current here too, for the block.
                self._token = context_api.attach(opened.ctx)
        else:
            opened = consumer._start(self._msg)
            if opened is not None:
                opened.claimed = True
        self._open = opened
        if opened is None:
            return trace.get_current_span()
        span = opened.span
        if span is None:  # no SDK: the carried context's span is the current one
            span = opened.ctx.get(SPAN_KEY) or trace.get_current_span()
        return span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        opened, self._open = self._open, None
        token, self._token = self._token, None
        if opened is None and token is None:
            return False
        try:
            if token is not None:
                _detach(token)
            elif opened.token is not None and opened.owner == self._consumer._owner():  # type: ignore[union-attr]
                opened.detach()  # type: ignore[union-attr]
            if opened is not None and (opened.span is not None or opened.flow is not None):
                opened.end(exc)
        except Exception:
            report_internal_error("could not end a process span")
        return False


class TracedConsumer:
    """Wraps a confluent-kafka ``Consumer`` or ``DeserializingConsumer``.

    >>> consumer = TracedConsumer({"bootstrap.servers": "127.0.0.1:19092", "group.id": "inventory"})
    >>> consumer.subscribe(["orders"])
    >>> msg = consumer.poll(1.0)          # its process span is now current
    >>> with consumer.process(msg):       # or: the span covers exactly this block
    ...     handle(msg)

    Args:
        conf_or_consumer: a config dict (a ``confluent_kafka.Consumer`` is built from
            it) or an existing ``Consumer``/``DeserializingConsumer``.
        tracer_provider: defaults to the global one.
        propagator: defaults to the global one (``OTEL_PROPAGATORS``).
        trust: ``"parent"`` (default): a message's process span continues the
            producer's trace. ``"link"``: it starts a new trace that only links to the
            producer, ignoring its sampled flag and baggage — for untrusted or fan-in
            topics. A mapping ``{topic: mode}`` sets it per topic (``"*"``: the rest).
        baggage_keys: only these incoming baggage keys are kept (default: all, within
            the W3C limits).
        meter_provider: for the flow metrics; defaults to the global one (none: no metrics).
        client_config: the config an existing client was built with; only read for
            span attributes (``group.id``, ``client.id``, ``bootstrap.servers``).
    """

    def __init__(
        self,
        conf_or_consumer: Mapping[str, Any] | Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
        meter_provider: Any = None,
        client_config: Mapping[str, Any] | None = None,
        _client_class: Any = None,
    ) -> None:
        config = (conf_or_consumer if isinstance(conf_or_consumer, Mapping) else client_config) or {}
        self._flow = FlowMetrics(
            meter_provider, server=server_of(config), consumer_group=config.get("group.id")
        )
        self.lag: ConsumerLag | None = None
        if isinstance(conf_or_consumer, Mapping):
            # Built here: its statistics can feed the lag gauges.
            self.lag = ConsumerLag(config.get("group.id"), register=self._flow.track_lag)
            conf = with_lag_statistics(
                config,
                self.lag,
                enable=self._flow.instruments() is not None,
                asynchronous=self._asynchronous,
            )
            consumer = (_client_class or self._client_class())(conf)
        else:
            consumer = conf_or_consumer
        self._consumer = consumer
        self._poll = consumer.poll
        self._propagation = Propagation(propagator, baggage_keys=baggage_keys)
        self.client_config: Mapping[str, Any] = config  # read for span attributes and run()
        self._telemetry = Telemetry(
            tracer_provider,
            client_id=config.get("client.id"),
            server=server_of(config),
            consumer_group=config.get("group.id"),
        )
        self._tracer_provider = tracer_provider
        self._given_providers = tracer_provider is not None or meter_provider is not None
        self._trust = _trust_policy(trust)
        # The same answer for every topic: no per-message lookup.
        self._link_only: bool | None = trust == LINK if isinstance(trust, str) else None
        self._open: _Open | None = None

    @property
    def wrapped(self) -> Any:
        """The confluent-kafka consumer underneath."""
        return self._consumer

    _asynchronous = False  # AIOConsumer awaits its config callbacks

    @staticmethod
    def _client_class() -> Any:
        return _Consumer

    # -- consuming --------------------------------------------------------------
    def poll(self, *args: Any, **kwargs: Any) -> Any:
        """As ``Consumer.poll``; the returned message's process span is made current."""
        if self._open is not None:
            self._end_open()
        msg = self._poll(*args, **kwargs)
        if msg is None or msg.error() is not None:
            return msg
        try:  # runs for every message: the cheapest checks first
            if (
                self._given_providers
                or self._telemetry.resolved
                or self._flow.resolved
                or _trace_api._TRACER_PROVIDER is not None
                or _metrics_internal._METER_PROVIDER is not None
                or _PROVIDERS_FROM_ENV
            ):
                self._open = self._start(msg, True)
            elif self._link_only is False:
                # No SDK at all: no span, no metric; only the incoming context flows on.
                ctx = self._propagation.context_of(msg.headers())
                self._open = _Open(msg, None, ctx, _get_ident()) if ctx is not None else None
            else:
                self._open = self._start(msg, True)
        except Exception:
            report_internal_error("could not start a process span")
        return msg

    def consume(self, *args: Any, **kwargs: Any) -> list[Any]:
        """As ``Consumer.consume``; records one ``receive`` span linking to each message.

        Handle each message inside ``with consumer.process(msg):`` to give it its own
        process span. The links are capped at the SDK's link limit
        (``OTEL_SPAN_LINK_COUNT_LIMIT``, 128 by default).
        """
        started = self._before_consume()
        messages = self._consumer.consume(*args, **kwargs)
        self._after_consume(messages, started)
        return messages

    def _before_consume(self) -> int:
        """End the open process span; the receive span's start time."""
        if self._open is not None:
            self._end_open()
        return time.time_ns()

    def _after_consume(self, messages: list[Any], started: int) -> None:
        """Record the receive span of a consume call that returned messages."""
        if not messages:
            return
        instruments = self._flow.instruments()
        if instruments is not None:
            try:
                for msg in messages:
                    if msg.error() is None:
                        self._flow.consumed(instruments, msg, "consume")
            except Exception:
                report_internal_error("could not count consumed messages")
        telemetry = self._telemetry
        tracer = telemetry.tracer()
        if tracer is None:
            return
        try:
            provider = self._tracer_provider or trace.get_tracer_provider()
            telemetry.receive_span(tracer, messages, started, self._propagation.extract, link_limit(provider))
        except Exception:
            report_internal_error("could not record a receive span")

    def process(self, msg: Any) -> Processing:
        """A context manager: the message's process span, current for the block."""
        return Processing(self, msg)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """End the open process span, then close the consumer."""
        if self._open is not None:
            self._end_open()
        if self.lag is not None:
            self.lag.clear()
        return self._consumer.close(*args, **kwargs)

    def run(self, handler: Any, **options: Any) -> Any:
        """Managed at-least-once loop; see :func:`tracing.write.loop.run`."""
        from tracing.write.loop import run

        return run(self, handler, **options)

    # -- internals --------------------------------------------------------------
    def _start(self, msg: Any, polled: bool = False) -> _Open | None:
        """Open the process span of ``msg`` and make its context current.

        ``polled``: a poll just handed ``msg`` to the app (counted as consumed).
        """
        telemetry = self._telemetry
        tracer = telemetry.tracer()
        link_only = self._link_only if self._link_only is not None else self._trust(msg.topic())
        flow = self._flow
        instruments = flow.instruments() if not flow.resolved else flow.resolved_instruments
        if instruments is not None:
            if polled:
                self._flow.consumed(instruments, msg)
            return self._start_measured(msg, tracer, link_only, instruments)
        if tracer is None:
            # No SDK: nothing to record, but a produce made while handling the message
            # must still carry the incoming trace (unless the topic is not trusted).
            if link_only:
                return None
            carried = self._propagation.context_of(msg.headers())
            return _Open(msg, None, carried, self._owner()) if carried is not None else None
        headers = msg.headers()
        if not headers:
            span, ctx = telemetry.start_process(tracer, msg, None, link_only)
            return _Open(msg, span, ctx, self._owner())
        tp = self._propagation.plain_traceparent(headers)  # the common header: validated once
        if tp is not None and telemetry.skip_remote_unsampled and not link_only:
            # An unsampled producer under a parent-based sampler (99 % of messages at 1 %):
            # nothing to record; the context flows on, the header never parsed.
            skipped = telemetry.skipped_child(tp)
            if skipped is not None:
                return _Open(msg, None, Context({SPAN_KEY: skipped}), self._owner())
        span, ctx = telemetry.start_process(tracer, msg, self._extracted(headers, tp, link_only), link_only)
        return _Open(msg, span, ctx, self._owner())

    def _extracted(self, headers: Any, plain: bytes | None, link_only: bool) -> Extracted | None:
        """The producer's context from non-empty headers; ``plain``: their plain ``traceparent``
        (:meth:`Propagation.plain_traceparent`), read without a second scan."""
        if plain is not None:
            return Extracted.of_plain(plain)
        return self._propagation.extract(headers, keep_baggage=not link_only)

    def _start_measured(self, msg: Any, tracer: Any, link_only: bool, instruments: Any) -> _Open:
        """``_start`` with the flow metrics on: queue time, chain duration, the chain carried on."""
        started = _time_ns()
        headers = msg.headers()
        flow = self._flow
        chain = flow.processing(instruments, msg, headers, not link_only, started)
        span = None
        if tracer is None:
            carried = None if link_only else self._propagation.context_of(headers)
            ctx = context_api.set_value(CHAIN_KEY, chain, carried)
        else:
            extracted = (
                self._extracted(headers, self._propagation.plain_traceparent(headers), link_only)
                if headers
                else None
            )
            span, ctx = self._telemetry.start_process(tracer, msg, extracted, link_only)
            ctx = context_api.set_value(CHAIN_KEY, chain, ctx)
        opened = _Open(msg, span, ctx, self._owner())
        opened.flow = flow
        opened.instruments = instruments
        opened.started = started
        return opened

    _owner = staticmethod(_get_ident)  # who makes a polled message's span current

    def _claim(self, msg: Any) -> _Open | None:
        """The span poll() opened for ``msg``, for a process block to take over."""
        opened = self._open
        if opened is not None and opened.msg is msg and not opened.claimed:
            opened.claimed = True
            return opened
        return None

    def _end_open(self) -> None:
        opened: Any = self._open
        self._open = None
        try:
            token = opened.token
            if token is not None and opened.owner == self._owner():
                opened.token = None
                if type(token) is contextvars.Token:
                    try:  # _detach(), inlined
                        token.var.reset(token)
                    except ValueError:
                        pass
                else:
                    _detach(token)
            if not opened.claimed and (opened.span is not None or opened.flow is not None):
                opened.end()
        except Exception:
            report_internal_error("could not end a process span")

    # -- pass-through -------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def __enter__(self) -> TracedConsumer:
        enter = getattr(self._consumer, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc: Any) -> Any:
        if self._open is not None:
            self._end_open()
        leave = getattr(self._consumer, "__exit__", None)
        return leave(*exc) if leave is not None else None

    def __repr__(self) -> str:
        return f"TracedConsumer({self._consumer!r})"


def _trust_policy(trust: str | Mapping[str, str]) -> Any:
    """A function topic -> link_only, from ``"parent"``/``"link"`` or a per-topic mapping."""
    if isinstance(trust, str):
        if trust not in (PARENT, LINK):
            raise ValueError(f"trust must be 'parent' or 'link', not {trust!r}")
        link_only = trust == LINK
        return lambda topic: link_only
    modes = dict(trust)
    for topic, mode in modes.items():
        if mode not in (PARENT, LINK):
            raise ValueError(f"trust for topic {topic!r} must be 'parent' or 'link', not {mode!r}")
    default = modes.pop("*", PARENT) == LINK
    per_topic = {topic: mode == LINK for topic, mode in modes.items()}
    return lambda topic: per_topic.get(topic, default)
