"""The ``eventchain`` command's entry point, under a name an app's own module cannot take.

The library's import package is ``tracing``, a name apps also use for a module of their
own: a ``tracing.py`` (or ``tracing/`` folder) earlier on ``sys.path`` (the script's folder,
the current folder under ``python -m``, ``PYTHONPATH``) is found first, and then
``tracing.configure`` is an AttributeError and ``python -m tracing`` runs the app's file.
This module checks which ``tracing`` Python finds before running the command, and says
so in one line when it is not this distribution's. ``python -m kafka_event_tracing`` is
the same command as ``eventchain``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DISTRIBUTION = "kafka-event-tracing"
REINSTALL = f"reinstall it: pip install --force-reinstall {DISTRIBUTION} (or pip install . in a checkout)"


def shadowing_problem() -> str | None:
    """One line when ``import tracing`` would not import this distribution's package; else None."""
    ours = Path(__file__).resolve().parent / "tracing"
    try:
        spec = importlib.util.find_spec("tracing")
    except (ImportError, ValueError) as exc:
        return f"the module 'tracing' cannot be imported ({exc}): {REINSTALL}"
    if spec is None:
        return f"no module 'tracing' is installed beside {Path(__file__).name}: {REINSTALL}"
    found = [Path(p).resolve() for p in (spec.submodule_search_locations or [])]
    if ours in found:
        return None
    where = spec.origin or (str(found[0]) if found else "?")
    return (
        f"the module 'tracing' that Python finds first is {where}, not {DISTRIBUTION}'s package ({ours}): "
        "rename that module, or take its folder off PYTHONPATH / sys.path"
    )


def main() -> int:
    """``eventchain``: the read side's command line, once the right ``tracing`` is found."""
    problem = shadowing_problem()
    if problem is not None:
        print(f"eventchain: {problem}", file=sys.stderr)
        return 2
    from tracing.cli import main as eventchain

    return eventchain()


if __name__ == "__main__":
    raise SystemExit(main())
