"""Nothing outside the store, nothing left half-written, every reader names what it cannot trust.

Hand-made stores (no Ray); the CLI runs in-process through its real entry point.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load
from backdoor_sweep.errors import SweepError
from sweep.inventory import inventory
from sweep.query import run_query
from sweep.repair import SET_ASIDE, repair_store
from sweep.store import Store
from sweep.verify import format_report, verify_store
from tests.conftest import ROOT
from tests.handmade import write_sweep


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`backdoor-sweep ARGS` in this process: (exit code, stdout, stderr)."""
    from backdoor_sweep import cli

    monkeypatch.setattr(sys, "argv", ["backdoor-sweep", *args])
    previous = signal.getsignal(signal.SIGTERM)
    try:
        cli.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def snapshot(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


# -- sweep names -----------------------------------------------------------------------------
BAD_NAMES = ["../x", "a/b", ".hidden", "-x", "", "x" * 101, "/etc"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_sweep_name_is_never_a_path(tmp_path, name):
    outside = tmp_path / "x"
    write_sweep(tmp_path, "x")  # a real sweep beside the store, reachable as ../x
    store = Store(tmp_path / "store")
    store.root.mkdir()
    before = snapshot(tmp_path)
    for call in (store.read_meta, store.sweep_dir, store.exists, store.lock_holder):
        with pytest.raises(SweepError, match="sweep name must be letters, digits"):
            call(name)
    with pytest.raises(SweepError, match="sweep name must be letters"), store.lock(name):
        pass
    assert snapshot(tmp_path) == before and (outside / "sweep.json").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["resume", "../x"],
        ["heatmap", "--sweep", "../x"],
        ["select", "--sweep", "../x"],
        ["report", "--sweep", "../x"],
        ["explain", "--sweep", "../x", "--where", "C = 1"],
    ],
    ids=lambda a: a[0],
)
def test_commands_refuse_a_sweep_outside_the_store(tmp_path, monkeypatch, capsys, args):
    write_sweep(tmp_path, "x")
    store = tmp_path / "store"
    write_sweep(store, "inside")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args, "--store", str(store))
    assert code == 2 and one_line(err).startswith("error: sweep name must be letters, digits")
    assert snapshot(tmp_path) == before


# -- folders without sweep.json, symbolic links --------------------------------------------------
@pytest.fixture
def orphaned(tmp_path) -> tuple[Store, Path]:
    """A store with sweep 'good' and a folder 'lost' holding a part file but no sweep.json."""
    store = write_sweep(tmp_path / "store", "good")
    lost = store.root / "lost" / "trials"
    lost.mkdir(parents=True)
    shutil.copy(store.parts("good")[0], lost / store.parts("good")[0].name)
    return store, lost.parent


def test_a_folder_without_sweep_json_is_named_by_verify_and_every_reader(
    orphaned, monkeypatch, capsys
):
    store, lost = orphaned
    report = verify_store(store)
    assert any(str(lost) in p and "no sweep.json" in p for p in report.problems)
    for read in (
        lambda: run_query(store, "SELECT count(*) AS n FROM trials"),
        lambda: load(store),
        lambda: store.sweeps(),
    ):
        with pytest.raises(SweepError) as err:
            read()
        assert str(lost) in str(err.value) and "no sweep.json" in str(err.value)
    assert len(load(store, "good")) == 72  # a named sweep is still read
    code, out, err = run_cli(monkeypatch, capsys, "ls", "--store", str(store.root))
    assert code == 2 and "good" in out and str(lost) in one_line(err)
    code, out, err = run_cli(monkeypatch, capsys, "query", "SELECT 1", "--store", str(store.root))
    assert code == 2 and str(lost) in one_line(err)


def test_a_symlinked_part_pointing_outside_is_named_and_set_aside(tmp_path, monkeypatch, capsys):
    store = write_sweep(tmp_path / "store", "hand")
    part = store.parts("hand")[0]
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(part, outside)
    part.symlink_to(outside)
    report = verify_store(store)
    assert any(str(part) in p and "symbolic link" in p for p in report.problems), report.problems
    with pytest.raises(SweepError) as err:
        run_query(store, "SELECT count(*) FROM trials")
    assert f"store file {part} is a symbolic link (to {outside})" in str(err.value)
    code, _, err_text = run_cli(monkeypatch, capsys, "select", "--store", str(store.root))
    assert code == 2 and "is a symbolic link" in one_line(err_text)
    repair_store(store, report)
    assert not os.path.lexists(part) and outside.is_file()  # the link moved, its target untouched
    moved = store.root / SET_ASIDE
    assert [p.name for p in moved.rglob("*.parquet")] == [part.name]
    assert run_query(store, "SELECT count(*) AS n FROM trials")["n"][0] == 72 - 12


# -- full disk, a store that cannot be written ---------------------------------------------------
def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_part_write_leaves_no_temporary_file_and_the_old_part(tmp_path, monkeypatch):
    store = write_sweep(tmp_path / "store", "hand")
    part = store.parts("hand")[0]
    before = part.read_bytes()
    rows = pd.read_parquet(part).to_dict("records")
    monkeypatch.setattr("sweep.store.os.fsync", _no_space)
    with pytest.raises(SweepError) as err:
        store.write_part("hand", "trials", part.stem[5:], rows)
    assert str(err.value) == f"store file {part} could not be written (No space left on device)"
    assert not list(store.root.rglob(".tmp-*"))
    assert part.read_bytes() == before
    with pytest.raises(SweepError, match="sweep.json could not be written"):
        store.update_meta("hand", status="incomplete")
    assert not list(store.root.rglob(".tmp-*"))


def _spec(store: Path):
    from sweep.spec import parse_spec

    return parse_spec(
        {
            "name": "tiny",
            "learner": {"name": "svm_linear"},
            "attack": {"trigger": "patch", "target": 1},
            "grid": {"C": [1, 10]},
            "store": str(store),
        }
    )


def test_a_store_path_that_is_a_file_gives_one_line_and_creates_nothing(tmp_path):
    from sweep.launcher import run_sweep

    path = tmp_path / "results"
    path.write_text("not a folder")
    with pytest.raises(SweepError) as err:
        run_sweep(_spec(path), show_progress=False)
    assert str(err.value).startswith(
        f"--store must be a folder this process can write; got '{path}'"
    )
    assert snapshot(tmp_path) == {str(path)}


def test_a_read_only_store_gives_one_line(tmp_path, monkeypatch):
    """Root ignores file modes, so the read-only file system is injected."""
    from sweep.launcher import run_sweep

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(SweepError) as err:
        run_sweep(_spec(tmp_path / "results"), show_progress=False)
    assert str(err.value) == (
        f"--store must be a folder this process can write; got '{tmp_path / 'results'}' "
        "(Read-only file system)"
    )


# -- ls and verify -------------------------------------------------------------------------------
def test_ls_marks_a_sweep_whose_driver_is_gone_as_interrupted(tmp_path):
    store = write_sweep(tmp_path, "gone")
    store.update_meta("gone", status="running")  # what a killed driver leaves
    write_sweep(tmp_path, "done")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sweep.store import Store\n"
            "with Store(sys.argv[1]).lock('busy'):\n    print('locked', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        write_sweep(tmp_path, "busy")
        store.update_meta("busy", status="running")
        assert holder.stdout.readline().strip() == "locked"
        lines, problems = inventory(store)
        states = {line.name: line.state for line in lines}
        assert problems == []
        assert states == {
            "busy": f"running (pid {holder.pid} on {os.uname().nodename})",
            "done": "finished",
            "gone": "interrupted",
        }
    finally:
        holder.kill()
        holder.wait()
    assert {line.name: line.state for line in inventory(store)[0]}["busy"] == "interrupted"


def test_ls_lists_every_sweep_when_one_part_is_corrupt(tmp_path, monkeypatch, capsys):
    store = write_sweep(tmp_path, "a-broken")
    write_sweep(tmp_path, "b-fine")
    bad = store.parts("a-broken")[0]
    bad.write_bytes(b"PAR1 not parquet")
    code, out, err = run_cli(monkeypatch, capsys, "ls", "--store", str(tmp_path))
    assert code == 2
    assert one_line(err).startswith(f"error: store file {bad} is corrupt")
    fine = next(line for line in out.splitlines() if "b-fine" in line)
    assert "finished" in fine and " 72 " in fine
    assert "damaged" in next(line for line in out.splitlines() if "a-broken" in line)


def test_verify_ends_with_the_commands_that_repair_it(tmp_path, monkeypatch, capsys):
    store = write_sweep(tmp_path / "store", "hand")
    (store.sweep_dir("hand") / "notes.txt").write_text("mine")
    tmp = store.sweep_dir("hand") / "trials" / ".tmp-1234-part-x.parquet"
    tmp.write_bytes(b"half")
    (store.sweep_dir("hand") / "sweep.json").write_text(
        json.dumps({**store.read_meta("hand"), "status": "finished"})
    )
    code, out, _ = run_cli(monkeypatch, capsys, "verify", "--store", str(store.root))
    lines = out.strip().splitlines()
    assert code == 2
    assert f"repair: backdoor-sweep verify --repair --store {store.root}" in lines
    assert lines[-1].startswith(("then: backdoor-sweep resume hand", "repair:")), lines
    code, out, _ = run_cli(monkeypatch, capsys, "verify", "--repair", "--store", str(store.root))
    assert f"deleted: {tmp}" in out and "set aside: " in out
    assert not tmp.exists() and (store.root / SET_ASIDE).is_dir()
    assert (next((store.root / SET_ASIDE).rglob("notes.txt"))).read_text() == "mine"
    assert not [p for p in verify_store(store).problems if "notes.txt" in p or ".tmp-" in p]


def test_a_corrupt_sweep_json_is_left_for_a_person(tmp_path):
    store = write_sweep(tmp_path / "store", "hand")
    meta = store.sweep_dir("hand") / "sweep.json"
    meta.write_text("{not json")
    lines = format_report(verify_store(store))
    assert lines[-1].startswith(f"by hand: {meta} needs a person")
    assert not any(line.startswith("repair:") for line in lines)


def counted_trial(marker_dir: str):
    """``tune_trial`` that leaves one marker file per attempt (workers see the folder)."""

    def trial(config, data):
        from trainables.trial import tune_trial

        tid = config["trial_id"]
        attempt = len([f for f in os.listdir(marker_dir) if f.startswith(tid)]) + 1
        Path(marker_dir, f"{tid}-{attempt}").touch()
        tune_trial(config, data)

    return trial


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_one_line_without_retries_then_resume_finishes(
    ray_runtime, tmp_path, monkeypatch
):
    from sweep.launcher import run_sweep
    from sweep.plan import plan_trials
    from sweep.spec import load_spec, parse_spec

    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(name="full", store=str(tmp_path / "store"))
    spec = parse_spec(raw)
    markers = tmp_path / "markers"
    markers.mkdir()
    real_fsync = os.fsync

    def fsync(fd):  # part files cannot be written; sweep.json can
        if "/trials/" in os.readlink(f"/proc/self/fd/{fd}") or "/curves/" in os.readlink(
            f"/proc/self/fd/{fd}"
        ):
            _no_space()
        real_fsync(fd)

    monkeypatch.setattr("sweep.store.os.fsync", fsync)
    with pytest.raises(SweepError) as err:
        run_sweep(spec, show_progress=False, trial_fn=counted_trial(str(markers)))
    message = str(err.value)
    assert "\n" not in message and "could not be written (No space left on device)" in message
    assert message.endswith(f"`backdoor-sweep resume full --store {spec.store}`")
    store = Store(spec.store)
    assert not list(store.root.rglob(".tmp-*"))
    assert store.parts("full") == [] and store.read_meta("full")["status"] == "incomplete"
    attempts = [f.name.rsplit("-", 1) for f in markers.iterdir()]
    assert all(n == "1" for _, n in attempts), attempts  # no trial was retried
    monkeypatch.setattr("sweep.store.os.fsync", real_fsync)  # space is free again
    outcome = run_sweep(spec, resume=True, show_progress=False)
    assert outcome.complete and verify_store(store).ok
    assert len(store.read_table("trials", "full")) == sum(len(p.results) for p in plan_trials(spec))


def test_a_hand_made_store_is_sound(tmp_path):
    """The fixtures the store tests damage start out without a problem."""
    store = write_sweep(tmp_path, "hand", with_curves=True, n_errors=2)
    report = verify_store(store)
    assert report.ok, report.problems
