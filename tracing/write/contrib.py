"""Beside the OpenTelemetry contrib instrumentations of confluent-kafka, pika and aio-pika: each
message traced once.

``opentelemetry-instrumentation-confluent-kafka`` (entry point ``confluent_kafka``),
``-pika`` (``pika``) and ``-aio-pika`` (``aio-pika``) are what ``opentelemetry-bootstrap``
installs for these clients. When this project's instrumentation is active too, every message
would get both their spans and ours. So, whatever the order in which they are switched on:

- ``tracing.instrument()`` (and the ``kafka_event_tracing`` entry point) switches each active
  one off through its public API (``ConfluentKafkaInstrumentor().uninstrument()``,
  ``PikaInstrumentor().uninstrument()``, ``AioPikaInstrumentor().uninstrument()``) before
  patching;
- after ``opentelemetry-instrument`` has loaded every instrumentor, the
  ``opentelemetry_post_instrument`` hook below does the same when contrib was loaded later;
- a ``TracedProducer``/``TracedConsumer`` built around a client contrib wrapped traces the
  client underneath (``original_producer()``/``original_consumer()`` of contrib's proxies; the
  base class's methods of its ``AutoInstrumented*`` subclasses).

Each says so once per process, in one log line naming the variable that makes the choice
explicit (the entry point names of the ones switched off).
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=kafka_event_tracing`` keeps contrib alone:
then nothing of ours runs and contrib is left untouched.

This module imports nothing heavy: the hook runs in every process ``opentelemetry-instrument``
starts, ours enabled or not.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("tracing.contrib")

CONTRIB_MODULE = "opentelemetry.instrumentation.confluent_kafka"
# (module, instrumentor class, entry point name, distribution, client): each contrib
# instrumentation of a client this project traces.
CONTRIB_INSTRUMENTATIONS = (
    (
        CONTRIB_MODULE,
        "ConfluentKafkaInstrumentor",
        "confluent_kafka",
        "opentelemetry-instrumentation-confluent-kafka",
        "confluent-kafka",
    ),
    (
        "opentelemetry.instrumentation.pika",
        "PikaInstrumentor",
        "pika",
        "opentelemetry-instrumentation-pika",
        "pika",
    ),
    (
        "opentelemetry.instrumentation.aio_pika",
        "AioPikaInstrumentor",
        "aio-pika",
        "opentelemetry-instrumentation-aio-pika",
        "aio-pika",
    ),
)
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

_noticed = False
_notice_lock = threading.Lock()


def notice(what: str, entry_points: str = "confluent_kafka") -> None:
    """Log, once per process, that this project took over from contrib, and how to say so.

    ``entry_points``: contrib's entry point names to disable instead (comma-separated).
    """
    global _noticed
    with _notice_lock:
        if _noticed:
            return
        _noticed = True
    logger.warning(
        "kafka-event-tracing: %s, so each message is traced once, by kafka-event-tracing; "
        "set %s=%s to make this explicit (or %s=kafka_event_tracing to keep contrib's instead)",
        what,
        DISABLED_VARIABLE,
        entry_points,
        DISABLED_VARIABLE,
    )


def _uninstrument(module_name: str, class_name: str) -> bool:
    module = sys.modules.get(module_name)
    if module is None:  # never imported, so never instrumented
        return False
    instrumentor_class = getattr(module, class_name, None)
    if instrumentor_class is None:
        return False
    instrumentor = instrumentor_class()  # an instrumentor is a singleton
    if not getattr(instrumentor, "is_instrumented_by_opentelemetry", False):
        return False
    instrumentor.uninstrument()
    return True


def switch_off_contrib() -> bool:
    """Uninstrument each of contrib's instrumentations of our clients that is active; True if any was.

    One notice names all that were switched off.
    """
    off = [
        (entry_point, f"{client} ({distribution})")
        for module_name, class_name, entry_point, distribution, client in CONTRIB_INSTRUMENTATIONS
        if _uninstrument(module_name, class_name)
    ]
    if not off:
        return False
    names = " and ".join(what for _, what in off)
    were = "was" if len(off) == 1 else "were"
    have = "has" if len(off) == 1 else "have"
    notice(
        f"the OpenTelemetry contrib instrumentation{'s' if len(off) > 1 else ''} of {names} "
        f"{were} active too and {have} been switched off",
        ",".join(entry_point for entry_point, _ in off),
    )
    return True


def after_auto_instrumentation() -> None:
    """``opentelemetry_post_instrument`` entry point: runs once every instrumentor has loaded.

    Covers the order in which contrib's entry point was loaded after ours.
    """
    try:
        ours = sys.modules.get("tracing.instrumentation")
        if ours is not None and ours.is_instrumented():
            switch_off_contrib()
    except Exception:  # never stop the application from starting
        logger.warning("kafka-event-tracing: could not switch contrib's instrumentation off", exc_info=True)


def _is_contrib(cls: type) -> bool:
    return cls.__module__.startswith(CONTRIB_MODULE)


def untraced(client: Any, methods: Iterable[str], wrapper: str) -> tuple[Any, dict[str, Any]]:
    """The client underneath contrib's wrapping, and its own (untraced) bound ``methods``.

    Any other client comes back as it is, with its methods.
    """
    names = tuple(methods)
    cls = type(client)
    if not _is_contrib(cls):
        return client, {name: getattr(client, name) for name in names}
    notice(
        f"{wrapper} was given a client that the OpenTelemetry contrib instrumentation wraps; "
        "it traces the client underneath"
    )
    for unwrap in ("original_producer", "original_consumer"):  # ProxiedProducer, ProxiedConsumer
        original = getattr(client, unwrap, None)
        if callable(original):
            return untraced(original(), names, wrapper)
    # AutoInstrumentedProducer/Consumer: the client itself, its methods from the first class
    # contrib did not write (contrib wraps the methods on its own classes).
    base = next(k for k in cls.__mro__ if not _is_contrib(k))
    return client, {name: getattr(base, name).__get__(client, base) for name in names}
