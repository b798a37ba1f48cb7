"""OTLP encoding of finished spans, written straight to the protobuf wire format.

The exporter's own encoder builds a Python protobuf object per span, attribute and
value: on this library's spans that costs several times what recording the span did,
in the exporter's thread, holding the GIL. This one writes the same bytes directly and
reuses the encoding of attributes that repeat (a client's spans repeat their system,
server, destination, partition and group on every message), and of each resource and
scope. Decoded, its output equals the exporter's own encoding of the same spans
(``tests/write/test_otlp_encoding.py`` compares them on generated spans).

Only public span fields are read (``ReadableSpan``'s properties).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger("tracing.otlp")

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_CACHE_LIMIT = 20_000


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [_varint(i) for i in range(256)]


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 256 else _varint(n)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, bytes."""
    return tag + _len(len(payload)) + payload


def _string(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8"))  # a lone surrogate raises, as protobuf's own does


# Tags, written once: (field number << 3) | wire type.
_T1_LEN = b"\x0a"
_T2_LEN = b"\x12"
_T3_LEN = b"\x1a"
_T4_LEN = b"\x22"
_T5_LEN = b"\x2a"
_T6_LEN = b"\x32"
_T7_LEN = b"\x3a"
_T9_LEN = b"\x4a"
_T11_LEN = b"\x5a"
_T13_LEN = b"\x6a"
_T15_LEN = b"\x7a"
_T1_FIXED64 = b"\x09"
_T4_FIXED64 = b"\x21"
_T7_FIXED64 = b"\x39"
_T8_FIXED64 = b"\x41"
_T2_VARINT = b"\x10"
_T3_VARINT = b"\x18"
_T4_VARINT = b"\x20"
_T5_VARINT = b"\x28"
_T6_VARINT = b"\x30"
_T10_VARINT = b"\x50"
_T12_VARINT = b"\x60"
_T14_VARINT = b"\x70"
_T6_FIXED32 = b"\x35"
_T16_FIXED32 = b"\x85\x01"


class _Unencodable(Exception):
    """A value the exporter's own encoder would refuse (and skip, with a log line)."""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's bytes."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _T2_VARINT + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _string(_T1_LEN, value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unencodable(f"integer out of int64 range: {value}")
        return _T3_VARINT + _varint(value & 0xFFFFFFFFFFFFFFFF if value < 0 else value)
    if isinstance(value, float):
        return _T4_FIXED64 + _pack_double(value)
    if isinstance(value, bytes):
        return _field(_T7_LEN, value)
    if isinstance(value, Sequence):
        return _field(_T5_LEN, b"".join(_field(_T1_LEN, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(_T6_LEN, b"".join(_field(_T1_LEN, _key_value(str(k), v)) for k, v in value.items()))
    raise _Unencodable(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message's bytes."""
    key_bytes = _string(_T1_LEN, key) if key else b""
    return key_bytes + _field(_T2_LEN, _any_value(value))


class SpanEncoder:
    """Encodes batches of finished spans as an ``ExportTraceServiceRequest``.

    One per exporter: its caches are not shared between threads that encode at once.
    """

    def __init__(self) -> None:
        self._attributes: dict[tuple[str, type, Any], bytes] = {}
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    # -- attributes -------------------------------------------------------------
    def _attribute(self, key: str, value: Any) -> bytes:
        """A repeated ``KeyValue`` field (attributes of a span, event, link)."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or kind is float:
            cache_key = (key, kind, value)
            found = self._attributes.get(cache_key)
            if found is None:
                if len(self._attributes) >= _CACHE_LIMIT:
                    self._attributes.clear()
                found = self._attributes[cache_key] = _key_value(key, value)
            return found
        return _key_value(key, value)

    def _attribute_fields(self, tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
        if not attributes:
            return []
        out = []
        for key, value in attributes.items():
            try:
                out.append(_field(tag, self._attribute(key, value)))
            except (_Unencodable, UnicodeEncodeError) as error:
                logger.error("Failed to encode key %s: %s", key, error)
        return out

    # -- resource and scope -----------------------------------------------------
    def _resource(self, resource: Any) -> bytes:
        found = self._resources.get(id(resource))
        if found is None or found[0] is not resource:
            encoded = b"".join(self._attribute_fields(_T1_LEN, resource.attributes))
            found = self._resources[id(resource)] = (resource, encoded)
        return found[1]

    def _scope(self, scope: Any) -> bytes:
        found = self._scopes.get(id(scope))
        if found is None or found[0] is not scope:
            if scope is None:
                encoded = b""
            else:
                parts = []
                if scope.name:
                    parts.append(_string(_T1_LEN, scope.name))
                if scope.version:
                    parts.append(_string(_T2_LEN, scope.version))
                parts.extend(self._attribute_fields(_T3_LEN, scope.attributes))
                encoded = b"".join(parts)
            found = self._scopes[id(scope)] = (scope, encoded)
        return found[1]

    # -- spans --------------------------------------------------------------------
    def _span(self, span: Any) -> bytes:
        context = span.get_span_context()
        parts = [
            _T1_LEN + b"\x10" + context.trace_id.to_bytes(16, "big"),
            _T2_LEN + b"\x08" + context.span_id.to_bytes(8, "big"),
        ]
        state = context.trace_state
        if state is not None:
            text = ",".join(f"{k}={v}" for k, v in state.items())
            if text:
                parts.append(_string(_T3_LEN, text))
        parent = span.parent
        if parent:
            parts.append(_T4_LEN + b"\x08" + parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_string(_T5_LEN, span.name))
        parts.append(_T6_VARINT + _SMALL[_KINDS[span.kind.name]])
        if span.start_time:
            parts.append(_T7_FIXED64 + _pack_fixed64(span.start_time))
        if span.end_time:
            parts.append(_T8_FIXED64 + _pack_fixed64(span.end_time))
        parts.extend(self._attribute_fields(_T9_LEN, span.attributes))
        if span.dropped_attributes:
            parts.append(_T10_VARINT + _varint(span.dropped_attributes))
        for event in span.events:
            parts.append(_field(_T11_LEN, self._event(event)))
        if span.dropped_events:
            parts.append(_T12_VARINT + _varint(span.dropped_events))
        for link in span.links:
            parts.append(_field(_T13_LEN, self._link(link)))
        if span.dropped_links:
            parts.append(_T14_VARINT + _varint(span.dropped_links))
        status = span.status
        if status is not None:
            status_parts = []
            if status.description:
                status_parts.append(_string(_T2_LEN, status.description))
            code = status.status_code.value
            if code:
                status_parts.append(_T3_VARINT + _SMALL[code])
            parts.append(_field(_T15_LEN, b"".join(status_parts)))
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent and parent.is_remote else 0)
        parts.append(_T16_FIXED32 + _pack_fixed32(flags))
        return b"".join(parts)

    def _event(self, event: Any) -> bytes:
        parts = []
        if event.timestamp:
            parts.append(_T1_FIXED64 + _pack_fixed64(event.timestamp))
        if event.name:
            parts.append(_string(_T2_LEN, event.name))
        parts.extend(self._attribute_fields(_T3_LEN, event.attributes))
        if event.dropped_attributes:
            parts.append(_T4_VARINT + _varint(event.dropped_attributes))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:
        context = link.context
        parts = [
            _T1_LEN + b"\x10" + context.trace_id.to_bytes(16, "big"),
            _T2_LEN + b"\x08" + context.span_id.to_bytes(8, "big"),
        ]
        parts.extend(self._attribute_fields(_T4_LEN, link.attributes))
        if link.dropped_attributes:
            parts.append(_T5_VARINT + _varint(link.dropped_attributes))
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
        parts.append(_T6_FIXED32 + _pack_fixed32(flags))
        return b"".join(parts)

    def encode(self, spans: Sequence[Any]) -> bytes:
        """The ``ExportTraceServiceRequest`` bytes for ``spans``, grouped by resource and
        scope in the order they first appear (as the exporter's own encoder groups them)."""
        grouped: dict[Any, dict[Any, list[bytes]]] = {}
        for span in spans:
            scopes = grouped.get(span.resource)
            if scopes is None:
                scopes = grouped[span.resource] = {}
            scope = span.instrumentation_scope or None
            encoded = scopes.get(scope)
            if encoded is None:
                encoded = scopes[scope] = []
            encoded.append(self._span(span))
        out = []
        for resource, scopes in grouped.items():
            resource_parts = [_field(_T1_LEN, self._resource(resource))]
            for scope, encoded in scopes.items():
                scope_parts = [_field(_T1_LEN, self._scope(scope))]
                scope_parts.extend(_field(_T2_LEN, s) for s in encoded)
                if scope is not None and scope.schema_url:
                    scope_parts.append(_string(_T3_LEN, scope.schema_url))
                resource_parts.append(_field(_T2_LEN, b"".join(scope_parts)))
            if resource.schema_url:
                resource_parts.append(_string(_T3_LEN, resource.schema_url))
            out.append(_field(_T1_LEN, b"".join(resource_parts)))
        return b"".join(out)
