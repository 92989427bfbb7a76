"""The README's Python example runs as written, against the committed results."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert python_blocks(), "README.md shows no Python example"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(index, monkeypatch, capsys):
    monkeypatch.chdir(README.parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fits warn on purpose (edges, extrapolation)
        exec(compile(python_blocks()[index], f"README.md[python {index}]", "exec"), {})
    out = capsys.readouterr().out
    assert "lr 0.000917, batch 5e+06 tokens" in out
