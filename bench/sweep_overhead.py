"""What running a sweep through Ray Tune costs over a plain joblib loop doing the same work.

In one process and one run:

1. **Ratio** — the default sweep (``search_spaces/digits_svm_rbf.yaml`` as it is, curves
   included if the preset turns them on) through `sweep.launcher.run_sweep` on an in-process Ray,
   against ``joblib.Parallel`` calling `trainables.trial.run_result` over the same
   `sweep.plan.plan_trials` results on the same number of cores. Both clocks include everything a
   user waits for: Ray's start-up, Tune, the store and Ray's shutdown; loky's worker start-up,
   the loop, one Parquet file of the rows and the workers' shutdown.
2. **Growth** — trials per second as the grid grows 1x, 4x, 16x. The base is the default grid
   with one seed and one poison rate (20 trials of 3 results); it grows by adding C and gamma
   values a factor 1.001, 1.002, ... away from the preset's, so each new trial does the work of
   an existing one and only the number of trials changes.
3. **CPUs** — the 4x grid on 1 and on 2 CPUs.
4. **Reporting** — the default grid (36 results per trial) with one ``tune.report`` per result
   instead of the launcher's batches (at most one a second per trial).

Usage::

    python bench/sweep_overhead.py                 # everything (~10 min on 2 cores)
    python bench/sweep_overhead.py --smoke         # a tiny version of each part (~2 min)
    python bench/sweep_overhead.py --parts ratio --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per CPU, as the trials get


@dataclass
class Timing:
    part: str
    engine: str
    grid: str
    cpus: int
    trials: int
    results: int
    seconds: float
    startup_s: float | None = None
    shutdown_s: float | None = None

    @property
    def trials_per_s(self) -> float:
        return self.trials / self.seconds


def grown(spec, factor: int, base: bool):
    """The spec with ``factor`` x as many trials (C and gamma values split into near copies)."""
    from sweep.spec import parse_spec

    raw = spec.model_dump(mode="json")
    if base:
        raw["seeds"] = raw["seeds"][:1]
        raw["grid"]["poison_rate"] = [0.1]
    per_axis = {1: 1, 4: 2, 16: 4}[factor]
    for axis in ("C", "gamma"):
        raw["grid"][axis] = [v * (1 + 1e-3 * k) for v in raw["grid"][axis] for k in range(per_axis)]
    raw["name"] = f"bench-{factor}x"
    return parse_spec(raw)


def run_joblib(spec, cpus: int, out_dir: Path) -> Timing:
    """The same results as the sweep, computed by joblib over `run_result`, rows to one Parquet."""
    import pandas as pd
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor
    from threadpoolctl import threadpool_limits

    from sweep.plan import plan_trials
    from trainables.data.datasets import load_dataset
    from trainables.trial import run_result

    t0 = time.perf_counter()
    plans = plan_trials(spec)
    results = [u for p in plans for u in p.results]
    data = load_dataset(spec.dataset)
    with threadpool_limits(limits=1):  # n_jobs=1 runs in this process
        results = Parallel(n_jobs=cpus, backend="loky")(
            delayed(run_result)(u, data) for u in results
        )
    rows = [{"result_id": u["result_id"], **r.row} for u, r in zip(results, results, strict=True)]
    pd.DataFrame(rows).to_parquet(out_dir / f"{spec.name}-joblib.parquet")
    get_reusable_executor().shutdown(wait=True)
    return Timing("", "joblib", "", cpus, len(plans), len(results), time.perf_counter() - t0)


def per_result_trial(config, data):
    """`tune_trial` reporting every result on its own (the launcher batches them)."""
    from trainables.trial import tune_trial

    tune_trial({**config, "report_every_s": 0}, data)


def run_ray(spec, cpus: int, out_dir: Path, trial_fn=None) -> Timing:
    """The sweep through Ray Tune, Ray started and stopped inside the clock."""
    import ray

    from sweep.launcher import run_sweep
    from sweep.spec import with_overrides

    spec = with_overrides(spec, store=str(out_dir / f"store-{time.monotonic_ns()}"))
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    t1 = time.perf_counter()
    outcome = run_sweep(spec, show_progress=False, trial_fn=trial_fn)
    t2 = time.perf_counter()
    ray.shutdown()
    t3 = time.perf_counter()
    assert outcome.n_ok == spec.n_results, f"{outcome.n_error} results failed"
    from sweep.plan import plan_trials

    return Timing(
        "", "ray", "", cpus, len(plan_trials(spec)), spec.n_results, t3 - t0, t1 - t0, t3 - t2
    )


def summarise(timings: list[Timing]) -> None:
    """Medians per (part, engine, grid, cpus), and the growth part's cost per added trial."""
    groups: dict[tuple, list[float]] = {}
    for t in timings:
        groups.setdefault((t.part, t.engine, t.grid, t.cpus, t.trials), []).append(t.seconds)
    print("medians:")
    for (part, engine, grid, cpus, trials), secs in groups.items():
        med = statistics.median(secs)
        print(
            f"  {part:9s} {engine:6s} {grid:16s} {cpus} CPU {trials:4d} trials: {med:6.1f} s "
            f"({trials / med:5.2f} trials/s; n={len(secs)})"
        )
    for engine in ("joblib", "ray"):
        pts = sorted(
            (k[4], statistics.median(v))
            for k, v in groups.items()
            if k[0] == "growth" and k[1] == engine
        )
        steps = [
            f"{(s2 - s1) / (n2 - n1) * 1000:.0f} ms"
            for (n1, s1), (n2, s2) in itertools.pairwise(pts)
        ]
        if steps:
            print(f"  growth {engine}: cost per added trial {' then '.join(steps)}")


def machine() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    import numpy
    import ray
    import sklearn

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "sklearn": sklearn.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--smoke", action="store_true", help="tiny grids: check the script, not the machine"
    )
    ap.add_argument("--parts", default="ratio,growth,cpus,reporting")
    ap.add_argument(
        "--repeat", type=int, default=1, help="ratio: alternate joblib and Ray this many times"
    )
    ap.add_argument("--json", type=Path, help="also write the timings here")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))

    import ray  # noqa: F401  (imports before any clock starts)

    import trainables.trial  # noqa: F401
    from sweep.spec import load_spec

    default = load_spec()
    if args.smoke:
        default = default.smoke()
    info = machine()
    info["default_curves"] = default.curves.enabled
    print(f"machine: {json.dumps(info)}", flush=True)
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    timings: list[Timing] = []

    def record(t: Timing, part: str, grid: str) -> None:
        t.part, t.grid = part, grid
        timings.append(t)
        extra = (
            f" (Ray start {t.startup_s:.1f} s, stop {t.shutdown_s:.1f} s)"
            if t.startup_s is not None
            else ""
        )
        print(
            f"{part:9s} {t.engine:6s} {grid:18s} {t.cpus} CPU  {t.trials:4d} trials {t.results:5d} results  "
            f"{t.seconds:7.1f} s  {t.trials_per_s:6.2f} trials/s{extra}",
            flush=True,
        )

    if "ratio" in parts:  # alternate the engines: the machine is shared and its load drifts
        name = "default" + (" (smoke)" if args.smoke else "")
        for i in range(args.repeat):
            for engine in (run_joblib, run_ray) if i % 2 == 0 else (run_ray, run_joblib):
                record(engine(default, 2, out), "ratio", name)
        med = {
            e: statistics.median(t.seconds for t in timings if t.part == "ratio" and t.engine == e)
            for e in ("joblib", "ray")
        }
        curves = "on" if default.curves.enabled else "off"
        print(
            f"ratio: Ray Tune / joblib = {med['ray'] / med['joblib']:.2f} (medians of {args.repeat}) "
            f"on the default grid, curves {curves}",
            flush=True,
        )
    factors = [1, 4] if args.smoke else [1, 4, 16]
    for i in range(args.repeat):  # every part again, engines in the other order
        flip = i % 2 == 1
        if "growth" in parts:
            for f in factors:
                spec = grown(default, f, base=True)
                for engine in (run_ray, run_joblib) if flip else (run_joblib, run_ray):
                    record(engine(spec, 2, out), "growth", f"{f}x")
        if "cpus" in parts:
            spec = grown(default, 4, base=True)
            for cpus in (1, 2):
                for engine in (run_ray, run_joblib) if flip else (run_joblib, run_ray):
                    record(engine(spec, cpus, out), "cpus", "4x")
        if "reporting" in parts:  # on the default grid: 36 results per trial
            variants = [(None, "default batched"), (per_result_trial, "default per result")]
            for fn, grid in variants[::-1] if flip else variants:
                record(run_ray(default, 2, out, trial_fn=fn), "reporting", grid)
    summarise(timings)
    shutil.rmtree(out, ignore_errors=True)

    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at end: {info['load_average_at_end']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "timings": [{**asdict(t), "trials_per_s": t.trials_per_s} for t in timings],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
