"""The execution section: checks of devices, precision and schedulers (one line, exit 2, nothing
written), what it adds to results and trials, and ASHA stopping network trials on real Ray."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from backdoor_sweep.errors import SweepError
from sweep.plan import plan_trials
from sweep.spec import parse_spec

ASHA = {"name": "asha", "metric": "val_clean_acc", "mode": "max", "grace_period": 1}
#: an Optuna search of the grid's lists (a scheduler cannot run it: `sweep.search.check_search`)
OPTUNA = {
    "algorithm": "optuna",
    "num_samples": 2,
    "objectives": [{"metric": "clean_acc", "mode": "max"}],
}


def cnn_spec(tmp_path=None, **execution) -> dict:
    raw = {
        "name": "cnn_exec",
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "cnn", "epochs": 3, "batch_size": 32, "cnn_width": 4},
        "attack": {"trigger": "patch", "trigger_size": 2, "poisoning": "dirty_label", "target": 1},
        "grid": {"lr": [0.05, 0.001], "poison_rate": [0.05, 0.1]},
        "seeds": [0, 1],
        "execution": execution,
    }
    if tmp_path is not None:
        raw["store"] = str(tmp_path / "store")
    return raw


def svm_spec(**execution) -> dict:
    raw = cnn_spec(**execution)
    raw["learner"] = {"name": "svm_rbf"}
    raw["grid"] = {"C": [1.0, 10.0]}
    return raw


@pytest.mark.parametrize(
    "raw, needle",
    [
        (
            cnn_spec(scheduler={**ASHA, "metric": "clean_acc"}),
            "execution.scheduler.metric must be one of train_loss, val_clean_acc, val_asr "
            "(what a network trial reports after every epoch); got 'clean_acc'",
        ),
        (
            svm_spec(scheduler=ASHA),
            "execution.scheduler needs network learners (cnn, mlp, resnet18, torch_logistic), "
            "which report after every epoch; learner 'svm_rbf' has no epochs",
        ),
        (
            cnn_spec(scheduler=ASHA, inner_axes=["poison_rate"]),
            "execution.inner_axes must be [] (or left out) with execution.scheduler asha",
        ),
        (
            cnn_spec(scheduler={**ASHA, "grace_period": 4}),
            "execution.scheduler.grace_period must be at most the epochs trained (3); got 4",
        ),
        (
            cnn_spec(scheduler={**ASHA, "name": "hyperband"}),
            "execution.scheduler.name must be one of 'asha' or 'fifo'; got 'hyperband'",
        ),
        (
            {**cnn_spec(scheduler=ASHA), "defence": {"name": "clean_finetune"}},
            "execution.scheduler works with defence none, dp_sgd, filter; got 'clean_finetune'",
        ),
        (
            cnn_spec(precision="bf16"),
            "execution.precision bf16 needs a GPU (execution.gpus_per_trial > 0; CPU training "
            "runs fp32); got gpus_per_trial 0",
        ),
        (
            {**cnn_spec(precision="bf16", gpus_per_trial=1), "defence": {"name": "dp_sgd"}},
            "execution.precision must be fp32 with defence dp_sgd",
        ),
        (cnn_spec(precision="fp16"), "execution.precision must be one of 'fp32' or 'bf16'"),
        (
            {**cnn_spec(scheduler=ASHA), "search": {"strategy": "slope_screen"}},
            "search.strategy must be full with execution.scheduler asha (a search's trial is one "
            "configuration against every attack setting and seed, a scheduler's trial one "
            "result); got slope_screen",
        ),
        (
            {**cnn_spec(scheduler={**ASHA, "name": "fifo"}), "search": OPTUNA},
            "search.algorithm must be grid with execution.scheduler fifo",
        ),
    ],
)
def test_bad_execution_settings_are_one_line(raw, needle):
    with pytest.raises(SweepError) as err:
        parse_spec(raw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_networks_record_determinism_and_precision_and_sklearn_does_not():
    result = plan_trials(parse_spec(cnn_spec()))[0].results[0]
    assert (result["deterministic"], result["precision"]) == (True, "fp32")
    assert "val_fraction" not in result
    fast = parse_spec(cnn_spec(deterministic=False))
    assert plan_trials(fast)[0].results[0]["deterministic"] is False
    svm = plan_trials(parse_spec(svm_spec()))[0].results[0]
    assert "deterministic" not in svm and "precision" not in svm


def test_a_scheduler_makes_every_result_its_own_trial():
    plain = plan_trials(parse_spec(cnn_spec()))
    assert len(plain) == 2 and {len(p.results) for p in plain} == {4}  # lr outer; rate, seed in
    scheduled = plan_trials(parse_spec(cnn_spec(scheduler=ASHA)))
    assert len(scheduled) == 8 and {len(p.results) for p in scheduled} == {1}
    assert {p.results[0]["val_fraction"] for p in scheduled} == {0.1}
    assert len({p.trial_id for p in scheduled}) == 8
    # the same results, keyed by the same configurations
    assert sorted(u["seed"] for p in scheduled for u in p.results) == [0] * 4 + [1] * 4


# -- through the CLI, in this process ----------------------------------------------------------
def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit code, stderr, stdout) of the CLI run in this process."""
    from backdoor_sweep import cli

    monkeypatch.setattr(sys, "argv", ["backdoor-sweep", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.err, captured.out


@pytest.mark.parametrize(
    "execution, needle",
    [
        ({"scheduler": {**ASHA, "metric": "val_loss"}}, "execution.scheduler.metric must be"),
        ({"precision": "bf16"}, "execution.precision bf16 needs a GPU"),
    ],
)
def test_cli_refuses_bad_execution_with_exit_2(tmp_path, monkeypatch, capsys, execution, needle):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(cnn_spec(tmp_path, **execution)))
    code, err, _ = run_cli(["run", str(path)], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_a_gpu_where_none_exists_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys, ray_runtime
):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(cnn_spec(tmp_path, gpus_per_trial=0.25)))
    code, err, _ = run_cli(["run", str(path)], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip() and "WARNING" not in line]
    assert code == 2, err
    assert lines == [
        "error: execution.gpus_per_trial must be at most the GPUs there are (0 CUDA devices on "
        "this machine); got 0.25"
    ]
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_a_gpu_the_ray_cluster_lacks_is_refused(tmp_path, ray_runtime):
    from sweep.execution import check_devices

    with pytest.raises(
        SweepError, match=r"at most the GPUs there are \(0 GPUs in the Ray cluster\); got 1"
    ):
        check_devices(parse_spec(cnn_spec(tmp_path, gpus_per_trial=1)))


# -- ASHA on a real Ray runtime -----------------------------------------------------------------
@pytest.mark.slow
def test_asha_stops_hopeless_trials_and_they_are_stored_as_stopped(
    tmp_path, ray_runtime, monkeypatch, capsys
):
    from analysis.select import select_robust
    from sweep.launcher import run_sweep
    from sweep.store import Store

    raw = cnn_spec(tmp_path, scheduler={**ASHA, "reduction_factor": 2}, max_concurrent_trials=1)
    raw["learner"]["epochs"] = 4
    raw["grid"] = {"lr": [0.05, 1e-5]}  # 1e-5 learns nothing in 4 epochs: hopeless
    spec = parse_spec(raw)
    outcome = run_sweep(spec, show_progress=False)
    df = Store(spec.store).read_table("trials", spec.name)
    assert len(df) == 4 and outcome.n_error == 0
    assert outcome.n_ok + outcome.n_stopped == 4 and outcome.n_stopped >= 1
    stopped, ok = df[df["status"] == "stopped"], df[df["status"] == "ok"]
    assert set(stopped["lr"]) == {1e-5}  # one trial at a time: ASHA's decisions are repeatable
    assert (stopped["epoch"] < 4).all() and stopped["val_clean_acc"].between(0, 1).all()
    assert stopped["clean_acc"].isna().all() and (stopped["error"] == "").all()
    assert (ok["epoch"] == 4).all() and ok["train_loss"].notna().all()
    assert ok["val_clean_acc"].between(0, 1).all() and ok["val_asr"].between(0, 1).all()
    assert (ok["n_train"] + ok["n_val"] == 252).all()  # the training split less its held-out part
    assert set(df["deterministic"]) == {True} and set(df["precision"]) == {"fp32"}
    # never the robust choice: only finished results are candidates
    choice = select_robust(df, clean_tolerance=1.0, objective="asr")
    assert choice.choice["lr"] == 0.05
    from sweep.verify import verify_store

    assert verify_store(Store(spec.store)).ok  # stopped rows fit the table's one schema
    code, _, out = run_cli(["ls", "--store", spec.store], monkeypatch, capsys)
    header, row = [line for line in out.splitlines() if "stopped" in line or "cnn_exec" in line]
    cells = [c.strip() for c in row.split("│")]
    assert code == 0 and cells[[c.strip() for c in header.split("┃")].index("stopped")] == str(
        outcome.n_stopped
    )
    # resume runs nothing again, stopped trials included
    again = run_sweep(spec, resume=True, show_progress=False)
    assert again.n_skipped == 4 and again.n_ok + again.n_stopped + again.n_error == 0
    pd.testing.assert_frame_equal(Store(spec.store).read_table("trials", spec.name), df)
