"""``tracing.instrument()``: trace existing confluent-kafka code without editing it.

Replaces ``confluent_kafka.Producer``, ``Consumer``, ``SerializingProducer``,
``DeserializingConsumer`` and the asyncio ``confluent_kafka.aio.AIOConsumer`` and
``AIOProducer`` with classes that build the original client and wrap it. (The modules
that define the serializing clients are left alone: their classes refer to themselves
by module name.) Code that imported the classes
before ``instrument()`` ran keeps the originals, as with every patching instrumentation:
call it first, or run the app under ``opentelemetry-instrument`` (entry point
``kafka_event_tracing``). The OpenTelemetry contrib instrumentations of confluent-kafka,
pika and aio-pika, when active too, are switched off (see ``tracing.write.contrib``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Collection
from typing import Any

import confluent_kafka

from tracing.write.clients.consumer import TracedConsumer
from tracing.write.clients.producer import TracedProducer
from tracing.write.contrib import switch_off_contrib

_lock = threading.Lock()
_originals: dict[tuple[Any, str], Any] = {}

# (module, attribute, wrapper): the public names users import.
_TARGETS: list[tuple[Any, str, type]] = [
    (confluent_kafka, "Producer", TracedProducer),
    (confluent_kafka, "SerializingProducer", TracedProducer),
    (confluent_kafka, "Consumer", TracedConsumer),
    (confluent_kafka, "DeserializingConsumer", TracedConsumer),
]
_CONSUMERS: set[type] = {TracedConsumer}  # take the consumer options (trust, baggage_keys)
try:
    from confluent_kafka import aio as _aio

    from tracing.write.clients.aio import TracedAIOConsumer, TracedAIOProducer

    _TARGETS += [(_aio, "AIOConsumer", TracedAIOConsumer), (_aio, "AIOProducer", TracedAIOProducer)]
    _CONSUMERS.add(TracedAIOConsumer)
except ImportError:  # confluent-kafka without asyncio support
    pass


def _config_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The client config from the constructor's arguments (dict and/or keywords)."""
    config: dict[str, Any] = {}
    if args and isinstance(args[0], dict):
        config.update(args[0])
    for key, value in kwargs.items():
        config[key.replace("_", ".")] = value  # Producer(bootstrap_servers=...) style
    return config


def _init(wrapper: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
    wrapper.__init__(instance, *args, **kwargs)


def _patched(original: type, wrapper: type, options: dict[str, Any]) -> type:
    """A class named like ``original`` whose instances are traced wrappers of it."""

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        # confluent-kafka's own classes build clients too (AIOConsumer builds a
        # Consumer): those stay raw, or every message would be traced twice.
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("confluent_kafka."):
            return original(*args, **kwargs)
        return object.__new__(cls)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if wrapper.__name__ == "TracedAIOProducer":
            # AIOProducer cannot carry headers; the traced one is built from the config.
            _init(wrapper, self, dict(args[0]) if args else {}, **options)
            return
        if len(args) == 1 and not kwargs and isinstance(args[0], dict) and wrapper in _CONSUMERS:
            # Built by the wrapper, so that its statistics can feed the lag gauges.
            _init(wrapper, self, args[0], _client_class=original, **options)
            return
        client = original(*args, **kwargs)
        _init(wrapper, self, client, client_config=_config_of(args, kwargs), **options)

    namespace = {
        "__new__": __new__,
        "__init__": __init__,
        "__doc__": original.__doc__,
        "__module__": original.__module__,
    }
    cls = type(original.__name__, (wrapper,), namespace)
    cls.__qualname__ = original.__qualname__
    cls._kafka_event_tracing_original = original  # type: ignore[attr-defined]
    return cls


def instrument(
    *,
    tracer_provider: Any = None,
    propagator: Any = None,
    meter_provider: Any = None,
    **consumer_options: Any,
) -> None:
    """Trace every confluent-kafka client (and pika or aio-pika channel) built from now on. Idempotent.

    >>> import tracing; tracing.instrument()
    >>> from confluent_kafka import Producer   # now a traced producer

    ``meter_provider``: for the flow metrics (default: the global one).
    ``consumer_options`` (``trust``, ``baggage_keys``) go to every traced consumer.
    """
    with _lock:
        # contrib's instrumentation of the same clients would trace every message twice;
        # switched off first, so that its uninstrument() cannot put back the raw classes
        # over ours.
        switch_off_contrib()
        if _originals:
            return
        built: dict[Any, type] = {}
        for module, name, wrapper in _TARGETS:
            original = getattr(module, name)
            if getattr(original, "_kafka_event_tracing_original", None) is not None:
                continue
            options: dict[str, Any] = {
                "tracer_provider": tracer_provider,
                "propagator": propagator,
                "meter_provider": meter_provider,
            }
            if wrapper in _CONSUMERS:
                options.update(consumer_options)
            if original not in built:
                built[original] = _patched(original, wrapper, options)
            _originals[(module, name)] = original
            setattr(module, name, built[original])
        from tracing.write.clients import rabbitmq_instrument  # pika's channels, when pika is installed

        common = {"tracer_provider": tracer_provider, "propagator": propagator}
        _originals.update(
            rabbitmq_instrument.instrument({**common, "meter_provider": meter_provider, **consumer_options})
        )


def uninstrument() -> None:
    """Put the original confluent-kafka classes back (clients already built stay traced)."""
    with _lock:
        for (module, name), original in _originals.items():
            setattr(module, name, original)
        _originals.clear()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return bool(_originals)


class KafkaEventTracingInstrumentor:
    """Entry point for ``opentelemetry-instrument`` (group ``opentelemetry_instrumentor``):
    confluent-kafka, and pika and aio-pika when they are installed."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("confluent-kafka >= 2.6, < 3",)

    def instrument(self, **kwargs: Any) -> None:
        instrument(tracer_provider=kwargs.get("tracer_provider"), meter_provider=kwargs.get("meter_provider"))

    def uninstrument(self, **kwargs: Any) -> None:
        uninstrument()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return is_instrumented()
