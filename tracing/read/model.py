"""The read side's data model: spans as loaded, and the event chain built from them.

Plain dataclasses only: no I/O and no rendering, so every loader feeds the same model and every
renderer reads it. The messaging properties of :class:`Span` accept the current OpenTelemetry
messaging conventions and the older attribute names other instrumentations still emit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tracing import semconv as sc

# Span kinds, lower-case as Jaeger spells them.
KINDS = ("internal", "server", "client", "producer", "consumer")

# Messaging roles a span can play in a chain.
SEND = "send"
RECEIVE = "receive"
PROCESS = "process"
SETTLE = "settle"

# messaging.operation.type (current) and messaging.operation (older) values -> role.
_OPERATION_ROLES = {
    "send": SEND,
    "publish": SEND,
    "create": SEND,
    "receive": RECEIVE,
    "process": PROCESS,
    "deliver": PROCESS,
    "settle": SETTLE,
}
# Attribute names, newest first: the first one present wins.
_TOPIC_KEYS = (sc.DESTINATION_NAME, sc.DESTINATION_LEGACY)
_GROUP_KEYS = (sc.CONSUMER_GROUP, sc.KAFKA_CONSUMER_GROUP_LEGACY, sc.KAFKA_CONSUMER_GROUP_OLD)
_PARTITION_KEYS = (sc.PARTITION, sc.KAFKA_PARTITION_LEGACY, sc.KAFKA_PARTITION_OLD)
_OFFSET_KEYS = (sc.KAFKA_OFFSET, sc.KAFKA_OFFSET_LEGACY)
_CLIENT_ID_KEYS = (sc.CLIENT_ID, sc.CLIENT_ID_LEGACY)
_OPERATION_KEYS = (sc.OPERATION_TYPE, sc.OPERATION_LEGACY)


_T = TypeVar("_T")


class _derived(Generic[_T]):  # noqa: N801 - used like @property
    """A property computed once per span, then read from the instance like a plain attribute.

    (``functools.cached_property`` takes a lock on every read before 3.12: too slow for the
    hundreds of thousands of reads a big trace makes.) A span's attributes are not expected to
    change once it is analysed.
    """

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


@dataclass(frozen=True)
class SpanRef:
    """A link from one span to another span, possibly in another trace."""

    trace_id: str
    span_id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanEvent:
    """A timestamped event recorded on a span (an exception, a log line)."""

    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Span:
    """One span, whatever format it was loaded from.

    Ids are lower-case hex (32 digits for traces, 16 for spans); times are Unix nanoseconds.

    >>> s = Span("ab" * 16, "cd" * 8, None, "send orders", "producer", "api", 0, 2_000_000,
    ...          {"messaging.operation.type": "send", "messaging.destination.name": "orders"})
    >>> s.role, s.topic, s.duration_ms
    ('send', 'orders', 2.0)
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanRef] = field(default_factory=list)
    status_error: bool = False
    status_message: str | None = None

    @property
    def duration_ms(self) -> float:
        """Duration in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6

    @_derived
    def role(self) -> str | None:
        """``send``, ``receive``, ``process``, ``settle`` or None for a non-messaging span.

        Reads ``messaging.operation.type``, then the older ``messaging.operation``, then falls back
        on the span kind (PRODUCER sends, CONSUMER processes) so that traces from instrumentations
        that set neither still render.
        """
        for key in _OPERATION_KEYS:
            value = self.attributes.get(key)
            if isinstance(value, str) and value.lower() in _OPERATION_ROLES:
                return _OPERATION_ROLES[value.lower()]
        return role_of_kind(self.kind, self.name, sc.SYSTEM in self.attributes)

    @property
    def key(self) -> str | None:
        """The Kafka message key, as the wrappers record it (text keys only)."""
        value = self.attributes.get(sc.KAFKA_KEY)
        return None if value is None else str(value)

    @property
    def is_messaging(self) -> bool:
        """True for a span that plays a messaging role."""
        return self.role is not None

    @_derived
    def topic(self) -> str | None:
        """The destination (topic) name, from attributes or, failing that, from the span name."""
        value = _first(self.attributes, _TOPIC_KEYS)
        if value is not None and value != "":  # "": RabbitMQ's default exchange, named by the span
            return str(value)
        if self.role is None:
            return None
        return topic_in_name(self.name)

    @_derived
    def consumer_group(self) -> str | None:
        """The consumer group name, if recorded."""
        value = _first(self.attributes, _GROUP_KEYS)
        return None if value is None else str(value)

    @_derived
    def client_id(self) -> str | None:
        """The Kafka client id (``messaging.client.id``; the Java agent's default ``messaging.client_id``)."""
        value = _first(self.attributes, _CLIENT_ID_KEYS)
        return None if value is None else str(value)

    @_derived
    def queue(self) -> str | None:
        """The queue a RabbitMQ delivery came from (``messaging.destination.subscription.name``)."""
        value = self.attributes.get(sc.SUBSCRIPTION_NAME)
        return str(value) if value else None

    @property
    def routing_key(self) -> str | None:
        """The RabbitMQ routing key, if recorded."""
        value = self.attributes.get(sc.RABBITMQ_ROUTING_KEY)
        return str(value) if value else None

    @property
    def delivery_tag(self) -> int | None:
        """The RabbitMQ delivery tag (per channel), if recorded."""
        return _as_int(self.attributes.get(sc.RABBITMQ_DELIVERY_TAG))

    @property
    def redelivered(self) -> bool:
        """True when the broker marked the delivery as a redelivery (RabbitMQ)."""
        return self.attributes.get(sc.RABBITMQ_REDELIVERED) in (True, "true")

    @_derived
    def partition(self) -> int | None:
        """The partition number (recorded as a string by the conventions), if any."""
        return _as_int(_first(self.attributes, _PARTITION_KEYS))

    @_derived
    def offset(self) -> int | None:
        """The message offset, if recorded.

        Older instrumentations (the contrib confluent-kafka one) record it only inside
        ``messaging.message.id``, as ``{topic}.{partition}.{offset}``.
        """
        value = _as_int(_first(self.attributes, _OFFSET_KEYS))
        if value is None:
            message_id = self.attributes.get(sc.MESSAGE_ID)
            if isinstance(message_id, str) and self.topic is not None and self.partition is not None:
                prefix = f"{self.topic}.{self.partition}."
                rest = message_id[len(prefix) :]
                if message_id.startswith(prefix) and rest.isdigit():
                    value = int(rest)
        return value

    @_derived
    def error(self) -> str | None:
        """The error message if the span is in error, else None.

        A span is in error when its status is ERROR or it carries ``error.type``. The message is the
        status description, else the last exception event (``Type: message``), else ``error.type``.
        """
        error_type = self.attributes.get(sc.ERROR_TYPE)
        if not self.status_error and error_type is None:
            return None
        if self.status_message:
            return self.status_message
        for event in reversed(self.events):
            if event.name == "exception":
                etype = event.attributes.get(sc.EXCEPTION_TYPE)
                message = event.attributes.get(sc.EXCEPTION_MESSAGE)
                text = ": ".join(str(p) for p in (etype, message) if p)
                if text:
                    return text
        return str(error_type) if error_type else "error"


@dataclass
class Hop:
    """One node of an event chain: a messaging hop, the root, or (with all spans shown) any span.

    The analysis steps fill in the flags; the renderers only read them.
    """

    span: Span
    children: list[Hop] = field(default_factory=list)
    folded: list[Span] = field(default_factory=list)
    """Non-messaging spans folded into this node (not shown on their own)."""
    link: bool = False
    """True when this node hangs under its parent through a span link (another trace)."""
    orphan: bool = False
    """True when the span's parent is not in the trace (it was lost, or never exported)."""
    queue_ms: float | None = None
    """Time the event waited in the topic: end of its send span to the start of this span."""
    source: Span | None = None
    """The send span, in another trace, that this consuming node only links to (each poll its own
    trace, as the Java agent's receive telemetry records it); None when the send is in the chain."""
    duplicate: bool = False
    unconsumed: bool = False
    critical: bool = False
    matched: bool = False
    """True when this span is the message a search asked for (``find``, ``tree --key``...)."""
    repeats: list[Repeats] = field(default_factory=list)
    """Runs of like siblings folded out of ``children`` (text view only): each says how many."""

    def walk(self) -> Iterator[Hop]:
        """This node and every node under it, depth first, in display order."""
        # Iterative: a long chain must not hit the recursion limit.
        stack = [self]
        pop, push = stack.pop, stack.append
        while stack:
            hop = pop()
            yield hop
            children = hop.children
            if len(children) == 1:  # a chain's usual step: no reversed view to make
                push(children[0])
            elif children:
                stack.extend(reversed(children))

    def own_end_ns(self) -> int:
        """The latest end time of this node's span and the spans folded into it."""
        if not self.folded:  # most nodes: no list to build
            return self.span.end_ns
        return max([self.span.end_ns, *(s.end_ns for s in self.folded)])


@dataclass
class Repeats:
    """Like siblings folded into one line: same service, operation and group, nothing to report.

    ``hops`` keeps the folded nodes (with their subtrees), so nothing is lost, only summarised.
    """

    hops: list[Hop]
    span_count: int
    """Spans inside the folded nodes: the nodes, their subtrees and the spans folded into them."""
    waits_ms: tuple[float, float, float] | None
    """(min, median, max) of the folded nodes' queue times, or None when none waited."""
    durations_ms: tuple[float, float, float]
    duplicates: int = 0
    """How many of the folded nodes are duplicate deliveries."""

    @property
    def sample(self) -> Span:
        """The first folded node's span: service, operation and group are the same for all."""
        return self.hops[0].span


@dataclass
class EventChain:
    """An event chain: the tree of one trace, possibly with linked spans of other traces stitched in."""

    trace_id: str
    root: Hop
    spans: list[Span]
    """Every span in the chain: the trace's own and the stitched ones, folded spans included."""

    def hops(self) -> Iterator[Hop]:
        """Every node of the tree, depth first."""
        return self.root.walk()

    def find(self, span_id: str) -> Hop | None:
        """The node showing the span with this id, if it is shown."""
        return next((h for h in self.hops() if h.span.span_id == span_id), None)


def role_of_kind(kind: str, name: str, has_system: bool) -> str | None:
    """The role of a span whose attributes do not say it: PRODUCER sends, CONSUMER processes,
    a CLIENT span with ``messaging.system`` receives; ``recv`` is the contrib confluent-kafka
    instrumentation's poll span (no attributes)."""
    if kind == "producer":
        return SEND
    if name == "recv":
        return RECEIVE
    if kind == "consumer":
        return PROCESS
    if kind == "client" and has_system:
        return RECEIVE
    return None


def topic_in_name(name: str) -> str | None:
    """The topic a messaging span's name gives: "send orders" (current conventions) or "orders send"
    (older instrumentations); None when the name is not of that shape."""
    words = name.split()
    if len(words) == 2:
        first, second = (w.lower() for w in words)
        if first in _OPERATION_ROLES or first in ("poll", "recv"):
            return words[1]
        if second in _OPERATION_ROLES or second in ("poll", "recv"):
            return words[0]
    return None


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in attributes and attributes[key] is not None:
            return attributes[key]
    return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ChainSummary:
    """The counts in a chain's header line and in the ``--json`` view."""

    trace_id: str
    root_name: str
    root_service: str
    services: list[str]
    hops: int
    """Send -> process edges within the trace (stitched links excluded)."""
    duration_ms: float
    """First span start to last span end."""
    errors: int
    """Spans in error, folded ones included."""
    start_ns: int
