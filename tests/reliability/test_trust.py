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
from tests.reliability.support import jaeger_spans, record_figures
from tracing.write.propagation import last_header, parse_traceparent

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
    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(partner, b"from-partner", headers=[("traceparent", untrusted), ("baggage", MIXED_BAGGAGE)])
    raw.produce(internal, b"trusted", headers=[("traceparent", trusted), ("baggage", MIXED_BAGGAGE)])
    raw.produce(internal, b"oversized", headers=[("traceparent", oversized), ("baggage", huge_baggage)])
    assert raw.flush(30) == 0

    service = f"reliability-trust-{uuid.uuid4().hex[:8]}"
    provider = tracing.configure(
        service, endpoint=real_stack.otlp_endpoint, sampler_ratio=0.0, set_global=False
    )
    forward = tracing.TracedProducer({"bootstrap.servers": bootstrap}, tracer_provider=provider)
    consumer = tracing.TracedConsumer(
        {"bootstrap.servers": bootstrap, "group.id": service, "enable.auto.commit": False},
        tracer_provider=provider,
        trust={partner: "link", "*": "parent"},
        baggage_keys={"tenant"},
    )
    consumer.assign([TopicPartition(partner, 0, 0), TopicPartition(internal, 0, 0)])
    seen: dict[bytes, dict] = {}

    def handler(msg):
        span = trace.get_current_span()
        context = span.get_span_context()
        seen[msg.value()] = {
            "trace_id": format(context.trace_id, "032x"),
            "recording": span.is_recording(),
            "baggage": dict(baggage.get_all()),
        }
        forward.produce(out, msg.value())

    stats = consumer.run(handler, stop=lambda: len(seen) >= 3, handle_signals=False)
    consumer.close()
    assert forward.flush(30) == 0
    provider.force_flush()

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{service}-reader"})
    reader.assign([TopicPartition(out, 0, 0)])
    forwarded: dict[bytes, list] = {}
    deadline = time.monotonic() + 30
    while len(forwarded) < 3 and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is None:
            forwarded[msg.value()] = msg.headers() or []
    reader.close()
    assert set(forwarded) == {b"from-partner", b"trusted", b"oversized"}

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

    disallowed_passed_on = sum(len(set(s["baggage"]) - {"tenant"}) for s in seen.values()) + sum(
        len({m.split("=")[0] for m in (carried(v)[2] or "").split(",") if m} - {"tenant"}) for v in forwarded
    )
    record_figures(
        "trust",
        {
            "messages_tried": 3,
            "messages_lost": 3 - stats.processed,
            "exceptions": 0,
            "forced_sampled_flag_recorded_on_untrusted_topic": partner_seen["recording"],
            "disallowed_baggage_keys_passed_on": disallowed_passed_on,
            "oversized_baggage_bytes_dropped": len(huge_baggage),
        },
    )
