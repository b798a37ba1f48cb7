"""The interpreter for the contrib variant: its own venv, because the contrib package pins
``opentelemetry-instrumentation`` and the semantic-conventions package to exact versions
of its release line, which need not be the ones this project's venv holds.

The venv lives in ``.stack/bench-contrib-venv`` (git-ignored, rebuilt on demand). It gets
the newest 0.66 pre-release (``0.66b*``) of the contrib package, the same confluent-kafka version as
ours, and the SDK plus OTLP exporter the contrib package's pins select; we check that
this SDK is on the same minor line as ours, so the comparison is of the wrappers only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = ROOT / ".stack" / "bench-contrib-venv"
CONTRIB_SPEC = "opentelemetry-instrumentation-confluent-kafka>=0.66b0,<0.67"
STAMP = VENV_DIR / ".bench-ready"

_VERSIONS = """
import json
from importlib.metadata import version
names = ["confluent-kafka", "opentelemetry-api", "opentelemetry-sdk",
         "opentelemetry-instrumentation-confluent-kafka"]
print(json.dumps({n: version(n) for n in names}))
"""


def python_path() -> Path:
    return VENV_DIR / "bin" / "python"


def installed_versions(python: Path | str) -> dict[str, str]:
    out = subprocess.run([str(python), "-c", _VERSIONS], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(
            out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "version check failed"
        )
    return json.loads(out.stdout)


def _ours() -> dict[str, str]:
    from importlib.metadata import version

    return {n: version(n) for n in ("confluent-kafka", "opentelemetry-api", "opentelemetry-sdk")}


def _minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def check_same_line(theirs: dict[str, str]) -> list[str]:
    """Differences that would make the comparison unfair (empty when none)."""
    ours = _ours()
    problems = []
    if theirs["confluent-kafka"] != ours["confluent-kafka"]:
        problems.append(f"confluent-kafka {theirs['confluent-kafka']} (ours {ours['confluent-kafka']})")
    if _minor(theirs["opentelemetry-sdk"]) != _minor(ours["opentelemetry-sdk"]):
        problems.append(f"opentelemetry-sdk {theirs['opentelemetry-sdk']} (ours {ours['opentelemetry-sdk']})")
    return problems


def ensure(*, create: bool = True, say=print) -> Path | None:
    """The contrib venv's python, created (with progress on ``say``) when missing and allowed."""
    python = python_path()
    if STAMP.exists() and python.exists():
        return python
    if not create:
        return None
    packages = [
        CONTRIB_SPEC,
        f"confluent-kafka=={_ours()['confluent-kafka']}",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-grpc",
    ]
    if build_venv(VENV_DIR, packages, say=say, label="contrib venv") is None:
        say("contrib venv: the contrib variant is skipped")
        return None
    theirs = installed_versions(python)
    say("contrib venv: " + ", ".join(f"{k} {v}" for k, v in theirs.items()))
    for problem in check_same_line(theirs):
        say(f"contrib venv: WARNING not on our release line: {problem}")
    STAMP.write_text(json.dumps(theirs) + "\n")
    return python


def build_venv(venv_dir: Path, packages: list[str], *, say=print, label: str = "venv") -> Path | None:
    """Create ``venv_dir`` afresh with ``packages`` installed by pip; its python, or None if pip failed.

    Also used by the tests that run this project beside contrib (tests/e2e/test_contrib_coexistence.py).
    """
    python = venv_dir / "bin" / "python"
    say(f"{label}: creating {venv_dir.relative_to(ROOT)} (one time; later runs reuse it)")
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    # The same base interpreter as ours, so both variants run on the same Python.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv_dir)], check=True)
    if not python.exists():  # a Python without ensurepip in its venv module
        venv.EnvBuilder(clear=True, with_pip=True).create(venv_dir)
    say(f"{label}: installing " + ", ".join(packages))
    # No global --pre: the contrib specifier names a pre-release, which lets pip take
    # pre-releases of that package (and its exact pins) only; --pre would also pull
    # release candidates of protobuf and grpcio into the comparison.
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    proc = subprocess.Popen(cmd + packages, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith(("Collecting", "Successfully installed", "ERROR")):
            say(f"{label}:   " + line)
    if proc.wait() != 0:
        say(f"{label}: pip failed")
        return None
    return python
