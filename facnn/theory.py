"""The paper's two theorems, checked numerically on any model and input (SPEC 3 and 4).

Theorem 1 (Grad-CAM equivalence). For the pooling head, Y^c = (1/(R Z)) sum_{k in c} sum_ij
A_k(i, j) at the last layer A = X_N, so dY^c/dA_k(i, j) = 1/(R Z) for class c's R maps and 0
otherwise: a_k^c = 1/(R Z) and Grad-CAM = ReLU(sum_k a_k^c A_k) = L_c / Z, a positive multiple
of the class map L_c = (1/R) sum_{k in c} A_k. Exact for the target Y^c; not for the
L1-normalised output, whose gradient mixes in the other classes' maps.

Theorem 2 (bounded increment). With S_0^(T) = 0 and S_L^(T) = (L/N) Pool(X_L, T) for
1 <= L <= T, every element obeys |S_L - S_{L-1}| <= delta = 1/N and 0 <= S_L <= L delta,
for any weights (the dampened skip gives S_L = ReLU(S_{L-1} + tanh(F)/N)).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from .attribution import class_maps_layers, eval_mode, grad_cam_layers, minmax
from .layers import max_pool_to
from .checks import check_choice, check_float, check_images, check_layer, check_tensor, require_features


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each pair of maps over their pixels: (..., h, w) -> (...).
    NaN where a map is constant (correlation undefined)."""
    a, b = check_tensor("a", a), check_tensor("b", b)
    if a.shape != b.shape or a.dim() < 2 or a.numel() == 0:
        raise ValueError(f"a and b must be non-empty maps of the same shape (..., h, w), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    a = a.double().flatten(-2)
    b = b.double().flatten(-2)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(den > 0, (a * b).sum(-1) / den, torch.full_like(den, math.nan))


def _compare(fa: Tensor, gc: Tensor) -> dict:
    """Correlation and max |minmax(fa) - minmax(gc)| per map, with their summaries."""
    corr = pearson(fa, gc)                                              # (B, C_sel)
    diff = (minmax(fa.double()) - minmax(gc.double())).abs().amax(dim=(-2, -1))
    defined = corr[~corr.isnan()]
    return dict(corr=corr, max_abs_diff=diff,
                min_corr=float(defined.min()) if len(defined) else math.nan,
                mean_corr=float(defined.mean()) if len(defined) else math.nan,
                max_diff=float(diff.max()), n_undefined=int(corr.isnan().sum()))


# -- Theorem 1 --------------------------------------------------------------------------------

def theorem1(model: nn.Module, x: Tensor, layer: int | None = None, target: str = "score",
             classes=None, relu: bool = True) -> dict:
    """Compare FA-CNN's class maps L_c with Grad-CAM at layer L, per image and class.

    Returns a dict: ``corr`` (B, C_sel) Pearson correlations (NaN where a map is constant),
    ``max_abs_diff`` (B, C_sel) after per-map min-max, and the summaries ``min_corr``,
    ``mean_corr`` (over defined maps), ``max_diff``, ``n_undefined``, with ``layer`` and
    ``target``. Theorem 1: at L = N with target "score" and the pooling head, corr = 1 and
    max_abs_diff = 0 up to float rounding.
    """
    check_images(x)
    check_choice("target", target, ("score", "probability"))
    layer = check_layer(model, layer)
    fa = class_maps_layers(model, x, [layer], classes)[0]
    gc = grad_cam_layers(model, x, [layer], classes, target=target, relu=relu)[0]
    return dict(layer=layer, target=target, **_compare(fa, gc))


def layer_correlations(model: nn.Module, x: Tensor, classes=None, layers: Sequence[int] | None = None,
                       target: str = "score") -> list[dict]:
    """Per layer L: the class_maps / Grad-CAM correlation Figures 1 and 5 print beside each
    row. One forward and one batched backward for all layers. Returns rows
    {layer, mean_corr, min_corr, max_diff, n_undefined, corr (B, C_sel)}."""
    require_features(model, "layer_correlations")
    check_images(x)
    check_choice("target", target, ("score", "probability"))
    layers = [check_layer(model, l) for l in (layers or range(1, model.depth + 1))]
    fas = class_maps_layers(model, x, layers, classes)
    gcs = grad_cam_layers(model, x, layers, classes, target=target)
    return [dict(layer=l, **_compare(fa, gc)) for l, fa, gc in zip(layers, fas, gcs)]


# -- Theorem 2 --------------------------------------------------------------------------------

def _iter_rescaled(model: nn.Module, feats: list[Tensor], target_layer: int) -> Iterator[Tensor]:
    """S_0^(T) .. S_T^(T), one at a time, in float64 (so the check adds no rounding)."""
    yield torch.zeros_like(feats[target_layer - 1], dtype=torch.float64)   # S_0 = 0
    for l in range(1, target_layer + 1):
        # Pool(X_L, T): the network's own 2x2 max-pools between layers L and T
        pooled = max_pool_to(feats[l - 1], feats[target_layer - 1].shape[-2:])   # (B, K, h_T, w_T)
        yield (l / model.depth) * pooled.double()


def _features(model: nn.Module, x: Tensor, target_layer: int | None) -> tuple[list[Tensor], int]:
    require_features(model, "Theorem 2")
    check_images(x)
    t = check_layer(model, target_layer)
    if not isinstance(t, int):
        raise ValueError("Theorem 2 needs an FA-CNN layer number 1..N as target_layer")
    with eval_mode(model), torch.no_grad():
        return model.forward_features(x), t


def rescaled_features(model: nn.Module, x: Tensor, target_layer: int | None = None) -> list[Tensor]:
    """[S_0^(T), ..., S_T^(T)], each (B, K, h_T, w_T) float64: S_L = (L/N) Pool(X_L, T)."""
    feats, t = _features(model, x, target_layer)
    return list(_iter_rescaled(model, feats, t))


def bounded_increment(model: nn.Module, x: Tensor, target_layer: int | None = None,
                      tol: float = 1e-6) -> dict:
    """Check Theorem 2 at target layer T, per layer L = 1..T.

    Each row: max_increment = max |S_L - S_{L-1}| against delta = 1/N (``increment_margin``
    = delta - max_increment), max_S against L delta (``range_margin`` = L delta - max_S),
    min_S (>= 0), and ``holds`` (all three within ``tol``, which absorbs float32 rounding of
    the forward pass). The dict adds ``holds`` and ``worst_margin`` over all rows; a negative
    margin says by how much the bound is broken (as on Vanilla-CNN). pandas.DataFrame(
    result["rows"]) gives the table.
    """
    check_float("tol", tol, 0.0)
    feats, t = _features(model, x, target_layer)
    n = model.depth
    delta = 1.0 / n
    rows, prev = [], None
    for l, s in enumerate(_iter_rescaled(model, feats, t)):
        if prev is not None:
            inc, top, low = float((s - prev).abs().max()), float(s.max()), float(s.min())
            row = dict(layer=l, delta=delta, max_increment=inc, increment_margin=delta - inc,
                       max_S=top, bound_S=l * delta, range_margin=l * delta - top, min_S=low)
            row["holds"] = bool(row["increment_margin"] >= -tol and row["range_margin"] >= -tol
                                and low >= -tol)
            rows.append(row)
        prev = s
    worst = min(min(r["increment_margin"], r["range_margin"]) for r in rows)
    return dict(target_layer=t, depth=n, delta=delta, rows=rows,
                holds=all(r["holds"] for r in rows), worst_margin=worst)


__all__ = ["pearson", "theorem1", "layer_correlations", "rescaled_features",
           "bounded_increment"]
