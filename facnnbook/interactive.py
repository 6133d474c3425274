"""Interactive figures for the static book: plotly figures as self-contained HTML strings
that need no kernel.

Each string holds its controls, its data as JSON (maps quantised to 8 bits per map,
base64) and the script that draws it with plotly.js and redraws on the controls, so every
combination of image, class, layer, fraction and order works without a frame or a trace
per combination. The script is ``book/_static/facnn-interactive.js`` (:data:`SCRIPT`),
inlined into each figure when the notebook runs: the page works in Jupyter too, where the
book's ``_static/`` is not served. plotly.js comes from a LOCAL path (``plotly_src``,
relative to the page; the build copies it into ``_static/``, see :func:`plotly_js`),
loaded once per page whatever the number of figures, never from a CDN: the book reads
offline.
"""
from __future__ import annotations

import base64
import json
import shutil
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np

from .provenance import ROOT

PLOTLY_SRC = "../_static/plotly.min.js"   # from a chapter page in the built book
SCRIPT = ROOT / "book" / "_static" / "facnn-interactive.js"


def plotly_js(static: Path) -> Path:
    """Copy the installed plotly package's plotly.min.js (it matches the figure JSON this
    module writes) into the book's static folder ``static``, unless it is there already;
    returns the copy."""
    import plotly
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not src.exists():
        raise FileNotFoundError(f"{src} is missing: reinstall plotly (pip install plotly)")
    dst = Path(static) / "plotly.min.js"
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


# -- encoding ------------------------------------------------------------------------------

def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode("ascii")


def _quantise(maps) -> dict:
    """Maps (..., H, W) -> 8 bits per map: {"q": base64 of round(255 (m - lo) / (hi - lo)),
    "lo": lo, "hi": hi} with lo, hi (...) each map's range (4 significant digits); a map is
    rebuilt as lo + q (hi - lo) / 255, i.e. to 1/255 of its range."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float32))
    lo, hi = m.min(axis=(-2, -1)), m.max(axis=(-2, -1))
    span = np.where(hi > lo, hi - lo, 1.0)
    q = np.rint(255 * (m - lo[..., None, None]) / span[..., None, None])
    return {"q": _b64(q), "lo": _round(lo), "hi": _round(hi)}


def _round(a) -> list:
    return [float(f"{v:.4g}") for v in np.asarray(a, float).ravel()]


def _images(images) -> str:
    """uint8 (..., 3, H, W) -> base64."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (..., 3, H, W), got {a.dtype}; pass the "
                         f"dataset's images, not normalised ones")
    return _b64(a)


# -- the page --------------------------------------------------------------------------------

_PAGE = """<div class="facnn-interactive" style="margin: 0.5em 0 1em 0;">
<div class="facnn-controls"
 style="display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center; font-size: 0.9em;">
__CONTROLS__
</div>
<div class="facnn-plot" style="width: 100%; height: __HEIGHT__px;"></div>
__NOTE__
<script type="application/json" class="facnn-data">__SPEC__</script>
<script>
__SCRIPT__
</script>
</div>
"""


def _select(name: str, label: str, options: Sequence[tuple[int, str]], value: int = 0) -> str:
    opts = "".join(f'<option value="{v}"{" selected" if v == value else ""}>{escape(t)}</option>'
                   for v, t in options)
    return f'<label>{escape(label)} <select data-facnn="{name}">{opts}</select></label>'


def _range(name: str, label: str, n: int, value: int) -> str:
    return (f'<label>{escape(label)} <input type="range" data-facnn="{name}" min="0" '
            f'max="{n - 1}" step="1" value="{value}" style="vertical-align: middle;"> '
            f'<span data-facnn="{name}-text"></span></label>')


def _page(view: str, controls: list[str], data: dict, fig, plotly_src: str,
          note: str = "") -> str:
    """The HTML string: controls, a plot div, the figure's JSON (``view``: which drawing of
    facnn-interactive.js, plotly's figure, ``data``) and the script."""
    import plotly.io as pio
    if "://" in plotly_src or plotly_src.startswith("//"):
        raise ValueError(f"plotly_src={plotly_src!r} is not local: the book reads offline; "
                         f"copy plotly.min.js into _static/ (facnnbook.interactive.plotly_js) "
                         f"and pass a relative path")
    if not SCRIPT.exists():
        raise FileNotFoundError(f"{SCRIPT} is missing: the interactive figures' script ships "
                                f"with the checkout (install facnn editable: pip install -e .)")
    spec = {"view": view, "src": plotly_src, "data": data,
            "fig": json.loads(pio.to_json(fig, validate=True, pretty=False))}
    # "<" only occurs inside JSON strings, where \u003c reads the same: nothing in the data
    # can end the script element
    spec_json = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")
    parts = {"__HEIGHT__": str(int(fig.layout.height)), "__CONTROLS__": "\n".join(controls),
             "__NOTE__": f'<p style="font-size: 0.85em; margin: 0.2em 0;">{note}</p>' if note
             else "",
             "__SCRIPT__": SCRIPT.read_text().replace("</", "<\\/"),
             "__SPEC__": spec_json}   # last: the data may contain anything
    html = _PAGE
    for k, v in parts.items():
        html = html.replace(k, v)
    return html


def _axes_off(fig) -> None:
    fig.update_xaxes(visible=False, showgrid=False, zeroline=False)
    fig.update_yaxes(visible=False, showgrid=False, zeroline=False, scaleanchor=None)


def _overlay_traces(opacity: float = 0.5) -> list:
    """An image trace and a heatmap over it (1-pixel placeholders; the script fills them)."""
    import plotly.graph_objects as go
    return [go.Image(z=[[[0, 0, 0]]], hoverinfo="skip"),
            go.Heatmap(z=[[0]], x0=0, dx=1, y0=0, dy=1, colorscale="Jet",
                       opacity=opacity, showscale=False, zsmooth="best",
                       hovertemplate="%{z:.3g}<extra></extra>")]


# -- the explorer ------------------------------------------------------------------------------

def explorer_html(d: dict, plotly_src: str = PLOTLY_SRC) -> str:
    """The book's static explorer from a facnnbook.explore_data.explorer_data dict: pick
    an image, a class and a layer to see (a) the image with that class's map at that layer
    laid over it, (b) Grad-CAM of the class at the last layer, and pick a removal fraction
    and order to see (c) the image with that fraction of its pixels replaced by the mean,
    ranked by its label's last-layer class map, titled with the prediction after removal.

    Every combination works without a kernel: the data travel with the page (maps at 8
    bits each) and a script redraws. Returns an HTML string; plotly.js is loaded from
    ``plotly_src`` (relative to the page), once per page.
    """
    from plotly.subplots import make_subplots
    need = ("images", "labels", "pred", "prob", "layers", "class_maps", "grad_cam",
            "fractions", "orders", "removed", "removal_pred", "removal_prob", "class_names")
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"explorer_html needs the dict of explorer_data; missing {missing}")
    n, L, C, H, W = np.asarray(d["class_maps"]).shape
    F = len(d["fractions"])
    names = [str(c) for c in d["class_names"]]
    labels = [int(v) for v in d["labels"]]
    layers = [int(v) for v in d["layers"]]
    N = int(max(layers))
    data = {"n": n, "L": L, "C": C, "H": H, "W": W, "F": F, "N": N, "names": names, "labels": labels,
            "layers": layers, "fractions": [float(f) for f in d["fractions"]],
            "orders": [str(o) for o in d["orders"]],
            "images": _images(d["images"]), "removed": _images(d["removed"]),
            "cm": _quantise(d["class_maps"]), "gc": _quantise(d["grad_cam"]),
            "rpred": np.asarray(d["removal_pred"]).astype(int).ravel().tolist(),
            "rprob": _round(d["removal_prob"])}
    fig = make_subplots(1, 3, horizontal_spacing=0.03,
                        subplot_titles=("class map", f"Grad-CAM, layer {N}", "after removal"))
    for col, traces in ((1, _overlay_traces()), (2, _overlay_traces()),
                        (3, _overlay_traces()[:1])):
        for t in traces:
            fig.add_trace(t, 1, col)
    _axes_off(fig)
    fig.update_layout(height=330, margin=dict(l=5, r=5, t=60, b=5), font=dict(size=13))
    fig.update_annotations(font_size=14)
    default_layer = layers.index(N) if N in layers else L - 1
    controls = [
        _select("image", "image", [(i, f"{i + 1}: {names[labels[i]]} (predicted "
                                        f"{names[int(d['pred'][i])]}, p={float(d['prob'][i]):.2f})")
                                   for i in range(n)]),
        _select("class", "class", [(-1, "the image's label")] + list(enumerate(names)), -1),
        _range("layer", "layer", L, default_layer),
        _range("fraction", "removed", F, min(3, F - 1)),
        _select("order", "order", [(k, {"lerf": "least relevant first",
                                        "morf": "most relevant first"}.get(o, o))
                                   for k, o in enumerate(data["orders"])]),
    ]
    note = ("Pixels are removed (replaced by the dataset mean) in the order of the image's "
            f"<em>label's</em> class map at the last layer ({N}); colours are scaled per map.")
    return _page("explorer", controls, data, fig, plotly_src, note)


# -- the morph (Figures 1/5) --------------------------------------------------------------------

def morph_html(images, maps, layers, names, correlations=None, grad_cam=None,
               plotly_src: str = PLOTLY_SRC) -> str:
    """Figures 1/5 as a morph: one slider over the layers moves every image's class map
    (top row; one column per image) and, when ``grad_cam`` is given, Grad-CAM at the same
    layer (second row), each laid over its image.

    images: uint8 (n, 3, H, W); maps, grad_cam: (n, L, H, W) floats at the image size;
    layers: the L layer numbers; names: n titles (e.g. class names); correlations: (n, L)
    numbers shown with each layer (e.g. Pearson r of class map and Grad-CAM) or None.
    Returns an HTML string; plotly.js is loaded from ``plotly_src``, once per page.
    """
    from plotly.subplots import make_subplots
    images, maps = np.asarray(images), np.asarray(maps, dtype=np.float32)
    n, L, H, W = maps.shape
    if len(images) != n or len(names) != n or len(layers) != L:
        raise ValueError(f"morph_html needs one image and name per map stack and one layer "
                         f"number per map: maps {maps.shape}, {len(images)} images, "
                         f"{len(names)} names, {len(layers)} layers")
    rows = 1 if grad_cam is None else 2
    if grad_cam is not None and np.asarray(grad_cam).shape != maps.shape:
        raise ValueError(f"grad_cam must have the maps' shape {maps.shape}, got "
                         f"{np.asarray(grad_cam).shape}")
    corr = None if correlations is None else np.asarray(correlations, float)
    if corr is not None and corr.shape != (n, L):
        raise ValueError(f"correlations must be (n, L) = ({n}, {L}), got {corr.shape}")
    data = {"n": n, "L": L, "H": H, "W": W, "rows": rows, "names": [str(s) for s in names],
            "layers": [int(v) for v in layers], "images": _images(images),
            "cm": _quantise(maps), "corr": None if corr is None else _round(corr)}
    if grad_cam is not None:
        data["gc"] = _quantise(grad_cam)
    fig = make_subplots(rows, n, horizontal_spacing=0.01, vertical_spacing=0.08,
                        subplot_titles=[" "] * (rows * n))
    for r in range(rows):
        for c in range(n):
            for t in _overlay_traces():
                fig.add_trace(t, r + 1, c + 1)
    _axes_off(fig)
    cell = max(90, min(220, 700 // n))
    fig.update_layout(height=rows * cell + 70, margin=dict(l=5, r=5, t=50, b=5),
                      font=dict(size=13))
    fig.update_annotations(font_size=13)
    controls = [_range("layer", "layer", L, L - 1)]
    note = ("Class map" + (" (top) and Grad-CAM (bottom)" if rows == 2 else "") +
            " of each image's class; colours are scaled per map.")
    return _page("morph", controls, data, fig, plotly_src, note)
