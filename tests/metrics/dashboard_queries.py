"""Reading the Grafana dashboards in dashboards/: panels, their queries, the template variables.

Shared by the structural tests and the live tests that run every query against the real
Prometheus and Jaeger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
PROVISIONING_DIR = DASHBOARDS_DIR / "provisioning"

# What a time range turns into when a query runs outside Grafana.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "10m",
    "__range_s": "600",
}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text(encoding="utf-8")) for path in dashboard_files()}


def provisioned_datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((PROVISIONING_DIR / "datasources").glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found.extend(doc.get("datasources") or [])
    return found


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, also those nested in collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def query_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Panels that show data (everything but rows)."""
    return (p for p in all_panels(dashboard) if p.get("type") != "row")


def datasource_of(target: Mapping[str, Any], panel: Mapping[str, Any]) -> dict[str, Any]:
    ds = target.get("datasource") or panel.get("datasource") or {}
    return ds if isinstance(ds, dict) else {"uid": ds}


@dataclass(frozen=True)
class Query:
    """One query of one panel (or of a template variable)."""

    dashboard: str
    panel: str
    ref_id: str
    kind: str  # "prometheus" or "jaeger"
    target: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def panel_queries(dashboards: Mapping[Path, Mapping[str, Any]] | None = None) -> list[Query]:
    queries: list[Query] = []
    for path, dash in (dashboards or load_dashboards()).items():
        for panel in query_panels(dash):
            for target in panel.get("targets") or []:
                ds = datasource_of(target, panel)
                queries.append(
                    Query(
                        path.name,
                        panel.get("title", "?"),
                        target.get("refId", "?"),
                        ds.get("type", "?"),
                        target,
                    )
                )
    return queries


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((dashboard.get("templating") or {}).get("list") or [])


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        return str(query.get("query", ""))
    return str(query or variable.get("definition", ""))


_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.*),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S
)


def parse_label_values(query: str) -> tuple[str | None, str]:
    """label_values(selector, label) -> (selector or None, label)."""
    match = _LABEL_VALUES.match(query)
    if not match:
        raise ValueError(f"not a label_values() query: {query}")
    return match.group("selector"), match.group("label")


_VAR = re.compile(
    r"\$\{(?P<braced>[a-zA-Z0-9_]+)(?::[a-z]+)?\}|\$(?P<plain>[a-zA-Z0-9_]+)|\[\[(?P<old>[a-zA-Z0-9_]+)\]\]"
)


def referenced_variables(text: str) -> set[str]:
    """Variable names used in a text; `$1` (a regex group in label_replace) is not one."""
    names = {m.group("braced") or m.group("plain") or m.group("old") for m in _VAR.finditer(text)}
    return {n for n in names if not n.isdigit()}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace $var, ${var}, ${var:fmt} and [[var]] by values (Grafana's built-ins included)."""

    def repl(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain") or match.group("old")
        if name.isdigit():
            return match.group(0)  # as Grafana does for a name it does not know
        if name in values:
            return values[name]
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        raise KeyError(f"no value for variable ${name} in: {text}")

    return _VAR.sub(repl, text)


def promql_of(target: Mapping[str, Any]) -> str:
    return str(target.get("expr", ""))


def jaeger_search_params(target: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """The Jaeger HTTP API parameters Grafana's Jaeger datasource sends for a search query.

    Grafana takes tags in logfmt (key=value key2="value 2") and sends them as a JSON object.
    """
    params: dict[str, str] = {"service": substitute(str(target["service"]), values)}
    if target.get("operation"):
        params["operation"] = substitute(str(target["operation"]), values)
    if target.get("tags"):
        tags = {}
        for match in re.finditer(r'([^\s=]+)=(?:"([^"]*)"|(\S+))', substitute(str(target["tags"]), values)):
            tags[match.group(1)] = match.group(2) if match.group(2) is not None else match.group(3)
        params["tags"] = json.dumps(tags)
    for key in ("minDuration", "maxDuration"):
        if target.get(key):
            params[key] = substitute(str(target[key]), values)
    params["limit"] = str(target.get("limit") or 20)
    return params
