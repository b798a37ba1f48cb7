"""Headers from a producer we do not trust are contained as the consumer's policy says.

On the real broker and Jaeger. A raw (untraced) producer writes the headers an
untrusted or careless service could send: a ``traceparent`` that forces the sampled
flag, baggage over the W3C limit, baggage with keys the consumer did not allow. The
consumer (``trust={partner: "link", "*": "parent"}``, ``baggage_keys={"tenant"}``,
a sampler that samples no new trace) handles each message and forwards it; what the
handler saw, what the forwarded message carries and what Jaeger got show the policy.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from opentelemetry import baggage, trace

import tracing
from tests import stack
from tests.reliability.support import Deadline, ExceptionCount, jaeger_spans, record_figures
from tracing.write.propagation import last_header, parse_traceparent

ALLOWED = {"tenant"}  # the consumer's baggage_keys
MIXED_BAGGAGE = "tenant=acme,user.email=ada%40example.com,debug=true"  # only tenant is allowed


def forced_traceparent() -> tuple[str, str, str]:
    """A traceparent whose sampled flag is set, whatever the consumer would decide."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def jaeger_trace_ids(service: str) -> set[str]:
    url = f"{stack.jaeger_url()}/api/traces?service={service}&lookback=1h&limit=100"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return {t["traceID"] for t in json.load(resp)["data"] or []}
    except OSError:
        return set()


def _baggage_keys(header: str | None) -> set[str]:
    return {member.split("=")[0].strip() for member in (header or "").split(",") if member.strip()}


def _figures(
    sent: dict[bytes, tuple[str, list]], seen: dict[bytes, dict], forwarded: dict[bytes, list], caught
) -> dict:
    """What this run measured; works on whatever got that far (figures are recorded on failure too)."""

    def forwarded_baggage(value: bytes) -> str | None:
        bag = last_header(forwarded[value], "baggage")
        return bag.decode() if bag is not None else None

    incoming = dict(sent[b"oversized"][1])["baggage"]
    return {
        "messages_tried": len(sent),
        "messages_lost": len(set(sent) - set(forwarded)),
        "exceptions": len(caught),
        "forced_sampled_flag_recorded_on_untrusted_topic": seen.get(b"from-partner", {}).get("recording"),
        "disallowed_baggage_keys_passed_on": sum(len(set(s["baggage"]) - ALLOWED) for s in seen.values())
        + sum(len(_baggage_keys(forwarded_baggage(v)) - ALLOWED) for v in forwarded),
        # the baggage the oversized message came with, less what the forwarded message carries
        "oversized_baggage_bytes_dropped": (
            len(incoming) - len(forwarded_baggage(b"oversized") or "") if b"oversized" in forwarded else None
        ),
    }


def test_forced_sampling_oversized_and_disallowed_baggage_are_contained(real_stack):
    bootstrap = real_stack.kafka_bootstrap
    partner = stack.create_topic(bootstrap, stack.unique_topic("trust-partner"))
    internal = stack.create_topic(bootstrap, stack.unique_topic("trust-internal"))
    out = stack.create_topic(bootstrap, stack.unique_topic("trust-out"))

    untrusted, untrusted_trace, _ = forced_traceparent()
    trusted, trusted_trace, trusted_span = forced_traceparent()
    oversized, oversized_trace, oversized_span = forced_traceparent()
    huge_baggage = "tenant=acme," + ",".join(f"k{i}={'v' * 40}" for i in range(200))
    assert len(huge_baggage) > 8192
    sent = {  # value: (topic, headers)
        b"from-partner": (partner, [("traceparent", untrusted), ("baggage", MIXED_BAGGAGE)]),
        b"trusted": (internal, [("traceparent", trusted), ("baggage", MIXED_BAGGAGE)]),
        b"oversized": (internal, [("traceparent", oversized), ("baggage", huge_baggage)]),
    }
    service = f"reliability-trust-{uuid.uuid4().hex[:8]}"
    caught = ExceptionCount()
    seen: dict[bytes, dict] = {}
    forwarded: dict[bytes, list] = {}
    stop = Deadline(60, lambda: len(seen) >= len(sent))
    provider = tracing.configure(
        service, endpoint=real_stack.otlp_endpoint, sampler_ratio=0.0, set_global=False
    )
    try:
        with caught.watch():
            raw = Producer({"bootstrap.servers": bootstrap})
            for value, (topic, headers) in sent.items():
                raw.produce(topic, value, headers=headers)
            undelivered = raw.flush(30)

            forward = tracing.TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=provider)
            consumer = tracing.TracedConsumer(
                {"bootstrap.servers": bootstrap, "group.id": service, "enable.auto.commit": False},
                tracer_provider=provider,
                trust={partner: "link", "*": "parent"},
                baggage_keys=ALLOWED,
            )
            consumer.assign([TopicPartition(partner, 0, 0), TopicPartition(internal, 0, 0)])

            def handler(msg):
                span = trace.get_current_span()
                context = span.get_span_context()
                seen[msg.value()] = {
                    "trace_id": format(context.trace_id, "032x"),
                    "recording": span.is_recording(),
                    "baggage": dict(baggage.get_all()),
                }
                forward.produce(out, msg.value())

            consumer.run(handler, stop=stop, handle_signals=False)
            consumer.close()
            unforwarded = forward.flush(30)
            provider.force_flush()

            reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{service}-reader"})
            reader.assign([TopicPartition(out, 0, 0)])
            deadline = time.monotonic() + 30
            while len(forwarded) < len(seen) and time.monotonic() < deadline:
                msg = reader.poll(0.5)
                if msg is not None and msg.error() is None:
                    forwarded[msg.value()] = msg.headers() or []
            reader.close()
    finally:
        figures = _figures(sent, seen, forwarded, caught)
        record_figures("trust", figures)
    assert undelivered == 0 and unforwarded == 0, (undelivered, unforwarded)
    assert not stop.expired, f"the consumer handled {sorted(seen)} within {stop.seconds}s"
    assert set(forwarded) == set(sent)
    assert figures["exceptions"] == 0, caught.raised

    def carried(value: bytes) -> tuple[str, bool, str | None]:
        headers = forwarded[value]
        context = parse_traceparent(last_header(headers, "traceparent"))
        bag = last_header(headers, "baggage")
        return format(context.trace_id, "032x"), context.trace_flags.sampled, bag and bag.decode()

    # Untrusted topic: a new trace that our sampler decides (ratio 0: not sampled), no baggage.
    partner_seen = seen[b"from-partner"]
    assert partner_seen["trace_id"] != untrusted_trace
    assert partner_seen["recording"] is False
    assert partner_seen["baggage"] == {}
    partner_trace, partner_sampled, partner_bag = carried(b"from-partner")
    assert partner_trace == partner_seen["trace_id"] and partner_sampled is False and partner_bag is None

    # Trusted topic: the producer's trace and sampled flag are followed; only allowed baggage.
    assert seen[b"trusted"] == {"trace_id": trusted_trace, "recording": True, "baggage": {"tenant": "acme"}}
    assert carried(b"trusted") == (trusted_trace, True, "tenant=acme")

    # Oversized baggage: dropped whole (W3C: 8192 bytes at most), the trace still continues.
    assert seen[b"oversized"] == {"trace_id": oversized_trace, "recording": True, "baggage": {}}
    assert carried(b"oversized") == (oversized_trace, True, None)
    assert figures["disallowed_baggage_keys_passed_on"] == 0

    # Jaeger has exactly the two trusted traces from this consumer: the forced flag on the
    # partner topic recorded nothing, neither in the partner's trace nor in a new one.
    deadline = time.monotonic() + 30
    while (found := jaeger_trace_ids(service)) != {trusted_trace, oversized_trace}:
        assert time.monotonic() < deadline, f"Jaeger has traces {found} for {service}"
        time.sleep(0.5)
    for trace_id, parent in ((trusted_trace, trusted_span), (oversized_trace, oversized_span)):
        spans = jaeger_spans(trace_id, {f"process {internal}", f"send {out}"})
        assert spans[f"process {internal}"]["references"][0]["spanID"] == parent
        assert stack.span_parent_id(spans[f"send {out}"]) == spans[f"process {internal}"]["spanID"]
    provider.shutdown()
