"""What a user gets from the package before any Kafka: a light ``import tracing``, an
``eventchain`` that needs no write side, and a clear line when an app's own ``tracing``
module is found first. (Building and installing the wheel: scripts/check-package.sh,
run by .ci/run.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "read" / "fixtures" / "real-chain.jaeger.json"
EVENTCHAIN = Path(sys.executable).parent / "eventchain"

_LOADED = (
    "import sys\n"
    "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'confluent_kafka'))"
    " or m in ('tracing.sdk', 'tracing.write', 'tracing.instrumentation')))\n"
)


def _python(code: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", code],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_tracing_loads_neither_the_sdk_nor_the_propagators_nor_the_client():
    out = _python("import tracing\n" + _LOADED, OTEL_PROPAGATORS="nosuch")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_public_names_load_on_first_use_and_configure_loads_the_sdk():
    code = (
        "import tracing\n"
        "from tracing import TracedProducer, inject_context\n"
        "assert 'opentelemetry.sdk' not in sys.modules\n"
        "tracing.configure\n"
        "assert set(tracing.__all__) <= set(dir(tracing))\n"
        "try:\n    tracing.no_such_name\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = _python("import sys\n" + code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module 'tracing' has no attribute 'no_such_name'"


def test_eventchain_help_imports_nothing_of_the_write_side():
    # -X importtime lists every module the command imported, on stderr.
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracing", "--help"],
        cwd=ROOT,
        env={**os.environ, "OTEL_PROPAGATORS": "nosuch"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: eventchain" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "tracing.cli" in imported
    write_side = sorted(
        m
        for m in imported
        if m.startswith(("opentelemetry", "confluent_kafka", "tracing.write", "tracing.sdk"))
    )
    assert write_side == []


def test_eventchain_reads_a_file_without_the_write_side_even_with_a_propagator_missing():
    code = (
        "import sys\n"
        "from tracing.cli import main\n"
        f"rc = main(['tree', '97567930', '--file', {str(FIXTURE)!r}, '--width', '100'])\n"
        + _LOADED
        + "sys.exit(rc)"
    )
    out = _python(code, OTEL_PROPAGATORS="nosuch")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture
def app_with_its_own_tracing(tmp_path: Path) -> Path:
    """An app folder holding a tracing.py of its own, as apps often do."""
    (tmp_path / "tracing.py").write_text("GREETING = 'the app own tracing module'\n")
    return tmp_path


def test_eventchain_names_an_app_module_found_first_in_one_line(app_with_its_own_tracing):
    theirs = app_with_its_own_tracing / "tracing.py"
    out = subprocess.run(
        [str(EVENTCHAIN), "--help"],
        env={**os.environ, "PYTHONPATH": str(app_with_its_own_tracing)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == (
        f"eventchain: the module 'tracing' that Python finds first is {theirs}, "
        f"not kafka-event-tracing's package ({ROOT / 'tracing'}): rename that module, or take its folder off "
        "PYTHONPATH / sys.path\n"
    )


def test_python_m_kafka_event_tracing_checks_the_same_from_the_app_folder(app_with_its_own_tracing):
    # `python -m tracing` there would run the app's file; this name cannot be taken.
    out = subprocess.run(
        [sys.executable, "-m", "kafka_event_tracing", "--version"],
        cwd=app_with_its_own_tracing,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    theirs = app_with_its_own_tracing / "tracing.py"
    assert out.stderr.startswith(f"eventchain: the module 'tracing' that Python finds first is {theirs}, ")


def test_without_a_module_in_the_way_eventchain_runs(tmp_path):
    out = subprocess.run(
        [str(EVENTCHAIN), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("eventchain ")
