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

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer as _Consumer
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from tracing.write.contrib import untraced
from tracing.write.lag import ConsumerLag, with_lag_statistics
from tracing.write.operations import PARENT, ProcessOperation
from tracing.write.providers import confluent
from tracing.write.rebalance import CommitAnswers, ConsumerCallbacks, PartitionListener, RebalanceCallback
from tracing.write.tracker import OpenProcessing, ProcessBlock, in_flight

if TYPE_CHECKING:
    from tracing.write.loop import RunStats

    _ConsumerBase = _Consumer  # the client's methods and signatures, for type checkers
else:
    _ConsumerBase = object

_time_ns = time.time_ns


class TracedConsumer(_ConsumerBase):
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
        operation = ProcessOperation(
            confluent,
            confluent.client_info(config),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            propagator=propagator,
            trust=trust,
            baggage_keys=baggage_keys,
        )
        self.lag: ConsumerLag | None = None
        consumer: Any
        if isinstance(conf_or_consumer, Mapping):
            # Built here: its statistics can feed the lag gauges, its commit answers run().
            self.lag = ConsumerLag(config.get("group.id"), register=operation.flow.track_lag)
            self._callbacks = ConsumerCallbacks(self.lag)
            conf = with_lag_statistics(config, self.lag, enable=operation.flow.instruments() is not None)
            consumer = (_client_class or _Consumer)(self._callbacks.with_commit_answers(conf))
        else:
            self._callbacks = ConsumerCallbacks(None)
            consumer = conf_or_consumer
        # A client the OpenTelemetry contrib instrumentation wrapped is traced once, by us.
        consumer, own = untraced(consumer, ("poll", "consume", "close"), "TracedConsumer")
        self._consumer = consumer
        self._poll = own["poll"]
        self._consume = own["consume"]
        self._close = own["close"]
        self.client_config: Mapping[str, Any] = config  # read for span attributes and run()
        self.tracer_provider = tracer_provider
        self._spans = OpenProcessing(operation, per_task=False)
        self._open = self._spans.open  # read on every poll

    @property
    def wrapped(self) -> Any:
        """The confluent-kafka consumer underneath."""
        return self._consumer

    # -- consuming --------------------------------------------------------------
    def poll(self, timeout: float = -1) -> Any:
        """As ``Consumer.poll``; the returned message's process span is made current."""
        if self._open:
            self._spans.end_own()
        msg = self._poll(timeout)
        if msg is None or msg.error() is not None:
            return msg
        self._spans.polled(msg)
        return msg

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        """As ``Consumer.consume``; records one ``receive`` span linking to each message.

        Handle each message inside ``with consumer.process(msg):`` to give it its own
        process span. The links are capped at the SDK's link limit
        (``OTEL_SPAN_LINK_COUNT_LIMIT``, 128 by default).
        """
        if self._open:
            self._spans.end_own()
        started = _time_ns()
        messages: list[Any] = self._consume(num_messages, timeout)
        if messages:
            self._spans.operation.received_batch(messages, started)
        return messages

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        """As ``Consumer.subscribe``; your callbacks are called as before.

        Partitions revoked or lost stop reporting lag at once, and ``run()`` commits what
        it handled for a revoked partition before your ``on_revoke`` is called. Without
        an ``on_lost``, your ``on_revoke`` is called for lost partitions (as librdkafka does).
        """
        assigned, revoked, lost = self._callbacks.wrap(on_assign, on_revoke, on_lost)
        self._consumer.subscribe(topics, on_assign=assigned, on_revoke=revoked, on_lost=lost)

    def add_partition_listener(self, listener: PartitionListener) -> Callable[[], None]:
        """Tell ``listener`` of revoked and lost partitions (before your own callbacks) until
        the returned function is called. Needs ``subscribe`` on this wrapper."""
        return self._callbacks.add_listener(listener)

    @property
    def commit_answers(self) -> CommitAnswers | None:
        """Answers to asynchronous commits, when this wrapper built the client (else None)."""
        return self._callbacks.commit_answers

    def process(self, msg: Any) -> ProcessBlock:
        """A context manager: the message's process span, current for the block.

        ``msg`` may be what ``poll()`` returned on a timeout (None) or an error event:
        then nothing is recorded.
        """
        return ProcessBlock(self._spans, msg)

    def close(self) -> None:
        """End the open process span (failed, if an exception is in flight), then close."""
        self._spans.end_all(in_flight())
        if self.lag is not None:
            self.lag.clear()
        self._close()

    def run(self, handler: Any, **options: Any) -> RunStats:
        """Managed at-least-once loop; see :func:`tracing.write.loop.run`."""
        from tracing.write.loop import run

        return run(self, handler, **options)

    # -- pass-through -------------------------------------------------------------
    if not TYPE_CHECKING:  # type checkers see the client's own methods (the base class)

        def __getattr__(self, name):
            return getattr(self._consumer, name)

    def __enter__(self) -> TracedConsumer:
        enter = getattr(self._consumer, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc: Any) -> Any:
        self._spans.end_all(exc[1] if len(exc) > 1 else None)
        leave = getattr(self._consumer, "__exit__", None)
        return leave(*exc) if leave is not None else None

    def __repr__(self) -> str:
        return f"TracedConsumer({self._consumer!r})"
