"""How long the quick commands take from the shell: `query`, `ls`, `select`, `--help`.

Each command runs as a real subprocess (``python -m backdoor_sweep.cli ...``) against a small
hand-made store of real Parquet files (72 results, written without Ray), several times; the median
wall time is reported, next to the bare interpreter's start (``python -c pass``). A command's *own*
time is its time minus that start. Wall time on a shared machine depends on its load, so the CPU
time (user + system, of the command's whole process) is reported beside it. With ``--modules`` it also lists which heavy libraries each
command imported (``python -X importtime``), the thing that decides the figures.

Usage::

    python bench/cli_startup.py                  # 5 runs of each command
    python bench/cli_startup.py --runs 9 --json out.json --modules
    python bench/cli_startup.py --root /tmp/old-checkout   # the same commands on another version
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: libraries whose import is what makes a command slow to start
HEAVY = ("ray", "torch", "sklearn", "scipy", "pandas", "pyarrow", "duckdb", "plotly", "pydantic")


def commands(store: str) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "query 'select 1'": ["query", "select 1", "--store", store],
        "query (group by)": [
            "query",
            "select C, avg(asr) as asr from trials group by C order by C",
            "--store",
            store,
        ],
        "ls": ["ls", "--store", store],
        "select": ["select", "--store", store],
        "select --format json": ["select", "--store", store, "--format", "json"],
    }


class Failed(Exception):
    """The command exited non-zero (e.g. an option an older version does not have)."""


def timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``argv``.

    ``cwd`` must not be a checkout: ``python -m`` puts the working folder first on the path.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise Failed(f"exit code {out.returncode}: {out.stderr.strip()[-200:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def heavy_modules(argv: list[str], env: dict[str, str], cwd: str) -> list[str]:
    """The heavy top-level packages a command imported, from ``-X importtime``."""
    out = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True
    )
    seen = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] in HEAVY and "." not in name:
                seen.add(name)
    return sorted(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (median reported)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    ap.add_argument("--modules", action="store_true", help="list the heavy imports per command")
    ap.add_argument(
        "--root", type=Path, default=ROOT, help="checkout whose commands are timed (default: this)"
    )
    args = ap.parse_args()

    from tests.handmade import write_sweep

    env = {**os.environ, "PYTHONPATH": str(args.root.resolve()), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        store = str(write_sweep(Path(tmp) / "store").root)
        bare = [timed([sys.executable, "-c", "pass"], env, tmp) for _ in range(args.runs)]
        base = statistics.median(w for w, _ in bare)
        base_cpu = statistics.median(c for _, c in bare)
        rows = []
        for label, cmd in commands(store).items():
            argv = [sys.executable, "-m", "backdoor_sweep.cli", *cmd]
            try:
                timed(argv, env, tmp)  # warm the file cache
                runs = [timed(argv, env, tmp) for _ in range(args.runs)]
            except Failed as err:
                rows.append({"command": label, "failed": str(err)})
                print(f"{label:22s} failed: {err}", flush=True)
                continue
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            row = {
                "command": label,
                "wall_s": round(wall, 3),
                "own_wall_s": round(wall - base, 3),
                "cpu_s": round(cpu, 3),
                "own_cpu_s": round(cpu - base_cpu, 3),
            }
            if args.modules:
                row["heavy_imports"] = heavy_modules(argv, env, tmp)
            rows.append(row)
            print(
                f"{label:22s} wall {wall:6.2f} s  own {wall - base:6.2f} s   "
                f"CPU {cpu:6.2f} s  own {cpu - base_cpu:6.2f} s"
                + (f"   imports {', '.join(row['heavy_imports']) or '-'}" if args.modules else ""),
                flush=True,
            )
    print(f"{'python -c pass':22s} wall {base:6.2f} s               CPU {base_cpu:6.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    result = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "runs": args.runs,
        "root": str(args.root.resolve()),
        "interpreter_start_s": round(base, 3),
        "interpreter_start_cpu_s": round(base_cpu, 3),
        "commands": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
