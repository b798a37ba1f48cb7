"""The README's eventchain examples are real output: each block under an ``eventchain-example``
marker is what the command prints on the recorded fixtures. After an intended change of the view,
``EVENTCHAIN_UPDATE_GOLDEN=1 pytest tests/read/test_readme.py`` rewrites the blocks; review the diff.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.read.conftest import Result

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = re.compile(r"<!-- eventchain-example: (?P<args>.+?) -->\n```\n(?P<out>.*?)```\n", re.DOTALL)


def examples() -> list[str]:
    return [m.group("args") for m in EXAMPLE.finditer(README.read_text())]


def test_the_readme_has_examples() -> None:
    assert {args.split()[0] for args in examples()} >= {"tree", "list"}


@pytest.mark.parametrize("args", examples())
def test_readme_example_is_what_the_command_prints(args: str, cli: Callable[..., Result],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = cli(*shlex.split(args))
    assert result.code == 0, result.err
    text = README.read_text()
    match = next(m for m in EXAMPLE.finditer(text) if m.group("args") == args)
    if os.environ.get("EVENTCHAIN_UPDATE_GOLDEN"):
        README.write_text(text[: match.start("out")] + result.out + text[match.end("out"):])
        return
    assert match.group("out") == result.out
