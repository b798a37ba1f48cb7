"""``eventchain``: print an event chain as a tree, or list recent chains.

Only wiring: arguments in, then load -> chain -> analyse -> render from :mod:`tracing.read`.

Exit codes: 0 done; 2 bad input (unknown trace, bad file, bad argument); 3 Jaeger unreachable,
answering an error, or something else than Jaeger at the URL; 1 a bug of ours (one line;
``EVENTCHAIN_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console

from tracing.read import make_chain
from tracing.read.analyse import summarise
from tracing.read.chain import trace_ids
from tracing.read.load import (
    JaegerClient,
    JaegerUnavailable,
    LoadError,
    TraceNotFound,
    normalise_trace_id,
    read_file,
)
from tracing.read.model import Hop, Span
from tracing.read.render import render_list, render_text, to_json

DEFAULT_JAEGER = "http://localhost:16686"
# With --follow-links from Jaeger: how long after the chain ends a linked trace may start, and how
# many traces to scan per service. Jaeger cannot search by link, so this is a bounded scan.
LINK_WINDOW_NS = 3600 * 10**9
LINK_SCAN_LIMIT = 500
# Jaeger searches one service per request: this many requests at a time.
SEARCH_CONCURRENCY = 8
PIPE_WIDTH = 160
JSON_INDENT_DEPTH = 100

_UNITS_NS = {
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (``eventchain --help`` for usage)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args))
    except JaegerUnavailable as exc:
        return _fail(str(exc), 3)
    except LoadError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `eventchain list | head`
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("EVENTCHAIN_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (EVENTCHAIN_DEBUG=1 shows the traceback)", 1)


def _tree(args: argparse.Namespace) -> int:
    trace_id = normalise_trace_id(args.trace_id) if args.trace_id else None
    if args.file:
        spans = read_file(args.file)
        ids = trace_ids(spans)
        if trace_id is None:
            if len(ids) != 1:
                shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
                raise LoadError(f"{args.file} holds {len(ids)} traces ({shown}): name one")
            trace_id = ids[0]
        elif trace_id not in ids:
            raise TraceNotFound(f"trace {trace_id} not found in {args.file}")
    else:
        if trace_id is None:
            raise LoadError("a TRACE_ID is needed when reading from Jaeger")
        client = JaegerClient(args.jaeger)
        spans = client.trace(trace_id)
        if args.follow_links:
            spans += _linking_candidates(client, spans)
    chain = make_chain(spans, trace_id, all_spans=args.all_spans, follow_links=args.follow_links)
    summary = summarise(chain)
    if args.json:
        _print_json(to_json(chain, summary), depth=_depth(chain.root))
    else:
        render_text(chain, _console(args.width), summary)
    if args.svg:
        recorder = Console(file=io.StringIO(), record=True, width=args.width or 120)
        render_text(chain, recorder, summary)
        try:
            recorder.save_svg(args.svg, title=f"eventchain tree {trace_id}")
        except OSError as exc:
            raise LoadError(f"{args.svg}: cannot write the SVG ({exc.strerror or exc})") from None
    return 0


_MAX_ERROR_SCAN = 1500  # traces per service that `list --errors` looks through


def _list(args: argparse.Namespace) -> int:
    lookback_ns = args.lookback
    if args.file:
        spans = read_file(args.file)
    else:
        client = JaegerClient(args.jaeger)
        end = time.time_ns()
        start = end - (lookback_ns or _UNITS_NS["h"])
        tags = {"messaging.destination.name": args.topic} if args.topic else None
        services = [args.service] if args.service else client.services()
        # Jaeger cannot search for "has an error" in every storage, so --errors filters
        # afterwards: it asks for more of the newest traces, or older error chains go unseen.
        limit = min(max(args.limit * 20, 200), _MAX_ERROR_SCAN) if args.errors else args.limit
        spans = _search(client, services, start, end, limit=limit, tags=tags)
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    summaries = []
    now = time.time_ns()
    for trace_id, own in by_trace.items():
        chain = make_chain(own, trace_id)
        summary = summarise(chain)
        if args.service and args.service not in summary.services:
            continue
        if args.topic and not any(s.topic == args.topic for s in chain.spans):
            continue
        if args.errors and not summary.errors:
            continue
        if args.file and lookback_ns and summary.start_ns < now - lookback_ns:
            continue
        summaries.append(summary)
    summaries.sort(key=lambda s: (s.start_ns, s.trace_id), reverse=True)
    summaries = summaries[: args.limit]
    if args.json:
        print(json.dumps([_summary_json(s) for s in summaries], indent=2))
    elif not summaries:
        print("no event chains found", file=sys.stderr)
    else:
        render_list(summaries, _console(args.width))
    return 0


def _linking_candidates(client: JaegerClient, spans: list[Span]) -> list[Span]:
    """Spans of traces that may link to this chain: every service's traces started in its window."""
    start = min(s.start_ns for s in spans)
    end = min(max(s.end_ns for s in spans) + LINK_WINDOW_NS, time.time_ns())
    return _search(client, client.services(), start, end, limit=LINK_SCAN_LIMIT)


def _search(
    client: JaegerClient,
    services: list[str],
    start_ns: int,
    end_ns: int,
    limit: int,
    tags: Mapping[str, str] | None = None,
) -> list[Span]:
    """The spans of every service's traces in the window, several services searched at once."""
    if not services:
        return []
    with ThreadPoolExecutor(max_workers=min(SEARCH_CONCURRENCY, len(services))) as pool:
        found = pool.map(lambda s: client.search(s, start_ns, end_ns, limit=limit, tags=tags), services)
        return [span for spans in found for span in spans]


def _print_json(doc: object, depth: int) -> None:
    # The json encoder recurses once per level (node dict + children list); a chain can be deeper
    # than the default limit allows, so make room for it while printing. Indenting a very deep
    # tree would make the output grow with the square of its depth: print those compact.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 3 * depth + 1000))
    try:
        print(json.dumps(doc, indent=2 if depth <= JSON_INDENT_DEPTH else None))
    finally:
        sys.setrecursionlimit(limit)


def _depth(root: Hop) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        hop, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in hop.children)
    return deepest


def _summary_json(summary: object) -> dict[str, object]:
    data = dict(vars(summary))
    data["duration_ms"] = round(data["duration_ms"], 3)  # type: ignore[call-overload]
    return data


def _console(width: int | None) -> Console:
    """Stdout's console: --width, else $COLUMNS or the terminal's; piped output is not cut at 80."""
    console = Console(width=width) if width else Console()
    if not width and not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def _fail(message: str, code: int) -> int:
    print(f"eventchain: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _lookback(text: str) -> int:
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h or 2d")
    return int(sum(float(n) * _UNITS_NS[u] for n, u in parts))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventchain",
        description="Show a Kafka event chain from its trace: every hop, queue time, fan-out, "
        "duplicates, unconsumed events and errors.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    jaeger_help = "Jaeger query URL (default: $EVENTCHAIN_JAEGER_URL or " + DEFAULT_JAEGER + ")"
    jaeger_default = os.environ.get("EVENTCHAIN_JAEGER_URL") or DEFAULT_JAEGER

    tree = commands.add_parser("tree", help="print one event chain as a tree")
    tree.add_argument(
        "trace_id",
        metavar="TRACE_ID",
        nargs="?",
        help="trace id (may be left out when --file holds a single trace)",
    )
    source = tree.add_mutually_exclusive_group()
    source.add_argument("--jaeger", metavar="URL", default=jaeger_default, help=jaeger_help)
    source.add_argument("--file", metavar="PATH", help="Jaeger JSON or OTLP JSON (lines) file")
    tree.add_argument("--json", action="store_true", help="print the chain as JSON")
    tree.add_argument("--all-spans", action="store_true", help="show non-messaging spans too")
    tree.add_argument(
        "--follow-links", action="store_true", help="stitch in spans of other traces that link to this chain"
    )
    tree.add_argument("--svg", metavar="PATH", help="also save the tree as an SVG image")
    tree.add_argument("--width", type=_positive, metavar="N", help="render at this many columns")
    tree.set_defaults(run=_tree)

    listing = commands.add_parser("list", help="list recent event chains, newest first")
    source = listing.add_mutually_exclusive_group()
    source.add_argument("--jaeger", metavar="URL", default=jaeger_default, help=jaeger_help)
    source.add_argument("--file", metavar="PATH", help="Jaeger JSON or OTLP JSON (lines) file")
    listing.add_argument("--service", metavar="S", help="only chains that pass through this service")
    listing.add_argument("--topic", metavar="T", help="only chains that pass through this topic")
    listing.add_argument(
        "--lookback",
        type=_lookback,
        metavar="DURATION",
        help="how far back to look, e.g. 15m, 1h, 2d (default 1h from Jaeger; no limit in a file)",
    )
    listing.add_argument("--errors", action="store_true", help="only chains with errors")
    listing.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="at most N chains (default 20)"
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.add_argument("--width", type=_positive, metavar="N", help="render at this many columns")
    listing.set_defaults(run=_list)
    return parser
