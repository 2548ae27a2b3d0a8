"""Progress: counts, ETA and the callback the team service's runner writes its file from."""

from __future__ import annotations

import io

from sweep.progress import Progress


def test_the_callback_sees_every_step_even_when_nothing_is_shown():
    seen = []
    progress = Progress(total=4, enabled=False, on_advance=lambda p: seen.append((p.done, p.total)))
    assert progress.eta_seconds() is None
    progress.advance(1)
    progress.advance(3)
    assert seen == [(1, 4), (4, 4)]
    assert progress.eta_seconds() == 0


def test_plain_lines_on_a_pipe():
    out = io.StringIO()
    progress = Progress(total=10, stream=out)
    for _ in range(10):
        progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("progress: 10/10 results") and len(lines) <= 10
