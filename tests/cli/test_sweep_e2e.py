"""End to end: a smoke sweep on a real in-process Ray runtime, read back three ways."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from sweep.launcher import run_sweep
from sweep.query import run_query
from sweep.spec import load_spec, with_overrides
from sweep.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory, ray_runtime):
    root = tmp_path_factory.mktemp("store")
    spec = with_overrides(load_spec().smoke(), store=str(root))
    outcome = run_sweep(spec, show_progress=False)
    return spec, outcome, Store(root)


def test_every_result_is_stored_once(smoke_store):
    spec, outcome, store = smoke_store
    assert outcome.n_ok == spec.n_results == 16
    df = store.read_table("trials", spec.name)
    assert len(df) == 16
    assert df["result_id"].is_unique
    assert set(df["status"]) == {"ok"}
    for col in (
        "sweep",
        "trial_id",
        "C",
        "gamma",
        "poison_rate",
        "trigger_size",
        "seed",
        "learner",
        "clean_acc",
        "backdoor_acc",
        "asr",
        "n_poison",
        "fit_seconds",
        "started_at",
        "finished_at",
        "sklearn_version",
        "ray_version",
    ):
        assert col in df.columns, col
    # n_poison follows int(p * n)
    for _, row in df.iterrows():
        assert row["n_poison"] == int(row["poison_rate"] * row["n_train"])
    assert df["clean_acc"].between(0, 1).all()
    assert store.read_meta(spec.name)["status"] == "finished"


def test_store_is_readable_by_pandas_pyarrow_and_duckdb(smoke_store):
    spec, _, store = smoke_store
    trials_dir = store.sweep_dir(spec.name) / "trials"
    assert len(pd.read_parquet(trials_dir)) == 16
    assert pads.dataset(trials_dir, format="parquet").count_rows() == 16
    n = duckdb.sql(f"select count(*) from read_parquet('{trials_dir}/*.parquet')").fetchall()[0][0]
    assert n == 16
    out = run_query(
        store, "select C, gamma, avg(asr) as asr from trials where poison_rate = 0.05 group by all"
    )
    assert len(out) == 4


def test_no_temporary_files_are_left(smoke_store):
    spec, _, store = smoke_store
    leftovers = [p for p in store.sweep_dir(spec.name).rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_attacks_take_at_high_capacity(smoke_store):
    """Sanity of the science, not a tuned number: poisoned models learn the trigger better than clean ones."""
    spec, _, store = smoke_store
    df = store.read_table("trials", spec.name)
    clean = df[df["poison_rate"] == 0]["asr"].mean()
    poisoned = df[df["poison_rate"] > 0]["asr"].mean()
    assert poisoned >= clean
