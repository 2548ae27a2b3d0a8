"""The child processes of the team service: one per running sweep, one per page being built.

``python -m backdoor_sweep.service.runner sweep --store S --name N`` runs the sweep whose spec the
server wrote to its job record, exactly as ``backdoor-sweep run`` would (`sweep.launcher.run_sweep`,
its own Ray unless ``--address``), and writes its progress for the server to read. Why a process
and not a thread: Ray Tune's ``Tuner.fit`` blocks and installs signal handlers (main thread
only), and a process can be stopped by its PID — SIGTERM stops it like Ctrl-C (Tune ends the
trials, finished results stay), SIGKILL like a crash (resume finishes it). The runner dies with the
server (``PR_SET_PDEATHSIG``): a killed server leaves the store exactly as a killed ``run`` would.

``report`` and ``explain`` build the HTML pages (`analysis.report.build_report`,
`analysis.explain`) in a process too: they refit models, and the server's event loop stays free.

Exit codes: 0 finished, 2 bad input (``error: <line>`` on stderr), 3 stopped before the end
(cancel, shutdown), 1 a crash (a traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.records import (
    EXIT_BAD_INPUT,
    EXIT_FINISHED,
    EXIT_INCOMPLETE,
    Records,
)
from sweep.store import Store

#: most results an explain page rebuilds (each is a refit), as `backdoor-sweep explain`
MAX_EXPLAINED = 4
#: seconds between two progress files (the last result is always written)
PROGRESS_EVERY_S = 0.5


def die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel SIGKILL this process when the thread that started it ends (Linux)."""
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the server died before the line above ran
        os._exit(EXIT_INCOMPLETE)


class ProgressFile:
    """`sweep.progress.Progress` callback: the sweep-level counts in ``progress.json``.

    Done is what the store held when the run began plus what the run has computed since; the
    total the sweep's planned results (for a search, its upper bound: `sweep.search`).
    """

    def __init__(self, records: Records, name: str, n_results: int) -> None:
        self.records, self.name, self.n_results = records, name, n_results
        self.last = 0.0

    def __call__(self, progress) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and progress.done < progress.total:
            return
        self.last = now
        done = progress.stored + progress.done
        try:
            self.records.write_progress(self.name, done, self.n_results, progress.eta_seconds())
        except (
            OSError,
            SweepError,
        ) as err:  # a full disk must not stop the sweep (the parts count)
            print(f"progress not written: {err}", file=sys.stderr, flush=True)


def run(store: Store, name: str, address: str | None) -> int:
    """Run (or finish) sweep ``name`` of ``store`` from its job record."""
    from backdoor_sweep.summary import print_summary
    from sweep.launcher import run_sweep
    from sweep.spec import parse_spec

    # `kill PID` stops a sweep like Ctrl-C: Tune ends gracefully, Ray shuts down, resume later
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    records = Records(store)
    job = records.read_job(name)
    if job is None:
        raise SweepError(f"sweep {name!r} has no job record in {records.root}")
    resume = store.exists(name)
    if resume:  # what `backdoor-sweep resume` does: the spec it was started with, this store
        meta = store.read_meta(name)
        spec = parse_spec(meta["spec"], source=f"{store.sweep_dir(name)}/sweep.json")
    else:
        spec = parse_spec(job["spec"], source=str(records.job_path(name)))
    print(
        f"{'resuming' if resume else 'starting'} sweep {name} for {job.get('submitter', '?')}"
        f" (pid {os.getpid()}, Ray {'at ' + address if address else 'in-process'})",
        flush=True,
    )
    try:
        outcome = run_sweep(
            spec,
            address=address,
            resume=resume,
            store=store,
            show_progress=False,
            on_progress=ProgressFile(records, name, spec.n_results),
            extra_meta={"submitter": job.get("submitter", "")},
        )
    except KeyboardInterrupt:  # stopped before Tune took over the signal (loading, Ray start)
        print(f"sweep {name} stopped before its trials started", flush=True)
        return EXIT_INCOMPLETE
    records.write_progress(name, records.stored_results(name), spec.n_results, None)
    print_summary(spec, outcome, choice=outcome.complete)
    sys.stdout.flush()
    return EXIT_FINISHED if outcome.complete else EXIT_INCOMPLETE


def report(store: Store, name: str, out: Path) -> None:
    from analysis.report import build_report

    build_report(store, [name], out)


def explain(store: Store, name: str, out: Path, where: str | None, seed: int | None) -> None:
    """The explain page of ``where``, as ``backdoor-sweep explain`` builds it (default: the
    report's picks — the recommended and the most vulnerable accurate configuration — under the
    strongest attack swept, first seed)."""
    from analysis.explain import default_rows, explain_info, pick_rows, rebuild, strongest_first
    from analysis.explain_page import explain_page
    from analysis.load import load

    full = load(store, name)
    if where:
        rows = strongest_first(full, pick_rows(load(store, name, where), seed))
        what = f"where {where}"
    else:
        if seed is not None:
            raise SweepError("seed needs where (the default picks the first seed); got seed alone")
        rows, labels = default_rows(full)
        what = "the " + " and the ".join(labels)
    if rows.empty:
        raise SweepError(
            f"where must match a successful result of sweep {name!r}"
            + (f" with seed {seed}" if seed is not None else "")
            + f"; got {where!r}"
        )
    infos = [
        explain_info(rebuild(store, name, r)) for r in rows.head(MAX_EXPLAINED).to_dict("records")
    ]
    out.write_text(
        explain_page(infos, f"backdoor-sweep explain: {name}", footer=f"{name} · {what}"),
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backdoor_sweep.service.runner")
    parser.add_argument("what", choices=("sweep", "report", "explain"))
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--where", default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    store = Store(args.store)
    try:
        if args.what == "sweep":
            return run(store, args.name, args.address)
        if args.out is None:
            raise SweepError(f"--out is needed to build a {args.what} page")
        if args.what == "report":
            report(store, args.name, args.out)
        else:
            explain(store, args.name, args.out, args.where, args.seed)
        return EXIT_FINISHED
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
