"""One schema per table: any Parquet reader reads a sweep whose parts hold different columns' nulls.

The sweep here is what a DP-SGD sweep over two networks stores — ``dp_epsilon`` null at σ = 0 and
a number at σ = 1, ``cnn_width`` null in the MLP's rows, ``hidden_layers`` null in the CNN's —
written through the store the way the launcher writes it, one part per trial, without training.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from backdoor_sweep.errors import SweepError
from sweep.plan import plan_trials
from sweep.repair import repair_store
from sweep.schema import METRICS, TABLES, spec_schemas, table_columns
from sweep.spec import parse_spec
from sweep.store import Store
from sweep.verify import verify_store

NAME = "dp-mixed"
EPSILON = 1.37959  # what the accountant would say at σ = 1 (the value only has to round-trip)


def dp_spec(store: Store, **changes):
    raw = {
        "name": NAME,
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "cnn", "epochs": 1},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
        "defence": {"name": "dp_sgd"},
        "grid": {"learner": ["cnn", "mlp"], "dp_noise": [0.0, 1.0]},
        "seeds": [0, 1],
        "store": str(store.root),
    }
    raw.update(changes)
    return parse_spec(raw)


def rows_of(spec, plan, ok: bool = True) -> list[dict]:
    """The rows a trial of ``plan`` stores: its configuration and, if ``ok``, measured values."""
    rows = []
    for result in plan.results:
        row = {"sweep": spec.name, "trial_id": plan.trial_id, **result}
        row.pop("curves", None)
        row["status"] = "ok" if ok else "error"
        row["error"] = "" if ok else "RuntimeError: out of memory"
        if ok:
            row.update(clean_acc=0.9, asr=0.5, n_poison=10, n_train=100)
            row["dp_epsilon"] = None if result["dp_noise"] == 0 else EPSILON
        rows.append(row)
    return rows


def write_mixed(root) -> tuple[Store, object]:
    store = Store(root / "store")
    spec = dp_spec(store)
    store.write_meta(
        NAME, {"name": NAME, "spec": spec.model_dump(mode="json"), "status": "finished"}
    )
    for plan in plan_trials(spec):
        store.write_part(NAME, "trials", plan.trial_id, rows_of(spec, plan))
    return store, spec


def test_a_mixed_sweep_reads_with_pandas_and_pyarrow_dataset(tmp_path):
    store, _ = write_mixed(tmp_path)
    folder = store.sweep_dir(NAME) / "trials"
    df = pd.read_parquet(folder)
    table = ds.dataset(folder, format="parquet").to_table()
    assert len(df) == table.num_rows == 8  # 2 learners x 2 noises x 2 seeds
    assert df["dp_epsilon"].isna().sum() == 4  # the σ = 0 rows
    assert df.loc[df["dp_noise"] == 1.0, "dp_epsilon"].tolist() == [EPSILON] * 4
    assert df.loc[df["learner"] == "mlp", "cnn_width"].isna().all()
    assert df.loc[df["learner"] == "cnn", "hidden_layers"].isna().all()
    assert table.schema.field("dp_epsilon").type == pa.float64()
    assert verify_store(store).ok, verify_store(store).problems


def test_every_part_of_a_table_has_the_same_schema_even_an_error_trial(tmp_path):
    store, spec = write_mixed(tmp_path)
    failed = plan_trials(spec)[0]
    store.write_part(NAME, "trials", failed.trial_id, rows_of(spec, failed, ok=False))
    schemas = {pq.read_schema(p).remove_metadata() for p in store.parts(NAME, "trials")}
    assert len(schemas) == 1
    assert len(pd.read_parquet(store.sweep_dir(NAME) / "trials")) == 8


def test_the_schema_is_known_from_the_spec_before_any_result(tmp_path):
    store = Store(tmp_path)
    trials = spec_schemas(dp_spec(store))["trials"]
    assert trials.field("cnn_width").type == pa.int64()
    assert trials.field("dp_noise").type == pa.float64()  # [0.0, 1.0] after the model's coercion
    assert trials.field("augment").type == pa.bool_()
    assert trials.field("dp_epsilon").type == pa.float64()
    assert trials.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert "slope" not in trials.names  # learning curves are off
    assert "filter_recall" not in trials.names  # no cell uses the filter defence
    plain = parse_spec(
        {
            "name": "plain",
            "learner": {"name": "svm_rbf"},
            "attack": {"trigger": "patch", "target": 1},
            "grid": {"learner": ["svm_rbf", "ridge"], "C": [1, 10]},
            "curves": {"enabled": True},
        }
    )
    schema = spec_schemas(plain)["trials"]
    assert schema.field("C").type == pa.float64()  # YAML's 1 is a float for C
    assert schema.field("gamma").type == pa.float64()  # only the SVM has it: null for ridge
    assert schema.field("target").type == pa.int64()
    assert {"slope", "slope_fd", "slope_note"} <= set(schema.names)
    assert "dp_epsilon" not in schema.names
    assert set(spec_schemas(plain)) == set(TABLES)


def test_a_column_outside_the_schema_is_refused_in_one_line(tmp_path):
    store, spec = write_mixed(tmp_path)
    plan = plan_trials(spec)[0]
    rows = rows_of(spec, plan)
    rows[0]["mystery_metric"] = 1.0
    with pytest.raises(SweepError) as err:
        store.write_part(NAME, "trials", plan.trial_id, rows)
    assert "mystery_metric" in str(err.value) and "sweep/schema.py" in str(err.value)
    assert "\n" not in str(err.value)
    rows = rows_of(spec, plan)
    rows[0]["n_poison"] = "ten"
    with pytest.raises(SweepError, match="column n_poison .* must hold int64 values; got 'ten'"):
        store.write_part(NAME, "trials", plan.trial_id, rows)


def test_verify_names_a_part_written_with_its_own_schema_and_repair_rewrites_it(tmp_path):
    store, spec = write_mixed(tmp_path)
    zero = next(p for p in plan_trials(spec) if p.outer["dp_noise"] == 0.0)
    path = store.part_path(NAME, "trials", zero.trial_id)
    pd.DataFrame(rows_of(spec, zero)).to_parquet(path, index=False)  # each part its own schema
    assert pq.read_schema(path).field("dp_epsilon").type == pa.null()
    report = verify_store(store)
    assert any(
        str(path) in p and "dp_epsilon is null here, double in the schema" in p
        for p in report.problems
    ), report.problems
    assert repair_store(store, report) == [f"rewrote with the sweep's schema: {path}"]
    assert verify_store(store).ok
    assert pq.read_schema(path).field("dp_epsilon").type == pa.float64()
    assert pd.read_parquet(store.sweep_dir(NAME) / "trials")["dp_epsilon"].isna().sum() == 4


def test_every_declared_metric_has_a_known_kind_and_direction():
    for m in METRICS.values():
        assert m.kind in ("float", "int", "string") and m.better in (None, "higher", "lower")
        assert not m.rate or m.kind == "float"
    cols = [c.name for c in table_columns("trials", [{"learner": "svm_rbf", "C": 1.0}])]
    assert len(cols) == len(set(cols))


def _write_one_result(tmp_path, data, raw: dict) -> pd.DataFrame:
    """Run the first result of a spec for real and store it as the launcher does."""
    from sweep.writer import _row, library_versions
    from trainables.trial import run_result

    store = Store(tmp_path / raw["name"])
    spec = parse_spec({**raw, "store": str(store.root)})
    store.write_meta(spec.name, {"name": spec.name, "spec": spec.model_dump(mode="json")})
    plan = plan_trials(spec)[0]
    result = plan.results[0]
    res = run_result(result, data)
    row = _row(spec.name, plan.trial_id, result, library_versions(), **res.row, status="ok")
    store.write_part(spec.name, "trials", plan.trial_id, [row])
    for table in ("curves", "dynamics"):
        extra = [
            {"sweep": spec.name, "trial_id": plan.trial_id, "result_id": result["result_id"], **c}
            for c in getattr(res, table)
        ]
        if extra:
            store.write_part(spec.name, table, plan.trial_id, extra)
    return pd.read_parquet(store.part_path(spec.name, "trials", plan.trial_id))


BASE = {
    "dataset": {"name": "digits", "classes": [7, 1]},
    "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1, "poison_rate": 0.1},
}


def test_every_column_a_scikit_learn_result_writes_is_declared(tmp_path, digits_data):
    curves = _write_one_result(
        tmp_path,
        digits_data,
        {
            **BASE,
            "name": "svm",
            "learner": {"name": "svm_rbf", "C": 1.0, "gamma": 0.01},
            "curves": {"enabled": True, "betas": [0.0, 0.5]},
            "explain": {"influence_k": 5, "influence_samples": 3},
        },
    )
    assert curves["slope_note"].notna().all() and curves["influential_poison_frac"].notna().all()
    hardened = _write_one_result(
        tmp_path,
        digits_data,
        {
            **BASE,
            "name": "pgd",
            "learner": {"name": "logistic", "C": 1.0},
            "attack": {
                "trigger": "patch",
                "poisoning": "clean_label",
                "hardening": "pgd_l2",
                "pgd_steps": 2,
                "target": 1,
            },
            "defence": {"name": "filter"},
        },
    )
    assert hardened[["surrogate_loss_clean", "filter_recall"]].notna().all().all()


@pytest.mark.slow
def test_every_column_a_network_result_writes_is_declared(tmp_path, digits_data):
    net = {"name": "cnn", "epochs": 1, "batch_size": 64}
    dp = _write_one_result(
        tmp_path,
        digits_data,
        {**BASE, "name": "dp", "learner": net, "defence": {"name": "dp_sgd", "dp_noise": 1.0}},
    )
    assert dp["dp_epsilon"].notna().all()
    tuned = _write_one_result(
        tmp_path,
        digits_data,
        {
            **BASE,
            "name": "ft",
            "learner": net,
            "defence": {"name": "clean_finetune", "finetune_max_epochs": 2},
            "explain": {"dynamics": True},
        },
    )
    assert tuned["asr_before_finetune"].notna().all()


def test_a_part_from_before_a_later_column_is_as_its_version_wrote_it():
    from sweep.schema import schema_difference

    want = pa.schema([("sweep", pa.string()), ("clean_acc", pa.float64()), ("n_fits", pa.int64())])
    assert METRICS["n_fits"].since is not None  # added in 0.3.0: stores before lack it
    old = pa.schema([("sweep", pa.string()), ("clean_acc", pa.float64())])
    assert schema_difference(old, want) == []
    broken = pa.schema([("sweep", pa.string()), ("n_fits", pa.int64())])
    assert schema_difference(broken, want) == ["no column clean_acc"]
