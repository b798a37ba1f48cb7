"""Browser tests of the Jaeger UI the local stack serves (scripts/stack.sh, ui.assets_path).

Debian's chromium, driven through its chromedriver by Selenium (`scripts/browser.sh install`,
run by `make test`, installs both; nothing is downloaded by Selenium). A chain of the demo's
services runs through the real Kafka into the real Jaeger once per session; every page is
waited for by its elements, and a screenshot of each is saved under .stack/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests import stack

CHROMIUM = os.environ.get("KET_CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KET_CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
SCREENSHOTS = stack.REPO_ROOT / ".stack" / "screenshots"
# Generous: the page is a single-page app that loads its data after the first paint, on a
# machine that may be busy with other test runs. Only an upper bound; nothing waits this long
# unless the condition never becomes true.
WAIT_S = 90.0

T = TypeVar("T")


def _fail_or_skip(request: pytest.FixtureRequest, message: str) -> None:
    if stack.in_ci() or request.config.getoption("--require-stack"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ui_url(real_stack: stack.Stack, request: pytest.FixtureRequest) -> str:
    """The stack's Jaeger URL, once GET / serves the real UI (not Jaeger's placeholder page)."""
    url = real_stack.jaeger_url
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        page = resp.read().decode("utf-8", "replace")
    if "<title>Jaeger UI</title>" not in page:
        _fail_or_skip(
            request,
            f"{url}/ serves Jaeger's placeholder page, not the UI: start the stack with "
            "KET_JAEGER_UI_ASSETS=/path/to/jaeger-ui assets.tar.gz (or a reachable KET_JAEGER_UI_URL); "
            "'scripts/stack.sh status' shows the UI line",
        )
    return url


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Debian chromium through /usr/bin/chromedriver (Selenium downloads nothing)."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        _fail_or_skip(request, f"{CHROMIUM} or {CHROMEDRIVER} missing: run 'scripts/browser.sh install'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ket-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1600,1100",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, what: str, condition: Callable[[Any], T], timeout: float = WAIT_S) -> T:
    """Wait until condition(driver) returns something truthy; on timeout say what was awaited and save
    a screenshot of the page as it was."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        shot = screenshot(driver, "failed-" + re.sub(r"[^a-z0-9]+", "-", what.lower())[:60])
        raise AssertionError(f"{what}: not seen within {timeout:.0f}s at {driver.current_url} "
                             f"(screenshot {shot})") from None


def screenshot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# ------------------------------------------------------------------------------ the chain


@dataclass(frozen=True)
class DemoRun:
    prefix: str
    stdout: str
    trace_ids: list[str]  # in story order: in stock, out of stock, registration
    links: list[str]  # the Jaeger links the demo printed, same order

    @property
    def cancelled(self) -> str:
        """The out-of-stock order: compensation, a failed SMS and its retry."""
        return self.trace_ids[1]


@pytest.fixture(scope="session")
def demo_run(real_stack: stack.Stack) -> DemoRun:
    """`make demo-live`'s services, as separate processes on the real Kafka, spans in the real Jaeger."""
    prefix = f"ui-{uuid.uuid4().hex[:8]}-"  # topics and operation names of this run only
    proc = subprocess.run(
        [stack.venv_python(), "-m", "tracing.demo", "--live", "--prefix", prefix,
         "--bootstrap", real_stack.kafka_bootstrap, "--otlp", real_stack.otlp_endpoint,
         "--jaeger", real_stack.jaeger_url],
        cwd=stack.REPO_ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    links = re.findall(r"^Jaeger\s+(\S+/trace/[0-9a-f]{32})$", proc.stdout, re.MULTILINE)
    assert len(links) == 3, proc.stdout
    return DemoRun(prefix, proc.stdout, [link.rsplit("/", 1)[1] for link in links], links)


def cancelled_order_spans(prefix: str) -> list[tuple[str, str]]:
    """(service, operation) of every span of the out-of-stock chain, as the demo's story has them."""
    p = prefix
    return sorted([
        ("order-service", "POST /orders"),
        ("order-service", f"send {p}orders"),                       # order.created
        ("inventory-service", f"process {p}orders"),                # group inventory
        ("notification-service", f"process {p}orders"),             # group notification
        ("points-service", f"process {p}orders"),                   # group points
        ("inventory-service", f"send {p}stock"),                    # stock.rejected
        ("order-service", f"process {p}stock"),                     # group order
        ("notification-service", f"process {p}stock"),              # group notification
        ("order-service", f"send {p}orders"),                       # the compensation: order.cancelled
        ("inventory-service", f"process {p}orders"),
        ("points-service", f"process {p}orders"),
        ("notification-service", f"process {p}orders"),             # the SMS fails: ERROR
        ("notification-service", f"send {p}notifications.retry"),
        ("notification-service", f"process {p}notifications.retry"),  # the retry succeeds
        ("order-service", f"send {p}order-events"),                 # order.created through RabbitMQ
        ("notification-service", f"process {p}order-events"),       # queue notifications
    ])
