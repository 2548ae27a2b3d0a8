"""``python -m backdoor_sweep.cli ARGS``: the same as the installed ``backdoor-sweep ARGS``."""

from __future__ import annotations

from backdoor_sweep.cli import main

main()
