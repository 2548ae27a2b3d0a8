"""The β grid of a backdoor learning curve (docs/science.md §5), without the curve's libraries:
the spec reads it to fill in ``curves.betas``, and validating a spec imports no scikit-learn."""

from __future__ import annotations

import numpy as np

#: β = 0 plus 12 log-spaced values from 1e-3 to 1 (4 significant digits, so columns read well)
DEFAULT_BETAS: tuple[float, ...] = (0.0, *(float(f"{b:.4g}") for b in np.logspace(-3, 0, 12)))
