"""``eventchain``: print an event chain as a tree, list chains, or find the chains of a message.

Only wiring: arguments in, then load -> chain -> analyse -> render from :mod:`tracing.read`.

Exit codes: 0 done (also when the reader of the output goes away, ``| head``); 2 bad input (unknown
trace, bad file, bad argument); 3 Jaeger unreachable, answering an error, or something else than
Jaeger at the URL; 1 a bug of ours (one line; ``EVENTCHAIN_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console

from tracing import semconv as sc
from tracing.read import make_chain
from tracing.read.analyse import linked_sources, processors, summarise
from tracing.read.audit import (
    DEFAULT_DLQ,
    DEFAULT_GRACE_S,
    DEFAULT_RETRY,
    FINDING_KINDS,
    AuditOptions,
    audit,
    audit_of_facts,
    parse_saga,
)
from tracing.read.audit import failing as audit_failing
from tracing.read.audit_facts import iter_file_audit_facts
from tracing.read.audit_render import audit_json, render_audit
from tracing.read.chain import trace_ids
from tracing.read.load import (
    JaegerClient,
    JaegerUnavailable,
    LoadError,
    TraceNotFound,
    TraceRef,
    iter_file,
    iter_file_facts,
    parse_trace_ref,
    read_file,
    resolve,
)
from tracing.read.model import Hop, Span
from tracing.read.query import (
    ChainFilter,
    ChainList,
    MessageQuery,
    find_trace_in_jaeger,
    linking_candidates,
    list_chains,
    list_chains_facts,
    mark_matches,
    needs_spans,
    search_jaeger,
    search_window,
)
from tracing.read.render import ASCII, Glyphs, render_list, render_text, summary_json, to_json
from tracing.read.store import SpanStore, default_store_path

DEFAULT_JAEGER = "http://localhost:16686"
DEFAULT_TIMEOUT_S = 10.0
PIPE_WIDTH = 160
JSON_INDENT_DEPTH = 100
# Traces per service a Jaeger list asks for when it filters afterwards (errors, chains only).
_MAX_SCAN = 1500
# tree from Jaeger: how many other traces, linked from the chain's spans, are read for their senders.
_LINKED_TRACES_MAX = 20

_UNITS_NS = {
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

_HINTS = {
    JaegerUnavailable: "try --jaeger URL (or $EVENTCHAIN_JAEGER_URL), a longer --timeout, or --file PATH",
    TraceNotFound: "try `eventchain list` for the chains there, or --jaeger URL / --file PATH",
}
_GENERAL_HINT = "try eventchain --help"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (``eventchain --help`` for usage)."""
    _tolerant_stdout()
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:
        return _reader_gone()
    # A command allocates hundreds of thousands of small objects (spans, nodes, lines) and makes no
    # reference cycles worth collecting: the cyclic collector's repeated scans of them would cost
    # more than the work itself on a big trace. It is back on when the command returns.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return int(args.run(args))
    except JaegerUnavailable as exc:
        return _fail(exc, 3)
    except LoadError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `eventchain tree ... | head`
        return _reader_gone()
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("EVENTCHAIN_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (EVENTCHAIN_DEBUG=1 shows the traceback)", 1)
    finally:
        if collecting:
            gc.enable()


# --- commands ---------------------------------------------------------------------------------------


def _tree(args: argparse.Namespace) -> int:
    ref = parse_trace_ref(args.trace_id) if args.trace_id else None
    query = _message_query(args, ref)
    link: str | None = None  # the trace's page in the Jaeger UI, when read from Jaeger
    if args.file:
        spans = read_file(args.file, warn=_warn)
        ids = trace_ids(spans)
        if ref is None:
            if len(ids) != 1:
                shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
                raise LoadError(
                    f"{args.file} holds {len(ids)} traces ({shown}): name one, try "
                    f"eventchain tree {ids[0][:12]} --file {args.file} (eventchain list --file shows them)"
                )
            trace_id = ids[0]
        else:
            trace_id = resolve(ref, ids, str(args.file))
    elif args.store:
        store = SpanStore.open(args.store)
        if ref is None:
            raise LoadError(
                f"a TRACE_ID is needed when reading a store (try eventchain list --store {store.path})"
            )
        trace_id = store.resolve(ref)
        spans = store.trace(trace_id)
        if args.follow_links:
            for other in store.linking_traces(trace_id):
                spans += store.trace(other)
    else:
        if ref is None:
            raise LoadError(
                "a TRACE_ID is needed when reading from Jaeger (try eventchain list for recent chains)"
            )
        client = _client(args, ref)
        try:
            trace_id, spans = ref.trace_id, client.trace(ref.trace_id)
        except TraceNotFound:
            if ref.prefix is None:
                raise
            trace_id = find_trace_in_jaeger(client, ref)  # the digits typed may start a longer id
            spans = client.trace(trace_id)
        link = f"{client.url}/trace/{trace_id}"
        spans += _linked_traces(client, spans, trace_id)
        if args.follow_links:
            spans += linking_candidates(client, spans)
    steps = processors(
        all_spans=args.all_spans,
        repeats=not (args.json or args.unfold),
        extra=[linked_sources(spans), *([mark_matches(query)] if not query.empty else [])],
    )
    chain = make_chain(spans, trace_id, follow_links=args.follow_links, steps=steps)
    summary = summarise(chain)
    if args.json:
        _print_json(to_json(chain, summary), depth=_depth(chain.root))
    else:
        render_text(chain, _console(args), summary, _glyphs(args), link)
    if args.svg:
        recorder = Console(file=io.StringIO(), record=True, width=args.width or 120)
        render_text(chain, recorder, summary, _glyphs(args))
        try:
            recorder.save_svg(args.svg, title=f"eventchain tree {trace_id}")
        except OSError as exc:
            raise LoadError(
                f"{args.svg}: cannot write the SVG ({exc.strerror or exc}): try another --svg PATH"
            ) from None
    return 0


def _linked_traces(client: JaegerClient, spans: list[Span], trace_id: str) -> list[Span]:
    """The spans of the other traces this trace's spans link to (where link-only consumers' events
    were sent from), a few at most; a trace Jaeger no longer holds is left out."""
    linked = sorted({link.trace_id for span in spans for link in span.links} - {trace_id})
    found: list[Span] = []
    for other in linked[:_LINKED_TRACES_MAX]:
        try:
            found += client.trace(other)
        except TraceNotFound:
            continue
    return found


def _list(args: argparse.Namespace) -> int:
    query = _message_query(args, None)
    chain_filter = ChainFilter(
        service=args.service,
        topic=args.topic,
        errors=args.errors,
        since_ns=time.time_ns() - args.lookback if _local(args) and args.lookback else None,
        message=query,
        include_all=args.all or args.command == "find",
    )
    trees = args.command == "find" and args.tree
    if args.file:
        spans = read_file(args.file, warn=_warn) if trees else iter_file(args.file, warn=_warn, slim=True)
    elif args.store:
        spans = SpanStore.open(args.store).spans(slim=not trees)
    else:
        client = _client(args, None)
        end = time.time_ns()
        start = end - (args.lookback or _UNITS_NS["h"])
        tags = query.jaeger_tags()
        if args.topic:
            tags.setdefault(sc.DESTINATION_NAME, args.topic)
        services = [args.service] if args.service else client.services()
        # Jaeger cannot search for "has an error" or "is a chain" in every storage: the filters run
        # afterwards, so ask for more of the newest traces, or older matching chains go unseen.
        filtered = args.errors or not chain_filter.include_all
        limit = min(max(args.limit * 20, 200), _MAX_SCAN) if filtered else args.limit
        spans = search_jaeger(client, services, start, end, limit=limit, tags=tags or None)
    if trees:
        spans = list(spans)
    if args.file and not trees and not needs_spans(chain_filter):
        # Only the summaries' fields are read: no span objects for a big file.
        found = list_chains_facts(iter_file_facts(args.file, warn=_warn), chain_filter, limit=args.limit)
    else:
        found = list_chains(spans, chain_filter, limit=args.limit)
    if trees:
        return _find_trees(args, found, query, spans)
    if args.json:
        print(json.dumps([summary_json(s) for s in found.shown], indent=2))
        print(_footer(found, args), file=sys.stderr)
    elif not found.shown:
        print(f"no event chains found; {_footer(found, args)}", file=sys.stderr)
    else:
        render_list(found.shown, _console(args), footer=_footer(found, args), glyphs=_glyphs(args))
    return 0


def _find_trees(
    args: argparse.Namespace, found: ChainList, query: MessageQuery, spans: Iterable[Span]
) -> int:
    if not found.shown:
        print(f"no event chains found; {_footer(found, args)}", file=sys.stderr)
        return 0
    console = _console(args)
    client = None if _local(args) else _client(args, None)
    spans = list(spans)
    for summary in found.shown:
        # Jaeger's search answers whole traces already; the trace is fetched again only to be sure
        # it is complete (a search may have caught it while its spans were still arriving).
        own = (
            client.trace(summary.trace_id) if client else [s for s in spans if s.trace_id == summary.trace_id]
        )
        steps = processors(repeats=not args.unfold, extra=[mark_matches(query)])
        chain = make_chain(own, summary.trace_id, steps=steps)
        render_text(chain, console, summarise(chain), _glyphs(args))
    print(_footer(found, args))
    return 0


def _footer(found: ChainList, args: argparse.Namespace) -> str:
    noun = "chain" if found.matching == 1 else "chains"
    text = f"{len(found.shown):,} of {found.matching:,} {noun} shown"
    if len(found.shown) < found.matching:
        text += " (--limit N shows more)"
    if found.hidden:
        others = "trace" if found.hidden == 1 else "traces"
        text += f"; {found.hidden:,} other {others} without a hop or an error hidden (--all shows them)"
    return text


# --- helpers -------------------------------------------------------------------------------------


def _message_query(args: argparse.Namespace, ref: TraceRef | None) -> MessageQuery:
    key, partition, offset, group = (getattr(args, n, None) for n in ("key", "partition", "offset", "group"))
    # `list --topic T` alone filters chains by topic; with a partition or offset it names a message.
    names_message = args.command != "list" or partition is not None or offset is not None
    return MessageQuery(
        key=key,
        topic=getattr(args, "topic", None) if names_message else None,
        partition=partition,
        offset=offset,
        group=group,
        span_id=ref.span_id if ref is not None else None,
    )


def _local(args: argparse.Namespace) -> bool:
    """True when the spans come from a file or a span store, not from Jaeger."""
    return bool(args.file or args.store)


def _serve(args: argparse.Namespace) -> int:
    from tracing.read.serve import ServeOptions, serve

    options = ServeOptions(
        store=Path(args.store) if args.store else default_store_path(),
        http=args.http,
        grpc=args.grpc,
        max_spans=args.max_spans or None,
        max_age_ns=args.max_age or None,
        live=args.live,
        settle_s=args.settle,
        max_waiting_spans=args.max_waiting,
        console=_console(args) if args.live else None,
        glyphs=_glyphs(args),
    )
    return serve(options)


def _address(text: str) -> tuple[str, int]:
    from tracing.read.serve import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _client(args: argparse.Namespace, ref: TraceRef | None) -> JaegerClient:
    url = args.jaeger or (ref.jaeger_url if ref else None) or os.environ.get("EVENTCHAIN_JAEGER_URL")
    return JaegerClient(url or DEFAULT_JAEGER, timeout=args.timeout)


def _warn(message: str) -> None:
    print(f"eventchain: warning: {message}", file=sys.stderr)


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


def _console(args: argparse.Namespace) -> Console:
    """Stdout's console: --width, else $COLUMNS or the terminal's; piped output is not cut at 80."""
    width = args.width
    if args.color == "always":
        console = Console(width=width, force_terminal=True)
    elif args.color == "never":
        console = Console(width=width, color_system=None)
    else:
        console = Console(width=width)
    if not width and not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def _glyphs(args: argparse.Namespace) -> Glyphs | None:
    """ASCII when asked; otherwise what the output's encoding can carry (decided by the renderer)."""
    return ASCII if args.ascii else None


def _tolerant_stdout() -> None:
    # Names in spans can hold any character: on an output that cannot encode one, print an escape
    # instead of failing mid-tree.
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
        try:
            stream.reconfigure(errors="backslashreplace")
        except (ValueError, OSError):
            pass


def _reader_gone() -> int:
    # The reader of our output went away (`| head`): that is not an error. Point stdout at devnull so
    # the interpreter's final flush does not complain.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def _fail(error: BaseException | str, code: int) -> int:
    message = " ".join(str(error).split())
    if "try " not in message:
        hint = next((h for kind, h in _HINTS.items() if isinstance(error, kind)), _GENERAL_HINT)
        message += f" ({hint})"
    print(f"eventchain: error: {message}", file=sys.stderr)
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


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _version() -> str:
    try:
        return version("kafka-event-tracing")
    except PackageNotFoundError:
        from tracing.version import __version__

        return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventchain",
        description="Show a Kafka event chain from its trace: every hop, queue time, fan-out, "
        "duplicates, unconsumed events and errors.",
    )
    parser.add_argument("--version", action="version", version=f"eventchain {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    jaeger_help = "Jaeger query URL (default: $EVENTCHAIN_JAEGER_URL or " + DEFAULT_JAEGER + ")"

    def common(sub: argparse.ArgumentParser) -> None:
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--jaeger", metavar="URL", help=jaeger_help)
        source.add_argument(
            "--file",
            metavar="PATH",
            help="Jaeger JSON or OTLP JSON (lines) file, plain or .gz; - reads stdin",
        )
        source.add_argument(
            "--store",
            metavar="PATH",
            nargs="?",
            const=str(default_store_path()),
            help="the span store eventchain serve writes (PATH left out: $EVENTCHAIN_STORE or "
            f"{default_store_path()})",
        )
        sub.add_argument(
            "--timeout",
            type=_seconds,
            default=DEFAULT_TIMEOUT_S,
            metavar="S",
            help=f"seconds to wait for each Jaeger answer (default {DEFAULT_TIMEOUT_S:g})",
        )
        sub.add_argument("--width", type=_positive, metavar="N", help="render at this many columns")
        sub.add_argument(
            "--color",
            choices=("auto", "always", "never"),
            default="auto",
            help="colour the output: auto (on a terminal), always, never",
        )
        sub.add_argument(
            "--ascii", action="store_true", help="ASCII only (the default where UTF-8 cannot print)"
        )

    def message(sub: argparse.ArgumentParser, topic: bool) -> None:
        sub.add_argument("--key", metavar="K", help="the message with this key")
        if topic:
            sub.add_argument("--topic", metavar="T", help="the message in this topic")
        sub.add_argument("--partition", type=_natural, metavar="P", help="the message in this partition")
        sub.add_argument("--offset", type=_natural, metavar="O", help="the message at this offset")
        sub.add_argument("--group", metavar="G", help="the message processed by this consumer group")

    tree = commands.add_parser("tree", help="print one event chain as a tree")
    tree.add_argument(
        "trace_id",
        metavar="TRACE_ID",
        nargs="?",
        help="trace id, a unique prefix of 8+ hex digits, a traceparent or a Jaeger trace URL "
        "(may be left out when --file holds a single trace)",
    )
    common(tree)
    tree.add_argument(
        "--json", action="store_true", help="print the chain as JSON (every node, nothing folded)"
    )
    tree.add_argument("--all-spans", action="store_true", help="show non-messaging spans too")
    tree.add_argument("--unfold", action="store_true", help="do not fold runs of like siblings into a count")
    tree.add_argument(
        "--follow-links", action="store_true", help="stitch in spans of other traces that link to this chain"
    )
    tree.add_argument("--svg", metavar="PATH", help="also save the tree as an SVG image")
    message(tree, topic=True)
    tree.set_defaults(run=_tree)

    def listing_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--service", metavar="S", help="only chains that pass through this service")
        sub.add_argument(
            "--lookback",
            type=_lookback,
            metavar="DURATION",
            help="how far back to look, e.g. 15m, 1h, 2d (default 1h from Jaeger; no limit in a file)",
        )
        sub.add_argument("--errors", action="store_true", help="only chains with errors")
        sub.add_argument(
            "--limit", type=_positive, default=20, metavar="N", help="at most N chains (default 20)"
        )
        sub.add_argument("--json", action="store_true", help="print the list as JSON")

    listing = commands.add_parser("list", help="list event chains, newest first")
    common(listing)
    listing_options(listing)
    listing.add_argument("--topic", metavar="T", help="only chains that pass through this topic")
    listing.add_argument(
        "--all", action="store_true", help="also traces without a send -> process hop (batch receives...)"
    )
    message(listing, topic=False)
    listing.set_defaults(run=_list, tree=False)

    find = commands.add_parser("find", help="find the chains that carried a message (by key, offset...)")
    common(find)
    message(find, topic=True)
    listing_options(find)
    find.add_argument("--tree", action="store_true", help="print each chain's tree, the message marked")
    find.add_argument("--unfold", action="store_true", help="with --tree: do not fold runs of like siblings")
    find.set_defaults(run=_find, all=True)

    checks = commands.add_parser(
        "audit", help="ordering, duplicates, unconsumed events, failures, stuck sagas and path latency"
    )
    common(checks)
    checks.add_argument("--since", metavar="T", help="from T: a duration ago (15m, 2h) or an ISO time "
                        "(default 1h ago from Jaeger; everything in a file or store)")
    checks.add_argument("--until", metavar="T", help="up to T: a duration ago or an ISO time (default now)")
    checks.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help=f"how long a send may wait for processing, and a saga for its end (default {DEFAULT_GRACE_S:g})",
    )
    checks.add_argument(
        "--saga",
        action="append",
        type=_saga,
        metavar="START:END[:COMPENSATION]",
        help="a saga rule: each step a topic, an event type or TOPIC/TYPE (repeatable)",
    )
    checks.add_argument("--dlq", action="append", metavar="PATTERN",
                        help="dead-letter topics (glob, repeatable; default *.dlq and *.DLT)")
    checks.add_argument("--retry", action="append", metavar="PATTERN",
                        help="retry topics (glob, repeatable; default *retry*)")
    checks.add_argument("--topic", action="append", metavar="PATTERN",
                        help="only messaging spans on these topics (glob, repeatable)")
    checks.add_argument("--fail-on", type=_kinds, default=[], metavar="KINDS",
                        help="exit 1 when any of these has findings: " + ",".join(FINDING_KINDS))
    checks.add_argument("--max-duplicate-rate", type=_rate, metavar="R",
                        help="exit 1 when duplicates exceed this share of processings (0.01 or 1%%)")
    checks.add_argument("--limit", type=_positive, default=_MAX_SCAN, metavar="N",
                        help=f"traces per service asked from Jaeger (default {_MAX_SCAN})")
    checks.add_argument("--json", action="store_true", help="print the findings as one JSON document")
    checks.set_defaults(run=_audit)

    serve = commands.add_parser(
        "serve",
        help="receive OTLP from your services, store the spans, print each chain as it settles",
        description="An OTLP receiver: OTLP/HTTP (protobuf or JSON) on /v1/traces, OTLP/gRPC with --grpc; "
        "spans go to a SQLite store the other commands read with --store. Metrics and logs are "
        "accepted and dropped. Stops on Ctrl-C or SIGTERM.",
    )
    serve.add_argument(
        "--http",
        type=_address,
        default=("127.0.0.1", 4318),
        metavar="HOST:PORT",
        help="OTLP/HTTP address (default 127.0.0.1:4318; the local stack's Jaeger holds it while it runs)",
    )
    serve.add_argument(
        "--grpc",
        type=_address,
        nargs="?",
        const=("127.0.0.1", 4317),
        metavar="HOST:PORT",
        help="also OTLP/gRPC (default address 127.0.0.1:4317)",
    )
    serve.add_argument(
        "--store",
        metavar="PATH",
        help=f"the SQLite span store (default $EVENTCHAIN_STORE or {default_store_path()})",
    )
    serve.add_argument(
        "--max-spans",
        type=_natural,
        default=1_000_000,
        metavar="N",
        help="keep at most N spans, dropping whole traces, least recently received first "
        "(default 1000000; 0: no limit)",
    )
    serve.add_argument(
        "--max-age",
        type=_lookback,
        default=_lookback("7d"),
        metavar="DURATION",
        help="drop traces last received longer ago than this, e.g. 30m, 12h (default 7d)",
    )
    serve.add_argument("--live", action="store_true", help="print each chain's tree when it settles")
    serve.add_argument(
        "--settle",
        type=_seconds,
        default=3.0,
        metavar="S",
        help="with --live: a chain has settled when no span came for S seconds (default 3)",
    )
    serve.add_argument(
        "--max-waiting",
        type=_positive,
        default=200_000,
        metavar="N",
        help="spans received but not yet stored; beyond N, requests get 503 with Retry-After "
        "(gRPC UNAVAILABLE) and exporters retry them (default 200000)",
    )
    serve.add_argument("--width", type=_positive, metavar="N", help="render at this many columns")
    serve.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour: auto, always, never"
    )
    serve.add_argument("--ascii", action="store_true", help="ASCII only")
    serve.set_defaults(run=_serve)
    return parser


def _audit(args: argparse.Namespace) -> int:
    now = time.time_ns()
    since = _moment(args.since, "--since", now) if args.since else None
    until = _moment(args.until, "--until", now) if args.until else None
    store_path = args.store
    if since is None and not (args.file or store_path):
        since = now - _UNITS_NS["h"]  # Jaeger: the last hour unless told otherwise
    options = AuditOptions(
        since_ns=since,
        until_ns=until,
        # Judged as of now when reading the live backend; a file or a store as of its latest span.
        horizon_ns=until if until is not None else (None if args.file or store_path else now),
        grace_s=args.grace,
        sagas=tuple(args.saga or ()),
        dlq=tuple(args.dlq or DEFAULT_DLQ),
        retry=tuple(args.retry or DEFAULT_RETRY),
        topics=tuple(args.topic or ()),
    )
    if args.file:
        report = audit_of_facts(iter_file_audit_facts(args.file, warn=_warn), options)
    elif store_path:
        with SpanStore.open(store_path) as store:
            report = audit(store.spans(since_ns=since, as_received=True), options)
    else:
        client = _client(args, None)
        spans, full = search_window(client, since or 0, until or now, limit=args.limit)
        for service in full:
            _warn(
                f"Jaeger answered the limit of {args.limit:,} traces for {service}: its older traces in the "
                "window were not read (try a shorter --since/--until window or a higher --limit)"
            )
        # Jaeger answers trace by trace, in no order of time: read as a file is written.
        report = audit(sorted(spans, key=lambda span: span.end_ns), options)
    if args.json:
        print(json.dumps(audit_json(report), indent=2))
    else:
        render_audit(report, _console(args), _glyphs(args))
    reasons = audit_failing(report, args.fail_on, args.max_duplicate_rate)
    if reasons:
        print(f"eventchain: audit failed: {', '.join(reasons)}", file=sys.stderr)
        return 1
    return 0


def _moment(text: str, option: str, now_ns: int) -> int:
    """A time as ``--since``/``--until`` take it: a duration ago (15m, 2h), or an ISO 8601 time."""
    try:
        return now_ns - _lookback(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LoadError(
            f"{option} {text!r} is neither a duration nor a time: try 15m, 2h or 2025-11-27T06:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1e9)


def _saga(text: str) -> object:
    try:
        return parse_saga(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in FINDING_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of {','.join(FINDING_KINDS)} (comma-separated)"
        )
    return kinds


def _rate(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate between 0 and 1 (or 0% and 100%)")
    return value


def _find(args: argparse.Namespace) -> int:
    if _message_query(args, None).empty:
        raise LoadError("find needs a message: try --key K, --topic T --partition P --offset O, or --group G")
    return _list(args)
