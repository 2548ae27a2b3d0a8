"""The trial's process-level behaviour (trainables/trial.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import gc, weakref
    from trainables.trial import quiet_shutdown

    class Thing:
        pass

    def make(raise_this):
        thing = Thing()
        def callback(_ref):
            raise raise_this
        keep.append(weakref.ref(thing, callback))
        del thing
        gc.collect()

    keep = []
    {install}
    make(SystemExit(1))           # what Ray's SIGTERM handler raises inside a GC callback
    make(ValueError("a real one"))
    print("still running")
    """
)


def _run(install: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(install=install)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_an_unraisable_system_exit_is_quiet_and_every_other_error_still_shows():
    before = _run("")
    assert "SystemExit" in before.stderr and "a real one" in before.stderr  # Python's default
    after = _run("quiet_shutdown(); quiet_shutdown()")  # idempotent
    assert after.returncode == 0 and "still running" in after.stdout
    assert "SystemExit" not in after.stderr
    assert "ValueError: a real one" in after.stderr and after.stderr.count("Traceback") == 1
