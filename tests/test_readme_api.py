"""The README's notebook example runs as written, against the public API (`backdoor_sweep.api`)."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT

HEADING = "### Python API (notebooks)"


def readme_example() -> str:
    """The first ```python block after the notebook heading of README.md."""
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, "README.md lost its notebook section"
    block = re.search(r"```python\n(.*?)```", text[text.index(HEADING) :], re.S)
    assert block, "the notebook section has no python block"
    return block.group(1)


def test_the_example_uses_only_the_public_api():
    from backdoor_sweep import api

    tree = ast.parse(readme_example())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "bs"
    }
    assert used and used <= set(api.__all__), used - set(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is not None


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys, ray_runtime):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("8 results in ")
    assert out[1].startswith("use C=") and "clean accuracy" in out[1] and "worst case" in out[1]
    assert (tmp_path / "asr.svg").read_bytes()[:200].find(b"<svg") >= 0
    assert (tmp_path / "notebook-report.html").stat().st_size > 1_000_000  # plotly.js inside
    from backdoor_sweep import api

    df = api.load(tmp_path / "notebook-results", "notebook-demo")
    assert len(df) == 8 and set(df["status"]) == {"ok"}
