"""A non-editable install works from any folder: the wheel carries the presets (package data).

The wheel of this checkout is built (``pip wheel --no-deps``) and installed without its
dependencies into a fresh venv; a ``.pth`` file there adds this interpreter's site-packages
*after* the venv's own, so the heavy dependencies (Ray, torch, ...) are found without being
installed again while ``backdoor_sweep`` and its packages come from the wheel. Then
``backdoor-sweep run --smoke`` runs from an empty temporary folder, with no PYTHONPATH: it must
find the embedded default spec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

PACKAGES = ("backdoor_sweep", "trainables", "sweep", "analysis", "search_spaces")


#: no PYTHONPATH: nothing may come from the checkout
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(args, capture_output=True, text=True, timeout=900, env=ENV, **kwargs)
    assert out.returncode == 0, f"{args}: {out.stdout[-2000:]}{out.stderr[-3000:]}"
    return out


def source_copy(dest: Path) -> Path:
    """What the wheel is built from, copied: a build writes build/ and *.egg-info into its source
    folder, and tests write nothing into the repository."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def test_the_wheel_runs_the_default_smoke_sweep_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    source = source_copy(tmp_path / "source")
    # no build isolation: the build backend (setuptools) is already installed, nothing to fetch
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
        "--wheel-dir", str(wheels), str(source),
    )  # fmt: skip
    (wheel,) = wheels.glob("backdoor_sweep-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--quiet",
        str(wheel),
    )
    own = Path(
        run(
            str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        ).stdout.strip()
    )
    (own / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    show = (
        "import importlib, sys; print(*(importlib.import_module(p).__file__ for p in sys.argv[1:]))"
    )
    where = run(str(python), "-c", show, *PACKAGES, cwd=workdir).stdout.split()
    assert len(where) == len(PACKAGES) and all(w.startswith(str(own)) for w in where), where

    store = tmp_path / "store"
    res = run(
        str(venv / "bin" / "backdoor-sweep"), "run", "--smoke", "--store", str(store), "--quiet",
        cwd=workdir,
    )  # fmt: skip
    assert "= 16 results" in res.stdout and "robust choice" in res.stdout, res.stdout
    assert sorted(p.name for p in (store / "digits_svm_rbf-smoke" / "trials").iterdir())
    assert not any(workdir.iterdir())  # nothing written into the folder it ran from
