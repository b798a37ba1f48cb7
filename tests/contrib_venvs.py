"""Venvs holding the OpenTelemetry contrib confluent-kafka instrumentation beside this project.

Each holds contrib (0.66b1, or the newest release), opentelemetry-distro (which configures the SDK
under ``opentelemetry-instrument``), this project's confluent-kafka version and this project
(editable, so they run the checkout's code). Built once by ``benchmarks.contrib_env.build_venv`` into
``.stack/contrib-coexist-*`` and reused; delete one to take a newer contrib release.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from benchmarks.contrib_env import build_venv
from tests.stack import REPO_ROOT

CONTRIB = "opentelemetry-instrumentation-confluent-kafka"
# label -> (contrib requirement, distro requirement): the distro configures the SDK.
VERSIONS = {
    "0.66b1": (f"{CONTRIB}==0.66b1", "opentelemetry-distro==0.66b1"),
    "newest": (CONTRIB, "opentelemetry-distro"),
}


def _project_stamp() -> str:
    # The editable install's metadata (entry points) comes from pyproject.toml.
    return hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()


def contrib_python(label: str) -> Path:
    """The python of the venv holding contrib ``label`` (a key of VERSIONS) beside this project."""
    venv_dir = REPO_ROOT / ".stack" / f"contrib-coexist-{label}"
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".ready"
    if stamp.exists() and python.exists():
        if stamp.read_text().strip() == _project_stamp():
            return python
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "-e",
                str(REPO_ROOT),
            ],
            check=True,
        )
        stamp.write_text(_project_stamp() + "\n")
        return python
    from importlib.metadata import version

    contrib_spec, distro_spec = VERSIONS[label]
    packages = [
        contrib_spec,
        distro_spec,
        f"confluent-kafka=={version('confluent-kafka')}",
        "-e",
        str(REPO_ROOT),
    ]
    if build_venv(venv_dir, packages, label=f"contrib {label} venv") is None:
        pytest.fail(f"could not install {contrib_spec} beside this project into {venv_dir}")
    stamp.write_text(_project_stamp() + "\n")
    return python
