"""What a search costs against the full grid, and whether it reaches the same robust choice.

For each problem (a preset with a grid of learner hyperparameters), in one process on one
in-process Ray runtime (started once; its ≈ 3 s start-up is in no figure):

- ``grid``: the preset as written — the reference. Its robust choice (lowest worst-case ASR
  among configurations within 0.01 of the best clean accuracy, `analysis.select`) and that
  choice's 95 % interval over seeds;
- ``random``: ``search.algorithm: random`` over log ranges spanning the grid's values, a budget
  of configurations (default a quarter of the grid's), one run per search seed;
- ``optuna``: ``search.algorithm: optuna`` (NSGA-II on clean_acc max, worst_asr min), the same
  ranges and budget, ``max_concurrent: 2``, one run per search seed;
- ``screen``: ``search.strategy: slope_screen`` (keep 3) on the grid itself — deterministic, so
  the repeats differ in wall time only;
- ``screen_random``: the same screen over as many random configurations as the grid has, drawn
  from the ranges, one run per search seed.

Per run and per objective (``worst_asr``, the one searches minimise; ``asr``, the mean over the
attacked settings, `select`'s default): results used, learner trainings (``fits``: the stored
``n_fits`` summed — a result's own fit plus its learning curve's and slope cross-check's; a
screen's stage-one result is one fit), wall time (`run_sweep`'s), the
chosen configuration, its objective and clean accuracy (seed means), whether it lies inside the
grid choice's 95 % interval of that objective (``inside``), at or below its top (``as_good``:
lower is no worse), within 0.01 of the grid's best clean accuracy (``accurate``), and whether it
is the grid's own choice (``same``; only a strategy over the grid's values can be).

    .venv/bin/python bench/search_cost.py                          # digits, 3 seeds per strategy
    .venv/bin/python bench/search_cost.py --problems digits_svm_rbf,mnist_sample_svm_rbf
    .venv/bin/python bench/search_cost.py --smoke                  # the presets' --smoke grids
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.select import select_robust  # noqa: E402
from sweep.cluster import init_ray  # noqa: E402
from sweep.launcher import run_sweep  # noqa: E402
from sweep.plan import outer_axes  # noqa: E402
from sweep.spec import PRESETS_DIR, Spec, load_spec, parse_spec  # noqa: E402
from sweep.store import Store  # noqa: E402

OBJECTIVES = ("worst_asr", "asr")
OBJECTIVE = OBJECTIVES[0]  # what random and Optuna search minimise
TOLERANCE = 0.01


def variants(spec: Spec, budget: float, seeds: list[int]) -> list[tuple[str, int | None, Spec]]:
    """(strategy, search seed, spec) for every run after the grid's."""
    n_configs = math.prod(len(spec.grid[a]) for a in outer_axes(spec))
    n_budget = max(2, round(budget * n_configs))
    ranges = {
        a: {"loguniform": [min(spec.grid[a]), max(spec.grid[a])]}
        for a in outer_axes(spec)
        if all(isinstance(v, (int, float)) and v > 0 for v in spec.grid[a])
    }
    out = [("screen", None, _variant(spec, "screen", {}, {"strategy": "slope_screen", "keep": 3}))]
    for seed in seeds:
        for name, search in (
            ("random", {"algorithm": "random", "num_samples": n_budget}),
            (
                "optuna",
                {
                    "algorithm": "optuna",
                    "num_samples": n_budget,
                    "max_concurrent": 2,
                    "objectives": [
                        {"metric": "clean_acc", "mode": "max"},
                        {"metric": OBJECTIVE, "mode": "min"},
                    ],
                },
            ),
            (
                "screen_random",
                {
                    "algorithm": "random",
                    "num_samples": n_configs,
                    "strategy": "slope_screen",
                    "keep": 3,
                },
            ),
        ):
            out.append(
                (name, seed, _variant(spec, f"{name}-{seed}", ranges, {**search, "seed": seed}))
            )
    for seed in seeds[1:]:  # the grid screen is deterministic: repeats measure wall time only
        out.append(
            (
                "screen",
                None,
                _variant(spec, f"screen-again-{seed}", {}, out[0][2].search.model_dump()),
            )
        )
    return out


def _variant(spec: Spec, tag: str, ranges: dict, search: dict) -> Spec:
    data = spec.model_dump(mode="json")
    data["name"] = f"{spec.name}-{tag}"
    data["grid"].update(ranges)
    data["search"] = search
    return parse_spec(data)


def measure(spec: Spec, store: Path) -> dict:
    spec = spec.model_copy(update={"store": str(store)})
    outcome = run_sweep(spec, show_progress=False, overwrite=True)
    df = Store(store).read_table("trials", spec.name)
    run: dict = {
        "results": int(len(df)),
        # learner trainings: a result's fit plus its learning curve's and slope cross-check's
        "fits": int(df["n_fits"].sum()),
        "wall_s": round(outcome.wall_seconds, 1),
    }
    for objective in OBJECTIVES:
        sel = select_robust(df, clean_tolerance=TOLERANCE, objective=objective)
        run[objective] = {
            "choice": sel.choice,
            "value": sel.metrics[objective],
            "clean_acc": sel.metrics["clean_acc"],
            "best_clean": float(sel.table["clean_acc"].max()),
            "configurations": int(len(sel.table)),
        }
    return run


def judge(run: dict, ref: dict) -> None:
    """Add, per objective, how the run's choice compares with the grid's (see the docstring)."""
    run["fraction"] = round(run["results"] / ref["results"], 3)
    run["fits_fraction"] = round(run["fits"] / ref["fits"], 3)
    for objective in OBJECTIVES:
        mine, theirs = run[objective], ref[objective]
        v = theirs["value"]
        lo = v["mean"] if v["ci_low"] is None else v["ci_low"]
        hi = v["mean"] if v["ci_high"] is None else v["ci_high"]
        mean = mine["value"]["mean"]
        mine.update(
            inside=bool(lo - 1e-12 <= mean <= hi + 1e-12),
            as_good=bool(mean <= hi + 1e-12),
            accurate=bool(mine["clean_acc"]["mean"] >= theirs["best_clean"] - TOLERANCE - 1e-12),
            same=mine["choice"] == theirs["choice"],
            regret=round(mean - v["mean"], 4),
        )


def fmt_choice(choice: dict) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in choice.items()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="digits_svm_rbf", help="comma-separated preset names")
    ap.add_argument("--repeats", type=int, default=3, help="search seeds per strategy")
    ap.add_argument(
        "--budget",
        type=float,
        default=0.25,
        help="random/optuna: share of the grid's configurations",
    )
    ap.add_argument("--smoke", action="store_true", help="the presets' --smoke grids")
    ap.add_argument("--out", type=Path, default=None, help="write every run as JSON here")
    ap.add_argument(
        "--store", type=Path, default=None, help="keep the stores here (default: temporary)"
    )
    args = ap.parse_args()
    init_ray(None, num_cpus=os.cpu_count())
    seeds = list(range(args.repeats))
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="search-cost-") as tmp:
        for problem in [p.strip() for p in args.problems.split(",") if p.strip()]:
            path = PRESETS_DIR / f"{problem}.yaml"
            if not path.is_file():
                print(f"{problem}: no such preset in {PRESETS_DIR}; skipped", flush=True)
                continue
            spec = load_spec(path)
            spec = spec.smoke() if args.smoke else spec
            t0 = time.perf_counter()
            root = (args.store or Path(tmp)) / problem
            ref = measure(spec, root)
            ref.update(strategy="grid", seed=None)
            rows = [ref]
            print(
                f"\n{problem}: grid {ref['results']} results, {ref['fits']} fits, "
                f"{ref['wall_s']} s",
                flush=True,
            )
            for objective in OBJECTIVES:
                r = ref[objective]
                print(
                    f"  by {objective}: {fmt_choice(r['choice'])}: {r['value']['mean']:.3f} "
                    f"(95% CI {_f(r['value']['ci_low'])}–{_f(r['value']['ci_high'])}), "
                    f"clean {r['clean_acc']['mean']:.3f}",
                    flush=True,
                )
            for strategy, seed, variant in variants(spec, args.budget, seeds):
                run = measure(variant, root)
                run.update(strategy=strategy, seed=seed)
                judge(run, ref)
                rows.append(run)
                print(_line(run), flush=True)
                if args.out:  # after every run: an interrupted benchmark keeps what it measured
                    args.out.write_text(
                        json.dumps({**report, problem: rows}, indent=1, default=str)
                    )
            report[problem] = rows
            print(f"{problem}: {time.perf_counter() - t0:.0f} s in all", flush=True)
    print("\n" + table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _line(run: dict) -> str:
    seed = "" if run["seed"] is None else f" seed {run['seed']}"
    parts = []
    for objective in OBJECTIVES:
        r = run[objective]
        parts.append(
            f"by {objective} {fmt_choice(r['choice'])}: {r['value']['mean']:.3f}, clean "
            f"{r['clean_acc']['mean']:.3f} (inside {r['inside']}, as good {r['as_good']}, "
            f"accurate {r['accurate']}, same {r['same']})"
        )
    return (
        f"  {run['strategy']}{seed}: {run['results']} results ({100 * run['fraction']:.0f}%), "
        f"{run['fits']} fits ({100 * run['fits_fraction']:.1f}%), {run['wall_s']} s; "
        + "; ".join(parts)
    )


def table(report: dict) -> str:
    """Markdown: per problem, objective and strategy, every run's value and the counts."""
    lines = [
        "| problem | objective | strategy | runs | results (share) | fits (share) | "
        "wall s (median) | "
        "objective of the choice | its clean_acc | inside CI | ≤ CI top | accurate | "
        "grid's choice |",
        "|---|---|---|---:|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for problem, rows in report.items():
        by: dict[str, list[dict]] = {}
        for r in rows:
            by.setdefault(r["strategy"], []).append(r)
        ref = by["grid"][0]
        for objective in OBJECTIVES:
            for strategy, runs in by.items():
                res = sorted({r["results"] for r in runs})
                share = ", ".join(f"{n} ({100 * n / ref['results']:.0f}%)" for n in res)
                fits = sorted({r["fits"] for r in runs})
                fit_share = ", ".join(f"{n} ({100 * n / ref['fits']:.1f}%)" for n in fits)
                walls = sorted(r["wall_s"] for r in runs)
                value = ", ".join(f"{r[objective]['value']['mean']:.3f}" for r in runs)
                clean = ", ".join(f"{r[objective]['clean_acc']['mean']:.3f}" for r in runs)
                counts = [
                    "—"
                    if strategy == "grid"
                    else f"{sum(r[objective][k] for r in runs)}/{len(runs)}"
                    for k in ("inside", "as_good", "accurate", "same")
                ]
                lines.append(
                    f"| {problem} | {objective} | {strategy} | {len(runs)} | {share} | "
                    f"{fit_share} | "
                    f"{walls[len(walls) // 2]} | {value} | {clean} | {' | '.join(counts)} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
