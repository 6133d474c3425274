"""What each chapter of the book computes, as functions of a model and images.

Each function returns a flat dict of arrays, tables and scalars that
:meth:`facnn.results.Study.cached` can store and :mod:`facnn.plots` can draw. They only
combine :mod:`facnn.attribution`, :mod:`facnn.theory` and :mod:`facnn.removal`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from . import attribution as A
from . import data as D
from . import theory as T


def pick(n_total: int, n: int, seed: int = 0) -> Tensor:
    """A seeded random choice of n indices out of n_total, sorted."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@torch.no_grad()
def predict(model, x: Tensor) -> tuple[Tensor, Tensor]:
    """(predicted class (B,), its probability (B,)) from the model's own distribution."""
    p = model.probabilities(x).float()
    conf, cls = p.max(1)
    return cls, conf


# -- Theorem 1 -------------------------------------------------------------------------------

def theorem1_study(model, test: D.ArrayDataset, n_images: int, n_show: int = 3,
                   seed: int = 0) -> dict[str, Any]:
    """Theorem 1 on test images: class maps against Grad-CAM with both targets (score Y^c,
    as the theorem; the L1-normalised probability, to show it differs), for all classes.
    Plus, for ``n_show`` images, the maps of three classes (label, then the two best other
    scores) for the figure."""
    idx = pick(len(test), n_images, seed)
    x = test.normalised(idx)
    score = T.theorem1(model, x, target="score")
    prob = T.theorem1(model, x, target="probability")
    xs, ys = x[:n_show], test.labels[idx[:n_show]]
    with torch.no_grad():
        s = model(xs).float()
    s[torch.arange(len(ys)), ys] = math.inf        # the label first, then the best others
    classes = s.argsort(1, descending=True)[:, :3]  # (n_show, 3)
    fa, gs, gp = [], [], []
    for j in range(classes.shape[1]):
        c = classes[:, j]
        fa.append(A.class_maps(model, xs, classes=c)[:, 0])
        gs.append(A.grad_cam(model, xs, classes=c, target="score")[:, 0])
        gp.append(A.grad_cam(model, xs, classes=c, target="probability")[:, 0])
    out = {k: _np(torch.stack(v, 1)) for k, v in (("fa", fa), ("gc_score", gs), ("gc_prob", gp))}
    return dict(out, corr_score=_np(score["corr"]), corr_prob=_np(prob["corr"]),
                diff_score=_np(score["max_abs_diff"]), diff_prob=_np(prob["max_abs_diff"]),
                images=test.images[idx[:n_show]].numpy(), labels=ys.numpy(),
                classes=classes.numpy(), indices=idx.numpy(), class_names=list(test.classes),
                layer=int(score["layer"]), dataset=test.name)


def theorem1_summary(values: dict[str, Any]) -> dict[str, Any]:
    """Scalars the book quotes: per target, min / mean correlation over defined maps, the
    share of maps with correlation above 0.999, undefined (constant) maps, max difference."""
    out = {}
    for t in ("score", "prob"):
        c = np.asarray(values[f"corr_{t}"], float).ravel()
        ok = c[~np.isnan(c)]
        out[t] = dict(min=float(ok.min()) if len(ok) else math.nan,
                      mean=float(ok.mean()) if len(ok) else math.nan,
                      share_exact=float((ok > 0.999).mean()) if len(ok) else math.nan,
                      undefined=int(np.isnan(c).sum()), maps=int(c.size),
                      max_diff=float(np.nanmax(values[f"diff_{t}"])))
    return out


# -- Theorem 2 -------------------------------------------------------------------------------

def bounded_increment_study(models: dict[str, Any], test: D.ArrayDataset, n_images: int,
                            seed: int = 0) -> dict[str, Any]:
    """Theorem 2 on each model (name -> FA-CNN-type model): the per-layer max increment of
    the rescaled maps S_L against delta = 1/N, and, for the first image, its label's class
    map of S_0 .. S_N (the morph strip)."""
    idx = pick(len(test), n_images, seed)
    x = test.normalised(idx)
    label = int(test.labels[idx[0]])
    rows, out = [], {}
    for name, model in models.items():
        r = T.bounded_increment(model, x)
        rows += [dict(model=name, **row) for row in r["rows"]]
        s = T.rescaled_features(model, x[:1])                         # [(1, K, h, w)] * (N+1)
        strip = torch.stack([_class_avg(si, model.num_classes)[0, label] for si in s])
        out[f"morph_{_key(name)}"] = _np(strip)                        # (N+1, h, w)
    return dict(out, rows=pd.DataFrame(rows), image=test.images[idx[0]].numpy(), label=label,
                class_name=test.classes[label], models=list(models), n_images=len(idx))


def _class_avg(x: Tensor, c: int) -> Tensor:
    from .layers import class_average
    return class_average(x, c)


def _key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def bounded_increment_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model: the largest increment over all layers, delta, their ratio, the worst
    margin, and whether the bound holds everywhere."""
    g = rows.groupby("model", sort=False)
    out = g.agg(max_increment=("max_increment", "max"), delta=("delta", "first"),
                worst_margin=("increment_margin", "min"), holds=("holds", "all"),
                layers=("layer", "max")).reset_index()
    out["increment / delta"] = out["max_increment"] / out["delta"]
    return out


# -- Figure 4 ------------------------------------------------------------------------------------

def removal_study(model, test: D.ArrayDataset, n_images: int, rise_masks: int, seed: int = 0,
                  methods: Sequence[str] | None = None, orders: Sequence[str] = ("lerf", "morf"),
                  fractions: Sequence[float] | None = None) -> dict[str, Any]:
    """Figure 4: removal curves for every method at the last and an intermediate layer,
    both orders; returns the curves, the AUC table, timings and the benchmark's settings."""
    from . import removal as Rm
    res = Rm.run_benchmark(model, test, methods=tuple(methods or Rm.METHODS),
                           fractions=tuple(fractions or Rm.FRACTIONS), orders=tuple(orders),
                           n_images=n_images, seed=seed,
                           method_kwargs={"rise": {"n_masks": rise_masks}}, progress=False)
    meta = {k: v for k, v in res.meta.items() if k != "indices"}
    return dict(curves=res.table, auc=res.auc, timing=res.timing, meta=meta,
                indices=np.asarray(res.meta["indices"]))


def _curve(t: pd.DataFrame, method: str, order: str, layer: int | None) -> pd.Series:
    rows = t[(t["method"] == method) & (t["order"] == order)]
    rows = rows[rows["layer"] == layer] if layer is not None else rows[rows["layer"].isna()]
    return rows.set_index("fraction")["accuracy"].sort_index()


def figure4_reading(curves: pd.DataFrame) -> pd.DataFrame:
    """The paper's reading of Figure 4, statement by statement, checked on our curves in
    each removal order. "Better" means higher accuracy for LeRF (least relevant removed
    first: a faithful map keeps the evidence) and lower for MoRF (most relevant first: a
    faithful map destroys it). A statement that needs a method we did not run reads n/a."""
    layers = sorted({int(v) for v in curves["layer"].dropna()}, reverse=True)
    last, mid = layers[0], (layers[1] if len(layers) > 1 else None)
    rows = []
    for order in ("lerf", "morf"):
        if order not in set(curves["order"]):
            continue
        sign = 1 if order == "lerf" else -1
        c = {m: _curve(curves, m, order, last if m in A.LAYERED else None)
             for m in ("fa-cnn", "grad-cam", "rise", "k-occ", "random")}
        cm = {m: _curve(curves, m, order, mid) for m in ("fa-cnn", "grad-cam")} if mid else {}
        for text, fn in _STATEMENTS:
            try:
                ours, holds = fn(c, cm, sign)
            except (KeyError, ValueError, IndexError):
                ours, holds = "n/a (method or layer not run)", None
            rows.append({"order": order.upper(), "the paper says": text, "ours": ours,
                         "holds": "n/a" if holds is None else ("yes" if holds else "no")})
    return pd.DataFrame(rows)


def _band(s: pd.Series, lo: float, hi: float) -> float:
    v = s[(s.index > lo - 1e-9) & (s.index <= hi + 1e-9)]
    if not len(v):
        raise ValueError("no fractions in band")
    return float(v.mean())


def _auc(s: pd.Series) -> float:
    return float(np.trapezoid(s.to_numpy(float), s.index.to_numpy(float)))


def _s_layers(c, cm, sign):
    a = {m: _auc(c[m]) for m in ("fa-cnn", "grad-cam")}
    b = {m: _auc(cm[m]) for m in ("fa-cnn", "grad-cam")}
    txt = ", ".join(f"{m} AUC {a[m]:.3f} (last) vs {b[m]:.3f} (intermediate)" for m in a)
    return txt, all(sign * (a[m] - b[m]) > 0 for m in a)


def _s_random(c, cm, sign):
    r = _auc(c["random"])
    a = {m: _auc(c[m]) for m in ("fa-cnn", "grad-cam", "rise", "k-occ")}
    return (", ".join(f"{m} {v:.3f}" for m, v in a.items()) + f"; random {r:.3f}",
            all(sign * (v - r) > 0 for v in a.values()))


def _s_low(c, cm, sign):
    pert = max(sign * _band(c[m], 0.01, 0.2) for m in ("rise", "k-occ"))
    ours = max(sign * _band(c[m], 0.01, 0.2) for m in ("fa-cnn", "grad-cam"))
    return (f"best of RISE/K-OCC {sign * pert:.3f}, best of FA-CNN/Grad-CAM {sign * ours:.3f}"
            " (mean accuracy, 10-20 % removed)", pert > ours)


def _s_raise(c, cm, sign):
    gain = {m: float(c[m][(c[m].index > 0) & (c[m].index <= 0.2 + 1e-9)].max() - c[m].iloc[0])
            for m in ("rise", "k-occ")}
    return (", ".join(f"{m} best gain {100 * g:+.1f} points" for m, g in gain.items()),
            any(g > 0 for g in gain.values()))


def _s_no_raise(c, cm, sign):
    gain = {m: float(c[m][(c[m].index > 0) & (c[m].index <= 0.2 + 1e-9)].max() - c[m].iloc[0])
            for m in ("fa-cnn", "grad-cam")}
    return (", ".join(f"{m} best gain {100 * g:+.1f} points" for m, g in gain.items()),
            all(g <= 0 for g in gain.values()))


def _s_mid(c, cm, sign, tol: float = 0.05):
    ours = {m: _band(c[m], 0.4, 0.6) for m in ("fa-cnn", "grad-cam")}
    pert = {m: _band(c[m], 0.4, 0.6) for m in ("rise", "k-occ")}
    gap = max(abs(a - b) for a in ours.values() for b in pert.values())
    return (", ".join(f"{m} {v:.3f}" for m, v in {**ours, **pert}.items())
            + f" (mean accuracy, 40-60 %); largest gap {gap:.3f}", gap <= tol)


def _s_high(c, cm, sign):
    ours = {m: _band(c[m], 0.61, 0.95) for m in ("fa-cnn", "grad-cam")}
    k = _band(c["k-occ"], 0.61, 0.95)
    return (", ".join(f"{m} {v:.3f}" for m, v in ours.items()) + f", k-occ {k:.3f} "
            "(mean accuracy, 70-90 %)", all(sign * (v - k) > 0 for v in ours.values()))


_STATEMENTS = [
    ("FA-CNN and Grad-CAM do better at the last layer than at the intermediate one", _s_layers),
    ("All methods do better than random removal", _s_random),
    ("At 0-20 % removed, RISE and K-OCC do best", _s_low),
    ("RISE or K-OCC raise accuracy when a few pixels are removed", _s_raise),
    ("FA-CNN and Grad-CAM do not raise accuracy at low removal", _s_no_raise),
    ("At 40-60 %, FA-CNN and Grad-CAM are close to RISE and K-OCC (within 0.05)", _s_mid),
    ("Past 60 %, FA-CNN and Grad-CAM do better than K-OCC", _s_high),
]


# -- Figures 1 and 5 -------------------------------------------------------------------------------

def load_photo(path: str | Path, size: int = 32) -> Tensor:
    """A photo as uint8 (3, size, size): centre square crop, then an antialiased resize."""
    from PIL import Image
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def default_layers(depth: int, most: int = 8) -> list[int]:
    """Layers for Figures 1/5: every layer up to ``most`` of them, else every k-th ending at N
    (the paper shows 3, 6, ..., 24)."""
    if depth <= most:
        return list(range(1, depth + 1))
    step = math.ceil(depth / most)
    return list(range(depth % step or step, depth + 1, step))


def qualitative_study(model, images: Tensor, classes: Tensor, dataset: str,
                      layers: Sequence[int] | None = None, rise_masks: int = 2000,
                      kocc_window: int | None = None) -> dict[str, Any]:
    """Figures 1/5 for uint8 images (B, 3, H, W) and one class each: the averaged FA-CNN
    map and Grad-CAM at each layer (upsampled to the input), their correlation at the
    layer's own resolution, RISE and K-OCC, and the model's top prediction."""
    x = D.normalise(images, dataset)
    classes = classes.long()
    layers = list(layers or default_layers(model.depth))
    size = tuple(x.shape[-2:])
    fa = A.class_maps_layers(model, x, layers, classes)                 # [(B, 1, h_L, w_L)]
    gc = A.grad_cam_layers(model, x, layers, classes, target="score")
    corr = torch.stack([T.pearson(f[:, 0], g[:, 0]) for f, g in zip(fa, gc)], 1)   # (B, nL)
    up = lambda ms: torch.stack([A.upsample(m, size)[:, 0] for m in ms], 1)      # (B, nL, H, W)
    rise = A.rise(model, x, classes=classes, n_masks=rise_masks)[:, 0]
    kocc = A.k_occlusion(model, x, classes=classes, window=kocc_window)[:, 0]
    pred, conf = predict(model, x)
    p_cls = model.probabilities(x).float().gather(1, classes[:, None])[:, 0].detach()
    return dict(images=images.numpy(), classes=classes.numpy(), layers=np.asarray(layers),
                fa=_np(up(fa)), gc=_np(up(gc)), corr=_np(corr), rise=_np(rise), kocc=_np(kocc),
                pred=pred.numpy(), conf=_np(conf), p_class=_np(p_cls), rise_masks=rise_masks)


# -- the explorer ----------------------------------------------------------------------------

def explore(model, image: Tensor, cls: int, layer: int, fraction: float, order: str,
            dataset: str) -> dict[str, Any]:
    """Everything the explorer shows for one uint8 image (3, H, W): the class map and
    Grad-CAM at ``layer``, the class map through every layer (the morph strip), the image
    with ``fraction`` of its pixels removed in ``order`` by the class map, and the model's
    prediction before and after."""
    from .removal import remove_pixels
    x = D.normalise(image[None], dataset)
    size = tuple(x.shape[-2:])
    c = torch.tensor([cls])
    fa = A.upsample(A.class_maps(model, x, layer, classes=c), size)
    gc = A.upsample(A.grad_cam(model, x, layer, classes=c), size)
    strip = A.class_maps_layers(model, x, list(range(1, model.depth + 1)), c)
    strip = torch.cat([A.upsample(m, size) for m in strip], 1)[0]          # (N, H, W)
    removed = remove_pixels(x, fa, [fraction], order=order)[0]               # (1, 3, H, W)
    before, after = model.probabilities(x).float()[0], model.probabilities(removed).float()[0]
    return dict(image=image.numpy(), cls=cls, layer=layer, fraction=fraction, order=order,
                fa=_np(fa[0, 0]), gc=_np(gc[0, 0]), strip=_np(strip),
                removed=(D.denormalise(removed[0], dataset) * 255).round().byte().numpy(),
                before=_np(before), after=_np(after))
