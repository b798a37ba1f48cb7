"""Where the stack's Jaeger UI comes from: downloaded once (from a local HTTP server standing where the
release asset would be), unpacked into the cache, served by the real Jaeger; and the one line said when
there is none."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import stack
from tests.ui.conftest import WAIT_S, screenshot, wait_for

STACK_SH = stack.REPO_ROOT / "scripts" / "stack.sh"
JAEGER_BIN = stack.REPO_ROOT / ".stack" / "bin" / "jaeger"
JAEGER_YAML = stack.REPO_ROOT / "collector-config" / "jaeger.yaml"


class _Release(http.server.ThreadingHTTPServer):
    """A plain HTTP server on 127.0.0.1 with one file at /assets.tar.gz; counts the requests for it."""

    def __init__(self, body: bytes, content_type: str = "application/gzip") -> None:
        self.body, self.content_type, self.gets = body, content_type, 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/assets.tar.gz"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Release

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path != "/assets.tar.gz":
            self.send_error(404)
            return
        self.server.gets += 1
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *_args: Any) -> None:
        return None


@contextlib.contextmanager
def _serve(body: bytes, content_type: str = "application/gzip") -> Iterator[_Release]:
    server = _Release(body, content_type)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def tarball(request: pytest.FixtureRequest) -> bytes:
    """The jaeger-ui release asset: KET_JAEGER_UI_ASSETS (what CI sets), else one the stack downloaded."""
    given = os.environ.get("KET_JAEGER_UI_ASSETS", "")
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = Path(os.environ.get("KET_CACHE_DIR") or xdg / "kafka-event-tracing")
    candidates = [Path(given)] if given else sorted((cache / "downloads").glob("jaeger-ui-*.tar.gz"))
    for path in candidates:
        if path.is_file():
            return path.read_bytes()
    message = ("no jaeger-ui assets.tar.gz to serve: set KET_JAEGER_UI_ASSETS to one "
               "(.ci/run sets it to the offline copy in shared/jaeger-ui/)")
    if stack.in_ci() or request.config.getoption("--require-stack"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _ui_assets(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("KET_JAEGER_UI_")}
    merged.update(env)
    return subprocess.run([str(STACK_SH), "ui-assets"], env=merged, capture_output=True, text=True,
                          timeout=300, cwd=stack.REPO_ROOT)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_jaeger(tmp_path: Path, assets: Path | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The stack's real Jaeger binary, with the stack's config on free ports."""
    if not JAEGER_BIN.exists():
        pytest.fail(f"{JAEGER_BIN} missing: 'make stack-up' builds it", pytrace=False)
    config = JAEGER_YAML.read_text()
    ports = dict(zip(("4317", "4318", "16686", "16685", "13133"), _free_ports(5), strict=True))
    for old, new in ports.items():
        config = re.sub(rf"127\.0\.0\.1:{old}\b", f"127.0.0.1:{new}", config)
    path = tmp_path / "jaeger.yaml"
    path.write_text(config)
    log = tmp_path / "jaeger.log"
    argv = [str(JAEGER_BIN), "--config", str(path)]
    if assets:
        argv.append(f"--set=extensions::jaeger_query::ui::assets_path={assets}")
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    return proc, f"http://127.0.0.1:{ports['16686']}", log


def _front_page(proc: subprocess.Popen[bytes], url: str, log: Path) -> str:
    """GET / once Jaeger answers (polled; the process must stay alive)."""
    import time

    deadline = time.monotonic() + WAIT_S
    while True:
        assert proc.poll() is None, f"jaeger exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url + "/", timeout=5) as resp:
                return resp.read().decode("utf-8", "replace")
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"jaeger at {url} did not answer:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_ui_downloaded_once_into_the_cache_is_what_jaeger_serves(tmp_path, tarball, browser):
    cache = tmp_path / "cache"
    sha = hashlib.sha256(tarball).hexdigest()
    with _serve(tarball) as release:
        env = {"KET_JAEGER_UI_URL": release.url, "KET_CACHE_DIR": str(cache)}
        first = _ui_assets(env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "downloading v" in first.stdout and release.url in first.stdout
        (folder,) = re.findall(r"^jaeger-ui: assets in (\S+)$", first.stdout, re.MULTILINE)
        assets = Path(folder)
        # Keyed by version and checksum, the release's packages/jaeger-ui/build/ unpacked in place.
        assert assets.parent == cache and re.fullmatch(rf"jaeger-ui-v\d+\.\d+\.\d+-{sha[:12]}", assets.name)
        assert "<title>Jaeger UI</title>" in (assets / "index.html").read_text()
        assert any((assets / "static").glob("*.js"))
        assert release.gets == 1

        again = _ui_assets(env)  # a second start neither downloads nor unpacks
        assert again.returncode == 0, again.stdout + again.stderr
        assert re.findall(r"^jaeger-ui: assets in (\S+)$", again.stdout, re.MULTILINE) == [folder]
        assert "downloading" not in again.stdout and "unpacked" not in again.stdout
        assert release.gets == 1

        # Another URL that cannot be had (offline): the same version unpacked before still serves.
        offline = _ui_assets({**env, "KET_JAEGER_UI_URL": release.url.replace("assets", "gone")})
        assert offline.returncode == 0, offline.stdout + offline.stderr
        assert "404" in offline.stdout and "unpacked earlier" in offline.stdout
        assert re.findall(r"^jaeger-ui: assets in (\S+)$", offline.stdout, re.MULTILINE) == [folder]

    # Without a folder Jaeger serves its placeholder page; with the downloaded one, the UI.
    proc, url, log = _start_jaeger(tmp_path, None)
    try:
        assert "<title>Jaeger UI</title>" not in _front_page(proc, url, log)
    finally:
        _stop(proc)
    proc, url, log = _start_jaeger(tmp_path, assets)
    try:
        assert "<title>Jaeger UI</title>" in _front_page(proc, url, log)
        browser.get(f"{url}/search")
        wait_for(browser, "the search form of the downloaded UI",
                 lambda d: d.find_elements("css selector", 'div[name="service"] input[role="combobox"]'))
        screenshot(browser, "downloaded-ui")
    finally:
        _stop(proc)


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    (line,) = lines
    assert line.startswith("jaeger: UI missing") and "placeholder page" in line
    assert "KET_JAEGER_UI_ASSETS" in line and "KET_JAEGER_UI_URL" in line  # how to supply it
    return line


def test_without_assets_one_line_says_the_ui_is_missing_and_how_to_supply_it(tmp_path, tarball):
    cache = tmp_path / "cache"
    with _serve(tarball) as release:
        line = _one_line(_ui_assets({"KET_JAEGER_UI_URL": release.url.replace("assets", "missing"),
                                     "KET_CACHE_DIR": str(cache)}))
        assert "404" in line

    # Something else than the archive at the URL (a login page, say): refused, and not kept.
    with _serve(b"<html>sign in</html>", "text/html") as release:
        env = {"KET_JAEGER_UI_URL": release.url, "KET_CACHE_DIR": str(cache)}
        assert "not a gzipped tar archive" in _one_line(_ui_assets(env))
        _one_line(_ui_assets(env))
        assert release.gets == 2  # asked again: the bad download was not cached

    assert "does not exist" in _one_line(_ui_assets({"KET_JAEGER_UI_ASSETS": str(tmp_path / "nowhere.tar.gz"),
                                                     "KET_CACHE_DIR": str(cache)}))
    not_ui = tmp_path / "not-ui"
    not_ui.mkdir()
    assert "holds no index.html" in _one_line(_ui_assets({"KET_JAEGER_UI_ASSETS": str(not_ui),
                                                          "KET_CACHE_DIR": str(cache)}))
    assert not list(cache.glob("jaeger-ui-*"))


@pytest.mark.stack
def test_stack_status_says_the_ui_is_served(ui_url):
    proc = subprocess.run([str(STACK_SH), "status"], capture_output=True, text=True, timeout=60,
                          cwd=stack.REPO_ROOT)
    (jaeger,) = [line for line in proc.stdout.splitlines() if line.split()[:1] == ["jaeger"]]
    if jaeger.split()[1] == "foreign" and not stack.in_ci():
        pytest.skip("the reachable stack was not started from this checkout; status is per checkout")
    assert re.search(rf"API/UI {re.escape(ui_url)}; UI served from /\S+$", jaeger), proc.stdout
