"""Draw an explanation (`analysis.explain.ExplainInfo`) as self-contained HTML.

Images are PNG data URIs (pixels upscaled by nearest neighbour so 8×8 digits stay readable), the
trigger's pixels outlined in cyan on every map; gradient maps use a black–red–yellow–white scale
normalised per map (each map's own maximum is white). Poisoned training samples get a red frame.
The dynamics plot is a plotly figure (`analysis.page.figure_html`; plotly.js is in the page head).
"""

from __future__ import annotations

import base64
import io

import numpy as np

from analysis.explain import ExplainInfo
from analysis.page import esc, facts_html, figure_html, page_html, section_html

#: pixels of the longer image side on the page (full explanation, and the report's compact one)
CELL_PIXELS = 112
COMPACT_PIXELS = 72
POISON_COLOUR = "#c62828"
OUTLINE = np.array([0, 229, 255], dtype=np.uint8)

__all__ = ["dynamics_figure", "explain_block", "explain_page", "heat_rgb", "image_rgb", "png_uri"]


def image_rgb(img: np.ndarray) -> np.ndarray:
    """An image in [0, 1] ((H, W) or (H, W, C)) as (H, W, 3) uint8."""
    a = np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.round(a[:, :, :3] * 255).astype(np.uint8)


def heat_rgb(m: np.ndarray) -> np.ndarray:
    """A non-negative map as (H, W, 3) uint8 on a black–red–yellow–white scale (max = white)."""
    top = float(np.max(m)) if np.size(m) else 0.0
    v = np.asarray(m, dtype=np.float64) / top if top > 0 else np.zeros_like(m, dtype=np.float64)
    rgb = np.stack(
        [np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=2
    )
    return np.round(rgb * 255).astype(np.uint8)


def _scale(shape: tuple[int, ...], pixels: int) -> int:
    return max(1, int(round(pixels / max(shape[0], shape[1]))))


def _outlined(rgb: np.ndarray, mask: np.ndarray | None, scale: int) -> np.ndarray:
    """Upscale by ``scale`` and draw the border of ``mask``'s pixels (where a neighbour is outside)."""
    up = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    if mask is None or not np.any(mask):
        return up
    h, w = mask.shape
    inside = np.pad(np.asarray(mask, dtype=bool), 1)
    for r, c in zip(*np.nonzero(mask), strict=True):
        y, x = r * scale, c * scale
        if not inside[r, c + 1]:  # the pixel above is outside the mask
            up[y, x : x + scale] = OUTLINE
        if not inside[r + 2, c + 1]:
            up[y + scale - 1, x : x + scale] = OUTLINE
        if not inside[r + 1, c]:
            up[y : y + scale, x] = OUTLINE
        if not inside[r + 1, c + 2]:
            up[y : y + scale, x + scale - 1] = OUTLINE
    return up


def png_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _tile(
    rgb: np.ndarray, caption: str, border=None, mask=None, pixels=CELL_PIXELS, pad: int = 48
) -> str:
    scale = _scale(rgb.shape, pixels)
    uri = png_uri(_outlined(rgb, mask, scale))
    frame = f"border:3px solid {border};" if border else "border:3px solid transparent;"
    return (
        '<figure style="display:inline-block;margin:4px 6px;text-align:center;vertical-align:top;'
        f'width:{pixels + pad}px"><img alt="{esc(caption)}" src="{uri}" '
        f'style="{frame}width:{pixels}px;image-rendering:pixelated">'
        f'<figcaption style="font-size:12px;line-height:1.25">{caption}</figcaption></figure>'
    )


def _maps_html(info: ExplainInfo, pixels: int) -> str:
    """One row: the clean and triggered input, then each model's maps on both."""
    tiles = [
        _tile(image_rgb(info.inputs["clean"]), "clean test sample", pixels=pixels),
        _tile(
            image_rgb(info.inputs["triggered"]), "triggered", mask=info.trigger_mask, pixels=pixels
        ),
    ]
    for (model, inp), m in info.maps.items():
        tiles.append(
            _tile(
                heat_rgb(m),
                f"{esc(model)},<br>{inp} input: {info.shares[(model, inp)]:.0%} on the trigger",
                mask=info.trigger_mask,
                pixels=pixels,
            )
        )
    area = float(np.mean(info.trigger_mask))
    note = (
        f"|∂f/∂x| per pixel (colour images: the maximum over channels), each map scaled to its own "
        f"maximum; the trigger's pixels are outlined in cyan and cover {area:.0%} of the image"
    )
    return f'<p class="note">{esc(note)}</p><div class="maps">{"".join(tiles)}</div>'


def _influential_html(info: ExplainInfo, pixels: int, only_first: bool = False) -> str:
    parts = []
    for inf in info.influential[:1] if only_first else info.influential:
        tiles = "".join(
            _tile(
                image_rgb(img),
                f"#{row} label {esc(label)}<br>{effect:+.3g}"
                + (f'<br><b style="color:{POISON_COLOUR}">poisoned</b>' if poison else ""),
                border=POISON_COLOUR if poison else None,
                pixels=pixels,
                pad=12,
            )
            for row, effect, poison, img, label in zip(
                inf.rows, inf.effects, inf.is_poison, inf.images, inf.labels, strict=True
            )
        )
        n_poison = int(np.sum(inf.is_poison))
        parts.append(
            f"<h4>top-{len(inf.rows)} influential training samples of the {esc(inf.title)}: "
            f"{n_poison} poisoned</h4>"
            f'<div class="influential" data-poisoned="{n_poison}">{tiles}</div>'
        )
    if not parts:
        return ""
    note = (
        "value: the change of the test sample's margin for its label if that training sample were "
        "removed, estimated by influence functions (negative: the sample supports the "
        "prediction); ranked by magnitude"
    )
    return f'<p class="note">{esc(note)}</p>' + "".join(parts)


def dynamics_figure(rows: list[dict], title: str = "training dynamics"):
    import plotly.graph_objects as go

    epochs = [r["epoch"] for r in rows]
    fig = go.Figure()
    names = {
        "loss_clean": "clean samples",
        "loss_poison": "poisoned samples",
        "loss_poison_untriggered": "poisoned samples, trigger removed",
    }
    for col, name in names.items():
        fig.add_trace(
            go.Scatter(x=epochs, y=[r[col] for r in rows], mode="lines+markers", name=name)
        )
    fig.update_layout(
        title=title,
        xaxis_title="epoch",
        yaxis_title="mean cross-entropy",
        height=380,
        margin=dict(l=60, r=20, t=50, b=50),
    )
    return fig


def explain_block(info: ExplainInfo, compact: bool = False) -> str:
    """The explanation as an HTML fragment; ``compact`` (the report): smaller images, no facts
    table, and the influential samples of the triggered input only."""
    pixels = COMPACT_PIXELS if compact else CELL_PIXELS
    body = "" if compact else facts_html(info.facts)
    body += "<h4>input-gradient maps</h4>" + _maps_html(info, pixels)
    body += _influential_html(info, pixels, only_first=compact)
    if info.dynamics:
        body += "<h4>training dynamics</h4>" + figure_html(dynamics_figure(info.dynamics), 380, 820)
    body += "".join(f'<p class="note">{esc(n)}</p>' for n in info.notes)
    return f'<div class="explanation">{body}</div>'


def explain_page(infos: list[ExplainInfo], title: str, footer: str = "") -> str:
    """A whole self-contained page with one section per explanation."""
    sections = [
        section_html(f"result-{j}", info.title, explain_block(info)) for j, info in enumerate(infos)
    ]
    nav = [(f"result-{j}", f"result {j + 1}") for j in range(len(infos))] if len(infos) > 1 else []
    return page_html(title, nav, "".join(sections), footer=esc(footer))
