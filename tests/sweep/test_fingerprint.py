"""A sweep's fingerprint covers what determines its results, not where they live.

`resume` works whatever the store's spelling (relative or absolute), after a move or a copy; a
spec that differs is refused naming the field, and the message offers a command other than the
one just run.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from backdoor_sweep.errors import SweepError
from sweep.claim import _check_existing
from sweep.launcher import run_sweep
from sweep.spec import Spec, parse_spec
from sweep.store import Store
from tests.sweep.test_bad_inputs import HEAD, run_cli


def tiny(store: str = "results", **changes) -> Spec:
    raw = yaml.safe_load(HEAD)
    raw.update({"grid": {"C": [1, 10]}, "store": store, **changes})
    return parse_spec(raw)


def started(root, spec: Spec, digest: str | None = None) -> Store:
    """A store holding the bookkeeping of ``spec`` as a run writes it (no results yet)."""
    store = Store(root)
    meta = {"name": spec.name, "spec": spec.model_dump(mode="json")}
    meta["spec_digest"] = digest if digest is not None else spec.digest()
    store.write_meta(spec.name, meta)
    return store


def test_digest_ignores_where_and_how_fast_but_not_what():
    spec = tiny("/data/results")
    same = [
        tiny("results"),
        tiny("../elsewhere/results", description="moved to the big disk"),
        tiny("results", execution={"max_failures": 5, "max_concurrent_trials": 2}),
    ]
    assert {s.digest() for s in same} == {spec.digest()}
    other = [
        tiny(grid={"C": [1, 100]}),
        tiny(seeds=[0, 1]),
        tiny(name="u"),
        tiny(execution={"cpus_per_trial": 2}),
        tiny(execution={"inner_axes": ["C"]}),
        tiny(dataset={"name": "digits", "classes": [7, 1], "split_seed": 3}),
    ]
    assert len({s.digest() for s in other} | {spec.digest()}) == len(other) + 1


def test_resume_accepts_the_store_spelled_otherwise(tmp_path, monkeypatch):
    absolute = tmp_path / "store"
    started(absolute, tiny(str(absolute)))
    monkeypatch.chdir(tmp_path)
    relative = tiny("store")
    _check_existing(relative, Store("store"), resume=True, overwrite=False)
    shutil.move(absolute, tmp_path / "moved")
    _check_existing(tiny("moved"), Store("moved"), resume=True, overwrite=False)
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    _check_existing(tiny("copy"), Store(tmp_path / "copy"), resume=True, overwrite=False)


def test_a_store_from_before_compares_by_its_spec(tmp_path):
    """Stores written when the digest still held the store path resume by their stored spec."""
    old = tiny("/old/place/store")
    store = started(tmp_path / "store", old, digest="0123456789abcdef")
    _check_existing(tiny(str(tmp_path / "store")), store, resume=True, overwrite=False)


def test_a_different_spec_is_refused_naming_the_field_and_another_command(tmp_path):
    store = started(tmp_path / "store", tiny())
    with pytest.raises(SweepError) as err:
        _check_existing(tiny(grid={"C": [1, 100]}), store, resume=True, overwrite=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "differs in grid.C: [1, 10] → [1, 100]" in msg
    assert f"`backdoor-sweep resume t --store {store.root}`" in msg
    assert "another --name" in msg and "--overwrite" in msg


def test_a_stored_spec_that_no_longer_validates_is_one_line(tmp_path):
    store = Store(tmp_path / "store")
    store.write_meta("t", {"name": "t", "spec": {"name": "t", "learner": {"name": "gone"}}})
    with pytest.raises(SweepError) as err:
        _check_existing(tiny(), store, resume=True, overwrite=False)
    msg = str(err.value)
    assert msg.startswith("sweep 't' cannot be resumed: its stored spec no longer validates (")
    assert "\n" not in msg and "--overwrite" in msg


@pytest.mark.slow
def test_resume_after_a_move_and_a_copy_runs_nothing_again(
    tmp_path, monkeypatch, capsys, ray_runtime
):
    first = tmp_path / "first"
    outcome = run_sweep(tiny(str(first)), show_progress=False)
    assert outcome.n_ok == 2
    monkeypatch.chdir(tmp_path)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(HEAD + "grid: {C: [1, 10]}\n")
    code, out, err = run_cli(
        capsys, "run", str(spec_file), "--store", "first", "--resume", "--quiet"
    )
    assert code == 0, err
    assert "ran 0 (0 ok, 0 error), 2 already in the store" in out
    shutil.move(first, tmp_path / "moved")
    code, out, err = run_cli(capsys, "resume", "t", "--store", "moved", "--quiet")
    assert code == 0 and "2 already in the store" in out, err
    shutil.copytree(tmp_path / "moved", tmp_path / "copy")
    code, out, err = run_cli(capsys, "resume", "t", "--store", str(tmp_path / "copy"), "--quiet")
    assert code == 0 and "2 already in the store" in out, err
    assert len(Store(tmp_path / "copy").read_table("trials", "t")) == 2
