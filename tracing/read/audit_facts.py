"""What ``audit`` reads of a span, as one plain tuple, and the fast way to read it from a file.

A million-span audit cannot afford a :class:`~tracing.read.model.Span` (an attribute dict, derived
properties) per span. :func:`audit_facts` says what the audit reads, by the model's own rules;
:class:`AuditFactsReader` reads the same tuple straight from the typed structs of the collector's
OTLP JSON lines, for the spans in the usual shape (the current attribute names, an operation
type or a kind that says the role, a destination name, an ``error.type`` on a failed span). Any
other span is read as a ``Span`` and converted, so the rules live once, in the model;
``tests/read/test_load_typed.py`` holds the two ways equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

from tracing import semconv as sc
from tracing.read.load import (
    _HEX_DIGITS,
    _OTLP_KINDS,
    _UNSET,
    Warn,
    _hex_id,
    _kind_name,
    _log_warning,
    _read,
    _SpanReader,
    _typed_attributes,
    _typed_value,
    _TypedSpan,
)
from tracing.read.model import _OPERATION_ROLES, Span, _as_int, role_of_kind, topic_in_name

__all__ = ["AuditFacts", "AuditFactsReader", "audit_facts", "iter_file_audit_facts"]

AuditFacts = tuple[
    str,  # 0 trace id
    str,  # 1 span id
    "str | None",  # 2 parent span id
    int,  # 3 start ns
    int,  # 4 end ns
    "str | None",  # 5 messaging role
    "str | None",  # 6 topic
    "int | None",  # 7 partition
    "int | None",  # 8 offset
    "str | None",  # 9 consumer group
    "str | None",  # 10 message key
    "float | None",  # 11 queue time recorded by the consumer (ms)
    "str | None",  # 12 error type; None when the span is not in error
    tuple[str, ...],  # 13 ids of the spans it links to
    "str | None",  # 14 event type (sagas)
]
"""(trace id, span id, parent id, start ns, end ns, role, topic, partition, offset, consumer group,
key, recorded queue time in ms, error type or None, linked span ids, event type)."""

EVENT_TYPE_KEYS = (sc.CLOUDEVENTS_EVENT_TYPE, sc.APP_EVENT_TYPE)


def audit_facts(span: Span) -> AuditFacts:
    """The :data:`AuditFacts` of a loaded span: the model's rules, whatever the span's shape."""
    failed = span.error is not None
    return (
        span.trace_id,
        span.span_id,
        span.parent_id,
        span.start_ns,
        span.end_ns,
        span.role,
        span.topic,
        span.partition,
        span.offset,
        span.consumer_group,
        span.key,
        _queue_ms(span.attributes.get(sc.QUEUE_TIME_MS)),
        error_type(span) if failed else None,
        tuple(link.span_id for link in span.links),
        event_type(span.attributes),
    )


def error_type(span: Span) -> str:
    """What failed, for a span in error: ``error.type``, else the last exception event's type."""
    value = span.attributes.get(sc.ERROR_TYPE)
    if value:
        return str(value)
    for event in reversed(span.events):
        if event.name == "exception" and event.attributes.get(sc.EXCEPTION_TYPE):
            return str(event.attributes[sc.EXCEPTION_TYPE])
    return "error"


def event_type(attributes: Mapping[str, Any]) -> str | None:
    """The event's type where the service records one (CloudEvents' name, else ``app.event.type``)."""
    for key in EVENT_TYPE_KEYS:
        value = attributes.get(key)
        if value is not None:
            return str(value)
    return None


def _queue_ms(recorded: Any) -> float | None:
    return float(recorded) if isinstance(recorded, int | float) and not isinstance(recorded, bool) else None


def iter_file_audit_facts(path: str | Path, *, warn: Warn | None = None) -> Iterator[AuditFacts]:
    """The :data:`AuditFacts` of every span of a file, as they are read (the file is read as
    :func:`tracing.read.load.iter_file` reads it, with the same errors and warnings)."""
    return chain.from_iterable(_read(path, warn or _log_warning, AuditFactsReader()))


# The attributes the fast way reads (the current names; values kept as the model keeps them), each
# in its own slot of a list; -1: a name whose rules the model applies (older names, the message id
# an offset may hide in), so the span is read as a Span.
_OPERATION, _SYSTEM, _TOPIC, _PARTITION, _OFFSET, _GROUP, _KEY, _QUEUE, _ERROR, _EVENT, _APP_EVENT = range(11)
_SLOTS = {
    sc.OPERATION_TYPE: _OPERATION,
    sc.SYSTEM: _SYSTEM,
    sc.DESTINATION_NAME: _TOPIC,
    sc.PARTITION: _PARTITION,
    sc.KAFKA_OFFSET: _OFFSET,
    sc.CONSUMER_GROUP: _GROUP,
    sc.KAFKA_KEY: _KEY,
    sc.QUEUE_TIME_MS: _QUEUE,
    sc.ERROR_TYPE: _ERROR,
    EVENT_TYPE_KEYS[0]: _EVENT,
    EVENT_TYPE_KEYS[1]: _APP_EVENT,
    sc.OPERATION_LEGACY: -1,
    sc.DESTINATION_LEGACY: -1,
    sc.KAFKA_CONSUMER_GROUP_LEGACY: -1,
    sc.KAFKA_CONSUMER_GROUP_OLD: -1,
    sc.KAFKA_PARTITION_LEGACY: -1,
    sc.KAFKA_PARTITION_OLD: -1,
    sc.KAFKA_OFFSET_LEGACY: -1,
    sc.MESSAGE_ID: -1,
}
_NO_VALUES = (None,) * 11
_ERROR_CODES = (2, "2", "STATUS_CODE_ERROR")
_PRESENT = object()  # messaging.system: the model asks only whether it is there


class AuditFactsReader(_SpanReader):
    """Reads :data:`AuditFacts` instead of spans (see the module's docstring)."""

    def _jaeger_span(self, raw: dict[str, Any], processes: Mapping[str, Any]) -> Span:
        return audit_facts(super()._jaeger_span(raw, processes))  # type: ignore[return-value]

    def _otlp_span(self, raw: Mapping[str, Any], service: str) -> Span:
        return audit_facts(super()._otlp_span(raw, service))  # type: ignore[return-value]

    def _typed_span(self, raw: _TypedSpan, service: str) -> Span:
        values: list[Any] = list(_NO_VALUES)
        slots = _SLOTS
        for item in raw.attributes or ():
            value = item.value
            slot = slots.get(item.key)
            # Every value is checked as the typed reading of a whole span checks it (a value it
            # would not read sends the line the general way), kept only if the audit reads it.
            if value is None:
                read: Any = None
            else:
                # Text and whole numbers (most values) without the call.
                read = value.stringValue
                if read is _UNSET:
                    read = value.intValue
                    if read is _UNSET or value.boolValue is not _UNSET or value.doubleValue is not _UNSET:
                        read = _typed_value(value)
                    else:
                        read = int(read)
                elif (
                    value.intValue is not _UNSET
                    or value.boolValue is not _UNSET
                    or value.doubleValue is not _UNSET
                ):
                    read = _typed_value(value)
            if slot is not None:
                if slot < 0:
                    return self._by_model(raw, service)
                if read is None and slot == _SYSTEM:
                    read = _PRESENT
                values[slot] = read
        operation, _, topic, partition, offset, group, key, queue, error, event, app_event = values
        status = raw.status
        failed = error is not None or (status is not None and status.code in _ERROR_CODES)
        if failed and not error:
            return self._by_model(raw, service)  # what failed is read from the exception events
        role = _OPERATION_ROLES.get(operation) if operation is not None else None  # mostly lower case
        if role is None and type(operation) is str:
            role = _OPERATION_ROLES.get(operation.lower())
        if role is None:
            kind = raw.kind
            kind = _OTLP_KINDS.get(kind, "internal") if type(kind) is int else _kind_name(kind)
            role = role_of_kind(kind, raw.name, values[_SYSTEM] is not None)
        if topic is not None and topic != "":
            if type(topic) is not str:
                topic = str(topic)
        else:
            topic = None if role is None else topic_in_name(raw.name)
        # Checked as the typed reading of a whole span checks them (an event or a link it would not
        # read sends the line the general way).
        if raw.events:
            for event_ in raw.events:
                int(event_.timeUnixNano)
                _typed_attributes(event_.attributes)
        linked: tuple[str, ...] = ()
        if raw.links:
            for link in raw.links:
                self.trace_id(link.traceId)
                _typed_attributes(link.attributes)
            linked = tuple(
                [
                    link.spanId.lower()
                    if len(link.spanId) == 16 and not link.spanId.strip(_HEX_DIGITS)
                    else _hex_id(link.spanId, 16)
                    for link in raw.links
                ]
            )
        span_id = raw.spanId
        parent = raw.parentSpanId
        start = int(raw.startTimeUnixNano)
        end = raw.endTimeUnixNano
        return (  # type: ignore[return-value]
            self._trace_ids.get(raw.traceId) or self.trace_id(raw.traceId),
            span_id.lower()
            if len(span_id) == 16 and not span_id.strip(_HEX_DIGITS)
            else _hex_id(span_id, 16),
            (parent.lower() if len(parent) == 16 and not parent.strip(_HEX_DIGITS) else _hex_id(parent, 16))
            if parent
            else None,
            start,
            int(end) if end else start,
            role,
            topic,
            None
            if partition is None
            else int(partition)
            if type(partition) is str and partition.isdecimal()
            else _as_int(partition),
            offset if type(offset) is int or offset is None else _as_int(offset),
            group if type(group) is str or group is None else str(group),
            key if type(key) is str or key is None else str(key),
            None if queue is None else _queue_ms(queue),
            str(error) if failed else None,
            linked,
            str(event) if event is not None else None if app_event is None else str(app_event),
        )

    def _by_model(self, raw: _TypedSpan, service: str) -> Span:
        return audit_facts(super()._typed_span(raw, service))  # type: ignore[return-value]
