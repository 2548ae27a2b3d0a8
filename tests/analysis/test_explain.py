"""Explanations end to end: the spec's explain section, training dynamics, and `backdoor-sweep explain`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from backdoor_sweep.errors import SweepError
from sweep.plan import plan_trials
from sweep.spec import parse_spec
from tests.conftest import cli


def raw_spec(tmp_path, name="explained", learner=None, grid=None, explain=None, classes=(7, 1)):
    raw = {
        "name": name,
        "dataset": {"name": "digits", "classes": list(classes)},
        "learner": learner or {"name": "svm_rbf", "gamma": 0.01},
        "attack": {"trigger": "patch", "trigger_size": 3, "poisoning": "dirty_label", "target": 1},
        "grid": grid or {"C": [0.1, 10.0], "poison_rate": [0.1]},
        "seeds": [0],
        "store": str(tmp_path / "store"),
    }
    if explain is not None:
        raw["explain"] = explain
    return raw


# -- the spec ----------------------------------------------------------------------------------
def test_explain_keys_reach_the_results_only_when_asked(tmp_path):
    plain = plan_trials(parse_spec(raw_spec(tmp_path)))
    asked = plan_trials(parse_spec(raw_spec(tmp_path, explain={"influence_k": 5})))
    result = asked[0].results[0]
    assert (
        result["influence_k"] == 5
        and result["influence_samples"] == 100
        and "dynamics" not in result
    )
    assert not {"influence_k", "influence_samples", "dynamics"} & set(plain[0].results[0])
    # switched off, result ids are those of a spec without the section (stores stay resumable)
    off = plan_trials(parse_spec(raw_spec(tmp_path, explain={"dynamics": False})))
    assert [u["result_id"] for p in off for u in p.results] == [
        u["result_id"] for p in plain for u in p.results
    ]


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"explain": {"dynamics": True}}, "explain.dynamics needs a network learner"),
        (
            {"explain": {"influence_k": 0}},
            "explain.influence_k must be greater than or equal to 1; got 0",
        ),
        ({"explain": {"top": 3}}, "explain.top is not a parameter here"),
        (
            {"explain": {"influence_k": 5}, "classes": (1, 4, 7)},
            "explain.influence_k needs a binary problem with learner 'svm_rbf'",
        ),
    ],
)
def test_bad_explain_sections_are_one_line_errors(tmp_path, kwargs, needle):
    with pytest.raises(SweepError) as err:
        parse_spec(raw_spec(tmp_path, **kwargs))
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- training dynamics -------------------------------------------------------------------------
CNN = {"name": "cnn", "epochs": 3, "batch_size": 32, "cnn_width": 4, "hidden_units": 16}


@pytest.mark.slow
@pytest.mark.parametrize("poisoning", ["dirty_label", "supplant"])
def test_dynamics_rows_per_epoch_and_the_untriggered_poisons(digits_data, poisoning):
    from trainables.measures.dynamics import untriggered_poisons
    from trainables.trial import prepare_result, run_result

    config = {
        "learner": "cnn",
        **{k: v for k, v in CNN.items() if k != "name"},
        "trigger": "patch",
        "trigger_size": 3,
        "pattern": "random",
        "corner": "bottom_right",
        "poisoning": poisoning,
        "poison_rate": 0.1,
        "target": 1,
        "defence": "none",
        "seed": 0,
        "dynamics": True,
        "influence_k": 5,
    }
    res = run_result(config, digits_data)
    assert [r["epoch"] for r in res.dynamics] == [1, 2, 3]
    assert all(
        np.isfinite(r[c])
        for r in res.dynamics
        for c in ("loss_clean", "loss_poison", "loss_poison_untriggered")
    )
    assert res.dynamics[-1]["loss_clean"] < res.dynamics[0]["loss_clean"]  # it trains
    assert 0.0 <= res.row["influential_poison_frac"] <= 1.0
    result = prepare_result(config, digits_data)
    p = result.poisoned
    before = untriggered_poisons(config, digits_data, p)
    # the same rows, the trigger missing: re-applying the (deterministic) patch gives the poisons
    np.testing.assert_array_equal(result.trigger.apply(before), p.X[p.is_poison])
    train_rows = {r.tobytes() for r in np.asarray(digits_data.X_train, dtype=np.float64)}
    assert all(r.tobytes() in train_rows for r in before)


# -- the CLI -----------------------------------------------------------------------------------
def one_line_error(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def without_plotly(html: str) -> str:
    """The page without the embedded plotly.js, checked to reference nothing outside itself."""
    from plotly.offline import get_plotlyjs

    rest = html.replace(get_plotlyjs(), "")
    assert "<script src" not in rest and "http://" not in rest and "https://" not in rest
    return rest


@pytest.mark.slow
def test_cli_svm_sweep_influence_column_and_explain_page(tmp_path, cli_env):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw_spec(tmp_path, explain={"influence_k": 5})))
    store = str(tmp_path / "store")
    run = cli("run", str(spec), "--quiet", env=cli_env)
    assert run.returncode == 0, run.stderr
    q = cli(
        "query",
        "select C, influential_poison_frac, influence_k from trials order by C",
        "--store",
        store,
        "--format",
        "json",
        env=cli_env,
    )
    assert q.returncode == 0, q.stderr
    rows = json.loads(q.stdout)
    assert len(rows) == 2 and all(
        0 <= r["influential_poison_frac"] <= 1 and r["influence_k"] == 5 for r in rows
    )

    out = tmp_path / "explain.html"
    ex = cli(
        "explain", "--store", store, "--where", "C = 10", "--out", str(out), "--k", "5", env=cli_env
    )
    assert ex.returncode == 0, ex.stderr
    html = without_plotly(out.read_text())
    assert html.count("data:image/png;base64,") == 2 + 4 + 2 * 5  # inputs, maps, top-5 twice
    assert "poisoned model" in html and "clean model (β = 0)" in html and "on the trigger" in html
    assert (
        "rebuilt; stored" in html and "the store says" not in html
    )  # the rebuild reproduces the row
    stored = next(r for r in rows if r["C"] == 10)["influential_poison_frac"]
    assert f"influential_poison_frac {stored:.3f} (top-5)" in ex.stdout  # the sweep's number, again

    bad = cli("explain", "--store", store, "--where", "C = = 1", "--out", str(out), env=cli_env)
    assert "--where must be a SQL condition" in one_line_error(bad)
    none = cli("explain", "--store", store, "--where", "C = 3", "--out", str(out), env=cli_env)
    assert "--where must match a successful result" in one_line_error(none)
    sample = cli(
        "explain",
        "--store",
        store,
        "--where",
        "C = 10",
        "--test-index",
        "9999",
        "--out",
        str(out),
        env=cli_env,
    )
    assert "--test-index must be a test sample index" in one_line_error(sample)


@pytest.mark.slow
def test_network_sweep_stores_dynamics_and_explains_them(tmp_path, cli_env, ray_runtime):
    from sweep.launcher import run_sweep
    from sweep.query import run_query
    from sweep.store import Store
    from sweep.verify import verify_store

    spec = parse_spec(
        raw_spec(
            tmp_path,
            "cnn_dyn",
            learner=CNN,
            grid={"poison_rate": [0.1]},
            explain={"dynamics": True, "influence_k": 5},
        )
    )
    outcome = run_sweep(spec, show_progress=False)
    assert outcome.n_ok == 1
    store = Store(spec.store)
    dyn = run_query(
        store,
        "select epoch, loss_clean, loss_poison, loss_poison_untriggered from dynamics order by epoch",
    )
    assert list(dyn["epoch"]) == [1, 2, 3]
    joined = run_query(store, "select count(*) as n from dynamics join trials using (result_id)")
    assert int(joined["n"][0]) == 3
    assert verify_store(store).ok

    out = tmp_path / "cnn.html"
    ex = cli(
        "explain",
        "--store",
        spec.store,
        "--where",
        "poison_rate = 0.1",
        "--out",
        str(out),
        env=cli_env,
    )
    assert ex.returncode == 0, ex.stderr
    html = without_plotly(out.read_text())
    assert "training dynamics" in html and "poisoned samples, trigger removed" in html
    assert "last-layer influence" in html and "the store says" not in html


# -- what is explained by default ---------------------------------------------------------------
def test_defaults_pick_attacked_settings_strongest_first(tmp_path):
    from analysis.explain import attack_strength, default_rows, pick_rows, strongest_first
    from analysis.load import load
    from tests.handmade import write_sweep

    df = load(write_sweep(tmp_path, "hand"), "hand")
    strength = attack_strength(df)
    # hand-made ASR grows with the trigger size; poison_rate 0 has no poison and is not an attack
    assert list(strength[["poison_rate", "trigger_size"]].itertuples(index=False, name=None)) == [
        (0.1, 3),
        (0.1, 1),
    ]
    rows = strongest_first(df, pick_rows(df[(df["C"] == 1.0) & (df["gamma"] == 0.1)]))
    assert list(rows["poison_rate"]) == [0.1, 0.1] and list(rows["trigger_size"]) == [3, 1]
    clean_only = df[(df["C"] == 1.0) & (df["poison_rate"] == 0.0)]
    assert len(strongest_first(df, pick_rows(clean_only))) == 4  # nothing else matched: kept
    picked, labels = default_rows(df)
    assert labels == ["recommended", "most vulnerable accurate configuration"]
    # recommended C=1, gamma=0.1; most vulnerable accurate C=10, gamma=0.1 (C=0.1 is inaccurate)
    assert list(zip(picked["C"], picked["gamma"], strict=True)) == [(1.0, 0.1), (10.0, 0.1)]
    assert set(picked["poison_rate"]) == {0.1} and set(picked["trigger_size"]) == {3}
    assert set(picked["seed"]) == {0}
