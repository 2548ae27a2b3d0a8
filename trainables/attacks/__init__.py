"""Attacks: triggers and their patterns, poisoning strategies, clean-label hardening and its
cached surrogates."""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "CleanLabel": "poisoning",
    "CleanLabelParams": "clean_label",
    "CnnSurrogate": "clean_label",
    "DirtyLabel": "poisoning",
    "DirtyLabelAdded": "poisoning",
    "DirtyLabelParams": "poisoning",
    "FULL_PATTERNS": "patterns",
    "fit_surrogate": "surrogate_cache",
    "surrogate_seed": "surrogate_cache",
    "LogisticSurrogate": "clean_label",
    "POISONINGS": "poisoning",
    "Poisoned": "poisoning",
    "Poisoning": "poisoning",
    "SQUARE_PATTERNS": "patterns",
    "Supplant": "poisoning",
    "SupplantParams": "poisoning",
    "TRIGGERS": "triggers",
    "Trigger": "triggers",
    "centre_slices": "patterns",
    "channels_of": "patterns",
    "checkerboard": "patterns",
    "corner_slices": "triggers",
    "dirty_label_candidates": "poisoning",
    "even_grid": "patterns",
    "four_corner_layout": "patterns",
    "full_pattern": "patterns",
    "harden": "clean_label",
    "largest_remainder": "poisoning",
    "load_image": "patterns",
    "low_variance_basis": "patterns",
    "make_pattern": "triggers",
    "make_poisoning": "poisoning",
    "make_trigger": "triggers",
    "paste": "triggers",
    "per_class_json": "poisoning",
    "pgd": "clean_label",
    "rate_count": "poisoning",
    "sine_rows": "patterns",
    "source_index": "poisoning",
    "x_mask": "patterns",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
