"""Where a spec sent over HTTP may read files: the operator's data roots (``serve --data-root``).

A spec can name files its trials read: a dataset's files (``dataset.data_root`` for ``mnist``,
``fashion_mnist`` and ``cifar10``, where ``download: true`` also writes; ``dataset.folder`` for
``image_folder``) and a trigger image (``pattern_image``, written in the ``attack`` section or as a
grid axis). Run with the CLI these are the local user's own files. Sent to the server, they would
let any token holder make the server read any folder or image its user can read — and learn about
it from the error lines (which classes a folder holds, whether a file exists) and from the results.

So the server confines them. Each path is resolved as the runner would resolve it (``~``
expanded, a relative ``data_root`` against the server's working directory or
``$BACKDOOR_SWEEP_DATA``, a relative ``folder`` against the ``data_root``), then symlinks and
``..`` are resolved, and the result must lie inside one of the data roots (themselves resolved
when the server starts). Without a data root no spec sent over HTTP reads files: only the
bundled datasets and generated trigger patterns. The check runs on the spec as sent, before the
spec's validation opens a folder to list its classes, and the resolved paths replace the ones
written, so the runner (and a cluster's workers) read exactly what was checked. A resume over HTTP
checks the stored spec the same way: the operator's roots hold for every sweep the server runs on
a request. Files inside a root that are symlinks pointing out of it are the operator's own doing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backdoor_sweep.errors import shown
from backdoor_sweep.service.errors import Forbidden

#: the spec sections a trigger's ``pattern_image`` can be written in (the grid too)
PARAM_SECTIONS = ("attack", "learner", "defence")


class DataRoots:
    """The folders a spec sent over HTTP may read files from (see the module docstring)."""

    def __init__(self, roots: Iterable[str | Path] = ()) -> None:
        self.roots = tuple(Path(r).expanduser().resolve() for r in roots)

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots)

    # -- a whole spec ---------------------------------------------------------------------------
    def confine(self, raw: Any) -> Any:
        """``raw`` (a spec as sent) with every file path it reads resolved; `Forbidden` (one line
        naming the field, the value and the data roots) when one lies outside the roots.

        Anything malformed is passed on untouched: `sweep.spec.parse_spec` names it, and refuses
        it before reading any file."""
        if not isinstance(raw, dict):
            return raw
        out = dict(raw)
        if isinstance(raw.get("dataset"), dict):
            out["dataset"] = self._dataset(raw["dataset"])
        for section in PARAM_SECTIONS:
            params = raw.get(section)
            if isinstance(params, dict) and isinstance(params.get("pattern_image"), str):
                value = params["pattern_image"]
                out[section] = {
                    **params,
                    "pattern_image": self._image(f"{section}.pattern_image", value),
                }
        grid = raw.get("grid")
        if isinstance(grid, dict) and isinstance(grid.get("pattern_image"), list):
            out["grid"] = {
                **grid,
                "pattern_image": [
                    self._image("grid.pattern_image", v) if isinstance(v, str) else v
                    for v in grid["pattern_image"]
                ],
            }
        return out

    # -- the parts --------------------------------------------------------------------------------
    def _dataset(self, raw: dict) -> dict:
        from trainables.data.datasets import (
            BUNDLED,
            DatasetSpec,
            check_dataset_spec,
            data_root,
            image_folder_path,
        )

        try:
            spec = DatasetSpec.model_validate(raw)
        except ValidationError:
            return raw  # parse_spec names it, before anything is read
        if spec.name in BUNDLED:
            return raw
        check_dataset_spec(spec)  # the same lines validation gives, and no file is touched
        if not self.roots:
            raise Forbidden(
                f"dataset.name must be one of {', '.join(BUNDLED)} in a spec sent to this server "
                f"(it reads no dataset files for a request: it was started without --data-root); "
                f"got {spec.name!r}"
            )
        if spec.name == "image_folder":
            where = _relative_note(spec.folder, "data_root", spec.data_root)
            path = self._inside(
                "dataset.folder", spec.folder, lambda: image_folder_path(spec), where
            )
            return {**raw, "folder": str(path)}
        given = spec.data_root
        where = " (the default: $BACKDOOR_SWEEP_DATA, else ./data)" if given is None else ""
        path = self._inside("dataset.data_root", given, lambda: data_root(spec), where)
        return {**raw, "data_root": str(path)}

    def _image(self, field: str, value: str) -> str:
        if not self.roots:
            raise Forbidden(
                f"{field} must not be set in a spec sent to this server (it reads no files for a "
                f"request: it was started without --data-root; the patterns random, checkerboard "
                f"and solid need none); got {shown(value)}"
            )
        return str(self._inside(field, value, lambda: Path(value), ""))

    def _inside(self, field: str, given: Any, path_of, where: str) -> Path:
        """The resolved path, when it lies inside a data root; else `Forbidden`."""
        try:
            path = Path(path_of()).expanduser()
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL, an unknown ~user
            resolved, path = None, None
        if resolved is not None and any(resolved.is_relative_to(r) for r in self.roots):
            return resolved
        lexical = path is not None and any(path.absolute().is_relative_to(r) for r in self.roots)
        why = " (symlinks and '..' resolved, it lies outside them)" if lexical else ""
        if path is None:
            why = " (it cannot be resolved)"
        raise Forbidden(
            f"{field} must be inside a data root of this server ({self.describe()}); "
            f"got {shown(given)}{where}{why}"
        )


def _relative_note(folder: str | None, base: str, base_value: str | None) -> str:
    """Where a relative ``folder`` is taken from, for the error line."""
    if folder is None or Path(folder).expanduser().is_absolute():
        return ""
    if base_value is None:
        return f" (relative to the default {base}: $BACKDOOR_SWEEP_DATA, else ./data)"
    return f" (relative to {base} {shown(base_value)})"
