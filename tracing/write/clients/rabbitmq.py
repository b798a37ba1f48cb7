"""pika (blocking connection): a traced channel, with the client's own signatures.

``TracedBlockingChannel`` wraps a ``pika.adapters.blocking_connection.BlockingChannel``:

- ``basic_publish`` records a ``send {exchange}`` PRODUCER span and injects its context
  into a copy of the message's properties (``headers`` replaced, never appended; the
  caller's ``BasicProperties`` and headers dict are not touched). With publisher
  confirms on (``confirm_delivery()``), the span records the broker's ack, or the
  ``NackError``/``UnroutableError`` the client raises.
- exactly one ``process {exchange}`` span per delivery in every consuming style:
  ``basic_consume`` callbacks (the span covers the callback, which gets this traced
  channel), the ``consume()`` generator and ``basic_get`` (drop-in: the delivery's span
  is current until the next one, or ``close``), and ``with channel.process(method,
  properties, body):`` for a block.
- ``basic_ack``/``basic_nack``/``basic_reject`` add an ``ack``/``nack``/``reject`` event
  to the current process span.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing import semconv as sc
from tracing.write import otel
from tracing.write.operations import PARENT, ProcessOperation, SendOperation
from tracing.write.propagation import report_internal_error
from tracing.write.providers import rabbitmq as provider
from tracing.write.providers.rabbitmq import PikaDelivery
from tracing.write.tracker import OpenProcessing, ProcessBlock, in_flight

_get_current = context_api.get_current
_get_current_span = trace.get_current_span
_time_ns = time.time_ns


def settle_event(name: str, delivery_tag: Any, **attributes: Any) -> None:
    """An ``ack``/``nack``/``reject`` event on the current span, when one is recorded."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            attrs: dict[str, Any] = {k: v for k, v in attributes.items() if v is not None}
            if isinstance(delivery_tag, int):
                attrs[sc.RABBITMQ_DELIVERY_TAG] = delivery_tag
            otel.add_known_event(span, name, attrs)
    except Exception:
        report_internal_error("could not record a settlement")


def with_headers(properties: Any, headers: Any, make: Any) -> Any:
    """A copy of ``properties`` (or new ones, from ``make``) carrying ``headers`` as a dict."""
    if properties is None:
        new = make()
    elif type(properties) is make:
        # What copy.copy() makes of pika's plain BasicProperties (its fields in __dict__, no
        # __copy__ or __reduce__ of its own), without copy's generic protocol: a third of an
        # unsampled publish's cost.
        new = object.__new__(make)
        new.__dict__.update(properties.__dict__)
    else:
        new = copy.copy(properties)
    new.headers = dict(headers) if headers is not None else None
    return new


def _server(channel: Any) -> dict[str, Any]:
    try:
        params = channel.connection._impl.params
        return {"host": params.host, "port": params.port}
    except Exception:
        return {}


class TracedBlockingChannel:
    """Wraps a pika ``BlockingChannel``.

    >>> channel = TracedBlockingChannel(pika.BlockingConnection().channel())
    >>> channel.basic_publish("orders", "order.created", b'{"id": 1}')
    >>> channel.basic_consume("notifications", on_message)   # on_message(channel, method, properties, body)

    Args:
        channel: the ``BlockingChannel``.
        tracer_provider, propagator, trust, baggage_keys, meter_provider: as for
            :class:`~tracing.TracedConsumer` (``trust`` per exchange).
    """

    def __init__(
        self,
        channel: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
        meter_provider: Any = None,
    ) -> None:
        from pika import BasicProperties  # here, not per publish: a wrapped channel means pika is there

        self._channel = channel
        self._new_properties = BasicProperties
        info = provider.PIKA.client_info(_server(channel))
        kwargs: dict[str, Any] = {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "propagator": propagator,
        }
        self._sends = SendOperation(provider.PIKA, info, **kwargs)
        operation = ProcessOperation(provider.PIKA, info, trust=trust, baggage_keys=baggage_keys, **kwargs)
        self._spans = OpenProcessing(operation, per_task=False)
        self._last: PikaDelivery | None = None

    @property
    def wrapped(self) -> Any:
        """The pika channel underneath."""
        return self._channel

    # -- publishing ---------------------------------------------------------------
    def basic_publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any = None, mandatory: bool = False
    ) -> None:
        """As ``BlockingChannel.basic_publish``, traced."""
        channel = self._channel
        ctx = _get_current()
        plan = self._sends.prepare(ctx)
        if plan is None:
            return channel.basic_publish(exchange, routing_key, body, properties, mandatory)  # type: ignore[no-any-return]
        sending = None
        sent_properties = properties
        try:
            extra = provider.send_extra(exchange, routing_key, getattr(properties, "message_id", None), body)
            headers, sending = self._sends.start(
                plan,
                provider.destination_of(exchange),
                None,
                None,
                False,
                getattr(properties, "headers", None),
                ctx,
                extra,
            )
            sent_properties = with_headers(properties, headers, self._new_properties)
        except Exception:
            report_internal_error("could not prepare a publish")
        try:
            channel.basic_publish(exchange, routing_key, body, sent_properties, mandatory)
        except BaseException as exc:  # NackError, UnroutableError, a closed channel: the app's to see
            if sending is not None:
                sending.refused(exc)
            raise
        if sending is not None:
            sending(bool(getattr(channel, "_delivery_confirmation", False)))
        return None

    def confirm_delivery(self) -> None:
        """As ``BlockingChannel.confirm_delivery``: each send span then records the broker's answer."""
        self._channel.confirm_delivery()

    # -- consuming ----------------------------------------------------------------
    def basic_consume(
        self,
        queue: str,
        on_message_callback: Any,
        auto_ack: bool = False,
        exclusive: bool = False,
        consumer_tag: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        """As ``BlockingChannel.basic_consume``; each callback runs inside its delivery's
        process span and gets this traced channel."""
        spans = self._spans

        def traced(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            with spans.block(PikaDelivery(queue, method, properties, body), delivered=True):
                on_message_callback(self, method, properties, body)

        tag: str = self._channel.basic_consume(queue, traced, auto_ack, exclusive, consumer_tag, arguments)
        return tag

    def consume(
        self,
        queue: str,
        auto_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
        inactivity_timeout: float | None = None,
        consumer_tag: str | None = None,
    ) -> Iterator[tuple[Any, Any, Any]]:
        """As ``BlockingChannel.consume``; each delivery's process span is current until
        the next one is asked for (or the generator is closed)."""
        spans = self._spans
        inner = self._channel.consume(
            queue,
            auto_ack=auto_ack,
            exclusive=exclusive,
            arguments=arguments,
            inactivity_timeout=inactivity_timeout,
            consumer_tag=consumer_tag,
        )
        try:
            while True:
                if spans.open:
                    spans.end_own()
                try:
                    item = next(inner)
                except StopIteration:
                    return
                if item[0] is not None:
                    self._polled(queue, item)
                yield item
        finally:
            spans.end_all(in_flight())
            inner.close()

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, Any]:
        """As ``BlockingChannel.basic_get``; the message's process span is current until
        the next ``basic_get``/delivery (or ``close``)."""
        if self._spans.open:
            self._spans.end_own()
        item: tuple[Any, Any, Any] = self._channel.basic_get(queue, auto_ack)
        if item[0] is not None:
            self._polled(queue, item)
        return item

    def _polled(self, queue: str, item: tuple[Any, Any, Any]) -> None:
        self._last = PikaDelivery(queue, *item)
        self._spans.polled(self._last)

    def process(self, method: Any, properties: Any, body: Any, queue: str | None = None) -> ProcessBlock:
        """A context manager: the delivery's process span for exactly the block (taking
        over the one ``consume()``/``basic_get`` opened for it)."""
        last = self._last
        delivery = last if last is not None and last.method is method else None
        return self._spans.block(delivery or PikaDelivery(queue, method, properties, body))

    # -- settling -----------------------------------------------------------------
    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        if multiple:
            settle_event("ack", delivery_tag, multiple=True)
        else:  # settle_event(), without its keyword handling: one ack per delivery is the common case
            try:
                span = _get_current_span()
                if span.is_recording():
                    otel.add_known_event(
                        span,
                        "ack",
                        {sc.RABBITMQ_DELIVERY_TAG: delivery_tag} if isinstance(delivery_tag, int) else {},
                    )
            except Exception:
                report_internal_error("could not record a settlement")
        self._channel.basic_ack(delivery_tag, multiple)

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        settle_event("nack", delivery_tag, multiple=multiple or None, requeue=requeue)
        self._channel.basic_nack(delivery_tag, multiple, requeue)

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        settle_event("reject", delivery_tag, requeue=requeue)
        self._channel.basic_reject(delivery_tag, requeue)

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> None:
        """End the open process span (failed, if an exception is in flight), then close."""
        self._spans.end_all(in_flight())
        self._channel.close(reply_code, reply_text)

    if not TYPE_CHECKING:

        def __getattr__(self, name):
            return getattr(self._channel, name)

    def __enter__(self) -> TracedBlockingChannel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._spans.end_all(exc[1] if len(exc) > 1 else None)
        leave = getattr(self._channel, "__exit__", None)
        if leave is not None:
            leave(*exc)

    def __repr__(self) -> str:
        return f"TracedBlockingChannel({self._channel!r})"
