"""Taking a sweep for a run: what refuses it before the store is touched, the lock, replacing.

`check_before_run` reads only: the cluster address answers, the GPUs asked for are here, no other
process holds the sweep's lock, and the sweep may be created, resumed (with the spec it was started
with, `_check_same_spec`) or replaced. `claimed` then loads the dataset, starts Ray, checks
resources and devices — so a refused run creates nothing in the store, not even a lock — and only
then takes the lock and, with ``overwrite``, moves the old sweep aside until the new run ends
(`_replacing`). Grid sweeps (`sweep.launcher.run_sweep`) and searches
(`sweep.searching.run_search`) both run inside it.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backdoor_sweep.errors import SweepError
from sweep.cluster import check_resources, init_ray, probe_address
from sweep.execution import check_devices, check_local_gpus
from sweep.spec import Spec, first_difference, parse_spec
from sweep.store import LOCK_DIR, Store
from trainables.data.datasets import load_dataset


def check_before_run(
    spec: Spec, store: Store, *, address: str | None, resume: bool, overwrite: bool
) -> None:
    """What refuses a run before anything is loaded or started: the address does not answer
    (a few seconds at most, instead of ``ray.init``'s minutes of retries), the GPUs asked for
    are not here (a cluster is checked once joined), another process writes the sweep, or the
    sweep may not be created, resumed or replaced (`_check_existing`). Reads only."""
    if address:
        probe_address(address)
    else:
        check_local_gpus(spec)
    _refuse_if_busy(store, spec.name)
    _check_existing(spec, store, resume=resume, overwrite=overwrite)


@contextmanager
def claimed(
    spec: Spec,
    store: Store,
    *,
    address: str | None,
    num_cpus: int | None,
    resume: bool,
    overwrite: bool,
    needs_ray: bool,
) -> Iterator[Any]:
    """Load the dataset, start Ray (``needs_ray``), check resources and devices, then take the
    sweep's lock — the first write to the store — and, with ``overwrite``, move the old sweep
    aside (`_replacing`); yields the dataset. Grids and searches (`sweep.searching`) run in it.

    A store write that fails in the body (`StoreFailed`) becomes one line saying what was kept
    and what to do; Ray, if started here, is shut down at the end.
    """
    data = load_dataset(spec.dataset)  # a missing or bad data folder fails before Ray starts
    started = init_ray(address, num_cpus) if needs_ray else False
    try:
        if needs_ray:
            check_resources(spec.execution.cpus_per_trial, spec.execution.gpus_per_trial)
            check_devices(spec)  # GPUs and bf16 where the trials will run, before any write
        with store.lock(spec.name):  # the first write to the store
            _recover_replaced(store, spec.name)
            # checked again under the lock: another run may have created the sweep meanwhile
            _check_existing(spec, store, resume=resume, overwrite=overwrite)
            try:
                with _replacing(store, spec.name, overwrite) as replaced:
                    yield data
            except StoreFailed as err:
                if replaced:
                    kept = "the sweep it was replacing is back in place): free space or fix the store and run it again"
                else:
                    kept = (
                        "the trials stored so far are kept): free space or fix the store, then "
                        f"`{resume_command(spec.name, store, address)}`"
                    )
                raise SweepError(f"{err}; the sweep stopped ({kept}") from None
    finally:
        if started:
            import ray

            ray.shutdown()


def _refuse_if_busy(store: Store, name: str) -> None:
    """Refuse at once, creating nothing, while another process holds the sweep's lock."""
    if store.is_locked(name):
        with store.lock(name):  # raises its one-line refusal, naming the holder
            pass


def _check_existing(spec: Spec, store: Store, *, resume: bool, overwrite: bool) -> None:
    """A stored sweep of this name may be replaced, resumed with the same spec, or is refused.

    Reads only: the replacement itself happens once the new run is ready (`_replacing`).
    """
    if not store.exists(spec.name) or overwrite:
        return
    if resume:
        _check_same_spec(spec, store)
    else:
        raise SweepError(
            f"sweep {spec.name!r} already exists in {store.root}; "
            "pass --resume to finish it or --overwrite to replace it"
        )


def _check_same_spec(spec: Spec, store: Store) -> None:
    """Resuming needs the spec the sweep was started with, up to what changes no result (the
    store's path among them: a moved or copied store resumes). The stored spec is validated
    again, so stores written before a field was added compare by the field's default."""
    stored = store.read_meta(spec.name).get("spec")
    try:
        started = parse_spec(stored, source=f"the spec stored for sweep {spec.name!r}")
    except SweepError as err:
        raise SweepError(
            f"sweep {spec.name!r} cannot be resumed: its stored spec no longer validates ({err}); "
            "replace it with --overwrite or run under another --name"
        ) from None
    diff = first_difference(started, spec)
    if diff is not None:
        raise SweepError(
            f"--resume needs the spec sweep {spec.name!r} was started with; this one differs in "
            f"{diff}. Finish the stored one with `backdoor-sweep resume {spec.name} --store "
            f"{store.root}`, run this one under another --name, or replace it with --overwrite"
        )


def _aside(store: Store, name: str) -> Path:
    """Where a sweep being replaced waits (in the lock folder: no reader lists it as a sweep)."""
    return store.root / LOCK_DIR / f"{name}.replaced"


@contextmanager
def _replacing(store: Store, name: str, overwrite: bool) -> Iterator[bool]:
    """With ``overwrite``, move the stored sweep aside while the new run writes its own; yields
    whether there was one.

    The old sweep is deleted when the run ends — finished, or interrupted (the new sweep is then
    the one to resume) — and put back in place if the run fails with an error.
    """
    old, aside = store.sweep_dir(name), _aside(store, name)
    if not (overwrite and old.exists()):
        yield False
        return
    os.replace(old, aside)
    try:
        yield True
    except KeyboardInterrupt:
        shutil.rmtree(aside, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(old, ignore_errors=True)
        os.replace(aside, old)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _recover_replaced(store: Store, name: str) -> None:
    """Finish what a replacing run killed outright (SIGKILL) left: keep the new sweep if it got
    as far as its ``sweep.json``, else put the old one back."""
    aside = _aside(store, name)
    if not aside.exists():
        return
    if store.exists(name):
        shutil.rmtree(aside, ignore_errors=True)
    else:
        shutil.rmtree(store.sweep_dir(name), ignore_errors=True)
        os.replace(aside, store.sweep_dir(name))


class StoreFailed(SweepError):
    """A store write failed mid-run; `claimed` says what was kept and what to do."""


def resume_command(name: str, store: Store, address: str | None = None) -> str:
    """The command that finishes sweep ``name``, as it can be pasted from any folder."""
    words = ["backdoor-sweep", "resume", name, "--store", str(store.root.resolve())]
    if address:
        words += ["--address", address]
    return shlex.join(words)
