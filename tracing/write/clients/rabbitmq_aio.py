"""aio-pika: a traced channel, exchanges and queues, with the client's own signatures.

- ``TracedExchange.publish`` records a ``send {exchange}`` PRODUCER span and publishes a
  copy of the message whose ``headers`` carry its context (replaced, never appended;
  the caller's ``Message`` and headers are not touched). With publisher confirms (aio-pika's
  default) the span records the broker's ack, the ``DeliveryError`` of a nack, or
  ``NO_ROUTE`` when a mandatory message came back.
- ``TracedQueue``: exactly one ``process {exchange}`` span per delivery in every style:
  ``consume(callback)`` (the span covers the callback, ``message.process()`` inside it
  included), ``iterator()`` and ``get()`` (drop-in: the span is current in the calling
  task until its next message, as for :mod:`tracing.aio`), and ``async with
  queue.process(message):`` for a block.
- ``message.ack()``/``nack()``/``reject()`` add an event to the current process span.
- ``TracedChannel`` hands out traced exchanges and queues (``declare_exchange``,
  ``get_exchange``, ``default_exchange``, ``declare_queue``, ``get_queue``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import time
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing.write.clients.rabbitmq import settle_event
from tracing.write.operations import PARENT, ProcessOperation, SendOperation
from tracing.write.propagation import report_internal_error
from tracing.write.providers import rabbitmq as provider
from tracing.write.records import Delivery
from tracing.write.tracker import OpenProcessing, ProcessBlock, in_flight

_get_current = context_api.get_current
_time_ns = time.time_ns
_lock = threading.Lock()
_settle_patched = False


def _server(channel: Any) -> dict[str, Any]:
    try:
        url = channel._connection.url
        return {"host": url.host, "port": url.port}
    except Exception:
        return {}


def _record_settlements() -> None:
    """``IncomingMessage.ack``/``nack``/``reject`` add an event to the current span (once)."""
    global _settle_patched
    with _lock:
        if _settle_patched:
            return
        _settle_patched = True
        from aio_pika.message import IncomingMessage

        def patch(name: str, event: str, keys: tuple[str, ...]) -> None:
            original = getattr(IncomingMessage, name)

            @functools.wraps(original)
            async def settle(self: Any, *args: Any, **kwargs: Any) -> Any:
                named = dict(zip(keys, args, strict=False)) | kwargs
                settle_event(event, self.delivery_tag, **{k: named.get(k) for k in keys})
                return await original(self, *args, **kwargs)

            setattr(IncomingMessage, name, settle)

        patch("ack", "ack", ("multiple",))
        patch("nack", "nack", ("multiple", "requeue"))
        patch("reject", "reject", ("requeue",))


_message_copy: Any = None  # (aio_pika.Message, [(get, set) of each slot copied], set lock, set headers)


def message_with_headers(message: Any, headers: Any) -> Any:
    """A copy of an aio-pika ``Message`` carrying ``headers`` (a new dict), the caller's untouched.

    A plain ``aio_pika.Message`` is copied slot by slot, as it is: ``copy.copy`` builds it anew
    through ``Message.__init__`` (every field normalised again, each set through the lock check
    of ``__setattr__``), 3x the cost and a third of a traced publish's own. Any other message
    type goes through ``copy.copy``.
    """
    global _message_copy
    new_headers = dict(headers) if headers is not None else {}
    if _message_copy is None:
        from aio_pika import Message

        try:
            own = vars(Message)
            descriptors = {
                name: own[f"_Message{name}" if name.startswith("__") else name] for name in Message.__slots__
            }
            lock, header = descriptors.pop("__lock"), descriptors.pop("headers")
            slots = [(d.__get__, d.__set__) for d in descriptors.values()]
            _message_copy = (Message, slots, lock.__set__, header.__set__)
        except (AttributeError, KeyError, TypeError):  # an aio-pika of another shape: copy.copy for all
            _message_copy = (None, [], None, None)
    kind, slots, set_lock, set_headers = _message_copy
    if type(message) is not kind:
        sent = copy.copy(message)
        sent.headers = new_headers
        return sent
    sent = object.__new__(kind)
    for get, put in slots:
        try:
            put(sent, get(message))
        except AttributeError:  # a slot the original never set
            pass
    set_lock(sent, False)  # a copy is unlocked, as copy.copy makes it
    set_headers(sent, new_headers)
    return sent


class TracedExchange:
    """Wraps an ``aio_pika.Exchange``; every published message carries its send span's context."""

    def __init__(
        self,
        exchange: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        meter_provider: Any = None,
        _server_info: Mapping[str, Any] | None = None,
    ) -> None:
        self._exchange = exchange
        self._sends = SendOperation(
            provider.AIO_PIKA,
            provider.AIO_PIKA.client_info(_server_info or _server(getattr(exchange, "channel", None))),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
        )

    @property
    def wrapped(self) -> Any:
        return self._exchange

    async def publish(
        self,
        message: Any,
        routing_key: str,
        *,
        mandatory: bool = True,
        immediate: bool = False,
        timeout: Any = None,
    ) -> Any:
        """As ``Exchange.publish``: the broker's ``Basic.Ack`` (or None, or a returned message), traced."""
        exchange = self._exchange
        ctx = _get_current()
        plan = self._sends.prepare(ctx)
        if plan is None:
            return await exchange.publish(
                message, routing_key, mandatory=mandatory, immediate=immediate, timeout=timeout
            )
        sending = None
        sent = message
        try:
            name = exchange.name
            extra = provider.send_extra(name, routing_key, message.message_id, message.body)
            headers, sending = self._sends.start(
                plan, provider.destination_of(name), None, None, False, message.headers, ctx, extra
            )
            sent = message_with_headers(message, headers)
        except Exception:
            report_internal_error("could not prepare a publish")
        try:
            result = await exchange.publish(
                sent, routing_key, mandatory=mandatory, immediate=immediate, timeout=timeout
            )
        except BaseException as exc:  # DeliveryError (nack), PublishError, cancelled: the app's to see
            if sending is not None:
                sending.refused(exc)
            raise
        if sending is not None:
            kind = type(result).__name__
            if result is None or kind == "Ack":
                sending(kind == "Ack")
            else:  # a mandatory message the broker could not route came back
                sending.settle(Delivery(None, None, "NO_ROUTE", "returned by the broker: unroutable"))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exchange, name)

    def __repr__(self) -> str:
        return f"TracedExchange({self._exchange!r})"


class TracedQueue:
    """Wraps an ``aio_pika.Queue``; each delivery continues its publisher's trace."""

    def __init__(
        self,
        queue: Any,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        trust: str | Mapping[str, str] = PARENT,
        baggage_keys: Iterable[str] | None = None,
        meter_provider: Any = None,
        _server_info: Mapping[str, Any] | None = None,
    ) -> None:
        self._queue = queue
        messages = provider._AioPika(getattr(queue, "name", None))
        operation = ProcessOperation(
            messages,
            messages.client_info(_server_info or _server(getattr(queue, "channel", None))),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
            trust=trust,
            baggage_keys=baggage_keys,
        )
        self._spans = OpenProcessing(operation, per_task=True)
        try:
            _record_settlements()
        except Exception:
            report_internal_error("could not record settlements")

    @property
    def wrapped(self) -> Any:
        return self._queue

    async def consume(
        self,
        callback: Any,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Any = None,
        consumer_tag: Any = None,
        timeout: Any = None,
    ) -> Any:
        """As ``Queue.consume``; each callback runs inside its delivery's process span."""
        spans = self._spans

        async def traced(message: Any) -> Any:
            async with spans.block(message, delivered=True):
                return await callback(message)

        return await self._queue.consume(traced, no_ack, exclusive, arguments, consumer_tag, timeout)

    def iterator(self, **kwargs: Any) -> TracedQueueIterator:
        """As ``Queue.iterator``: ``async for message in ...``, each one's span current in the task."""
        return TracedQueueIterator(self._queue.iterator(**kwargs), self._spans)

    async def get(self, *, no_ack: bool = False, fail: bool = True, timeout: Any = 5) -> Any:
        """As ``Queue.get``; the message's process span is current in this task until its next one."""
        spans = self._spans
        spans.end_own()
        message = await self._queue.get(no_ack=no_ack, fail=fail, timeout=timeout)
        if message is not None:
            spans.polled(message)
        return message

    def process(self, message: Any) -> ProcessBlock:
        """The message's process span for an ``async with`` (or ``with``) block."""
        return self._spans.block(message)

    def close_spans(self) -> None:
        """End the open process spans (a consumer shutting down)."""
        self._spans.end_all(in_flight())

    def __aiter__(self) -> TracedQueueIterator:
        return self.iterator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    def __repr__(self) -> str:
        return f"TracedQueue({self._queue!r})"


class TracedQueueIterator:
    """A traced ``QueueIterator``: the process span of each message is opened in the calling task."""

    def __init__(self, iterator: Any, spans: OpenProcessing) -> None:
        self._iterator = iterator
        self._spans = spans

    def __aiter__(self) -> TracedQueueIterator:
        return self

    async def __anext__(self) -> Any:
        spans = self._spans
        previous = spans.hand_over() if spans.open else None
        if previous is None:
            message = await self._iterator.__anext__()
        else:
            ended_at = _time_ns()
            try:
                await asyncio.sleep(0)  # a task just handed the previous message may claim it first
                message = await self._iterator.__anext__()
            finally:
                spans.handed_over(previous, ended_at)
        spans.polled(message)
        return message

    async def close(self) -> None:
        self._spans.end_all(in_flight())
        await self._iterator.close()

    async def __aenter__(self) -> TracedQueueIterator:
        await self._iterator.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        self._spans.end_all(exc[1] if len(exc) > 1 else None)
        return await self._iterator.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


class TracedChannel:
    """Wraps an ``aio_pika`` channel: the exchanges and queues it hands out are traced.

    >>> channel = TracedChannel(await connection.channel())
    >>> exchange = await channel.declare_exchange("orders", aio_pika.ExchangeType.TOPIC)
    >>> await exchange.publish(aio_pika.Message(b'{"id": 1}'), "order.created")
    >>> queue = await channel.declare_queue("notifications")
    >>> await queue.consume(on_message)
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
        self._channel = channel
        self._send_options: dict[str, Any] = {
            "tracer_provider": tracer_provider,
            "propagator": propagator,
            "meter_provider": meter_provider,
            "_server_info": _server(channel),
        }
        self._process_options = dict(self._send_options, trust=trust, baggage_keys=baggage_keys)

    @property
    def wrapped(self) -> Any:
        return self._channel

    @property
    def default_exchange(self) -> TracedExchange:
        return TracedExchange(self._channel.default_exchange, **self._send_options)

    async def declare_exchange(self, *args: Any, **kwargs: Any) -> TracedExchange:
        return TracedExchange(await self._channel.declare_exchange(*args, **kwargs), **self._send_options)

    async def get_exchange(self, *args: Any, **kwargs: Any) -> TracedExchange:
        return TracedExchange(await self._channel.get_exchange(*args, **kwargs), **self._send_options)

    async def declare_queue(self, *args: Any, **kwargs: Any) -> TracedQueue:
        return TracedQueue(await self._channel.declare_queue(*args, **kwargs), **self._process_options)

    async def get_queue(self, *args: Any, **kwargs: Any) -> TracedQueue:
        return TracedQueue(await self._channel.get_queue(*args, **kwargs), **self._process_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    def __await__(self) -> Generator[Any, Any, TracedChannel]:
        # ``await connection.channel()`` under ``tracing.instrument()``: opens the channel.
        yield from self._channel.__await__()
        return self

    async def __aenter__(self) -> TracedChannel:
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._channel.__aexit__(*exc)

    def __repr__(self) -> str:
        return f"TracedChannel({self._channel!r})"


try:  # aio-pika's own checks (``queue.bind(exchange)``, isinstance) take the traced ones as theirs
    from aio_pika.abc import AbstractExchange, AbstractQueue

    for _abstract, _traced in ((AbstractExchange, TracedExchange), (AbstractQueue, TracedQueue)):
        if hasattr(_abstract, "register"):  # an ABC (not a Protocol) in this aio-pika version
            _abstract.register(_traced)
except ImportError:  # pragma: no cover - aio-pika not installed
    pass
