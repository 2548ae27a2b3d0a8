"""Backdoor learning curves: monotone where theory says so, ρ/ν at β = 0, the plot data, and the
whole path through Ray, the store, SQL and the `curves` CLI command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.curves import curves_info, render_curves
from backdoor_sweep.errors import SweepError
from tests.conftest import cli
from trainables.learners import make_learner
from trainables.measures.curves import DEFAULT_BETAS, learning_curve, nu, rho

LEARNERS = [
    {"learner": "ridge", "C": 1.0},
    {"learner": "logistic", "C": 1.0},
    {"learner": "svm_linear", "C": 1.0},
    {"learner": "svm_rbf", "C": 1.0, "gamma": 0.1},
]
IDS = [c["learner"] for c in LEARNERS]


def separable_problem(seed: int = 0, n: int = 60, n_poison: int = 8, n_test: int = 30):
    """Two clean classes 6 units apart on the first axis (linearly separable); the trigger sets the
    last feature to 3; poison = triggered class-0 samples labelled 1 (the target)."""
    rng = np.random.default_rng(seed)

    def sample(m):
        y = np.arange(m) % 2
        X = np.column_stack(
            [6.0 * y - 3.0 + 0.5 * rng.normal(size=m), rng.normal(size=(m, 2)), np.zeros(m)]
        )
        return X, y

    X, y = sample(n)
    poison = rng.choice(np.flatnonzero(y == 0), size=n_poison, replace=False)
    X[poison, -1] = 3.0
    y[poison] = 1
    is_poison = np.zeros(n, dtype=bool)
    is_poison[poison] = True
    X_test, y_test = sample(n_test)
    X_bt = X_test.copy()
    X_bt[:, -1] = 3.0
    return X, y, is_poison, X_test, y_test, X_bt


def curve(config, X, y, is_poison, X_test, y_test, X_bt, betas=DEFAULT_BETAS):
    return learning_curve(
        lambda: make_learner(config, random_state=0),
        X,
        y,
        is_poison,
        X_test,
        y_test,
        X_bt,
        target=1,
        betas=betas,
    )


@pytest.mark.parametrize("config", LEARNERS, ids=IDS)
def test_poison_loss_falls_as_beta_grows(config):
    """For w(β) = argmin J₀ + β·L_P, optimality at β₁ < β₂ gives (β₂ − β₁)(L_P(w₂) − L_P(w₁)) ≤ 0:
    the loss on the poisoned samples never rises with β, for every learner. Measured with TS+BT =
    the triggered, relabelled training samples themselves (the solver's precision is the slack)."""
    X, y, is_poison, X_test, y_test, _ = separable_problem()
    c = curve(config, X, y, is_poison, X_test, y_test, X[is_poison])
    loss = np.array([r["loss_backdoor"] for r in c.rows])
    assert np.all(np.diff(loss) <= 1e-6), loss
    assert loss[-1] < loss[0] - 0.1


@pytest.mark.parametrize("config", LEARNERS[1:], ids=IDS[1:])
def test_triggered_test_loss_falls_for_margin_losses(config):
    """On fresh triggered test samples the margin losses (logistic, hinge) fall with β as well; the
    squared loss of ridge is left out: it rises again once f(x) overshoots the ±1 target."""
    X, y, is_poison, X_test, y_test, X_bt = separable_problem()
    c = curve(config, X, y, is_poison, X_test, y_test, X_bt)
    loss = np.array([r["loss_backdoor"] for r in c.rows])
    assert np.all(np.diff(loss) <= 1e-6), loss
    assert loss[-1] < loss[0]
    assert c.rows[-1]["acc_backdoor"] >= c.rows[0]["acc_backdoor"]


@pytest.mark.parametrize("config", LEARNERS, ids=IDS)
def test_rho_at_zero_is_the_clean_models_norm_and_nu_is_zero(config):
    X, y, is_poison, X_test, y_test, X_bt = separable_problem(1)
    c = curve(config, X, y, is_poison, X_test, y_test, X_bt, betas=[0.0, 0.01, 1.0])
    clean = make_learner(config).fit(X[~is_poison], y[~is_poison])  # independent clean fit
    if config["learner"] == "svm_rbf":
        from sklearn.metrics.pairwise import rbf_kernel

        a, sv = clean.model_.dual_coef_.ravel(), clean.model_.support_vectors_
        norm = np.sqrt(a @ rbf_kernel(sv, sv, gamma=config["gamma"]) @ a)
    else:
        norm = np.linalg.norm(np.ravel(clean.model_.coef_))
    # the β = 0 fit runs at the finite difference's tighter solver tolerance for SVMs
    assert c.rows[0]["rho"] == pytest.approx(norm, rel=1e-5)
    assert c.rows[0]["nu"] == 0.0
    assert [r["beta"] for r in c.rows] == [0.0, 0.01, 1.0]
    assert c.rows[-1]["nu"] > 0 and all(0.0 <= r["nu"] <= 1.0 for r in c.rows)
    summary = c.summary()
    assert summary["rho_final"] == c.rows[-1]["rho"] and summary["nu_final"] == c.rows[-1]["nu"]


def test_nu_is_half_one_minus_cosine():
    class W:
        def __init__(self, w):
            self.w = np.asarray(w, dtype=float)
            self.classes_ = np.array([0, 1])

        def weight_vector(self):
            return self.w

    assert rho(W([3.0, 4.0])) == 5.0
    from trainables.measures.curves import Weights

    a, b, c = Weights.of(W([1.0, 0.0])), Weights.of(W([0.0, 2.0])), Weights.of(W([-1.0, 0.0]))
    assert nu(a, b, 1.0, 2.0) == pytest.approx(0.5)
    assert nu(a, c, 1.0, 1.0) == pytest.approx(1.0)
    assert nu(a, a, 1.0, 1.0) == pytest.approx(0.0)


def test_default_betas():
    assert DEFAULT_BETAS[0] == 0.0 and DEFAULT_BETAS[-1] == 1.0 and len(DEFAULT_BETAS) == 13
    assert list(DEFAULT_BETAS) == sorted(set(DEFAULT_BETAS))


# -- the plot data ---------------------------------------------------------------------------
def frames():
    """Two configurations x two poison rates x two seeds, curves at β = 0, 0.5, 1."""
    trials, curves = [], []
    for C in (0.1, 10.0):
        for rate in (0.0, 0.1):
            for seed in (0, 1):
                rid = f"{C}-{rate}-{seed}"
                trials.append(
                    {
                        "result_id": rid,
                        "status": "ok",
                        "learner": "svm_rbf",
                        "C": C,
                        "gamma": 0.01,
                        "poison_rate": rate,
                        "trigger_size": 2,
                        "seed": seed,
                        "clean_acc": 1.0,
                        "asr": rate,
                    }
                )
                for beta in (0.0, 0.5, 1.0):
                    curves.append(
                        {
                            "result_id": rid,
                            "beta": beta,
                            "loss_clean": 0.1 + seed,
                            "loss_backdoor": 1.0 - rate * beta * C - seed,
                            "acc_clean": 1.0,
                            "acc_backdoor": 0.5,
                            "rho": 1.0,
                            "nu": 0.0,
                        }
                    )
    return pd.DataFrame(trials), pd.DataFrame(curves)


def test_curves_info_averages_seeds_per_panel_and_colour():
    trials, curves = frames()
    info = curves_info(trials, curves)
    assert info.panel_by == ["C"] and info.colour_values == [0.0, 0.1]
    assert [p.config for p in info.panels] == [{"C": 0.1}, {"C": 10.0}]
    line = info.panels[1].lines[1]  # C = 10, poison rate 0.1
    np.testing.assert_allclose(line.beta, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(
        line.loss_backdoor, [0.5, 0.5 - 0.5, 0.5 - 1.0]
    )  # seeds 0, 1 averaged
    np.testing.assert_allclose(line.loss_clean, [0.6, 0.6, 0.6])
    assert list(line.n) == [2, 2, 2]
    # a --where keeps only its results
    info = curves_info(trials[trials["C"] == 0.1], curves, panel_by=["C", "gamma"])
    assert [p.title for p in info.panels] == ["C=0.1, gamma=0.01"]


def test_curves_info_errors_name_the_problem():
    trials, curves = frames()
    with pytest.raises(SweepError, match="no learning curves"):
        curves_info(trials, curves.iloc[0:0])
    with pytest.raises(SweepError, match="got 'nope'"):
        curves_info(trials, curves, colour_by="nope")
    with pytest.raises(SweepError, match="no successful results"):
        curves_info(trials.iloc[0:0], curves)


def test_render_curves_dashes_ts_and_solid_ts_bt():
    trials, curves = frames()
    fig = render_curves(curves_info(trials, curves))
    data = [t for t in fig.data if t.x is not None and t.x[0] is not None]
    assert len(data) == 2 * 2 * 2  # panels x poison rates x (TS, TS+BT)
    assert {t.line.dash for t in data} == {"dash", "solid"}
    assert len({t.line.color for t in data}) == 2  # one colour per poison rate
    assert min(min(t.x) for t in data) > 0  # β = 0 is drawn on the log axis (labelled 0)


# -- through Ray, the store, SQL and the CLI ----------------------------------------------
TINY_SPEC = {
    "name": "curves_e2e",
    "dataset": {"name": "digits", "classes": [7, 1]},
    "learner": {"name": "svm_rbf", "gamma": 0.01},
    "attack": {"trigger": "patch", "trigger_size": 2, "poisoning": "dirty_label", "target": 1},
    "grid": {"C": [0.1, 10], "poison_rate": [0, 0.1]},
    "seeds": [0],
    "curves": {"enabled": True, "betas": [0, 0.01, 0.1, 1]},
}


@pytest.fixture(scope="module")
def curves_store(tmp_path_factory, ray_runtime):
    from sweep.launcher import run_sweep
    from sweep.spec import parse_spec
    from sweep.store import Store

    root = tmp_path_factory.mktemp("curves_store")
    spec = parse_spec({**TINY_SPEC, "store": str(root)})
    outcome = run_sweep(spec, show_progress=False)
    assert outcome.n_ok == 4 and outcome.n_error == 0
    return Store(root)


@pytest.mark.slow
def test_sweep_with_curves_writes_both_tables(curves_store):
    from sweep.query import run_query

    rows = run_query(
        curves_store,
        "select c.*, t.C, t.poison_rate, t.slope, t.slope_fd, t.slope_note "
        "from curves c join trials t using (result_id) order by t.C, t.poison_rate, c.beta",
    )
    assert len(rows) == 4 * 4
    assert (
        rows.groupby("result_id")["beta"]
        .apply(list)
        .map(lambda b: b == [0.0, 0.01, 0.1, 1.0])
        .all()
    )
    for col in ("loss_clean", "loss_backdoor", "acc_clean", "acc_backdoor", "rho", "nu"):
        assert rows[col].notna().all(), col
    trials = run_query(curves_store, "select * from trials order by C, poison_rate")
    for col in ("slope", "slope_fd", "slope_note", "rho_final", "nu_final"):
        assert col in trials.columns, col
    poisoned = trials[trials["poison_rate"] > 0]
    assert poisoned["slope_fd"].between(-1, 1).all()
    # each analytic slope exists or says why not; where both exist they agree
    both = poisoned[poisoned["slope"].notna()]
    assert (poisoned["slope"].notna() | (poisoned["slope_note"].str.len() > 0)).all()
    assert ((both["slope"] - both["slope_fd"]).abs() <= 1e-3).all()
    clean = trials[trials["poison_rate"] == 0]
    assert (clean["slope"] == 0).all() and (clean["slope_fd"] == 0).all()
    # ρ_final is ρ at the last β of the curve
    last = rows[rows["beta"] == 1.0].set_index("result_id")["rho"]
    np.testing.assert_allclose(trials.set_index("result_id").loc[last.index, "rho_final"], last)


@pytest.mark.slow
def test_curves_and_slope_heatmap_commands(curves_store, cli_env, tmp_path):
    out = tmp_path / "curves.html"
    res = cli(
        "curves",
        "--store",
        str(curves_store.root),
        "--where",
        "C in (0.1, 10)",
        "--out",
        str(out),
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    assert "2 panel(s), 2 poison_rate value(s)" in res.stdout
    html = out.read_text()
    assert "plotly" in html and "loss on TS+BT" in html
    res = cli(
        "curves",
        "--store",
        str(curves_store.root),
        "--where",
        "C == 10",
        "--out",
        str(out),
        env=cli_env,
    )
    assert res.returncode == 0 and "1 panel(s)" in res.stdout
    res = cli(
        "heatmap",
        "--store",
        str(curves_store.root),
        "--metric",
        "slope",
        "--x",
        "C",
        "--y",
        "poison_rate",
        "--facet",
        "none",
        "--out",
        str(tmp_path / "slope.html"),
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    res = cli(
        "curves",
        "--store",
        str(curves_store.root),
        "--where",
        "C == 3",
        "--out",
        str(out),
        env=cli_env,
    )
    assert (
        res.returncode == 2
        and res.stderr.startswith("error: ")
        and len(res.stderr.strip().splitlines()) == 1
    )


@pytest.mark.slow
def test_summary_prints_slope_correlation_and_choice(curves_store):
    import io

    from analysis.load import load
    from backdoor_sweep.summary import print_slope_summary

    buf = io.StringIO()
    print_slope_summary(load(curves_store, "curves_e2e"), ["C", "poison_rate"], buf)
    text = buf.getvalue()
    assert "Spearman(slope, ASR) at poison_rate=0.1:" in text
    assert "poison_rate=0:" not in text  # no poison, no slope to correlate
    assert "robust choice by slope" in text and "C=" in text


# -- what a curve costs, and a slope screen's one-fit probe ----------------------------------
@pytest.mark.parametrize("config", LEARNERS, ids=IDS)
def test_a_curve_counts_its_fits_and_the_beta_zero_fit_alone_gives_the_same_slope(config):
    problem = separable_problem()
    full = curve(config, *problem, betas=(0.0, 0.1, 1.0))
    one_sided = "one-sided" in (full.slope_fd.note or "")
    # β = 0, the two positive β, and the cross-check's one refit (two for the one-sided chord)
    assert full.fits == 1 + 2 + (2 if one_sided else 1)
    alone = learning_curve(
        lambda: make_learner(config, random_state=0),
        *problem[:-1],
        problem[-1],
        target=1,
        betas=(0.0,),
        cross_check=False,
    )
    assert alone.fits == 1 and [r["beta"] for r in alone.rows] == [0.0]
    assert alone.slope.value == pytest.approx(full.slope.value, rel=1e-9)
    assert alone.slope_fd.value is None and "cross-check off" in alone.summary()["slope_note"]
    assert alone.model0 is not None


def test_a_screens_probe_result_is_the_beta_zero_fit_of_the_probes_training_set(digits_data):
    from trainables.trial import run_result

    base = {
        "dataset": "digits",
        "learner": "svm_rbf",
        "C": 1.0,
        "gamma": 0.01,
        "trigger": "patch",
        "trigger_size": 3,
        "pattern": "random",
        "corner": "bottom_right",
        "poisoning": "dirty_label",
        "poison_rate": 0.1,
        "target": 1,
        "seed": 0,
    }
    probe = run_result(
        {**base, "curves": {"enabled": True, "betas": [0.0], "cross_check": False, "probe": True}},
        digits_data,
    )
    full = run_result({**base, "curves": {"enabled": True, "betas": [0.0, 1.0]}}, digits_data)
    assert probe.row["n_fits"] == 1 and full.row["n_fits"] >= 3
    # the same β = 0 model: its slope, and the curve's β = 0 point is the probe's accuracy
    assert probe.row["slope"] == pytest.approx(full.row["slope"], rel=1e-9)
    assert probe.row["clean_acc"] == pytest.approx(full.curves[0]["acc_clean"])
    assert probe.row["asr"] <= full.row["asr"]  # trained without the poison
    assert probe.row["n_poison"] == full.row["n_poison"] > 0
    assert probe.row["n_train"] == full.row["n_train"] - full.row["n_poison"]
