"""The preset sweep specs users copy and edit, shipped as package data.

They are found from any folder after a regular (non-editable) install: ``PRESETS_DIR`` is this
package's own folder, wherever pip put it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_SPEC", "PRESETS_DIR", "preset", "presets"]

#: the folder that holds the preset YAML files
PRESETS_DIR = Path(__file__).resolve().parent
#: the embedded default sweep: digits 7 vs 1, RBF SVM over C × γ against a BadNets patch
DEFAULT_SPEC = PRESETS_DIR / "digits_svm_rbf.yaml"


def presets() -> list[Path]:
    """Every preset spec, sorted by name."""
    return sorted(PRESETS_DIR.glob("*.yaml"))


def preset(name: str) -> Path:
    """The preset called ``name`` (with or without ``.yaml``)."""
    return PRESETS_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
