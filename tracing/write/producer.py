"""TracedProducer: a confluent-kafka producer that sends trace context with every message.

Feels exactly like ``confluent_kafka.Producer``: same ``produce()`` signature,
positional and keyword, same return values and exceptions; everything else is
passed through to the wrapped client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import opentelemetry.metrics._internal as _metrics_internal
from confluent_kafka.cimpl import Producer as _Producer
from confluent_kafka.serializing_producer import SerializingProducer as _SerializingProducer
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, TracerProvider

from tracing.write.metrics import CHAIN_HEADER, FlowMetrics, Instruments
from tracing.write.metrics import METER_PROVIDER_FROM_ENV as _METER_FROM_ENV
from tracing.write.propagation import Propagation, replace_headers, report_internal_error
from tracing.write.recipe import Telemetry, error_type, server_of

# produce()'s positional parameters after `topic`, per client class: the serializing
# producer takes key before value.
_PRODUCER_ARGS = ("value", "key", "partition", "callback", "on_delivery", "timestamp", "headers")
_SERIALIZING_ARGS = ("key", "value", "partition", "on_delivery", "timestamp", "headers")
_get_current = context_api.get_current
_time_ns = time.time_ns


def _refuse_keys_that_crash_the_client(headers: Any) -> None:
    """Raise UnicodeEncodeError for a header key that is not valid UTF-8.

    confluent-kafka (2.16) crashes the interpreter on such a key (a lone surrogate,
    say, from a mis-decoded upstream value); a clear exception is better than a crash.
    """
    if not headers:
        return
    for item in headers.items() if isinstance(headers, Mapping) else headers:
        if type(item) is tuple and item and type(item[0]) is str and not item[0].isascii():
            item[0].encode("utf-8")


class _Delivery:
    """Delivery callback that ends the send span, then calls the user's callback once."""

    __slots__ = ("span", "user_callback")

    def __init__(self, span: Any, user_callback: Any) -> None:
        self.span = span
        self.user_callback = user_callback

    def __call__(self, err: Any, msg: Any) -> None:
        span = self.span
        if span is not None:
            self.span = None  # a report ends the span once, whatever happens after
            try:
                Telemetry.end_send(span, err, msg)
            except Exception:
                report_internal_error("could not record a delivery report")
        if self.user_callback is not None:
            self.user_callback(err, msg)  # the app's exceptions surface from poll()/flush() as usual


class _MeasuredDelivery(_Delivery):
    """Also counts the message and times produce() -> delivery report."""

    __slots__ = ("flow", "instruments", "topic", "started")

    def __init__(
        self,
        span: Any,
        user_callback: Any,
        flow: FlowMetrics,
        instruments: Instruments,
        topic: str,
        started: int,
    ) -> None:
        super().__init__(span, user_callback)
        self.flow = flow
        self.instruments = instruments
        self.topic = topic
        self.started = started

    def __call__(self, err: Any, msg: Any) -> None:
        flow = self.flow
        if flow is not None:
            self.flow = None
            try:
                partition = msg.partition() if msg is not None else None
                flow.sent(
                    self.instruments, self.topic, partition, error_type(err) if err else None, self.started
                )
            except Exception:
                report_internal_error("could not record a delivery in the metrics")
        _Delivery.__call__(self, err, msg)


class TracedProducer:
    """Wraps a confluent-kafka ``Producer`` or ``SerializingProducer``.

    Each ``produce()`` records a ``send {topic}`` PRODUCER span, injects its context
    into the message headers (replacing, never appending; the caller's headers are
    not modified) and ends the span when the delivery report arrives, with the
    partition and offset, or the delivery error.

    >>> producer = TracedProducer({"bootstrap.servers": "127.0.0.1:19092"})
    >>> producer.produce("orders", b'{"id": 1}', key=b"order-1")
    >>> producer.flush()

    Args:
        conf_or_producer: a config dict (a ``confluent_kafka.Producer`` is built from
            it) or an existing ``Producer``/``SerializingProducer``.
        tracer_provider: defaults to the global one.
        propagator: defaults to the global one (``OTEL_PROPAGATORS``).
        meter_provider: for the flow metrics; defaults to the global one (none: no metrics).
        client_config: the config an existing client was built with; only read for
            span attributes (``client.id``, ``bootstrap.servers``).
    """

    def __init__(
        self,
        conf_or_producer: Mapping[str, Any] | Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        meter_provider: Any = None,
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(conf_or_producer, Mapping):
            config: Mapping[str, Any] | None = conf_or_producer
            producer = _Producer(dict(conf_or_producer))
        else:
            config = client_config
            producer = conf_or_producer
        self._producer = producer
        self._produce = producer.produce
        self._arg_names = _SERIALIZING_ARGS if isinstance(producer, _SerializingProducer) else _PRODUCER_ARGS
        self._propagation = Propagation(propagator)
        self._telemetry = Telemetry(
            tracer_provider,
            client_id=(config or {}).get("client.id"),
            server=server_of(config),
        )
        self._flow = FlowMetrics(meter_provider, server=server_of(config))
        self._meter_given = meter_provider is not None

    @property
    def wrapped(self) -> Any:
        """The confluent-kafka producer underneath."""
        return self._producer

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        """Produce a message, exactly as ``confluent_kafka.Producer.produce`` does, traced."""
        if "headers" in kwargs or len(args) == len(self._arg_names):
            _refuse_keys_that_crash_the_client(kwargs["headers"] if "headers" in kwargs else args[-1])
        telemetry = self._telemetry
        tracer = telemetry.resolved_tracer if telemetry.resolved else telemetry.tracer()
        ctx = _get_current()
        flow = self._flow
        if flow.resolved:
            instruments = flow.resolved_instruments
        elif self._meter_given or _metrics_internal._METER_PROVIDER is not None or _METER_FROM_ENV:
            instruments = flow.instruments()
        else:
            instruments = None  # no MeterProvider anywhere: not even a call to find out
        if instruments is not None:
            return self._produce_measured(topic, args, kwargs, tracer, ctx, instruments)
        if tracer is None:
            # No SDK: no spans, but an incoming context (say, of the message being
            # processed) still flows downstream. Without one, the client's own call.
            current = trace.get_current_span(ctx).get_span_context()
            if not current.is_valid:
                return self._produce(topic, *args, **kwargs)
            named = self._named(args, kwargs)
            if named is None:
                return self._produce(topic, *args, **kwargs)  # let the client raise its TypeError
            try:
                named["headers"] = self._propagation.inject(named.get("headers"), current, ctx)
            except Exception:
                report_internal_error("could not inject trace context")
            return self._produce(topic, **named)
        if args:
            named = self._named(args, kwargs)
            if named is None:
                return self._produce(topic, *args, **kwargs)  # let the client raise its TypeError
            kwargs = named
        try:
            span = telemetry.start_send(
                tracer, topic, kwargs.get("key"), kwargs.get("partition"), kwargs.get("value") is None, ctx
            )
            kwargs["headers"] = self._propagation.inject(kwargs.get("headers"), span.get_span_context(), ctx)
        except Exception:
            report_internal_error("could not start a send span")
            return self._produce(topic, **kwargs)
        if (
            type(span) is not NonRecordingSpan and span.is_recording()
        ):  # no callback for a span nobody records
            user_callback = kwargs.pop("on_delivery", None)
            alias = kwargs.pop("callback", None)
            kwargs["on_delivery"] = _Delivery(span, user_callback if user_callback is not None else alias)
        try:
            self._produce(topic, **kwargs)
        except BaseException as exc:
            Telemetry.fail(span, exc)
            raise
        return None

    def _produce_measured(
        self,
        topic: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tracer: Any,
        ctx: Any,
        instruments: Any,
    ) -> None:
        """produce() with the flow metrics on: the chain header, counted deliveries."""
        started = _time_ns()
        if args:
            named = self._named(args, kwargs)
            if named is None:
                return self._produce(topic, *args, **kwargs)  # let the client raise its TypeError
            kwargs = named
        span = None
        try:
            chain = (CHAIN_HEADER, self._flow.chain_to_send(ctx, topic))
            if tracer is not None:
                span = self._telemetry.start_send(
                    tracer,
                    topic,
                    kwargs.get("key"),
                    kwargs.get("partition"),
                    kwargs.get("value") is None,
                    ctx,
                )
                carried = span.get_span_context()
            else:
                carried = trace.get_current_span(ctx).get_span_context()
            if carried.is_valid:
                kwargs["headers"] = self._propagation.inject(kwargs.get("headers"), carried, ctx, chain)
            else:
                kwargs["headers"] = replace_headers(kwargs.get("headers"), [chain])
        except Exception:
            report_internal_error("could not start a send span")
        user_callback = kwargs.pop("on_delivery", None)
        alias = kwargs.pop("callback", None)
        kwargs["on_delivery"] = _MeasuredDelivery(
            span if span is not None and span.is_recording() else None,
            user_callback if user_callback is not None else alias,
            self._flow,
            instruments,
            topic,
            started,
        )
        try:
            self._produce(topic, **kwargs)
        except BaseException as exc:
            if span is not None:
                Telemetry.fail(span, exc)
            try:
                self._flow.sent(instruments, topic, kwargs.get("partition"), error_type(exc), started)
            except Exception:
                report_internal_error("could not record a failed produce in the metrics")
            raise
        return None

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """``kwargs`` with the positional arguments added by name; None if the client would refuse them."""
        names = self._arg_names
        if len(args) > len(names):
            return None
        for name in names[: len(args)]:
            if name in kwargs:
                return None  # given twice
        kwargs.update(zip(names, args, strict=False))
        return kwargs

    # Hot pass-throughs, defined to skip __getattr__ on every call.
    def poll(self, *args: Any, **kwargs: Any) -> int:
        """Serve delivery reports (ending their send spans); as ``Producer.poll``."""
        return self._producer.poll(*args, **kwargs)

    def flush(self, *args: Any, **kwargs: Any) -> int:
        """Wait for outstanding deliveries (ending their send spans); as ``Producer.flush``."""
        return self._producer.flush(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._producer)

    def __bool__(self) -> bool:
        return bool(self._producer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def __enter__(self) -> TracedProducer:
        enter = getattr(self._producer, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc: Any) -> Any:
        leave = getattr(self._producer, "__exit__", None)
        return leave(*exc) if leave is not None else None

    def __repr__(self) -> str:
        return f"TracedProducer({self._producer!r})"
