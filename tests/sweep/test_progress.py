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


def test_a_growing_total_keeps_done_and_its_plain_lines():
    """A slope screen learns stage two's results after stage one: the total grows, done never
    goes back, and the plain lines go on at the tenths of the new total."""
    out, seen = io.StringIO(), []
    progress = Progress(
        total=0, stream=out, stored=3, on_advance=lambda p: seen.append((p.done, p.total))
    )
    assert not progress.enabled  # nothing known yet: nothing shown
    progress.grow(4)
    for _ in range(4):
        progress.advance()
    progress.grow(0)
    progress.grow(6)
    for _ in range(6):
        progress.advance()
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)] + [(n, 10) for n in range(5, 11)]
    assert progress.stored == 3
    lines = out.getvalue().splitlines()
    assert "progress: 4/4 results" in lines[3] and lines[-1].startswith("progress: 10/10 results")
    assert not any(line.startswith("progress: 4/10") for line in lines)
    assert [line.split()[1] for line in lines[4:]] == [
        "5/10",
        "6/10",
        "7/10",
        "8/10",
        "9/10",
        "10/10",
    ]
