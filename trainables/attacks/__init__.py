"""Attacks: triggers and their patterns, poisoning strategies, clean-label hardening (with its
generator for GAN latent interpolation, and the cache that trains it once)."""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "CleanLabel": "poisoning",
    "CleanLabelParams": "clean_label",
    "CnnSurrogate": "clean_label",
    "GanSettings": "gan",
    "TrainedGenerator": "gan",
    "DirtyLabel": "poisoning",
    "DirtyLabelAdded": "poisoning",
    "DirtyLabelParams": "poisoning",
    "FULL_PATTERNS": "patterns",
    "LogisticSurrogate": "clean_label",
    "POISONINGS": "poisoning",
    "Poisoned": "poisoning",
    "Poisoning": "poisoning",
    "SQUARE_PATTERNS": "patterns",
    "Supplant": "poisoning",
    "SupplantParams": "poisoning",
    "TRIGGERS": "triggers",
    "Trigger": "triggers",
    "cache_root": "generator_cache",
    "centre_slices": "patterns",
    "channels_of": "patterns",
    "check_hardening": "clean_label",
    "check_image_shape": "gan",
    "checkerboard": "patterns",
    "corner_slices": "triggers",
    "decode": "gan",
    "dirty_label_candidates": "poisoning",
    "encode": "gan",
    "encoded_training_set": "generator_cache",
    "even_grid": "patterns",
    "four_corner_layout": "patterns",
    "full_pattern": "patterns",
    "harden": "clean_label",
    "interpolate": "gan",
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
    "train_generator": "gan",
    "source_index": "poisoning",
    "x_mask": "patterns",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
