"""``python -m tracing.demo [--live ...]``: see :mod:`tracing.demo`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--live" in args:
        from tracing.demo import live

        return live.main([a for a in args if a != "--live"])
    parser = argparse.ArgumentParser(
        prog="python -m tracing.demo",
        description="Run the event-chain demo on librdkafka's in-process mock cluster and print the "
        "chains (nothing to start first). With --live: separate processes, a real broker and Jaeger "
        "(see --live --help).",
    )
    parser.add_argument("--live", action="store_true", help="run against the local stack instead")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="export over OTLP/HTTP to an eventchain serve --live started for the run, "
        "which prints the chains",
    )
    if parser.parse_args(args).serve:
        from tracing.demo import serve

        return serve.run()
    from tracing.demo import embedded

    return embedded.run()


if __name__ == "__main__":
    raise SystemExit(main())
