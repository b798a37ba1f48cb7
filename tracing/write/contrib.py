"""Beside the OpenTelemetry contrib instrumentation of confluent-kafka: each message traced once.

``opentelemetry-instrumentation-confluent-kafka`` (entry point ``confluent_kafka``) is what
``opentelemetry-bootstrap`` installs for confluent-kafka. When this project's instrumentation
is active too, every message would get both its spans and ours. So, whatever the order in
which the two are switched on:

- ``tracing.instrument()`` (and the ``kafka_event_tracing`` entry point) switches contrib off
  through its public API, ``ConfluentKafkaInstrumentor().uninstrument()``, before patching;
- after ``opentelemetry-instrument`` has loaded every instrumentor, the
  ``opentelemetry_post_instrument`` hook below does the same when contrib was loaded later;
- a ``TracedProducer``/``TracedConsumer`` built around a client contrib wrapped traces the
  client underneath (``original_producer()``/``original_consumer()`` of contrib's proxies; the
  base class's methods of its ``AutoInstrumented*`` subclasses).

Each says so once per process, in one log line naming the variable that makes the choice
explicit. ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=kafka_event_tracing`` keeps contrib alone:
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
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

_noticed = False
_notice_lock = threading.Lock()


def notice(what: str) -> None:
    """Log, once per process, that this project took over from contrib, and how to say so."""
    global _noticed
    with _notice_lock:
        if _noticed:
            return
        _noticed = True
    logger.warning(
        "kafka-event-tracing: %s, so each message is traced once, by kafka-event-tracing; "
        "set %s=confluent_kafka to make this explicit (or %s=kafka_event_tracing to keep contrib's instead)",
        what,
        DISABLED_VARIABLE,
        DISABLED_VARIABLE,
    )


def switch_off_contrib() -> bool:
    """Uninstrument contrib's confluent-kafka instrumentation if it is active; True if it was."""
    module = sys.modules.get(CONTRIB_MODULE)
    if module is None:  # never imported, so never instrumented
        return False
    instrumentor_class = getattr(module, "ConfluentKafkaInstrumentor", None)
    if instrumentor_class is None:
        return False
    instrumentor = instrumentor_class()  # an instrumentor is a singleton
    if not getattr(instrumentor, "is_instrumented_by_opentelemetry", False):
        return False
    instrumentor.uninstrument()
    notice(
        "the OpenTelemetry contrib instrumentation of confluent-kafka "
        "(opentelemetry-instrumentation-confluent-kafka) was active too and has been switched off"
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
