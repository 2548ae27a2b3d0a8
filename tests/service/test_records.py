"""The status of a sweep, derived from the store and the server's own queue and runners."""

from __future__ import annotations

import pytest

from backdoor_sweep.service.records import (
    EXIT_BAD_INPUT,
    EXIT_CRASHED,
    EXIT_INCOMPLETE,
    Records,
    derive_status,
)
from sweep.store import Store

RUN = {"status": "running"}
DONE = {"status": "finished"}
PART = {"status": "incomplete"}


def job(cancel=False, code=None):
    return {"cancel": {"by": "x"} if cancel else None, "run": {"exit_code": code}}


T0, T1 = "2026-11-28T10:00:00+00:00", "2026-11-28T10:05:00.123456+00:00"


def started(at: str) -> dict:
    return {"cancel": None, "run": {"exit_code": None, "started_at": at}}


def done_at(at: str) -> dict:
    return {"status": "finished", "finished_at": at}


@pytest.mark.parametrize(
    "kw,status",
    [
        (dict(job=job(), meta=None, locked=False, alive=False, queued=True), "queued"),
        (dict(job=job(), meta=None, locked=False, alive=True, queued=False), "starting"),
        # its runner is exiting after the run finished: the lock went first
        (
            dict(job=started(T0), meta=done_at(T1), locked=False, alive=True, queued=False),
            "finished",
        ),
        # an --overwrite run starting over a sweep an earlier run finished
        (
            dict(job=started(T1), meta=done_at(T0), locked=False, alive=True, queued=False),
            "starting",
        ),
        (dict(job=job(), meta=RUN, locked=True, alive=True, queued=False), "running"),
        (dict(job=None, meta=RUN, locked=True, alive=False, queued=False), "running"),  # a CLI run
        (dict(job=job(cancel=True), meta=RUN, locked=True, alive=True, queued=False), "cancelling"),
        (dict(job=job(code=0), meta=DONE, locked=False, alive=False, queued=False), "finished"),
        (dict(job=None, meta=DONE, locked=False, alive=False, queued=False), "finished"),
        # cancelled after its last trial: finished wins
        (
            dict(job=job(cancel=True), meta=DONE, locked=False, alive=False, queued=False),
            "finished",
        ),
        (
            dict(
                job=job(True, EXIT_INCOMPLETE), meta=PART, locked=False, alive=False, queued=False
            ),
            "cancelled",
        ),
        (
            dict(job=job(cancel=True), meta=None, locked=False, alive=False, queued=False),
            "cancelled",
        ),
        (
            dict(job=job(code=EXIT_BAD_INPUT), meta=None, locked=False, alive=False, queued=False),
            "failed",
        ),
        (
            dict(job=job(code=EXIT_CRASHED), meta=RUN, locked=False, alive=False, queued=False),
            "failed",
        ),
        # the runner died (a killed server): the store says running, nobody holds the lock
        (
            dict(job=job(code=None), meta=RUN, locked=False, alive=False, queued=False),
            "interrupted",
        ),
        (dict(job=job(code=-9), meta=RUN, locked=False, alive=False, queued=False), "interrupted"),
        (
            dict(job=job(code=EXIT_INCOMPLETE), meta=PART, locked=False, alive=False, queued=False),
            "interrupted",
        ),
        (dict(job=None, meta=PART, locked=False, alive=False, queued=False), "interrupted"),
        # queued when the server stopped: never started, shown as interrupted after a restart
        (
            dict(
                job=job(code=None) | {"run": None},
                meta=None,
                locked=False,
                alive=False,
                queued=False,
            ),
            "interrupted",
        ),
    ],
)
def test_derive_status(kw, status):
    assert derive_status(**kw) == status


def test_a_name_is_claimed_once(tmp_path):
    records = Records(Store(tmp_path))
    assert records.claim("a") and not records.claim("a")
    assert records.names() == []  # no job record yet
    records.write_job("a", {"name": "a"})
    assert records.names() == ["a"] and records.read_job("a") == {"name": "a"}


def test_last_error_prefers_the_one_line_error(tmp_path):
    records = Records(Store(tmp_path))
    records.claim("a")
    records.log_path("a").write_text(
        "starting\nerror: dataset.name must be one of digits; got 'x'\n"
    )
    assert records.last_error("a") == "dataset.name must be one of digits; got 'x'"
    records.log_path("a").write_text("Traceback\n  ...\nRuntimeError: boom\n")
    assert records.last_error("a") == "RuntimeError: boom"


def test_the_progress_file_counts_stored_results_beside_the_run(tmp_path):
    """A search's total grows as it goes: the file's done is what the store held when the run
    began plus what the run computed, never the planned results minus the run's total."""
    from backdoor_sweep.service.runner import ProgressFile
    from sweep.progress import Progress

    records = Records(Store(tmp_path))
    assert records.claim("scr")
    callback = ProgressFile(records, "scr", n_results=20)
    progress = Progress(total=0, enabled=False, on_advance=callback, stored=6)
    progress.grow(4)  # stage two of a resumed screen, as known so far
    progress.advance()
    assert records.read_progress("scr")["done"] == 7
    progress.grow(4)
    for _ in range(7):
        progress.advance()
    written = records.read_progress("scr")
    assert written["done"] == 6 + 8 and written["total"] == 20


def test_a_progress_file_that_cannot_be_written_does_not_stop_the_sweep(tmp_path, capsys):
    """The store's writer says why in a `SweepError`; the sweep goes on (its parts are what
    count) and the runner's log has one line."""
    from backdoor_sweep.service.runner import ProgressFile
    from sweep.progress import Progress

    records = Records(Store(tmp_path))  # no folder for "gone": the file cannot be written
    progress = Progress(total=2, enabled=False, on_advance=ProgressFile(records, "gone", 2))
    progress.advance()
    assert progress.done == 1 and records.read_progress("gone") is None
    assert "progress not written: store file" in capsys.readouterr().err
