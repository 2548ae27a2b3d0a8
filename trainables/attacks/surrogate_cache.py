"""Clean-label PGD surrogates trained once per node and reused (docs/science.md §2, clean-label).

A PGD surrogate depends only on the clean training split, its own configuration and a seed, so
every result of a sweep that shares those — every poison rate, trigger, ε and step count of one
seed — can share one surrogate instead of training it again. `fit_surrogate` looks it up

1. in this process (an LRU of ``PROCESS_SLOTS`` surrogates: Ray reuses a worker for many trials),
2. in a node-local folder, ``$BACKDOOR_SWEEP_CACHE/surrogates`` (default
   ``<tmp>/backdoor-sweep-<uid>/surrogates``; ``BACKDOOR_SWEEP_CACHE=off`` turns the disk off):
   one ``.npz`` per key, written to a temporary file, fsynced and renamed, so a reader never sees
   half a file; a file that does not load is ignored and replaced;

and otherwise trains it under a per-key ``flock``, so two workers of a node asking at once train
it once (the second waits at most ``LOCK_WAIT_S`` seconds, then trains its own and says so).

The key is a hash of the surrogate's name and settings (``SURROGATE_VERSION`` changes with its
code), the seed, the number of classes and the bytes of the clean images and labels — the
dataset, its classes and split are all in those bytes. The seed comes from the poisoning's seed
(`surrogate_seed`), not from the draws before it, so it is the same for every attack setting.
A cached surrogate is the same model bit for bit: surrogates train seeded on the CPU.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CACHE_ENV = "BACKDOOR_SWEEP_CACHE"
#: bump when a surrogate's training or architecture changes: old cache files stop matching
SURROGATE_VERSION = 1
PROCESS_SLOTS = 8
LOCK_WAIT_S = 600.0
_process: OrderedDict[str, object] = OrderedDict()

__all__ = ["cache_dir", "fit_surrogate", "surrogate_key", "surrogate_seed"]


def surrogate_seed(rng: np.random.Generator) -> int:
    """A seed for the surrogate derived from ``rng``'s seed sequence (not its state): the same
    for every poisoning drawn from the same seed. A generator without one gives a fresh draw."""
    ss = getattr(rng.bit_generator, "seed_seq", None)
    if not isinstance(ss, np.random.SeedSequence):
        return int(rng.integers(2**31))
    child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x5EED))
    return int(child.generate_state(1)[0] & 0x7FFF_FFFF)


def cache_dir() -> Path | None:
    """The node-local folder of cached surrogates (None when ``BACKDOOR_SWEEP_CACHE=off``)."""
    root = os.environ.get(CACHE_ENV)
    if root and root.strip().lower() == "off":
        return None
    base = Path(root) if root else Path(tempfile.gettempdir()) / f"backdoor-sweep-{os.getuid()}"
    return base / "surrogates"


def surrogate_key(
    name: str, settings: dict, seed: int, X: np.ndarray, y: np.ndarray, k: int
) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((SURROGATE_VERSION, name, sorted(settings.items()), seed, k)).encode())
    X = np.ascontiguousarray(X, dtype=np.float64)
    h.update(repr(X.shape).encode())
    h.update(X.tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return f"{name}-{h.hexdigest()}"


def _remember(key: str, surrogate) -> None:
    _process[key] = surrogate
    _process.move_to_end(key)
    while len(_process) > PROCESS_SLOTS:
        _process.popitem(last=False)


def _load(cls, path: Path):
    try:
        with np.load(path) as z:
            return cls.from_state({k: z[k] for k in z.files})
    except Exception:  # a foreign, truncated or outdated file: train again and replace it
        return None


def _save(path: Path, state: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **state)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on ``path``, waited for at most LOCK_WAIT_S; yields whether held."""
    with open(path, "a+") as fh:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    print(
                        f"surrogate cache: {path.name} still locked after {LOCK_WAIT_S:.0f} s; "
                        "training this surrogate here instead",
                        file=sys.stderr,
                        flush=True,
                    )
                    yield False
                    return
                time.sleep(0.2)
        yield True  # closing the file releases the lock


def fit_surrogate(cls, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int):
    """(the surrogate ``cls`` fitted on (X, y) with ``seed``, where it came from): ``process``,
    ``disk`` (this node's cache folder) or ``trained`` (now, and cached)."""
    key = surrogate_key(cls.name, cls.settings(), seed, X, y, n_classes)
    if key in _process:
        _process.move_to_end(key)
        return _process[key], "process"
    folder = cache_dir()

    def train():
        return cls().fit(X, y, n_classes, np.random.default_rng(seed))

    source = "disk"
    if folder is None:
        surrogate, source = train(), "trained"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.npz"
        surrogate = _load(cls, path) if path.is_file() else None
        if surrogate is None:
            with _lock(folder / f".{key}.lock"):
                # another worker of this node may have trained it while we waited
                surrogate = _load(cls, path) if path.is_file() else None
                if surrogate is None:
                    surrogate, source = train(), "trained"
                    _save(path, surrogate.state())
    _remember(key, surrogate)
    return surrogate, source
