"""Explain one stored result: rebuild its models exactly, then compute what to show.

``rebuild`` takes a row of the trials table, finds its configuration in the plan of the sweep's
spec (``sweep.json``), reloads the dataset and re-runs the result through
`trainables.trial.prepare_result` and the result's defence — the same seeded code path as the sweep,
so the rebuilt model reproduces the stored metrics (checked and shown). Beside it, the clean
model: the same learner fitted at β = 0 (clean rows only, no defence, as the learning curves do).

``explain_info`` then returns plain data (computed first, drawn second — `analysis.explain_page`):
input-gradient maps of both models on one clean test sample and on its triggered version, the
share of each map on the trigger's pixels, the k most influential training samples of both test
inputs for the poisoned model (`trainables.measures.influence`), the result's ``influential_poison_frac``,
and, for networks, the training dynamics recorded while rebuilding (`trainables.measures.dynamics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.store import Store
from trainables.data.datasets import Dataset

#: the explanation's sample of triggered test inputs for influential_poison_frac (as in sweeps)
DEFAULT_INFLUENCE_SAMPLES = 100


@dataclass
class Rebuilt:
    """One result rebuilt: its configuration, data, prepared result and both fitted models."""

    sweep: str
    row: dict
    config: dict
    data: Dataset
    result: object  # trainables.trial.PreparedResult, its learner fitted through the defence
    clean: object  # the learner fitted at β = 0
    dynamics: list[dict] = field(default_factory=list)
    reproduced: dict = field(default_factory=dict)  # metric -> (stored, rebuilt)
    axes: list[str] = field(default_factory=list)  # the sweep's grid axes (for titles)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
        except (TypeError, ValueError):
            return False
    return a == b or str(a) == str(b)


def _unrecorded(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def find_result(spec, row: dict) -> dict:
    """The plan's configuration of ``row``: by result id, else the result whose grid axes, seed and
    every other value the row records are equal (a store written by other means)."""
    from sweep.searching import plan_of_row

    results = [u for p in plan_of_row(spec, row) for u in p.results]
    for u in results:
        if u["result_id"] == row.get("result_id"):
            return u
    needed = [*spec.grid, "seed"]
    if all(k in row for k in needed):
        for u in results:
            # a value the row does not record (null: a store written by other means) says nothing
            keys = [
                k
                for k in u
                if k in row and k not in ("result_id", "curves") and not _unrecorded(row[k])
            ]
            if all(_same(row[k], u[k]) for k in keys):
                return u
    raise SweepError(
        f"result {row.get('result_id')!r} is not in the plan of the spec of sweep {spec.name!r}, "
        "so it cannot be rebuilt"
    )


def pick_rows(df: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Successful rows of one seed: ``seed`` if given, else the first seed of the matched rows."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        return ok
    s = min(ok["seed"]) if seed is None else seed
    return ok[ok["seed"] == s]


def rebuild(store: Store, sweep: str, row: dict) -> Rebuilt:
    """Re-run the result of ``row`` (poisoning, defence, fit) and fit its β = 0 model."""
    from threadpoolctl import threadpool_limits

    from sweep.spec import parse_spec
    from trainables.attacks.generator_cache import cache_root
    from trainables.data.datasets import load_dataset
    from trainables.learners import make_learner
    from trainables.measures.dynamics import watch_dynamics
    from trainables.trial import prepare_result

    meta = store.read_meta(sweep)
    spec = parse_spec(meta["spec"], source=f"{store.sweep_dir(sweep)}/sweep.json")
    config = find_result(spec, row)
    data = load_dataset(spec.dataset)
    cpus = max(1, int(spec.execution.cpus_per_trial))  # the sweep's threads: identical networks
    # the sweep's cached generators (gan_interpolation), so the rebuilt poisons are the stored ones
    with threadpool_limits(limits=cpus), cache_root(store.cache_dir):
        _torch_threads(config, cpus)
        result = prepare_result(config, data)
        # result.data: the training split the sweep used (smaller when it held out validation)
        recorder = watch_dynamics(config, result.learner, result.poisoned, result.data)
        result.train()
        p = result.poisoned
        clean = make_learner(config, random_state=result.seed).fit_beta(p.X, p.y, p.is_poison, 0.0)
    from trainables.measures.metrics import attack_metrics

    now = attack_metrics(
        data.y_test,
        result.learner.predict(data.X_test),
        result.learner.predict(result.X_bt),
        result.target,
    )
    reproduced = {m: (row.get(m), now[m]) for m in ("clean_acc", "asr") if m in row}
    return Rebuilt(
        sweep,
        row,
        config,
        data,
        result,
        clean,
        recorder.rows if recorder else [],
        reproduced,
        list(spec.grid),
    )


def _torch_threads(config: dict, cpus: int) -> None:
    from trainables.learners import LEARNERS

    if getattr(LEARNERS.get(config["learner"]), "kind", "") == "torch":
        import torch

        torch.set_num_threads(cpus)


# -- what to show ----------------------------------------------------------------------------
@dataclass
class Influential:
    """The top-k training samples of one test input: rows, effects, poisoned flags, images, labels."""

    title: str
    rows: np.ndarray
    effects: np.ndarray
    is_poison: np.ndarray
    images: np.ndarray
    labels: list[str]


@dataclass
class ExplainInfo:
    """Plain data of one explanation (see the module docstring)."""

    title: str
    facts: list[tuple[str, str]]
    inputs: dict[str, np.ndarray]  # "clean", "triggered" -> image
    maps: dict[tuple[str, str], np.ndarray]  # (model, input) -> |∇| map (H, W)
    shares: dict[tuple[str, str], float]  # (model, input) -> share of the map on the trigger
    trigger_mask: np.ndarray
    influential: list[Influential]
    influential_poison_frac: float
    k: int
    dynamics: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_sample(data: Dataset, target: int) -> int:
    """The first test sample whose label is not the target (so its triggered version is an attack)."""
    rows = np.flatnonzero(np.asarray(data.y_test) != target)
    return int(rows[0]) if len(rows) else 0


def explain_info(rb: Rebuilt, sample: int | None = None, k: int = 10) -> ExplainInfo:
    """Gradient maps, top-k influential training samples and dynamics of a rebuilt result."""
    from trainables.measures.gradients import gradient_map, input_gradient, trigger_share
    from trainables.measures.influence import (
        influence_for_result,
        influence_model,
        removal_effects,
        top_k,
    )

    data, result = rb.data, rb.result
    n_test = len(data.y_test)
    if k < 1:
        raise SweepError(f"--k must be at least 1; got {k}")
    i = default_sample(data, result.target) if sample is None else int(sample)
    if not 0 <= i < n_test:
        raise SweepError(f"--test-index must be a test sample index in [0, {n_test}); got {sample}")
    inputs = {"clean": data.X_test[i], "triggered": result.X_bt[i]}
    mask = result.trigger.mask()
    notes: list[str] = []
    maps, shares = {}, {}
    X = np.stack([inputs["clean"], inputs["triggered"]])
    for model_name, model in (
        ("clean model (β = 0)", rb.clean),
        ("poisoned model", result.learner),
    ):
        try:
            grads = input_gradient(model, X, target=result.target)
        except ValueError as err:
            notes.append(f"no gradient map of the {model_name}: {err}")
            continue
        for j, m in enumerate(gradient_map(grads)):
            key = (model_name, ("clean", "triggered")[j])
            maps[key] = m
            shares[key] = float(trigger_share(m[None], mask)[0])

    p = result.poisoned
    true_label = data.y_test[i]
    names = [str(c) for c in data.classes]
    influential: list[Influential] = []
    try:
        model = influence_model(rb.config, result.learner, p)
        probe = np.stack([inputs["triggered"], inputs["clean"]])
        inf = removal_effects(model, p.X, p.y, probe, np.array([result.target, true_label]))
    except ValueError as err:
        inf = None
        notes.append(f"no influence: {err}")
    if inf is not None:
        notes.append(f"influence: {inf.method}" + (f"; {inf.note}" if inf.note else ""))
        scored = (names[result.target], names[true_label])
        for t, what in enumerate(("triggered", "clean")):
            top = top_k(inf.effects[t], k)
            influential.append(
                Influential(
                    f"{what} test sample {i}, scored as {scored[t]!r}",
                    top,
                    inf.effects[t][top],
                    p.is_poison[top],
                    p.X[top],
                    [names[c] for c in p.y[top]],
                )
            )
    cfg = {**rb.config, "influence_k": k}
    cfg.setdefault("influence_samples", DEFAULT_INFLUENCE_SAMPLES)
    frac = (
        influence_for_result(cfg, result.learner, p, data, result.X_bt, result.target)
        if inf is not None
        else {"influential_poison_frac": float("nan")}
    )
    for metric, (stored, now) in rb.reproduced.items():
        if stored is not None and not np.isclose(float(stored), float(now), atol=1e-9):
            notes.append(f"the rebuilt model's {metric} is {now:.4f}; the store says {stored:.4f}")
    return ExplainInfo(
        title=_title(rb),
        facts=_facts(rb, i, true_label, names, frac["influential_poison_frac"], k, cfg),
        inputs=inputs,
        maps=maps,
        shares=shares,
        trigger_mask=mask,
        influential=influential,
        influential_poison_frac=frac["influential_poison_frac"],
        k=k,
        dynamics=rb.dynamics,
        notes=notes,
    )


def configuration_text(config: dict, keys: list[str]) -> str:
    """``key=value`` pairs of ``config`` for ``keys``, floats with %g."""
    return ", ".join(
        f"{k}={config[k]:g}" if isinstance(config[k], float) else f"{k}={config[k]}"
        for k in keys
        if k in config
    )


def _title(rb: Rebuilt) -> str:
    return (
        f"{rb.sweep}: {rb.config['learner']} {configuration_text(rb.config, rb.axes)}, "
        f"seed {rb.config['seed']}"
    )


def _facts(rb: Rebuilt, i, true_label, names, frac, k, cfg) -> list[tuple[str, str]]:
    p = rb.result.poisoned
    out = [
        ("result", str(rb.config["result_id"])),
        ("training set", f"{len(p.y)} samples, {p.n_poison} poisoned"),
        (
            "test sample",
            f"#{i}, true label {names[true_label]!r}; target {names[rb.result.target]!r}",
        ),
    ]
    for metric, (stored, now) in rb.reproduced.items():
        out.append(
            (
                metric,
                f"{now:.3f} (rebuilt; stored {stored:.3f})" if stored is not None else f"{now:.3f}",
            )
        )
    out.append(
        (
            "influential_poison_frac",
            f"{frac:.3f}: share of poisoned samples among the top-{k} of the first "
            f"{cfg['influence_samples']} triggered non-target test samples "
            f"(the training set is {p.n_poison / max(len(p.y), 1):.1%} poisoned)",
        )
    )
    return out


def attack_strength(df: pd.DataFrame) -> pd.DataFrame:
    """Each attack setting swept (values of the attack axes) with its mean ASR over the whole
    sweep's poisoned results, strongest first; empty without attack axes or ASR."""
    from analysis.select import attack_axes

    ok = df[df["status"] == "ok"] if "status" in df else df
    if "n_poison" in ok:
        ok = ok[pd.to_numeric(ok["n_poison"], errors="coerce") > 0]
    axes = attack_axes(df)
    if not axes or "asr" not in ok or ok.empty:
        return pd.DataFrame(columns=[*axes, "strength"])
    out = ok.groupby(axes, dropna=False)["asr"].mean().rename("strength").reset_index()
    return out.sort_values("strength", ascending=False, kind="mergesort").reset_index(drop=True)


def strongest_first(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with poison, ordered by the strength of their attack setting in ``df`` (the whole
    sweep), strongest first; unpoisoned rows (poison rate 0) only when nothing else matched."""
    if "n_poison" in rows:
        attacked = rows[pd.to_numeric(rows["n_poison"], errors="coerce") > 0]
        rows = attacked if not attacked.empty else rows
    strength = attack_strength(df)
    axes = [c for c in strength.columns if c != "strength"]
    if strength.empty or rows.empty:
        return rows
    ranked = rows.reset_index(drop=True).merge(strength, on=axes, how="left")
    ranked["strength"] = ranked["strength"].fillna(-1.0)
    return ranked.sort_values("strength", ascending=False, kind="mergesort").drop(
        columns="strength"
    )


def representative_rows(df: pd.DataFrame, choice: dict) -> pd.DataFrame:
    """Rows of configuration ``choice`` under the strongest attack swept, first seed.

    The strongest attack: the setting of the attack axes with the highest mean ASR over the whole
    sweep (rows with poison only), so the recommended and the most vulnerable configuration are
    explained under the same attack.
    """
    ok = df[df["status"] == "ok"] if "status" in df else df
    if "n_poison" in ok:
        ok = ok[ok["n_poison"] > 0]
    rows = ok
    for a, v in choice.items():
        rows = rows[rows[a] == v]
    strength = attack_strength(df)
    if not strength.empty and not rows.empty:
        for a in (c for c in strength.columns if c != "strength"):
            rows = rows[rows[a] == strength.iloc[0][a]]
    return pick_rows(rows)


def default_rows(df: pd.DataFrame, clean_tolerance: float = 0.01) -> tuple[pd.DataFrame, list[str]]:
    """What `explain` shows without ``--where``: the report's two picks — the recommended
    configuration (`analysis.verdict`) and the most vulnerable accurate one — each under the
    strongest attack swept, first seed. Returns the rows and a label for each."""
    from analysis.verdict import most_vulnerable, verdict_info

    verdict = verdict_info(df, clean_tolerance)
    picks = [("recommended", verdict.recommended.choice)]
    worst = most_vulnerable(verdict.selections["asr"])
    if worst is not None and worst != verdict.recommended.choice:
        picks.append(("most vulnerable accurate configuration", worst))
    frames, labels = [], []
    for label, choice in picks:
        rows = representative_rows(df, choice)
        if not rows.empty:
            frames.append(rows.head(1))
            labels.append(label)
    if not frames:
        raise SweepError("no successful poisoned result to explain in this sweep")
    return pd.concat(frames, ignore_index=True), labels
