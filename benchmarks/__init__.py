"""Throughput benchmark: raw confluent-kafka vs this library vs the OpenTelemetry contrib instrumentation.

Run with ``python -m benchmarks`` (``make bench``); ``--help`` lists the options.

Each measurement runs in a fresh interpreter (``benchmarks.worker``): the global
OpenTelemetry provider can be set only once per process, and the contrib variant runs
with the contrib package's own interpreter. This package therefore imports nothing of
the project at module level, so the worker also runs where ``tracing`` is not installed.
"""
