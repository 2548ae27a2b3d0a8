"""The quick commands stay quick: what ``select`` imports, checked in a fresh interpreter.

Naming the defender's and the attacker's parameters needs only the components' declarations
(`trainables.learners.params`), so the spec, validation and ``select`` modules must not import
scikit-learn, SciPy or torch; running ``select`` may add SciPy's special functions (the t
quantile of its intervals) but neither scikit-learn nor torch. A structural guard: the start-up
time itself is measured by ``bench/cli_startup.py`` (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.handmade import write_sweep

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "scipy", "torch")

SCRIPT = """
import json, sys
HEAVY = {heavy!r}

def heavy():
    return sorted(m for m in HEAVY if m in sys.modules)

import sweep.spec, sweep.validation, analysis.load, analysis.select
from backdoor_sweep.cli import app
from sweep.validation import known_keys

analysis.select.attack_columns() and analysis.select.defender_columns() and known_keys()
imported = heavy()
app(["select", "--store", sys.argv[1], "--format", "json"], standalone_mode=False)
print(json.dumps({{"imported": imported, "ran": heavy()}}))
"""


def test_select_imports_neither_scikit_learn_nor_scipy_nor_torch(tmp_path):
    store = write_sweep(tmp_path / "store").root
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=HEAVY), str(store)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["imported"] == []
    assert "sklearn" not in seen["ran"] and "torch" not in seen["ran"]
