"""The real Jaeger UI on the local stack, in a real browser: search, timeline, printed links, architecture."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from typing import Any

import pytest

from tests import stack
from tests.ui.conftest import DemoRun, cancelled_order_spans, screenshot, wait_for

pytestmark = pytest.mark.stack

# Producer -> consumer edges of the demo's chains (Jaeger derives them from each span's parent).
DEMO_EDGES = {
    ("order-service", "inventory-service"),
    ("order-service", "notification-service"),
    ("order-service", "points-service"),
    ("inventory-service", "order-service"),
    ("inventory-service", "notification-service"),
    ("user-service", "points-service"),
    ("user-service", "recommendation-service"),
}


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return (By.CSS_SELECTOR, css)


def _text(element: Any) -> str:
    """The element's whole text, also the part CSS cuts off with an ellipsis."""
    return " ".join((element.get_attribute("textContent") or "").split())


def _pick(driver: Any, field: str, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    """Choose `value` in one of the search form's drop-downs the way a user does: type, click the option."""
    inputs = _by(f'div[name="{field}"] input[role="combobox"]')
    box = wait_for(driver, f"the {field} field enabled",
                   lambda d: next((e for e in d.find_elements(*inputs) if e.is_enabled()), None))
    box.click()
    box.send_keys(value)
    option = wait_for(driver, f"the option {value!r} under {field}", lambda d: next(
        (e for e in d.find_elements(*_by(".ant-select-item-option")) if e.get_attribute("title") == value
         and e.is_displayed()), None))
    option.click()
    wait_for(driver, f"{field} set to {value!r}", lambda d: any(
        _text(e) == value for e in d.find_elements(*_by(f'div[name="{field}"] .ant-select-content-value'))))
    # Until the list is gone it covers the fields below: close it as a user would if it stays open.
    def closed(d: Any) -> bool:
        if not any(e.is_displayed() for e in d.find_elements(*_by(".ant-select-item-option"))):
            return True
        if box.get_attribute("aria-expanded") == "true":
            box.send_keys(Keys.ESCAPE)
        return False

    wait_for(driver, f"the {field} list closed", closed)


def _timeline_rows(driver: Any, expected: int) -> list[dict[str, Any]]:
    """Wait until the timeline shows `expected` span rows; each as span id, service, operation, error mark."""
    script = """
        const rows = document.querySelectorAll('.VirtualizedTraceView--row[data-item-key$="--bar"]');
        return [...rows].map(r => ({
            id: r.dataset.itemKey.replace(/--bar$/, ''),
            service: r.querySelector('.span-svc-name').textContent.trim(),
            operation: r.querySelector('.endpoint-name').textContent.trim(),
            error: r.querySelector('.SpanBarRow--errorIcon') !== null,
        }));"""
    return wait_for(driver, f"{expected} span rows in the timeline",
                    lambda d: (rows := d.execute_script(script)) and len(rows) == expected and rows)


def _api_spans(trace_id: str) -> list[dict[str, Any]]:
    raw = stack.jaeger_trace(trace_id, expect_spans=len(cancelled_order_spans("")))
    return [{
        "id": s["spanID"],
        "service": stack.span_service(raw, s),
        "operation": s["operationName"],
        "error": any(t["key"] == "error" and t["value"] in (True, "true") for t in s.get("tags", [])),
    } for s in raw["spans"]]


def test_search_page_finds_the_chain_by_service_and_operation(browser, ui_url, demo_run: DemoRun):
    browser.get(f"{ui_url}/search")
    _pick(browser, "service", "order-service")
    # The first send of this run's orders topic: its name carries the run's prefix.
    _pick(browser, "operation", f"send {demo_run.prefix}orders")
    find = wait_for(browser, "the Find Traces button", lambda d: next(
        (b for b in d.find_elements(*_by("button")) if _text(b) == "Find Traces" and b.is_enabled()), None))
    find.click()

    def result_for(trace_id: str):
        return lambda d: next((e for e in d.find_elements(*_by(".ResultItem"))
                               if e.find_elements(*_by(f'a[href$="/trace/{trace_id}"]'))), None)

    item = wait_for(browser, f"the result of trace {demo_run.cancelled}", result_for(demo_run.cancelled))
    wait_for(browser, "the in-stock order's result too", result_for(demo_run.trace_ids[0]))
    text = _text(item)
    assert "order-service: POST /orders" in text
    assert f"{len(cancelled_order_spans(''))} Spans" in text and "1 Error" in text
    for service in ("inventory-service", "notification-service", "order-service", "points-service"):
        assert service in text
    # Only this run's two orders used this operation name.
    assert len(browser.find_elements(*_by(".ResultItem"))) == 2
    screenshot(browser, "search")

    item.find_element(*_by(f'a[href$="/trace/{demo_run.cancelled}"]')).click()
    wait_for(browser, "the trace page opened from the result",
             lambda d: d.current_url.endswith(f"/trace/{demo_run.cancelled}"))
    _timeline_rows(browser, len(cancelled_order_spans("")))


def test_trace_timeline_lists_every_service_and_span_with_the_error_marked(browser, ui_url, demo_run):
    expected = cancelled_order_spans(demo_run.prefix)
    browser.get(f"{ui_url}/trace/{demo_run.cancelled}")
    rows = _timeline_rows(browser, len(expected))

    assert sorted((r["service"], r["operation"]) for r in rows) == expected
    # Row for row what Jaeger stored: every span once.
    api = {s["id"]: s for s in _api_spans(demo_run.cancelled)}
    assert sorted(r["id"] for r in rows) == sorted(api)
    for row in rows:
        assert (row["service"], row["operation"], row["error"]) == (
            api[row["id"]]["service"], api[row["id"]]["operation"], api[row["id"]]["error"])

    # The failed SMS, and only it, carries the error mark.
    (failed,) = [r for r in rows if r["error"]]
    assert failed["service"] == "notification-service"
    assert failed["operation"] == f"process {demo_run.prefix}orders"

    title = _text(browser.find_element(*_by(".TracePageHeader--title")))
    assert title.startswith("order-service: POST /orders")
    overview = browser.execute_script("""
        const items = document.querySelectorAll('.TracePageHeader .LabeledList--item');
        return Object.fromEntries([...items].filter(i => i.querySelector('.LabeledList--label')).map(
            i => [i.querySelector('.LabeledList--label').textContent.trim(),
                  i.querySelector('strong').textContent.trim()]));""")
    assert (overview["Services"], overview["Total Spans"]) == ("4", str(len(expected))), overview
    screenshot(browser, "trace")

    # Opening the failed span shows why it failed.
    row = f'.VirtualizedTraceView--row[data-item-key="{failed["id"]}'
    browser.find_element(*_by(f'{row}--bar"] .span-name')).click()
    wait_for(browser, "the exception in the failed span's detail",
             lambda d: any("SmsFailed" in _text(e) for e in d.find_elements(*_by(f'{row}--detail"]'))))
    screenshot(browser, "trace-error-detail")


def test_printed_links_open_the_same_trace(browser, ui_url, demo_run: DemoRun):
    api_ids = sorted(s["id"] for s in _api_spans(demo_run.cancelled))
    # The link `make demo-live` prints for the chain ...
    demo_link = demo_run.links[1]
    assert demo_link == f"{ui_url}/trace/{demo_run.cancelled}"
    # ... and the one on eventchain's header line.
    proc = subprocess.run(
        [stack.venv_python(), "-m", "tracing", "tree", demo_run.cancelled, "--jaeger", ui_url,
         "--width", "200"],
        cwd=stack.REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.startswith(f"trace {demo_run.cancelled}")
    links = re.findall(r"https?://\S+/trace/[0-9a-f]{32}", header)
    assert links == [demo_link], header

    for n, link in enumerate([demo_link, links[0]]):
        browser.get(link)
        rows = _timeline_rows(browser, len(api_ids))
        assert sorted(r["id"] for r in rows) == api_ids
        wait_for(browser, "the trace id in the page title", lambda d: demo_run.cancelled[:7] in d.title)
        screenshot(browser, f"printed-link-{n}")


def test_system_architecture_draws_the_producer_consumer_edges(browser, ui_url, demo_run: DemoRun):
    """Jaeger's in-memory store derives the service graph from the spans' parents (a process span's
    parent is the send span in another service): the page draws one arrow per pair."""
    browser.get(f"{ui_url}/dependencies")
    script = """
        const centre = (el) => {
            const b = el.getBoundingClientRect();
            return [b.x + b.width / 2, b.y + b.height / 2];
        };
        const nodes = [...document.querySelectorAll('.DAG--node')].map(n => ({
            name: n.querySelector('.DAG--nodeLabel').textContent.trim(),
            at: centre(n.querySelector('.DAG--nodeCircle')),
        }));
        const gap = (n, [x, y]) => Math.hypot(n.at[0] - x, n.at[1] - y);
        const nearest = (p) => nodes.reduce((best, n) => (gap(n, p) < gap(best, p) ? n : best)).name;
        const edges = [...document.querySelectorAll('path.plexus-Digraph--SvgEdge')].map(p => {
            const m = p.getScreenCTM();
            const on = (l) => {
                const q = p.getPointAtLength(l);  // in the path's own units: to the viewport's
                return [q.x * m.a + q.y * m.c + m.e, q.x * m.b + q.y * m.d + m.f];
            };
            return [nearest(on(0)), nearest(on(p.getTotalLength()))];
        });
        return nodes.length ? {nodes: nodes.map(n => n.name), edges} : null;"""

    def drawn(d: Any):
        graph = d.execute_script(script)
        if graph and DEMO_EDGES <= {tuple(e) for e in graph["edges"]}:
            return graph
        return None

    graph = wait_for(browser, "the demo's producer -> consumer edges", drawn)
    services = {s for edge in DEMO_EDGES for s in edge}
    assert services <= set(graph["nodes"])
    # One arrow per pair, each a pair the query API reports (asked after the page: the store only
    # grows while other chains arrive).
    drawn = Counter(tuple(e) for e in graph["edges"])
    assert max(drawn.values()) == 1, drawn
    # The store holds up to 100,000 traces by the time this runs (the reliability suite's among them) and
    # derives the graph from all of them on each call: on a busy 2-core machine that outlasts 5 s.
    status, body = stack._get_json(
        f"{ui_url}/api/dependencies?endTs={_now_ms()}&lookback=86400000", timeout=120.0
    )
    assert status == 200
    assert set(drawn) <= {(d["parent"], d["child"]) for d in body["data"]}
    screenshot(browser, "system-architecture")


def _now_ms() -> int:
    import time

    return time.time_ns() // 10**6
