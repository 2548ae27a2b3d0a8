"""The package layers: a module imports only its own layer and the layers below it.

``backdoor_sweep.errors``/``exports`` and ``search_spaces`` (leaves) ← ``trainables`` ← ``sweep``
← ``analysis`` ← the rest of ``backdoor_sweep`` (the CLI and the service). Every package is a
regular package. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backdoor_sweep", "trainables", "sweep", "analysis", "search_spaces")
#: the library packages whose ``__init__`` names a lazy public API
LIBRARIES = (
    "trainables",
    "trainables.data",
    "trainables.attacks",
    "trainables.learners",
    "trainables.measures",
    "sweep",
    "analysis",
)
LEAVES = ("backdoor_sweep.errors", "backdoor_sweep.exports", "search_spaces")


def layer(module: str) -> int | None:
    if any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES):
        return 0
    top = module.split(".")[0]
    return {"trainables": 1, "sweep": 2, "analysis": 3, "backdoor_sweep": 4}.get(top)


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            yield ".".join(rel.parts).removesuffix(".__init__"), path


@pytest.mark.parametrize("name,path", list(modules()), ids=lambda v: str(v))
def test_no_module_imports_a_higher_layer(name, path):
    own = layer(name)
    upward = [m for m in imports(path) if (layer(m) or 0) > own]
    assert not upward, f"{name} (layer {own}) imports higher layers: {upward}"


def test_every_package_folder_is_a_regular_package():
    for package in PACKAGES:
        for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(folder.glob("*.py")):
                continue
            assert (folder / "__init__.py").exists(), f"{folder} has no __init__.py"


def test_packages_name_their_public_api():
    import importlib

    for package in (*LIBRARIES, "search_spaces"):
        mod = importlib.import_module(package)
        assert mod.__all__, package
        for name in mod.__all__:
            assert getattr(mod, name) is not None, f"{package}.{name}"


def test_public_names_are_not_shadowed_by_their_modules():
    """``from analysis import load`` gives the function even after ``analysis.load`` was imported."""
    import importlib
    import pkgutil

    for package in LIBRARIES:
        mod = importlib.import_module(package)
        for info in pkgutil.iter_modules(mod.__path__):
            importlib.import_module(f"{package}.{info.name}")
        for name in mod.__all__:
            value = getattr(mod, name)
            assert not hasattr(value, "__path__") and type(value).__name__ != "module", (
                f"{package}.{name} is a module, not the public object"
            )
