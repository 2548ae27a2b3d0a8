"""Trained generators and latent codes, computed once and reused by every result, trial and sweep.

The ``gan_interpolation`` hardening (docs/gan_interpolation.md) needs a generator trained on the
clean training images and the latent code of each image it interpolates. Both depend only on the
training images and the generator settings — not on τ, the poison rate or the result's seed — so a
sweep over τ × poison rate trains the generator once and encodes the training set once.

Keys are content hashes: a generator's key hashes the training images themselves (so it stands for
the dataset, its classes and its split exactly, subsampling included) with the generator settings
and seed; a code table's key hashes the generator's key with the encoding settings. Layout under
the cache root (``<store>/.cache`` during a sweep; see `cache_root`)::

    generators/<key>.pt              the generator's weights (torch.save of plain tensors)
    generators/<key>.json            settings, image count and shape, training losses per step, seconds
    generators/codes-<key>.npz       a code and its reconstruction error per training image
    generators/events.jsonl          one line per generator trained or training set encoded

Files are written to a temporary name and renamed (``os.replace``); a per-key ``flock`` makes a
second process that needs the same entry wait (at most `LOCK_WAIT_S`, said in one log line) and
then load it instead of training it again. A file that cannot be read is recomputed and replaced.
Without a cache root (a direct call outside a sweep) only the process memo is used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from trainables.attacks.gan import GanSettings, TrainedGenerator, encode, train_generator

#: the folder under a cache root that holds generators and codes
FOLDER = "generators"
#: a process waiting for another to finish the same entry gives up and computes it itself after this
LOCK_WAIT_S = 1800.0
#: entries (generators, code tables) kept in the process memo, least recently used dropped first
MEMO_SIZE = 8
#: bumped when the architecture or training changes, so old files are not reused
VERSION = 1

__all__ = [
    "EVENTS",
    "cache_root",
    "codes_key",
    "current_root",
    "data_digest",
    "encoded_training_set",
    "generator_key",
    "read_events",
    "row_index",
]

_ROOT: ContextVar[Path | None] = ContextVar("generator_cache_root", default=None)
_MEMO: OrderedDict[str, Any] = OrderedDict()
#: what this process computed (not loaded): {"event": "trained" | "encoded", "key": ..., ...}
EVENTS: list[dict] = []
log = logging.getLogger(__name__)


@contextmanager
def cache_root(path: str | Path | None) -> Iterator[None]:
    """Use ``path`` as the cache root inside the block (None: the process memo only)."""
    token = _ROOT.set(Path(path) if path is not None else None)
    try:
        yield
    finally:
        _ROOT.reset(token)


def current_root() -> Path | None:
    return _ROOT.get()


def data_digest(X: np.ndarray) -> str:
    """A hash of the images' shape and float64 bytes."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    h = hashlib.blake2b(repr(X.shape).encode(), digest_size=16)
    h.update(X.tobytes())
    return h.hexdigest()


def generator_key(X_train: np.ndarray, settings: GanSettings) -> str:
    text = json.dumps(
        {"v": VERSION, "data": data_digest(X_train), "settings": settings.as_dict()},
        sort_keys=True,
    )
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def codes_key(gkey: str, steps: int, lr: float, restarts: int) -> str:
    text = json.dumps({"v": VERSION, "generator": gkey, "steps": steps, "lr": lr, "r": restarts})
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def row_index(X_reference: np.ndarray, X: np.ndarray) -> np.ndarray:
    """For each image of X, the index of an identical image in X_reference, or -1."""

    def digest(row: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float64).tobytes()).digest()

    where = {digest(r): i for i, r in enumerate(X_reference)}
    return np.array([where.get(digest(r), -1) for r in X], dtype=np.int64)


def read_events(root: str | Path) -> list[dict]:
    """The events recorded under a cache root (every process that used it)."""
    path = Path(root) / FOLDER / "events.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _remember(key: str, value: Any) -> Any:
    _MEMO[key] = value
    _MEMO.move_to_end(key)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _record(root: Path | None, event: dict) -> None:
    event = {**event, "pid": os.getpid(), "at": time.time()}
    EVENTS.append(event)
    if root is not None:
        # one short line per O_APPEND write: lines from concurrent processes do not interleave
        with open(root / FOLDER / "events.jsonl", "a") as fh:
            fh.write(json.dumps(event) + "\n")


@contextmanager
def _locked(folder: Path, key: str) -> Iterator[None]:
    """Hold ``<key>.lock``; wait for another holder at most LOCK_WAIT_S, then go ahead anyway."""
    with open(folder / f"{key}.lock", "a") as fh:
        deadline, said = time.monotonic() + LOCK_WAIT_S, False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("%s still locked after %.0f s; computing it here", key, LOCK_WAIT_S)
                    break
                if not said:
                    log.info(
                        "waiting (at most %.0f s) for another process to finish %s",
                        LOCK_WAIT_S,
                        key,
                    )
                    said = True
                time.sleep(0.2)
        yield


def _cached(key: str, load: Callable[[Path], Any], compute: Callable[[Path | None], Any]) -> Any:
    """The memo's value, else the file's (``load``), else ``compute`` (which writes the file)."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    root = current_root()
    if root is None:
        return _remember(key, compute(None))
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder, key):
        try:
            value = load(folder)
        except FileNotFoundError:
            value = None
        except Exception as err:  # a damaged file is recomputed and replaced
            log.warning("cache entry %s unreadable (%s); recomputing it", key, err)
            value = None
        if value is None:
            value = compute(folder)
    return _remember(key, value)


def _generator(X_train: np.ndarray, settings: GanSettings) -> tuple[str, TrainedGenerator]:
    key = generator_key(X_train, settings)

    def load(folder: Path) -> TrainedGenerator:
        import torch

        blob = torch.load(folder / f"{key}.pt", weights_only=True)
        meta = json.loads((folder / f"{key}.json").read_text())
        return TrainedGenerator(settings, int(blob["side"]), blob["state"], meta["losses"])

    def compute(folder: Path | None) -> TrainedGenerator:
        import torch

        t0 = time.perf_counter()
        gen = train_generator(X_train, settings)
        seconds = time.perf_counter() - t0
        if folder is not None:
            meta = {
                "key": key,
                "settings": settings.as_dict(),
                "n_images": len(X_train),
                "image_shape": list(X_train.shape[1:]),
                "data_digest": data_digest(X_train),
                "seconds": seconds,
                "losses": gen.losses,
            }
            _atomic(folder / f"{key}.json", lambda p: p.write_text(json.dumps(meta)))
            blob = {"side": gen.side, "state": gen.state}
            _atomic(folder / f"{key}.pt", lambda p: torch.save(blob, p))
        _record(folder.parent if folder else None, _event("trained", key, seconds, len(X_train)))
        return gen

    return key, _cached(key, load, compute)


def _event(kind: str, key: str, seconds: float, n: int) -> dict:
    return {"event": kind, "key": key, "seconds": round(seconds, 3), "n_images": n}


def encoded_training_set(
    X_train: np.ndarray,
    settings: GanSettings,
    encode_steps: int,
    encode_lr: float,
    restarts: int,
) -> tuple[str, TrainedGenerator, np.ndarray, np.ndarray]:
    """The generator trained on X_train and every training image's code and squared error.

    Returns ``(generator key, generator, codes (n, d), errors (n,))``. The codes' random starts
    are drawn from the generator's seed, so they are the same for every result.
    """
    X_train = np.asarray(X_train, dtype=np.float64)
    gkey, gen = _generator(X_train, settings)
    ckey = codes_key(gkey, encode_steps, encode_lr, restarts)

    def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        with np.load(folder / f"codes-{ckey}.npz") as f:
            Z, err = f["codes"], f["errors"]
        if Z.shape != (len(X_train), settings.latent_dim) or err.shape != (len(X_train),):
            raise ValueError(f"codes of shape {Z.shape}, expected {len(X_train)} rows")
        return Z, err

    def compute(folder: Path | None) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        Z, err = encode(gen, X_train, encode_steps, encode_lr, restarts, seed=settings.seed + 2)
        if folder is not None:

            def write(p: Path) -> None:
                with open(p, "wb") as fh:
                    np.savez(fh, codes=Z, errors=err)

            _atomic(folder / f"codes-{ckey}.npz", write)
        seconds = time.perf_counter() - t0
        _record(folder.parent if folder else None, _event("encoded", ckey, seconds, len(X_train)))
        return Z, err

    Z, err = _cached(ckey, load, compute)
    return gkey, gen, Z, err
