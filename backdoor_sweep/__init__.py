"""backdoor-sweep: the application — its one error type, its command line and its service.

Layers, lowest first; a layer imports only the ones before it (``tests/test_layers.py`` checks):
``backdoor_sweep.errors`` and ``backdoor_sweep.exports`` (leaves) ← ``trainables`` (what one
result computes) ← ``sweep`` (specs, planning, Ray, the store, SQL) ← ``analysis`` (load, select,
plot, report) ← ``backdoor_sweep.cli`` (the command line).
"""

from __future__ import annotations

__version__ = "0.3.0"
__all__ = ["__version__"]
