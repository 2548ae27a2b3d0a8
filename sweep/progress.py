"""Progress while a sweep runs: results done / total, rate and ETA.

A live rich bar on a terminal; on a pipe or in CI, a plain line at every tenth of the work.
``on_advance`` (e.g. the team service's runner, which writes the counts to a file) is called
after every step, whether or not anything is shown.

``done`` and ``total`` count the results this run computes; ``stored`` the results the store held
when it began (a resumed sweep), which it does not compute again. A search learns its work as it
goes — a slope screen knows stage two's results only after stage one — and adds it with `grow`,
so ``total`` may rise during a run but ``done`` never goes back.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable


class Progress:
    def __init__(
        self,
        total: int,
        enabled: bool = True,
        stream=None,
        on_advance: Callable[[Progress], None] | None = None,
        stored: int = 0,
    ) -> None:
        self.total = total
        self.stored = stored
        self.on_advance = on_advance
        self.done = 0
        self._show = enabled
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self._bar = None
        self._next_line = 0.1
        self._start_bar()

    def _start_bar(self) -> None:
        if self.enabled and self._bar is None and self.stream.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("results"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("sweep", total=self.total, completed=self.done)
            self._bar.start()

    def grow(self, n: int) -> None:
        """Add ``n`` results to ``total``: work the run has just learnt it will do."""
        if n <= 0:
            return
        self.total += n
        self.enabled = self._show
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)
        else:
            self._start_bar()
            # the next plain line at the next tenth of the new total
            self._next_line = (math.floor(10 * self.done / self.total) + 1) / 10

    def eta_seconds(self) -> float | None:
        if self.done == 0:
            return None
        rate = self.done / (time.perf_counter() - self.t0)
        return (self.total - self.done) / rate

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.on_advance is not None:
            self.on_advance(self)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done / self.total >= self._next_line or self.done == self.total:
            eta = self.eta_seconds()
            eta_txt = f"{eta:.0f}s" if eta is not None else "?"
            print(
                f"progress: {self.done}/{self.total} results, ETA {eta_txt}",
                file=self.stream,
                flush=True,
            )
            while self._next_line <= self.done / self.total:
                self._next_line += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
