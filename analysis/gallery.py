"""The trigger gallery: how conspicuous is each attack, before sweeping it?

For a few test images (one per class in turn) the gallery shows the clean image, the image under
every registered trigger, and the image after every clean-label hardening (docs/science.md §2–§3,
before the trigger is added) — for ``gan_interpolation`` one row per τ the spec sweeps, beside the
clean image and the PGD rows, so one sees how label-consistent the interpolations stay. Without a
spec each component uses its default parameters; with a spec, its fixed attack parameters apply to
every trigger that reads them and each distinct setting it sweeps (e.g. every ``trigger_size``)
gets its own row.

Computed first (`gallery_info` returns plain arrays and labels), drawn second: `render_png` (a
grid drawn with Pillow, pixels upscaled by nearest neighbour so single pixels stay visible) or
`render_html` (one self-contained page, every image embedded as a PNG data URI).
"""

from __future__ import annotations

import base64
import html
import io
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backdoor_sweep.errors import SweepError
from sweep.store import CACHE_DIR
from trainables.attacks.clean_label import CleanLabelParams, harden
from trainables.attacks.generator_cache import cache_root
from trainables.attacks.triggers import TRIGGERS
from trainables.data.datasets import Dataset
from trainables.trial import seed_sequence

#: the parameters each clean-label hardening reads (the rest of CleanLabelParams is not shown)
HARDENING_FIELDS: dict[str, tuple[str, ...]] = {
    "pgd_l2": ("epsilon", "pgd_steps", "surrogate"),
    "pgd_linf": ("epsilon", "pgd_steps", "surrogate"),
    "noise": ("noise_std",),
    "interpolation": ("tau",),
    "gan_interpolation": (
        "tau",
        "gan_latent_dim",
        "gan_steps",
        "gan_seed",
        "gan_encode_steps",
        "gan_encode_lr",
        "gan_restarts",
    ),
}
#: the PGD surrogate of the gallery is fit on at most this many training images (a preview)
SURROGATE_MAX_SAMPLES = 2000
#: target size in pixels of the longer image side in the PNG
CELL_PIXELS = 96

__all__ = [
    "GalleryInfo",
    "Setting",
    "gallery_info",
    "render_html",
    "render_png",
    "settings",
    "write_gallery",
]


@dataclass(frozen=True)
class Setting:
    """One row of the gallery: a trigger or a clean-label hardening with its parameters."""

    kind: str  # "trigger" or "hardening"
    name: str
    params: dict

    @property
    def label(self) -> str:
        shown = ", ".join(
            f"{k}={v}"
            for k, v in self.params.items()
            if k != "hardening" and not _default_gan(k, v)
        )
        head = self.name if self.kind == "trigger" else f"clean-label {self.name}"
        return f"{head} ({shown})" if shown else head


def _default_gan(key: str, value: object) -> bool:
    """Generator settings at their defaults are left out of a row's label (it stays short)."""
    return key.startswith("gan_") and CleanLabelParams.model_fields[key].default == value


@dataclass
class GalleryInfo:
    """Plain data of a gallery: ``images[row, sample]`` in [0, 1], row and column labels."""

    title: str
    row_labels: list[str]
    sample_labels: list[str]
    images: np.ndarray  # (n_rows, n_samples, H, W[, C])
    skipped: list[str] = field(default_factory=list)


def _hardenings() -> list[str]:
    names = typing.get_args(CleanLabelParams.model_fields["hardening"].annotation)
    return [h for h in names if h != "none"]


def _with_defaults(model, own: dict) -> dict:
    """The parameters with their defaults filled in (as given if they do not validate: the row
    is then reported as skipped with the validation message)."""
    try:
        full = model(**own).model_dump()
    except ValueError:
        return own
    return {k: v for k, v in full.items() if v is not None}


def settings(spec=None) -> list[Setting]:
    """Every registered trigger and clean-label hardening, with the spec's parameters if given."""
    base = spec.base_config()[0] if spec is not None else {}
    cells = list(spec.cells()) if spec is not None else []
    out: list[Setting] = []
    for name, cls in TRIGGERS.items():
        fields = cls.Params.model_fields
        configs = [c for c in cells if c.get("trigger") == name] or [base]
        for c in configs:
            s = Setting(
                "trigger", name, _with_defaults(cls.Params, {k: c[k] for k in fields if k in c})
            )
            if s not in out:
                out.append(s)
    clean_cells = [c for c in cells if c.get("poisoning") == "clean_label"]
    for name in _hardenings():
        fields = HARDENING_FIELDS.get(name, ())
        default = CleanLabelParams.model_fields["hardening"].default
        configs = [c for c in clean_cells if c.get("hardening", default) == name] or [base]
        for c in configs:
            own = _with_defaults(
                CleanLabelParams, {"hardening": name, **{k: c[k] for k in fields if k in c}}
            )
            s = Setting(
                "hardening", name, {k: v for k, v in own.items() if k == "hardening" or k in fields}
            )
            if s not in out:
                out.append(s)
    return out


def _samples(data: Dataset, n: int, seed: int) -> np.ndarray:
    """Test-set rows: one per class in turn (class 0, 1, …), each drawn with the seed."""
    rng = np.random.default_rng(seed)
    rows = []
    pools = [
        rng.permutation(np.flatnonzero(data.y_test == k)).tolist() for k in range(data.n_classes)
    ]
    k = 0
    while len(rows) < n and any(pools):
        if pools[k % data.n_classes]:
            rows.append(pools[k % data.n_classes].pop(0))
        k += 1
    return np.array(rows, dtype=int)


def _apply(setting: Setting, data: Dataset, X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    if setting.kind == "trigger":
        trigger = TRIGGERS[setting.name].from_config(setting.params)
        trigger.fit(data.X_train, seed_sequence(seed, "trigger"))
        return trigger.apply(X, seed_sequence(seed, "test"))
    params = CleanLabelParams(**setting.params)
    rng = seed_sequence(seed, "harden")
    keep = np.arange(len(data.y_train))
    # the generator is trained on the whole training set, as in a sweep (so the cache is shared)
    if len(keep) > SURROGATE_MAX_SAMPLES and params.hardening != "gan_interpolation":
        keep = np.sort(rng.choice(keep, size=SURROGATE_MAX_SAMPLES, replace=False))
    X_clean, y_clean = data.X_train[keep], data.y_train[keep]
    out = np.empty_like(X)
    for label in np.unique(y):  # each image is hardened as a poison of its own class
        rows = np.flatnonzero(y == label)
        out[rows], _ = harden(X[rows], int(label), params, X_clean, y_clean, data.n_classes, rng)
    return out


def gallery_info(
    data: Dataset,
    spec=None,
    n_samples: int = 4,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> GalleryInfo:
    """The clean samples and every setting applied to them, as arrays (nothing drawn yet).

    ``progress(done, total, label)`` is called before each setting: a clean-label hardening fits
    a model, so the whole gallery can take minutes.
    """
    if n_samples < 1:
        raise SweepError(f"--images must be at least 1; got {n_samples}")
    rows = _samples(data, n_samples, seed)
    X, y = data.X_test[rows], data.y_test[rows]
    images, labels, skipped = [X], ["clean"], []
    # with a spec, generators come from (and go to) its store's cache, shared with its sweeps
    cache = Path(spec.store) / CACHE_DIR if spec is not None else None
    todo = settings(spec)
    for i, s in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), s.label)
        try:
            with cache_root(cache):
                images.append(_apply(s, data, X, y, seed))
        except SweepError as err:  # e.g. a trigger larger than these images
            skipped.append(f"{s.label}: {err}")
            continue
        labels.append(s.label)
    title = f"{spec.name if spec is not None else data.name}: triggers and clean-label hardenings (seed {seed})"
    sample_labels = [f"class {data.classes[int(k)]}" for k in y]
    return GalleryInfo(title, labels, sample_labels, np.stack(images), skipped)


# -- drawing ----------------------------------------------------------------------------------------
def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _pil(img: np.ndarray, scale: int = 1):
    from PIL import Image

    arr = _to_uint8(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    pic = Image.fromarray(arr).convert("RGB")
    if scale > 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.Resampling.NEAREST)
    return pic


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.replace(", ", ",  ").split("  "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def render_png(info: GalleryInfo, path: str | Path) -> Path:
    """A grid: one row per setting, one column per sample, labels on the left and on top."""
    from PIL import Image, ImageDraw, ImageFont

    n_rows, n_cols = info.images.shape[:2]
    h, w = info.images.shape[2:4]
    scale = max(1, round(CELL_PIXELS / max(h, w)))
    cell_w, cell_h = w * scale, h * scale
    pad, label_w, line_h = 6, 300, 14
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_lines = [_wrap(probe, label, font, label_w - 2 * pad) for label in info.row_labels]
    row_h = [max(cell_h, len(lines) * line_h) + pad for lines in row_lines]
    top = 2 * line_h + 2 * pad
    canvas = Image.new(
        "RGB", (label_w + n_cols * (cell_w + pad) + pad, top + sum(row_h) + pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), info.title, fill="black", font=font)
    for j, name in enumerate(info.sample_labels):
        draw.text((label_w + j * (cell_w + pad), pad + line_h), name, fill="black", font=font)
    y0 = top
    for i in range(n_rows):
        for k, line in enumerate(row_lines[i]):
            draw.text((pad, y0 + k * line_h), line, fill="black", font=font)
        for j in range(n_cols):
            canvas.paste(_pil(info.images[i, j], scale), (label_w + j * (cell_w + pad), y0))
        y0 += row_h[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def _data_uri(img: np.ndarray) -> str:
    buf = io.BytesIO()
    _pil(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(info: GalleryInfo, path: str | Path) -> Path:
    """One self-contained page (no network): a table of images embedded as data URIs."""
    h, w = info.images.shape[2:4]
    scale = max(1, round(CELL_PIXELS / max(h, w)))
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{padding:4px;text-align:left;vertical-align:middle;font-size:13px}"
        f"img{{width:{w * scale}px;height:{h * scale}px;image-rendering:pixelated}}"
    )
    head = "".join(f"<th>{html.escape(s)}</th>" for s in info.sample_labels)
    body = []
    for i, label in enumerate(info.row_labels):
        cells = "".join(
            f'<td><img alt="{html.escape(label)}" src="{_data_uri(info.images[i, j])}"></td>'
            for j in range(info.images.shape[1])
        )
        body.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    notes = "".join(f"<li>{html.escape(s)}</li>" for s in info.skipped)
    skipped = f"<p>Not shown (do not fit these images):</p><ul>{notes}</ul>" if notes else ""
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(info.title)}</title>"
        f"<style>{style}</style></head><body><h2>{html.escape(info.title)}</h2>"
        f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>{skipped}</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def write_gallery(info: GalleryInfo, out: str | Path) -> Path:
    """PNG or HTML by the file's suffix."""
    suffix = Path(out).suffix.lower()
    if suffix == ".png":
        return render_png(info, out)
    if suffix in (".html", ".htm"):
        return render_html(info, out)
    raise SweepError(f"--out must end in .png or .html; got {str(out)!r}")
