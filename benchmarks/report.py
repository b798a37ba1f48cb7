"""From measurements to medians, ratios, per-message overhead, targets and a printed table.

Ratios and overheads are computed within one round (the variants of a round ran back to
back) and then the median over rounds is taken, so slow drift of a shared machine cancels
out; absolute rates are medians too, but only the ratios are meant to be quoted.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

PHASES = ("produce", "poll", "process")
SAMPLING_LABEL = {"none": "no SDK", "1.0": "100%", "0.01": "1%"}
LIBRARY_LABEL = {
    "raw": "raw confluent-kafka",
    "ours": "this library",
    "ours-metrics": "this library + flow metrics",
    "ours-metrics-sdk": "this library + metrics via record()",
    "floor": "SDK floor (span only)",
    "contrib": "otel contrib",
    "aio-raw": "aio: raw confluent_kafka.aio",
    "aio-ours": "aio: this library",
}
# The uninstrumented client each library's overhead is measured against.
RAW_OF = {
    "raw": "raw",
    "ours": "raw",
    "ours-metrics": "raw",
    "ours-metrics-sdk": "raw",
    "floor": "raw",
    "contrib": "raw",
    "aio-raw": "aio-raw",
    "aio-ours": "aio-raw",
}
# The asyncio variant's synchronous counterpart: what asyncio costs on top.
SYNC_OF = {"aio-raw": "raw", "aio-ours": "ours"}
BROKER_LABEL = {"mock": "librdkafka mock cluster", "real": "real broker (127.0.0.1:19092)"}

# (what is measured, this library's variant, configuration, phase, minimum ratio to contrib
# in the same configuration); at 100 % the SDK floor of that configuration is printed beside.
RATIO_TARGETS = (
    ("100% tracing only", "ours", "1.0/discard", "produce", 2.0),
    ("100% tracing only", "ours", "1.0/discard", "poll", 3.0),
    ("100% + flow metrics as configure() sets them up", "ours-metrics", "1.0/discard", "produce", 1.6),
    ("100% + flow metrics as configure() sets them up", "ours-metrics", "1.0/discard", "poll", 2.5),
    ("100% + configure()'s OTLP exporter", "ours", "1.0/otlp", "produce", 1.5),
    ("100% + configure()'s OTLP exporter", "ours", "1.0/otlp", "poll", 1.5),
    ("1%", "ours", "0.01/discard", "produce", 2.5),
    ("1%", "ours", "0.01/discard", "poll", 5.0),
)
# The flow metrics' own cost at 100 % (µs per message over tracing alone).
METRICS_COST_MAX_US = {"produce": 3.0, "poll": 5.0}
# Without an SDK: µs per message over the raw client.
NO_SDK_MAX_US = {"produce": 1.0, "poll": 2.0, "process": 2.0}
# Where the exporter's CPU per exported span is printed (a figure, no bound).
EXPORT_CPU_CONFIG = "1.0/otlp"
OUTAGE_MAX_RSS_MB = 50.0


def variant_key(library: str, sampling: str, exporter: str) -> str:
    if RAW_OF[library] == library:
        return library
    return f"{library}/{sampling}" if sampling == "none" else f"{library}/{sampling}/{exporter}"


def variant_label(key: str) -> str:
    parts = key.split("/")
    if parts[0] == "floor" and parts[1:2] == ["none"]:
        return "floor: context carried only  no SDK"
    label = LIBRARY_LABEL[parts[0]]
    if len(parts) > 1:
        label += "  " + SAMPLING_LABEL.get(parts[1], parts[1])
    if len(parts) > 2:
        label += " " + parts[2]
    return label


def _median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per broker: median rates, overhead over raw (µs/msg), ratios to contrib; the SDK floor's
    ratio to contrib and ours to the floor; for the asyncio variants also the event loop's lag
    and the ratios to the raw aio clients and to sync."""
    out: dict[str, Any] = {}
    for broker in sorted({r["broker"] for r in runs}):
        mine = [r for r in runs if r["broker"] == broker and not r.get("error")]
        by_round: dict[int, dict[str, dict[str, float]]] = {}
        lag_by_round: dict[int, dict[str, dict[str, float]]] = {}
        for r in mine:
            key = variant_key(r["library"], r["sampling"], r["exporter"])
            by_round.setdefault(r["round"], {})[key] = r["msgs_per_s"]
            if r.get("loop_lag_ms"):
                lag_by_round.setdefault(r["round"], {})[key] = r["loop_lag_ms"]
        keys = sorted({k for rnd in by_round.values() for k in rnd}, key=_order)
        rates = {
            k: {p: _median(rnd[k].get(p) for rnd in by_round.values() if k in rnd) for p in PHASES}
            for k in keys
        }
        overhead = {}
        for k in keys:
            raw = _raw_key(k)
            if k == raw:
                continue
            overhead[k] = {
                p: _median(
                    1e6 / rnd[k][p] - 1e6 / rnd[raw][p]
                    for rnd in by_round.values()
                    if k in rnd and raw in rnd and rnd[k].get(p) and rnd[raw].get(p)
                )
                for p in PHASES
            }
        ratios, metrics_ratios = {}, {}
        for k in keys:
            library, _, config = k.partition("/")
            theirs = "contrib/" + config
            if theirs not in keys:
                continue
            if library == "ours":
                ratios[config] = _ratios(by_round, k, theirs)
            elif library.startswith("ours-metrics"):
                metrics_ratios[k] = _ratios(by_round, k, theirs)
        lag_keys = [k for k in keys if any(k in rnd for rnd in lag_by_round.values())]
        loop_lag = {
            k: {p: _median(rnd[k].get(p) for rnd in lag_by_round.values() if k in rnd) for p in PHASES}
            for k in lag_keys
        }
        # What the flow metrics add to the same sampling (µs per message), round by round:
        # as configure() sets them up, and (metrics_sdk_cost_us) through the SDK's record().
        metrics_cost, metrics_sdk_cost = {}, {}
        for k in keys:
            library, _, config = k.partition("/")
            plain = "ours/" + config
            if plain not in keys or library not in ("ours-metrics", "ours-metrics-sdk"):
                continue
            cost = {
                p: _median(
                    1e6 / rnd[k][p] - 1e6 / rnd[plain][p]
                    for rnd in by_round.values()
                    if k in rnd and plain in rnd and rnd[k].get(p) and rnd[plain].get(p)
                )
                for p in PHASES
            }
            (metrics_cost if library == "ours-metrics" else metrics_sdk_cost)[config] = cost
        # The SDK floor (the bare spans): how far any wrapper could get past contrib, and the
        # share of the floor's throughput this library keeps; keyed like ratio_vs_contrib.
        floor_vs_contrib, ours_vs_floor = {}, {}
        for k in keys:
            if not k.startswith("floor/"):
                continue
            config = k.split("/", 1)[1]
            if "contrib/" + config in keys:
                floor_vs_contrib[config] = _ratios(by_round, k, "contrib/" + config)
            if "ours/" + config in keys:
                ours_vs_floor[config] = _ratios(by_round, "ours/" + config, k)
        # `process(msg)` is this library's own API: the floor has nothing to compare it with
        # (runs recorded before the floor left that phase out repeated its poll loop there).
        for ratio in (*floor_vs_contrib.values(), *ours_vs_floor.values()):
            ratio["process"] = None
        aio_keys = [k for k in keys if k.startswith("aio-")]
        out[broker] = {
            "metrics_cost_us": metrics_cost,
            "metrics_sdk_cost_us": metrics_sdk_cost,
            "metrics_ratio_vs_contrib": metrics_ratios,
            "export_cpu_us_per_span": _export_cpu(mine),
            "rounds": len(by_round),
            "msgs_per_s": rates,
            "overhead_us_over_raw": overhead,
            "ratio_vs_contrib": ratios,
            "floor_ratio_vs_contrib": floor_vs_contrib,
            "ours_vs_floor": ours_vs_floor,
            "spans_exported_per_msg": _spans_per_msg(mine),
            # asyncio: the worst event-loop lag (ms) each run saw, median over rounds
            "loop_lag_ms": loop_lag,
            "aio_ratio_vs_raw_aio": {
                k: _ratios(by_round, k, "aio-raw") for k in aio_keys if k != "aio-raw" and "aio-raw" in keys
            },
            "aio_ratio_vs_sync": {
                k: _ratios(by_round, k, _sync_key(k)) for k in aio_keys if _sync_key(k) in keys
            },
        }
    return out


def _raw_key(key: str) -> str:
    return RAW_OF[key.split("/")[0]]


def _sync_key(key: str) -> str:
    library, _, rest = key.partition("/")
    sync = SYNC_OF[library]
    return f"{sync}/{rest}" if rest else sync


def _ratios(
    by_round: dict[int, dict[str, dict[str, float]]], key: str, other: str
) -> dict[str, float | None]:
    """Throughput of ``key`` over ``other`` per phase: per-round ratios, then their median."""
    return {
        p: _median(
            rnd[key][p] / rnd[other][p]
            for rnd in by_round.values()
            if key in rnd and other in rnd and rnd[key].get(p) and rnd[other].get(p)
        )
        for p in PHASES
    }


def _spans_per_msg(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for r in runs:
        if not r.get("spans_exported"):
            continue
        key = variant_key(r["library"], r["sampling"], r["exporter"])
        n = r["n"]
        for p, count in r["spans_exported"].items():
            out.setdefault(key, {}).setdefault(p, [])  # type: ignore[arg-type]
            out[key][p].append(count / n)  # type: ignore[union-attr]
    return {k: {p: _median(v) for p, v in d.items()} for k, d in out.items()}  # type: ignore[arg-type]


def _export_cpu(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per variant and phase: the exporter's CPU per exported span (µs), median over rounds."""
    found: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for p, value in (r.get("export_cpu_us_per_span") or {}).items():
            key = variant_key(r["library"], r["sampling"], r["exporter"])
            found.setdefault(key, {}).setdefault(p, []).append(value)
    ordered = sorted(found.items(), key=lambda item: _order(item[0]))
    return {k: {p: _median(v) for p, v in d.items()} for k, d in ordered}


def _order(key: str) -> tuple[int, int, int, int]:
    """sync before asyncio; raw first, then by exporter and sampling, ours, the SDK floor, contrib."""
    library, sampling, exporter = (key.split("/") + ["", ""])[:3]
    api = 1 if library.startswith("aio-") else 0
    if RAW_OF[library] == library:
        return (api, -1, 0, 0)
    return (
        api,
        {"": 0, "discard": 0, "otlp": 1}[exporter],
        {"none": 0, "1.0": 1, "0.01": 2}.get(sampling, 3),
        {"ours": 0, "ours-metrics": 1, "ours-metrics-sdk": 2, "floor": 3, "contrib": 4, "aio-ours": 0}[
            library
        ],
    )


def targets(summary: dict[str, Any], outage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every target with its measured value; those at 100 % with what the SDK floor of the same
    configuration reaches (``floor``: how far any wrapper could get with the same SDK)."""
    found = []
    for broker, s in summary.items():
        if "raw" not in s["msgs_per_s"]:
            continue  # an asyncio-only run: the targets are about the synchronous clients
        for what, library, config, phase, minimum in RATIO_TARGETS:
            if library == "ours":
                value = s["ratio_vs_contrib"].get(config, {}).get(phase)
            else:
                value = s.get("metrics_ratio_vs_contrib", {}).get(f"{library}/{config}", {}).get(phase)
            target = {
                "target": f"{what}: {_phase_name(phase)} vs contrib",
                "broker": broker,
                "value": value,
                "want": f">= {minimum}x",
                "met": value is not None and value >= minimum,
            }
            if config.startswith("1.0/"):
                target["floor"] = s.get("floor_ratio_vs_contrib", {}).get(config, {}).get(phase)
            found.append(target)
        for phase, maximum in METRICS_COST_MAX_US.items():
            value = s.get("metrics_cost_us", {}).get("1.0/discard", {}).get(phase)
            name = f"100% flow metrics' own cost: µs per {_message_name(phase)}"
            target = _at_most(name, broker, value, maximum)
            sdk = s.get("metrics_sdk_cost_us", {}).get("1.0/discard", {}).get(phase)
            if sdk is not None:
                target["note"] = f"(through the SDK's record(): {sdk:.2f} µs)"
            found.append(target)
        for phase, maximum in NO_SDK_MAX_US.items():
            value = s["overhead_us_over_raw"].get("ours/none", {}).get(phase)
            target = _at_most(f"no SDK {_phase_name(phase)}: µs/msg over raw", broker, value, maximum)
            # The least any wrapper must do to carry the context on, in the same rounds.
            floor = s["overhead_us_over_raw"].get("floor/none", {}).get("poll")
            if floor is not None and phase != "produce":
                target["note"] = f"(floor, the context carried only: {floor:.2f} µs)"
            found.append(target)
        cpu = s.get("export_cpu_us_per_span", {})
        for phase in ("produce", "poll"):
            value = cpu.get(f"ours/{EXPORT_CPU_CONFIG}", {}).get(phase)
            others = [
                f"{name} {cpu[f'{library}/{EXPORT_CPU_CONFIG}'][phase]:.1f} µs"
                for library, name in (("contrib", "contrib"), ("floor", "SDK floor"))
                if cpu.get(f"{library}/{EXPORT_CPU_CONFIG}", {}).get(phase) is not None
            ]
            target = {
                "target": f"100% OTLP exporter CPU µs/span: {_phase_name(phase)}",
                "broker": broker,
                "value": value,
                "want": "printed",
                "met": value is not None,
            }
            if others:
                target["note"] = "(" + ", ".join(others) + ")"
            found.append(target)
    if outage:
        for name, result in outage.items():
            if name != "ours" or "rss_growth_mb" not in result:
                continue
            found.append(
                {
                    "target": f"exporter unreachable, {result['n']:,} sends: exceptions",
                    "broker": "mock",
                    "value": result["exceptions"],
                    "want": "0",
                    "met": result["exceptions"] == 0,
                }
            )
            found.append(
                {
                    "target": f"exporter unreachable, {result['n']:,} sends: RSS growth MB",
                    "broker": "mock",
                    "value": result["rss_growth_mb"],
                    "want": f"<= {OUTAGE_MAX_RSS_MB:g} MB",
                    "met": result["rss_growth_mb"] <= OUTAGE_MAX_RSS_MB,
                }
            )
    return found


def _at_most(name: str, broker: str, value: float | None, maximum: float) -> dict[str, Any]:
    """A target met by a figure of at most ``maximum`` µs."""
    return {
        "target": name,
        "broker": broker,
        "value": value,
        "want": f"<= {maximum:g} µs",
        "met": value is not None and value <= maximum,
    }


def _message_name(phase: str) -> str:
    return {"produce": "produced message", "poll": "consumed message (poll loop)"}.get(phase, phase)


def _phase_name(phase: str) -> str:
    return {"produce": "produce", "poll": "consume (poll loop)", "process": "consume (process(msg))"}[phase]


# ----------------------------------------------------------------------------- printing
def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:,.1f}k"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _rate_head(over: str, width: int) -> str:
    head = f"{'variant':42} {'produce/s':>10} {'poll/s':>10} {'process/s':>10}   {over:{width}}"
    return head + f"{'produce':>8} {'poll':>7} {'process':>8}"


def _rate_row(s: dict[str, Any], key: str, width: int) -> str:
    rates = s["msgs_per_s"][key]
    over = s["overhead_us_over_raw"].get(key, {})
    return (
        f"{variant_label(key):42} {_rate(rates['produce']):>10} {_rate(rates['poll']):>10} "
        f"{_rate(rates['process']):>10}   {'':{width}}"
        f"{_num(over.get('produce'), '.2f'):>8} {_num(over.get('poll'), '.2f'):>7} "
        f"{_num(over.get('process'), '.2f'):>8}"
    )


def _config_label(key: str) -> str:
    """``1.0/discard`` as ``100% discard``."""
    sampling, _, exporter = key.partition("/")
    return SAMPLING_LABEL.get(sampling, sampling) + (" " + exporter if exporter else "")


_PER_ROUND = "same round (median of per-round ratios)"


def _phase_table(
    title: str, rows: dict[str, dict[str, float | None]], *, variants: bool = False, unit: str = ""
) -> list[str]:
    """A titled block, one row per configuration (or per variant), one cell per phase;
    nothing when there are no rows."""
    if not rows:
        return []
    head, width, label = (
        ("variant", 42, variant_label) if variants else ("sampling + exporter", 24, _config_label)
    )
    out = ["", title + ":", f"  {head:{width}} {'produce':>8} {'poll':>8} {'process':>8}"]
    for key, values in rows.items():
        cells = " ".join(
            f"{'-' if values.get(p) is None else format(values[p], '.2f') + unit:>8}" for p in PHASES
        )
        out.append(f"  {label(key):{width}} {cells}")
    return out


def render(summary: dict[str, Any], meta: dict[str, Any], checked: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for broker, s in summary.items():
        lines.append("")
        lines.append(
            f"== {BROKER_LABEL.get(broker, broker)}: N={meta['n']:,} msgs per phase, "
            f"{s['rounds']} round(s), medians =="
        )
        sync_keys = [k for k in s["msgs_per_s"] if not k.startswith("aio-")]
        if sync_keys:
            lines.append(_rate_head("µs/msg over raw: ", 17))
            lines += [_rate_row(s, key, 17) for key in sync_keys]
        lines += _phase_table(f"this library / otel contrib, {_PER_ROUND}", s["ratio_vs_contrib"], unit="x")
        lines += _phase_table(
            f"SDK floor (one bare span per message, same attributes) / otel contrib, {_PER_ROUND}",
            s.get("floor_ratio_vs_contrib", {}),
            unit="x",
        )
        lines += _phase_table(
            f"this library / its floor (the SDK's spans alone; no SDK: the context carried on), {_PER_ROUND}",
            s.get("ours_vs_floor", {}),
            unit="x",
        )
        # The SDK's BatchSpanProcessor drops spans when its queue (2,048 by default) fills
        # faster than its thread exports: a dropped span skips the export work, so say it.
        lines += _phase_table(
            "spans exported per message at 100 % (this library and the floor: 1 = none dropped; "
            "contrib records 2 per consumed message)",
            {k: v for k, v in s.get("spans_exported_per_msg", {}).items() if "/1.0/" in k},
            variants=True,
        )
        lines += _phase_table(
            f"this library with the flow metrics / otel contrib, {_PER_ROUND}",
            s.get("metrics_ratio_vs_contrib", {}),
            variants=True,
            unit="x",
        )
        lines += _phase_table(
            "flow metrics: µs/msg they add to the same sampling (median of per-round differences)",
            s.get("metrics_cost_us", {}),
        )
        lines += _phase_table(
            "flow metrics through the SDK's record() (KET_PREAGGREGATE=false): µs/msg they add",
            s.get("metrics_sdk_cost_us", {}),
        )
        lines += _phase_table(
            "exporter CPU per exported span, µs (its export() in the BatchSpanProcessor's thread)",
            s.get("export_cpu_us_per_span", {}),
            variants=True,
        )
        aio_keys = [k for k in s["msgs_per_s"] if k.startswith("aio-")]
        if aio_keys:
            lines.append("")
            lines.append(
                "asyncio clients; overhead over the raw aio clients; loop lag: worst delay of a 5 ms ticker"
            )
            lines.append(
                _rate_head("µs/msg over raw aio: ", 21)
                + f"   loop lag ms: {'produce':>8} {'poll':>5} {'process':>7}"
            )
            for key in aio_keys:
                lag = s.get("loop_lag_ms", {}).get(key, {})
                lines.append(
                    _rate_row(s, key, 21)
                    + f"   {'':13}{_num(lag.get('produce'), '.1f'):>8} {_num(lag.get('poll'), '.1f'):>5} "
                    f"{_num(lag.get('process'), '.1f'):>7}"
                )
            lines += _phase_table(
                f"asyncio: this library / raw aio clients, {_PER_ROUND}",
                s.get("aio_ratio_vs_raw_aio", {}),
                variants=True,
                unit="x",
            )
            lines += _phase_table(
                f"asyncio / sync, the same library and sampling, {_PER_ROUND}",
                s.get("aio_ratio_vs_sync", {}),
                variants=True,
                unit="x",
            )
    if checked:
        lines.append("")
        lines.append("targets:")
        for t in checked:
            value = t["value"]
            shown = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
            verdict = "met" if t["met"] else "NOT met"
            line = f"  [{t['broker']:4}] {t['target']:72} {shown:>8}  want {t['want']:10} {verdict}"
            if t.get("floor") is not None:
                line += f"  (SDK floor reaches {t['floor']:.2f}x)"
            if t.get("note"):
                line += "  " + t["note"]
            lines.append(line)
    return "\n".join(lines)
