"""The flow metrics' own ``eventchain`` reader (each distinct path checked once, the clock
already read for the message) gives exactly what :func:`parse_chain` gives."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context

from tracing.write.metrics import CHAIN_KEY, MAX_HOPS, Chain, FlowMetrics, extend_path, parse_chain
from tracing.write.records import ClientInfo

NOW_MS = 1_800_000_000_000
topic = st.text(alphabet="abz09._-", min_size=1, max_size=12)
path = st.lists(st.one_of(topic, st.just(".."), st.just("")), min_size=1, max_size=MAX_HOPS + 2).map(">".join)
start = st.one_of(
    st.integers(min_value=0, max_value=10**16),
    st.sampled_from([NOW_MS, NOW_MS + 60_000, NOW_MS + 60_001, 999_999_999_999_999]),
).map(str)
shaped = st.builds(
    lambda version, start, path, sep: f"{version}{sep}{start}{sep}{path}",
    st.sampled_from(["1", "1", "2", "", " 1", "01"]),
    st.one_of(start, st.sampled_from(["", "+1", "1_0", " 5", "١٢", "12a"])),
    st.one_of(path, st.text(max_size=20), st.just("a" * 501), st.just("a;b")),
    st.sampled_from([";", ";", ":", ";;"]),
)
values = st.one_of(
    shaped,
    shaped.map(str.encode),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.builds(lambda p: ("1;5;" + p).encode(), st.text(alphabet="ab>", min_size=490, max_size=520)),
    st.sampled_from([None, 5, bytearray(b"1;5;orders"), "1;5;ordérs"]),
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_the_metrics_chain_reader_agrees_with_parse_chain(headers):
    flow = FlowMetrics(ClientInfo("kafka"))
    for value in headers * 2:  # the second time through, every path comes from the cache
        assert flow.chain_in(value, NOW_MS) == parse_chain(value, NOW_MS)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(path.filter(lambda p: parse_chain(f"1;1;{p}") is not None), topic), max_size=6))
def test_the_path_sent_on_is_extend_path_whether_cached_or_not(hops):
    flow = FlowMetrics(ClientInfo("kafka"))
    for chain_path, to in hops * 2:
        ctx = context.set_value(CHAIN_KEY, Chain(7, chain_path), context.Context())
        assert flow.chain_to_send(ctx, to, 0) == f"1;7;{extend_path(chain_path, to)}"
    assert flow.chain_to_send(None, "orders", 5_000_000) == "1;5;orders"
