"""Interactive figures for the static book: plotly figures as self-contained HTML strings
that need no kernel.

Each string holds its data (maps quantised to 8 bits per map, base64) and a small script
that draws it with plotly.js and redraws on the page's controls, so every combination of
image, class, layer, fraction and order works without a frame or a trace per combination.
plotly.js comes from a LOCAL path (``plotly_src``, relative to the page; the book ships it
in ``_static/``, see :func:`plotly_js`), loaded once per page whatever the number of
figures, never from a CDN: the book reads offline.
"""
from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from pathlib import Path
from typing import Sequence

import numpy as np

PLOTLY_SRC = "../_static/plotly.min.js"   # from a chapter page in the built book


def plotly_js() -> Path:
    """The plotly.min.js shipped with the installed plotly package (copy it to the book's
    ``_static/``); it matches the figure JSON this module writes."""
    import plotly
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly (pip install plotly)")
    return path


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

_LOADER = """
function facnnPlotly(src, done, fail) {
  if (window.Plotly) { done(); return; }
  var s = document.getElementById("facnn-plotly-js");
  if (!s) {
    s = document.createElement("script");
    s.id = "facnn-plotly-js";
    s.src = src;
    // with require.js on the page (ipywidgets) plotly.js would register as an AMD module
    // instead of setting window.Plotly: hide define() while it loads
    var amd = window.define;
    if (amd && amd.amd) { window.define = undefined; }
    s.addEventListener("load", function () { if (amd) { window.define = amd; } });
    s.addEventListener("error", function () { if (amd) { window.define = amd; } });
    document.head.appendChild(s);
  }
  s.addEventListener("load", done);
  s.addEventListener("error", fail);
}
function facnnBytes(b64) {
  var s = atob(b64), a = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) { a[i] = s.charCodeAt(i); }
  return a;
}
function facnnRGB(a, k, H, W) {          // image k of a uint8 (..., 3, H, W) buffer
  var z = [], o = k * 3 * H * W, P = H * W;
  for (var y = 0; y < H; y++) {
    var row = [];
    for (var x = 0; x < W; x++) {
      var p = o + y * W + x;
      row.push([a[p], a[p + P], a[p + 2 * P]]);
    }
    z.push(row);
  }
  return z;
}
function facnnMap(m, k, H, W) {           // map k of a quantised stack, with its range
  var lo = m.lo[k], hi = m.hi[k], s = (hi - lo) / 255, z = [], o = k * H * W;
  for (var y = 0; y < H; y++) {
    var row = [];
    for (var x = 0; x < W; x++) { row.push(lo + m.bytes[o + y * W + x] * s); }
    z.push(row);
  }
  return {z: z, lo: lo, hi: hi > lo ? hi : lo + 1e-6};
}
"""

_PAGE = """<div id="__UID__" class="facnn-interactive" style="margin: 0.5em 0 1em 0;">
<div class="facnn-controls"
 style="display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center; font-size: 0.9em;">
__CONTROLS__
</div>
<div id="__UID__-plot" style="width: 100%; height: __HEIGHT__px;"></div>
__NOTE__
</div>
<script>
(function () {
__LOADER__
var root = document.getElementById("__UID__");
var div = document.getElementById("__UID__-plot");
var D = __DATA__;
var FIG = __FIG__;
function ctl(name) { return root.querySelector("[data-facnn=" + name + "]"); }
function setText(name, text) { var e = ctl(name); if (e) { e.textContent = text; } }
__DECODE__
function update() {
__UPDATE__
}
facnnPlotly(__SRC__, function () {
  Plotly.newPlot(div, FIG.data, FIG.layout, {responsive: true, displayModeBar: false}).then(update);
  root.querySelectorAll("select, input").forEach(function (e) {
    e.addEventListener("input", update);
  });
}, function () {
  div.textContent = "plotly.js did not load from " + __SRC__ + " (this figure needs it).";
});
})();
</script>
"""


def _select(name: str, label: str, options: Sequence[tuple[int, str]], value: int = 0) -> str:
    opts = "".join(f'<option value="{v}"{" selected" if v == value else ""}>{escape(t)}</option>'
                   for v, t in options)
    return f'<label>{escape(label)} <select data-facnn="{name}">{opts}</select></label>'


def _range(name: str, label: str, n: int, value: int) -> str:
    return (f'<label>{escape(label)} <input type="range" data-facnn="{name}" min="0" '
            f'max="{n - 1}" step="1" value="{value}" style="vertical-align: middle;"> '
            f'<span data-facnn="{name}-text"></span></label>')


def _page(controls: list[str], data: dict, fig, decode: str, update: str, plotly_src: str,
          note: str = "") -> str:
    """The HTML string: controls, a plot div, the data and the drawing script."""
    import plotly.io as pio
    if "://" in plotly_src or plotly_src.startswith("//"):
        raise ValueError(f"plotly_src={plotly_src!r} is not local: the book reads offline; "
                         f"copy facnn.book.interactive.plotly_js() into _static/ and pass "
                         f"a relative path")
    data_json = json.dumps(data, separators=(",", ":"))
    fig_json = pio.to_json(fig, validate=True, pretty=False)
    uid = "facnn-" + hashlib.sha1((data_json + fig_json + update).encode()).hexdigest()[:10]
    parts = {"__HEIGHT__": str(int(fig.layout.height)), "__UID__": uid,
             "__CONTROLS__": "\n".join(controls), "__LOADER__": _LOADER,
             "__DECODE__": decode, "__UPDATE__": update, "__SRC__": json.dumps(plotly_src),
             "__NOTE__": f'<p style="font-size: 0.85em; margin: 0.2em 0;">{note}</p>' if note
             else "",
             # the data last: they may contain anything, and "</" must not end the script
             "__FIG__": fig_json.replace("</", "<\\/"),
             "__DATA__": data_json.replace("</", "<\\/")}
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
    """The book's static explorer from a facnn.book.explore_data.explorer_data dict: pick
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
    decode = """D.images = facnnBytes(D.images); D.removed = facnnBytes(D.removed);
D.cm.bytes = facnnBytes(D.cm.q); D.gc.bytes = facnnBytes(D.gc.q);"""
    update = """
  var i = +ctl("image").value, c = +ctl("class").value, l = +ctl("layer").value;
  var f = +ctl("fraction").value, o = +ctl("order").value;
  if (c < 0) { c = D.labels[i]; }
  var H = D.H, W = D.W, img = facnnRGB(D.images, i, H, W);
  var cm = facnnMap(D.cm, (i * D.L + l) * D.C + c, H, W), gc = facnnMap(D.gc, i * D.C + c, H, W);
  var k = (i * D.orders.length + o) * D.F + f;
  setText("layer-text", D.layers[l]);
  setText("fraction-text", Math.round(100 * D.fractions[f]) + " %");
  Plotly.restyle(div, {z: [img, img, facnnRGB(D.removed, k, H, W)]}, [0, 2, 4]);
  Plotly.restyle(div, {z: [cm.z, gc.z], zmin: [cm.lo, gc.lo], zmax: [cm.hi, gc.hi]}, [1, 3]);
  Plotly.relayout(div, {
    "annotations[0].text": "class map: " + D.names[c] + "<br>layer " + D.layers[l],
    "annotations[1].text": "Grad-CAM: " + D.names[c] + "<br>layer " + D.N,
    "annotations[2].text": Math.round(100 * D.fractions[f]) + " % removed (" +
      D.orders[o].toUpperCase() + ")<br>predicted: " + D.names[D.rpred[k]] +
      " (p=" + D.rprob[k].toFixed(2) + ")"});"""
    note = ("Pixels are removed (replaced by the dataset mean) in the order of the image's "
            f"<em>label's</em> class map at the last layer ({N}); colours are scaled per map.")
    return _page(controls, data, fig, decode, update, plotly_src, note)


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
    decode = """D.images = facnnBytes(D.images); D.cm.bytes = facnnBytes(D.cm.q);
if (D.gc) { D.gc.bytes = facnnBytes(D.gc.q); }"""
    update = """
  var l = +ctl("layer").value, H = D.H, W = D.W, z = [], lo = [], hi = [], idx = [], ann = {};
  setText("layer-text", D.layers[l]);
  for (var r = 0; r < D.rows; r++) {
    var m = r === 0 ? D.cm : D.gc;
    for (var i = 0; i < D.n; i++) {
      var k = r * D.n + i, map = facnnMap(m, i * D.L + l, H, W);
      z.push(map.z); lo.push(map.lo); hi.push(map.hi); idx.push(2 * k + 1);
      var r_txt = D.corr ? "r = " + D.corr[i * D.L + l].toFixed(2) : "";
      var t = r === 0 ? D.names[i] + (D.rows === 1 && D.corr ? "<br>" + r_txt : "") :
                        "Grad-CAM" + (D.corr ? ", " + r_txt : "");
      ann["annotations[" + k + "].text"] = t;
    }
  }
  if (!D.drawn) {   // the images do not change with the layer
    var imgs = [], iidx = [];
    for (var r2 = 0; r2 < D.rows; r2++) {
      for (var j = 0; j < D.n; j++) {
        imgs.push(facnnRGB(D.images, j, H, W));
        iidx.push(2 * (r2 * D.n + j));
      }
    }
    Plotly.restyle(div, {z: imgs}, iidx);
    D.drawn = true;
  }
  Plotly.restyle(div, {z: z, zmin: lo, zmax: hi}, idx);
  Plotly.relayout(div, ann);"""
    note = ("Class map" + (" (top) and Grad-CAM (bottom)" if rows == 2 else "") +
            " of each image's class; colours are scaled per map.")
    return _page(controls, data, fig, decode, update, plotly_src, note)
