"""TracedProducer: a confluent-kafka producer that sends trace context with every message.

Feels exactly like ``confluent_kafka.Producer``: same ``produce()`` signature,
positional and keyword, same return values and exceptions; every other method is the
wrapped client's (and type-checks as such).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Producer as _Producer
from confluent_kafka.serializing_producer import SerializingProducer as _SerializingProducer
from opentelemetry import context as context_api
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing.write import otel
from tracing.write.contrib import untraced
from tracing.write.operations import Plan, SendOperation
from tracing.write.providers import confluent

if TYPE_CHECKING:
    from confluent_kafka._types import HeadersType
    from confluent_kafka.cimpl import DeliveryCallback

    _ProducerBase = _Producer  # the client's methods and signatures, for type checkers
else:
    _ProducerBase = object

# produce()'s positional parameters after `topic`, per client class: the serializing
# producer takes key before value.
_PRODUCER_ARGS = ("value", "key", "partition", "callback", "on_delivery", "timestamp", "headers")
_SERIALIZING_ARGS = ("key", "value", "partition", "on_delivery", "timestamp", "headers")
_get_current = otel.current_context


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


class TracedProducer(_ProducerBase):
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
            producer: Any = _Producer(dict(conf_or_producer))
        else:
            config = client_config
            producer = conf_or_producer
        # A client the OpenTelemetry contrib instrumentation wrapped is traced once, by us.
        producer, own = untraced(producer, ("produce",), "TracedProducer")
        self._producer = producer
        self._produce = own["produce"]
        self._arg_names = _SERIALIZING_ARGS if isinstance(producer, _SerializingProducer) else _PRODUCER_ARGS
        self._sends = SendOperation(
            confluent,
            confluent.client_info(config),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
        )

    @property
    def wrapped(self) -> Any:
        """The confluent-kafka producer underneath."""
        return self._producer

    if TYPE_CHECKING:

        def produce(
            self,
            topic: str,
            value: str | bytes | None = None,
            key: str | bytes | None = None,
            partition: int = -1,
            callback: DeliveryCallback | None = None,
            on_delivery: DeliveryCallback | None = None,
            timestamp: int = 0,
            headers: HeadersType | None = None,
        ) -> None: ...

    else:

        def produce(self, topic, *args, **kwargs):
            """Produce a message, exactly as ``confluent_kafka.Producer.produce`` does, traced."""
            if "headers" in kwargs or len(args) == len(self._arg_names):
                _refuse_keys_that_crash_the_client(kwargs["headers"] if "headers" in kwargs else args[-1])
            ctx = _get_current()
            plan = self._sends.prepare(ctx)
            if plan is None:
                return self._produce(topic, *args, **kwargs)
            named = self._named(args, kwargs)
            if named is None:
                return self._produce(topic, *args, **kwargs)  # let the client raise its TypeError
            return self._traced_produce(topic, named, plan, ctx)

    def _traced_produce(
        self, topic: str, named: dict[str, Any], plan: Plan, ctx: context_api.Context
    ) -> None:
        partition = named.get("partition")
        named["headers"], sending = self._sends.start(
            plan, topic, named.get("key"), partition, named.get("value") is None, named.get("headers"), ctx
        )
        if sending is None:
            self._produce(topic, **named)
            return
        user_callback = named.pop("on_delivery", None)
        alias = named.pop("callback", None)
        sending.user_callback = user_callback if user_callback is not None else alias
        named["on_delivery"] = sending
        try:
            self._produce(topic, **named)
        except BaseException as exc:
            sending.refused(exc, partition if isinstance(partition, int) and partition >= 0 else None)
            raise

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
    def poll(self, timeout: float = -1) -> int:
        """Serve delivery reports (ending their send spans); as ``Producer.poll``."""
        served: int = self._producer.poll(timeout)
        return served

    def flush(self, timeout: float = -1) -> int:
        """Wait for outstanding deliveries (ending their send spans); as ``Producer.flush``."""
        left: int = self._producer.flush(timeout)
        return left

    def __len__(self) -> int:
        return len(self._producer)

    def __bool__(self) -> bool:
        return bool(self._producer)

    if not TYPE_CHECKING:  # type checkers see the client's own methods (the base class)

        def __getattr__(self, name):
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
