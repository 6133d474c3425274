"""Pixel-removal benchmark (PAPER 5.2, Figure 4; SPEC 7).

For each test image a saliency map for its class ranks the image's pixels; a fraction p of
them is removed in that order and replaced by a fill value; the curve is top-1 accuracy
(against the true label) as a function of p. A pixel is a spatial position: its three
channels are removed together. Maps are upsampled bilinearly to the input size first.

Both removal orders are implemented (SPEC 7, DECIDED), because the paper's text ("the most
salient pixels are removed") and its reading of Figure 4 ("higher is better", perturbation
methods can *raise* accuracy at small p) point to different ones:

    lerf  least relevant first: a faithful map keeps accuracy HIGH as p grows
    morf  most relevant first:  a faithful map makes accuracy DROP fast as p grows

Fill values (all in the normalised input space the model sees):

    mean  the dataset mean, i.e. 0 after normalisation (SPEC 7 default)
    blur  the same pixel of a Gaussian-blurred copy of the image
    zero  a black pixel in image space, i.e. (0 - mean) / std per channel

Ties in a map (flat regions, e.g. where Grad-CAM's ReLU gives 0) are broken by one fixed
pseudo-random permutation of the pixel positions, the same for every image and every run
(``tie_break="random"``): tied pixels then leave in an order that favours no part of the
image. ``tie_break="raster"`` removes tied pixels in raster order instead.

How pixels are removed (fractions, order, fill, ties) is one :class:`Removal`, checked once.
The number of pixels removed at fraction p of an H x W image is floor(p * H * W + 1/2).
All (fraction, image) pairs of a curve are stacked into chunks of ``batch_size`` images, so
a curve of F fractions over B images takes ceil(F * B / batch_size) forward passes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor

from . import attribution as A
from .checks import (check_batch_size, check_choice, check_columns, check_float, check_images,
                     check_int, check_labels, check_model, check_tensor)
from .maps import compute_maps
from .models import default_batch, fast_layout

ORDERS = ("lerf", "morf")
FILLS = ("mean", "blur", "zero")
TIE_BREAKS = ("random", "raster")
FRACTIONS = tuple(round(0.1 * i, 1) for i in range(11))   # 0, 0.1, ..., 1.0
METHODS = tuple(A.METHODS)
_TIE_SEED = 20260325                                       # fixed: ties never depend on the run


# -- checks ---------------------------------------------------------------------------------

def check_fractions(fractions: Sequence[float] | Tensor) -> Tensor:
    """The fractions as a float64 vector (F,); ValueError unless they are non-empty, in
    [0, 1] and strictly increasing."""
    f = torch.as_tensor(fractions, dtype=torch.float64).flatten()
    if f.numel() == 0:
        raise ValueError("fractions is empty; give e.g. [0, 0.1, ..., 1.0]")
    if not torch.isfinite(f).all() or f.min() < 0 or f.max() > 1:
        raise ValueError(f"fractions must lie in [0, 1] (shares of pixels removed), got {f.tolist()}")
    if f.numel() > 1 and not (f[1:] > f[:-1]).all():
        raise ValueError(f"fractions must be strictly increasing, got {f.tolist()}; sort them "
                         f"and drop duplicates")
    return f


@dataclass(frozen=True)
class Removal:
    """How pixels are removed: the ``fractions`` of each image's pixels (strictly increasing,
    in [0, 1]), the ``order`` ("lerf" or "morf"), what a removed pixel becomes (``fill``
    "mean", "blur" or "zero"; ``blur_sigma`` for "blur", default max(H, W) / 16) and how ties
    in a map are broken (``tie_break`` "random" or "raster"); see the module docstring.
    Checked once, here; ``fractions`` is kept as a tuple of floats."""

    fractions: Sequence[float] | Tensor = FRACTIONS
    order: str = "lerf"
    fill: str = "mean"
    blur_sigma: float | None = None
    tie_break: str = "random"

    def __post_init__(self):
        object.__setattr__(self, "fractions", tuple(check_fractions(self.fractions).tolist()))
        for name, allowed in (("order", ORDERS), ("fill", FILLS), ("tie_break", TIE_BREAKS)):
            check_choice(name, getattr(self, name), allowed)
        if self.blur_sigma is not None:
            check_float("blur_sigma", self.blur_sigma, 0.0, lo_open=True)


def _check_removal(removal: Removal) -> Removal:
    if not isinstance(removal, Removal):
        raise TypeError(f"removal must be a facnn.removal.Removal, e.g. Removal(fractions, order="
                        f"'morf'), got {type(removal).__name__}")
    return removal


def select_maps(maps: Tensor, batch: int, classes: Tensor | None,
                num_classes: int | None = None) -> Tensor:
    """One map per image, (B, 1, h, w), from maps of shape (B, h, w), (B, 1, h, w) or
    (B, C, h, w); with C maps per image, image i keeps map ``classes[i]``."""
    if not isinstance(maps, Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() == 3:
        maps = maps[:, None]
    if maps.dim() != 4:
        raise ValueError(f"maps must have shape (B, C, h, w) or (B, h, w), got {tuple(maps.shape)}")
    if maps.shape[0] != batch:
        raise ValueError(f"maps are for {maps.shape[0]} images but {batch} images were given")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or inf; check the attribution method")
    c = maps.shape[1]
    if c == 1:
        return maps.float()
    if num_classes is not None and c != num_classes:
        raise ValueError(f"maps have {c} class channels but the model has {num_classes} classes; "
                         f"give one map per image (B, 1, h, w) or one per class (B, C, h, w)")
    if classes is None:
        raise ValueError(f"maps have {c} class channels: give `classes` (B,) to choose one per image")
    check_labels(classes, batch, c, name="classes")
    return maps[torch.arange(batch, device=maps.device), classes.to(maps.device)][:, None].float()


# -- ranking ----------------------------------------------------------------------------

def removal_ranks(maps: Tensor, size: tuple[int, int], order: str = "lerf",
                  tie_break: str = "random") -> Tensor:
    """rank[b, i] = the step at which pixel i (raster index) of image b is removed:
    0 = first. maps (B, 1, h, w) are upsampled bilinearly to ``size`` first. -> (B, H*W)."""
    maps = check_tensor("maps", maps)
    if maps.dim() != 4 or maps.shape[1] != 1 or maps.numel() == 0:
        raise ValueError(f"maps must be one map per image (B, 1, h, w), got {tuple(maps.shape)}; "
                         f"select_maps picks them from (B, C, h, w)")
    size = tuple(check_int("size", v, 1) for v in size)
    if len(size) != 2:
        raise ValueError(f"size={size} must be (H, W)")
    check_choice("order", order, ORDERS)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F_.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    v = maps.flatten(1).double()                                  # (B, P)
    if order == "morf":
        v = -v + 0.0                                              # + 0.0 turns -0.0 into 0.0
    b, p = v.shape
    perm = (torch.randperm(p, generator=torch.Generator().manual_seed(_TIE_SEED))
            if tie_break == "random" else torch.arange(p)).to(v.device)
    pixel = perm[torch.sort(v[:, perm], dim=1, stable=True).indices]   # (B, P) removal order
    rank = torch.empty_like(pixel)
    rank.scatter_(1, pixel, torch.arange(p, device=v.device).expand(b, p))
    return rank


def pixel_counts(fractions: Tensor, n_pixels: int) -> Tensor:
    """Pixels removed at each fraction: floor(p * P + 1/2). -> (F,) int64."""
    fractions = check_fractions(fractions)
    check_int("n_pixels", n_pixels, 1)
    return torch.floor(fractions.double() * n_pixels + 0.5).long()


# -- fills --------------------------------------------------------------------------------

def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding, kernel 2*ceil(3 sigma) + 1 (the same
    kernel as torchvision's ``gaussian_blur`` with that size). (B, C, H, W) -> same."""
    check_images(images, "images")
    check_float("sigma", sigma, 0.0, lo_open=True)
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, min(images.shape[-2:]) - 1)      # reflect padding needs pad < size
    x = torch.linspace(-radius, radius, 2 * radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = F_.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F_.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F_.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def fill_values(images: Tensor, fill: str = "mean", dataset: str | None = None,
                blur_sigma: float | None = None) -> Tensor:
    """What a removed pixel becomes, per image and channel, in normalised space.
    images (B, 3, H, W) normalised -> (B, 3, H, W) (or broadcastable to it)."""
    check_images(images, "images")
    check_choice("fill", fill, FILLS)
    if fill == "mean":
        return torch.zeros_like(images[:1])
    if fill == "zero":
        if dataset is None:
            raise ValueError("fill='zero' needs `dataset` (its mean and std say what black is "
                             "after normalisation)")
        from .data import normalise
        black = torch.zeros(1, images.shape[1], 1, 1, dtype=torch.uint8, device=images.device)
        return normalise(black, dataset).to(images.dtype)
    sigma = blur_sigma if blur_sigma is not None else max(images.shape[-2:]) / 16
    return gaussian_blur(images, sigma)


# -- perturbed images ---------------------------------------------------------------------

def _perturbed(images: Tensor, fills: Tensor, ranks: Tensor, counts: Tensor,
               f_idx: Tensor, b_idx: Tensor) -> Tensor:
    """Images b_idx with their first counts[f_idx] pixels removed. -> (n, 3, H, W)."""
    h, w = images.shape[-2:]
    removed = (ranks[b_idx] < counts[f_idx, None]).view(-1, 1, h, w)   # (n, 1, H, W)
    fill = fills[b_idx] if fills.shape[0] > 1 else fills
    return torch.where(removed, fill, images[b_idx])


def _prepare(images, maps, removal, classes, num_classes, dataset):
    """fractions (F,), removal ranks (B, P), pixels removed (F,) and fill values."""
    check_images(images, "images")
    r = _check_removal(removal)
    f = torch.tensor(r.fractions, dtype=torch.float64)
    one = select_maps(maps, images.shape[0], classes, num_classes).to(images.device)
    ranks = removal_ranks(one, tuple(images.shape[-2:]), r.order, r.tie_break)      # (B, P)
    counts = pixel_counts(f, ranks.shape[1]).to(images.device)                      # (F,)
    return f, ranks, counts, fill_values(images, r.fill, dataset, r.blur_sigma)


def remove_pixels(images: Tensor, maps: Tensor, removal: Removal, classes: Tensor | None = None,
                  dataset: str | None = None) -> Tensor:
    """The perturbed images themselves, for inspection and plots (small batches only).
    images (B, 3, H, W) -> (F, B, 3, H, W); ``classes`` and ``dataset`` as in
    :func:`removal_curve`."""
    f, ranks, counts, fills = _prepare(images, maps, removal, classes, None, dataset)
    b = images.shape[0]
    f_idx, b_idx = torch.arange(len(f)).repeat_interleave(b), torch.arange(b).repeat(len(f))
    return _perturbed(images, fills, ranks, counts, f_idx, b_idx).view(len(f), *images.shape)


# -- the curve ---------------------------------------------------------------------------

@dataclass
class Curve:
    """One pixel-removal curve. fractions (F,); accuracy (F,) top-1 against the labels;
    correct (F, B) per image; scores (F, B) the model's score for each image's label."""

    fractions: Tensor
    accuracy: Tensor
    correct: Tensor
    scores: Tensor


def trapezoid_auc(fractions: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under the curve; with fractions 0..1 it is the mean accuracy."""
    if len(fractions) != len(accuracy) or len(fractions) == 0:
        raise ValueError(f"fractions and accuracy must be non-empty and of the same length, got "
                         f"{len(fractions)} and {len(accuracy)}")
    return float(np.trapezoid(np.asarray(accuracy, float), np.asarray(fractions, float)))


@torch.no_grad()
def removal_curve(model, images: Tensor, labels: Tensor, maps: Tensor, removal: Removal = Removal(),
                  *, batch_size: int | None = None, classes: Tensor | None = None,
                  dataset: str | None = None, cache: dict | None = None) -> Curve:
    """Top-1 accuracy after removing each fraction of every image's pixels (PAPER 5.2).

    Args:
        model: a classifier, ``model(x)`` -> scores (B, C); prediction = argmax.
        images: (B, 3, H, W) normalised, on the model's device.
        labels: (B,) true classes; accuracy is always measured against them.
        maps: (B, 1, h, w) one map per image, or (B, C, h, w) one per class, from which
            image i uses map ``classes[i]`` (default: its label).
        removal: fractions, order, fill, blur_sigma and tie_break (:class:`Removal`).
        batch_size: images per forward pass; all F*B perturbed images go through in
            ceil(F*B / batch_size) passes.
        dataset: the images' dataset, which fill "zero" needs (what black is after
            normalisation).
        cache: a dict shared by curves over the SAME images, labels and fill: the results
            at 0 and at all pixels removed do not depend on the map, so they are computed
            once and reused (run_benchmark passes one).
    """
    check_model(model)
    check_images(images, "images")
    check_labels(labels, images.shape[0], getattr(model, "num_classes", None))
    classes = labels if classes is None else classes
    batch_size = check_batch_size("batch_size", batch_size) or default_batch(images)
    f, ranks, counts, fills = _prepare(images, maps, removal, classes,
                                       getattr(model, "num_classes", None), dataset)
    b, p = ranks.shape
    ends = {i: c for i, c in enumerate(counts.tolist()) if cache is not None and c in (0, p)}
    todo = [i for i in range(len(f)) if i not in ends or ends[i] not in cache]
    correct = torch.zeros(len(f), b, dtype=torch.bool)
    scores = torch.zeros(len(f), b)
    labels = labels.to(images.device)
    was_training = model.training
    model.eval()
    fi, total = torch.as_tensor(todo, dtype=torch.long), len(todo) * b
    for start in range(0, total, batch_size):       # (fraction, image) pairs, fraction-major
        k = torch.arange(start, min(start + batch_size, total))
        f_idx, b_idx = fi[k // b], k % b
        out = model(fast_layout(_perturbed(images, fills, ranks, counts, f_idx, b_idx)))  # (n, C)
        y = labels[b_idx]
        correct[f_idx, b_idx] = (out.argmax(1) == y).cpu()
        scores[f_idx, b_idx] = out.gather(1, y[:, None])[:, 0].float().cpu()
    model.train(was_training)
    for i, c in ends.items():                       # map-independent end points
        if c in cache:
            correct[i], scores[i] = cache[c]
        else:
            cache[c] = (correct[i].clone(), scores[i].clone())
    return Curve(f, correct.double().mean(1), correct, scores)


# -- the benchmark --------------------------------------------------------------------------

def intermediate_layer(depth: int) -> int:
    """The intermediate layer of Figure 4 at depth N: layer 18 of 24, i.e. round(N * 18/24)
    (half rounds up): 24 -> 18, 9 -> 7, 4 -> 3."""
    depth = check_int("depth", depth, 1)
    return max(1, math.floor(depth * 18 / 24 + 0.5))


def default_layers(model) -> list[int | None]:
    """Figure 4's two panels: the last layer N and the intermediate layer."""
    depth = getattr(check_model(model), "depth", None)
    if depth is None:
        return [None]
    return [depth, intermediate_layer(depth)] if depth > 1 else [depth]


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns.

    table:    one row per (method, layer, order, fraction): accuracy (mean over seeds for
              RAND), n images, accuracy_std (spread over seeds; NaN for one seed), n_seeds.
    per_seed: the same before averaging, with a ``seed`` column (seed NaN: not seeded).
    auc:      one row per curve: (method, layer, order) -> auc (mean over seeds), auc_std.
    timing:   one row per method: seconds for its maps and for its curves (the first
              method's curves also pay for fractions 0 and 1, which every curve shares).
    meta:     the benchmark's own settings (fractions, images, fill, kwargs, ...).
    correct:  with keep_correct, each curve's per-image correctness, bool (F, n).

    ``layer`` is the FA-CNN layer (1..N) for layered methods (fa-cnn, grad-cam) and <NA>
    for methods that do not look inside the model (rise, k-occ, random): each of those
    appears once and is drawn in every layer's panel.
    """

    table: pd.DataFrame
    per_seed: pd.DataFrame
    auc: pd.DataFrame
    timing: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    correct: dict[tuple, Any] = field(default_factory=dict)   # (method, layer, order, seed) -> (F, n)


def run_benchmark(model, dataset, methods: Sequence[str] = METHODS,
                  layers: Sequence[int | None] | None = None, removal: Removal = Removal(),
                  orders: Sequence[str] = ORDERS, n_images: int | None = 500, seed: int = 0, *,
                  rand_seeds: Sequence[int] = (0, 1, 2),
                  method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
                  target: str = "label", batch_size: int | None = None, map_batch: int = 100,
                  device: str | torch.device = "cpu", progress: bool = True,
                  clip_negative: Sequence[str] = (), keep_correct: bool = False,
                  maps_dir: str | Path | None = None) -> BenchmarkResult:
    """Figure 4: pixel-removal curves for every method, layer and order on one model.

    Args:
        model: the trained classifier (eval mode is set here).
        dataset: a facnn.data.ArrayDataset (uint8 images; normalised here with its stats).
        methods: names in facnn.attribution.METHODS.
        layers: FA-CNN layers for the layered methods; default [N, intermediate_layer(N)].
        removal: fractions, fill, blur_sigma and tie_break of every curve (:class:`Removal`);
            its order is replaced by each of ``orders``.
        n_images, seed: a seeded random choice of n_images test images (all when None).
        rand_seeds: RAND is run once per seed; the table holds mean and spread.
        method_kwargs: per-method keyword arguments, e.g. {"rise": {"n_masks": 500},
            "k-occ": {"window": 8, "stride": 4}}.
        target: the class whose map ranks the pixels: "label" (SPEC 7) or "predicted".
        batch_size: images per forward pass in the curves; map_batch: images per call of
            an attribution method.
        clip_negative: methods whose maps are also used clipped at zero (negative
            attributions set to 0), LeRF only, as method "<name>+clip": the test of the
            paper's explanation that negative attributions make RISE and K-OCC raise
            accuracy at small removal fractions.
        keep_correct: keep each curve's per-image correctness (fractions x images, bool)
            in ``result.correct`` (for bootstrap intervals over images).
        maps_dir: where RISE's and K-OCC's maps are stored and reused (see
            :func:`facnn.maps.compute_maps`): then a change to the curves costs minutes, not hours.

    Maps are computed once per (method, layer, seed) and reused for every order.
    """
    from tqdm.auto import tqdm
    check_model(model)
    check_choice("target", target, ("label", "predicted"))
    if n_images is not None:
        check_int("n_images", n_images, 1)
    check_batch_size("batch_size", batch_size)
    check_int("map_batch", map_batch, 1)
    removal = _check_removal(removal)
    specs = [replace(removal, order=o) for o in orders]                    # checks each order
    for m in methods:
        check_choice("method", m, A.METHODS)
    method_kwargs = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    layers = list(layers) if layers is not None else default_layers(model)
    model = model.to(device).eval()
    n = len(dataset)                                   # a seeded random choice, sorted
    idx = (torch.arange(n) if n_images is None or n_images >= n else
           torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_images].sort().values)
    x = dataset.normalised(idx, device)                                     # (B, 3, H, W)
    y = dataset.labels[idx].to(device)                                      # (B,)
    batch_size = batch_size or default_batch(x)
    with torch.no_grad():
        clean = torch.cat([model(x[s:s + batch_size]).argmax(1) for s in range(0, len(x), batch_size)])
    classes = y if target == "label" else clean

    rows, timing, ends = [], [], {}            # ends: fractions 0 and 1, shared by all curves
    correct: dict[tuple, Any] = {}
    for method in methods:
        t_maps, t_curves, kw = 0.0, 0.0, method_kwargs.get(method, {})
        entry = A.METHODS[method]                      # its map sets: (layer, seed) of each
        variants = ([(layer, None) for layer in layers] if entry.layered else
                    [(None, s) for s in rand_seeds] if entry.seeded else [(None, None)])
        # (name, spec, clipped) of each curve of a map set: every order, then LeRF clipped
        curves = [(method, spec, False) for spec in specs] + (
            [(f"{method}+clip", replace(removal, order="lerf"), True)]
            if method in clip_negative and "lerf" in orders else [])
        chunks = 1 if entry.seeded else math.ceil(len(x) / map_batch)   # see compute_maps
        bar = tqdm(total=len(variants) * (chunks + len(curves)), desc=f"removal {method}",
                   disable=not progress, leave=False)
        for layer, s in variants:
            t0 = time.perf_counter()
            extra = {"seed": s} if s is not None else {}
            maps = compute_maps(method, model, x, classes, layer, map_batch, bar, maps_dir, **{**kw, **extra})
            t_maps += time.perf_counter() - t0
            for name, spec, clipped in curves:
                t0 = time.perf_counter()
                curve = removal_curve(model, x, y, (maps.clamp(min=0) if clipped else maps).to(device),
                                      spec, batch_size=batch_size, dataset=dataset.name, cache=ends)
                t_curves += time.perf_counter() - t0
                rows += [{"method": name, "layer": layer, "order": spec.order, "seed": s,
                          "fraction": float(p), "accuracy": float(a), "n": len(x)}
                         for p, a in zip(curve.fractions, curve.accuracy)]
                if keep_correct:
                    correct[(name, layer, spec.order, s)] = curve.correct.cpu().numpy()
                bar.update(1)
        bar.close()
        timing.append({"method": method, "maps_s": t_maps, "curves_s": t_curves,
                       "total_s": t_maps + t_curves, "map_sets": len(variants)})

    per_seed = _tidy(rows)
    meta = {"fractions": list(removal.fractions), "orders": list(orders), "methods": list(methods),
            "layers": [None if v is None else int(v) for v in layers], "n_images": len(idx),
            "seed": seed, "fill": removal.fill, "blur_sigma": removal.blur_sigma,
            "rand_seeds": list(rand_seeds), "method_kwargs": method_kwargs, "target": target,
            "dataset": dataset.name, "clean_accuracy": float((clean == y).double().mean()),
            "indices": idx.tolist(), "tie_break": removal.tie_break, "device": str(device),
            "torch": torch.__version__, "clip_negative": list(clip_negative)}
    return BenchmarkResult(aggregate(per_seed), per_seed, auc_table(per_seed), _tidy(timing), meta,
                           correct)


def _tidy(data) -> pd.DataFrame:
    """A table of ``data`` (rows or a table) with nullable integer layer and seed (so layer
    9 prints as 9 and 'no layer' as <NA>)."""
    import pandas as pd   # only the benchmark's tables need it; the library imports without
    df = pd.DataFrame(data).copy()
    for col in ("layer", "seed"):
        if col in df:
            df[col] = pd.array(df[col].tolist(), dtype="Int64")
    return df


_KEYS = ["method", "layer", "order"]


def aggregate(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (sample std) over seeds of each (method, layer, order, fraction)."""
    check_columns("per_seed", per_seed, _KEYS + ["fraction", "accuracy", "n"])
    g = per_seed.groupby(_KEYS + ["fraction"], dropna=False, sort=False)
    out = g.agg(accuracy=("accuracy", "mean"), n=("n", "first"),
                accuracy_std=("accuracy", "std"), n_seeds=("accuracy", "size")).reset_index()
    return _tidy(out)


def auc_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Area under each curve (trapezoid over fraction), mean and spread over seeds."""
    check_columns("per_seed", per_seed, _KEYS + ["seed", "fraction", "accuracy"])
    per = (per_seed.groupby(_KEYS + ["seed"], dropna=False, sort=False)
           .apply(lambda d: trapezoid_auc(d["fraction"], d["accuracy"]), include_groups=False)
           .rename("auc").reset_index())
    out = per.groupby(_KEYS, dropna=False, sort=False).agg(
        auc=("auc", "mean"), auc_std=("auc", "std"), n_seeds=("auc", "size")).reset_index()
    return _tidy(out)


