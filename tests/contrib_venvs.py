"""Venvs holding the OpenTelemetry contrib confluent-kafka instrumentation beside this project.

Each holds contrib (0.66b1, or the newest release), opentelemetry-distro (which configures the SDK
under ``opentelemetry-instrument``), this project's confluent-kafka version and this project
(editable, so they run the checkout's code). Built once by ``benchmarks.contrib_env.build_venv`` into
``.stack/contrib-coexist-*`` and reused; delete one to take a newer contrib release.

``rabbitmq_python`` does the same for contrib's pika and aio-pika instrumentations (the
packages and versions the RabbitMQ benchmark's contrib venvs take, ``benchmarks.rabbitmq``),
one venv per client, with opentelemetry-distro and this project added.
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


def _reuse(python: Path, stamp: Path) -> bool:
    """True when the venv is built; the editable install refreshed if pyproject.toml changed."""
    if not (stamp.exists() and python.exists()):
        return False
    if stamp.read_text().strip() != _project_stamp():
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
    return True


def rabbitmq_python(client: str) -> Path:
    """The python of the venv holding contrib's ``client`` ("pika" or "aio-pika") instrumentation beside
    this project (``.stack/contrib-coexist-{client}``)."""
    from importlib.metadata import version

    from benchmarks.rabbitmq import CONTRIB as RABBITMQ_CONTRIB

    venv_dir = REPO_ROOT / ".stack" / f"contrib-coexist-{client}"
    python, stamp = venv_dir / "bin" / "python", venv_dir / ".ready"
    if _reuse(python, stamp):
        return python
    package, dist = RABBITMQ_CONTRIB[client]
    packages = [
        f"{package}>=0.66b0,<0.67",  # as the benchmark's venv
        "opentelemetry-distro>=0.66b0,<0.67",
        f"{dist}=={version(dist)}",
        f"confluent-kafka=={version('confluent-kafka')}",
        "-e",
        str(REPO_ROOT),
    ]
    if build_venv(venv_dir, packages, label=f"contrib {client} venv") is None:
        pytest.fail(f"could not install {package} beside this project into {venv_dir}")
    stamp.write_text(_project_stamp() + "\n")
    return python


def contrib_python(label: str) -> Path:
    """The python of the venv holding contrib ``label`` (a key of VERSIONS) beside this project."""
    venv_dir = REPO_ROOT / ".stack" / f"contrib-coexist-{label}"
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".ready"
    if _reuse(python, stamp):
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
