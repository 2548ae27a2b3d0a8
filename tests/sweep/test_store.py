"""The store refuses what it cannot trust, `verify` finds what is wrong, the sweep lock holds.

One real store is made per module by a smoke sweep on Ray; each test damages a copy of it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backdoor_sweep.errors import SweepError
from sweep.launcher import run_sweep
from sweep.plan import plan_trials
from sweep.spec import load_spec, parse_spec
from sweep.store import Store
from sweep.verify import verify_store
from tests.conftest import ROOT, cli

NAME = "store-test"


@pytest.fixture(scope="module")
def pristine(ray_runtime, tmp_path_factory) -> Path:
    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(name=NAME, store=str(tmp_path_factory.mktemp("pristine") / "store"))
    run_sweep(parse_spec(raw), show_progress=False)
    return Path(raw["store"])


@pytest.fixture
def store(pristine, tmp_path) -> Store:
    shutil.copytree(pristine, tmp_path / "store")
    return Store(tmp_path / "store")


def parts(store: Store) -> list[Path]:
    return store.parts(NAME, "trials")


def rewrite(path: Path, edit) -> None:
    """Rewrite a part through pandas with ``edit(frame) -> frame``."""
    edit(pd.read_parquet(path)).to_parquet(path, index=False)


def test_a_clean_store_verifies(store):
    report = verify_store(store)
    assert report.ok and report.sweeps == [NAME] and not report.notes, report.problems
    out = cli("verify", "--store", str(store.root))
    assert (
        out.returncode == 0
        and out.stdout.strip() == f"ok: {store.root} holds 1 sweep(s) and no problem"
    )


def _corrupt(store: Store) -> Path:
    path = parts(store)[0]
    path.write_bytes(b"PAR1 this is not a parquet file")
    return path


def _foreign(store: Store) -> Path:
    path = store.sweep_dir(NAME) / "trials" / "notes.csv"
    path.write_text("a,b\n1,2\n")
    return path


def _foreign_parquet(store: Store) -> Path:
    path = store.sweep_dir(NAME) / "trials" / "part-00000000000000ab.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    return path


@pytest.mark.parametrize(
    "damage", [_corrupt, _foreign, _foreign_parquet], ids=["corrupt", "foreign", "foreign-parquet"]
)
@pytest.mark.parametrize("command", ["query", "heatmap", "ls"])
def test_a_bad_file_gives_one_line_naming_it(store, tmp_path, damage, command):
    bad = damage(store)
    args = {
        "query": ["query", "SELECT count(*) FROM trials"],
        "heatmap": ["heatmap", "--out", str(tmp_path / "h.html")],
        "ls": ["ls"],
    }[command]
    out = cli(*args, "--store", str(store.root))
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: store file {bad} "), out.stderr
    assert "backdoor-sweep verify" in lines[0]


def test_readers_skip_a_temporary_file_of_a_writer(store):
    tmp = store.sweep_dir(NAME) / "trials" / ".tmp-0123-part-x.parquet"
    tmp.write_bytes(b"half a file")
    assert len(store.read_table("trials", NAME)) == 16
    assert any("temporary file" in p and str(tmp) in p for p in verify_store(store).problems)


def _first_rows(store: Store) -> tuple[Path, pd.DataFrame]:
    path = parts(store)[0]
    return path, pd.read_parquet(path)


def _duplicate(store):
    a, rows = _first_rows(store)
    b = parts(store)[1]
    rewrite(b, lambda df: pd.concat([df, rows.assign(trial_id=b.stem[5:])], ignore_index=True))
    return "is stored 2 times", b.name


def _unknown_trial(store):
    a, rows = _first_rows(store)
    fake = "00000000deadbeef"
    a.unlink()
    rows.assign(trial_id=fake).to_parquet(a.with_name(f"part-{fake}.parquet"), index=False)
    return f"trial {fake} is not in the plan", f"part-{fake}.parquet"


def _missing_result(store):
    a, _ = _first_rows(store)
    rewrite(a, lambda df: df.iloc[1:])
    return "lacks 1 of the trial's 4 results", a.name


def _config_mismatch(store):
    a, _ = _first_rows(store)
    rewrite(a, lambda df: df.assign(trigger_size=df["trigger_size"] + 1))
    return "has trigger_size=", a.name


def _type_conflict(store):
    a, _ = _first_rows(store)
    rewrite(a, lambda df: df.assign(asr=df["asr"].astype(str)))
    return "string here but number in 3 other part(s)", a.name


def _orphan_curves(store):
    path = store.sweep_dir(NAME) / "curves" / "part-00000000feedface.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(
        pa.table({"sweep": [NAME], "trial_id": ["00000000feedface"], "result_id": ["x"]}), path
    )
    return "curves of trial 00000000feedface that has no trials part", path.name


def _finished_but_missing(store):
    a, _ = _first_rows(store)
    a.unlink()
    return "says finished but 1 of 4 trials have no part", "sweep.json"


def _corrupt_meta(store):
    path = store.sweep_dir(NAME) / "sweep.json"
    path.write_text("{not json")
    return "is corrupt (not JSON", "sweep.json"


def _wrong_sweep_column(store):
    a, _ = _first_rows(store)
    rewrite(a, lambda df: df.assign(sweep="other"))
    return "rows of sweep(s) ['other']", a.name


def _stray_file(store):
    path = store.sweep_dir(NAME) / "notes.txt"
    path.write_text("hello")
    return "not a file of this store", "notes.txt"


@pytest.mark.parametrize(
    "damage",
    [
        _duplicate,
        _unknown_trial,
        _missing_result,
        _config_mismatch,
        _type_conflict,
        _orphan_curves,
        _finished_but_missing,
        _corrupt_meta,
        _wrong_sweep_column,
        _stray_file,
        _corrupt,
        _foreign,
        _foreign_parquet,
    ],
)
def test_verify_names_what_is_wrong(store, damage):
    found = damage(store)
    if isinstance(found, Path):  # the damages shared with the reader test return the bad file
        found = ("", found.name)
    what, where = found
    report = verify_store(store)
    assert not report.ok
    assert any(what in p and where in p for p in report.problems), report.problems


def test_verify_exits_2_and_lists_each_problem(store):
    _stray_file(store)
    _config_mismatch(store)
    out = cli("verify", "--store", str(store.root))
    assert out.returncode == 2
    problems = [line for line in out.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2, out.stdout
    assert out.stderr.strip() == f"error: store {store.root} has 2 problem(s) (listed above)"


def test_an_interrupted_sweep_is_a_note_not_a_problem(store):
    """Stopped between a trial's curves part and its trials part (the writer's order)."""
    gone = parts(store)[0]
    gone.unlink()
    store.update_meta(NAME, status="incomplete")
    report = verify_store(store)
    assert report.ok, report.problems
    assert report.notes == [
        f"{store.sweep_dir(NAME)}/curves/{gone.name}: curves of a trial whose trials part is not written yet",
        f"{NAME}: 3 of 4 trials stored (unfinished: `backdoor-sweep resume {NAME} --store {store.root}`)",
    ]


def test_writing_a_trial_twice_replaces_it(store):
    path = parts(store)[0]
    rows = pd.read_parquet(path).to_dict("records")
    store.write_part(NAME, "trials", path.stem[5:], rows)
    assert len(store.read_table("trials", NAME)) == 16
    assert not list(path.parent.glob(".tmp-*"))
    assert verify_store(store).ok


def test_the_sweep_lock_refuses_a_second_holder_and_dies_with_its_holder(tmp_path):
    store = Store(tmp_path / "store")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sweep.store import Store\n"
            "with Store(sys.argv[1]).lock('s'):\n    print('locked', flush=True); time.sleep(600)",
            str(store.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert store.is_locked("s")
        with (
            pytest.raises(SweepError, match=rf"sweep 's' is being written by pid {holder.pid} "),
            store.lock("s"),
        ):
            pass
        with store.lock("other"):  # other sweeps of the store are free
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not store.is_locked("s")  # the kernel released it with the dead holder
    with store.lock("s"):
        assert store.is_locked("s")


def test_plan_ids_are_stable_and_distinct():
    spec = load_spec()
    a, b = plan_trials(spec), plan_trials(load_spec())
    assert [p.trial_id for p in a] == [p.trial_id for p in b]
    ids = [u["result_id"] for p in a for u in p.results]
    assert len(ids) == len(set(ids)) == spec.n_results


@pytest.mark.slow
def test_verify_repair_then_resume_restores_a_damaged_store(ray_runtime, tmp_path):
    """What `verify` prints is what fixes the store: repair, then the resume it names."""
    from sweep.repair import repair_store
    from sweep.verify import format_report

    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(name=NAME, store=str(tmp_path / "store"))
    spec = parse_spec(raw)
    run_sweep(spec, show_progress=False)
    store = Store(spec.store)
    _config_mismatch(store)  # the first part: rows that are not what their ids say
    parts(store)[1].write_bytes(b"PAR1 this is not a parquet file")
    _foreign(store)
    report = verify_store(store)
    lines = format_report(report)
    assert lines[-2:] == [
        f"repair: backdoor-sweep verify --repair --store {store.root}",
        f"then: backdoor-sweep resume {NAME} --store {store.root}",
    ]
    repair_store(store, report)
    after = verify_store(store)
    assert after.ok, after.problems
    assert format_report(after)[-1] == f"finish: backdoor-sweep resume {NAME} --store {store.root}"
    assert run_sweep(spec, resume=True, show_progress=False).complete
    assert verify_store(store).ok and len(store.read_table("trials", NAME)) == 16
