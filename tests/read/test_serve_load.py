"""Load on `eventchain serve`: 4 sender processes (OTLP/HTTP and OTLP/gRPC, the exporters configure()
builds) aim at 20,000 spans/s for 30 s into one `serve` on loopback.

Bounded in time (the senders stop after 30 s) and in count (what they send in that time). Asserted:
nothing acknowledged is lost, nothing is stored that was not sent, and serve's memory stays under a
bound; the rate reached is recorded, not asserted (speed belongs to the benchmark, and the README
gives the figures of `python -m benchmarks.serve_load`).
"""

from __future__ import annotations

from benchmarks.serve_load import run

MAX_WAITING = 20_000
RSS_BOUND_MIB = 400  # the waiting spans (at most MAX_WAITING) and SQLite's cache, with room to spare


def test_four_senders_for_thirty_seconds_lose_nothing_acknowledged_and_memory_stays_bounded(
    record_property,
):
    result = run(
        senders=4,
        rate=20_000,
        seconds=30.0,
        protocol="both",
        serve_args=("--max-waiting", str(MAX_WAITING)),
    )
    print(result.line())
    record_property("serve_load", result.line())
    assert result.acknowledged > 0
    assert result.acknowledged <= result.stored <= result.sent  # nothing acknowledged is lost
    assert result.serve_peak_rss_mib < RSS_BOUND_MIB
