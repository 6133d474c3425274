"""What each chapter of the book computes, as functions of a model and images.

Each function returns a flat dict of arrays, tables and scalars that
:meth:`facnnbook.cache.Cache.get` can store and :mod:`facnn.plots` can draw. They only
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

from facnn import attribution as A
from facnn import data as D
from facnn import theory as T


def pick(n_total: int, n: int, seed: int = 0) -> Tensor:
    """A seeded random choice of n indices out of n_total, sorted."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def excerpt(test: D.ArrayDataset, indices: Sequence[int]) -> dict[str, Any]:
    """Images ``indices`` of a split as plain values (uint8 images, labels, class names)."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    return dict(name=test.name, images=test.images[idx].numpy(), labels=test.labels[idx].numpy(),
                classes=list(test.classes), indices=idx.numpy())


@torch.no_grad()
def predict(model, x: Tensor) -> tuple[Tensor, Tensor]:
    """(predicted class (B,), its probability (B,)) from the model's own distribution."""
    p = model.probabilities(x).float()
    conf, cls = p.max(1)
    return cls, conf


# -- Theorem 1 -------------------------------------------------------------------------------

def theorem1_study(model, test: D.ArrayDataset, n_images: int, n_show: int = 3,
                   seed: int = 0, n_classes: int = 2) -> dict[str, Any]:
    """Theorem 1 on test images: class maps against Grad-CAM with both targets (score Y^c,
    as the theorem; the L1-normalised probability, to show it differs), for all classes.
    Plus, for ``n_show`` images, the maps of ``n_classes`` classes (the label, then the
    best-scored others) for the figure."""
    idx = pick(len(test), n_images, seed)
    x = test.normalised(idx)
    score = T.theorem1(model, x, target="score")
    prob = T.theorem1(model, x, target="probability")
    show = _distinct(test.labels[idx], n_show, seed)               # positions in idx
    xs, ys = x[show], test.labels[idx[show]]
    with torch.no_grad():
        s = model(xs).float()
    s[torch.arange(len(ys)), ys] = math.inf        # the label first, then the best others
    classes = s.argsort(1, descending=True)[:, :n_classes]  # (n_show, n_classes)
    fa, gs, gp = [], [], []
    for j in range(classes.shape[1]):
        c = classes[:, j]
        fa.append(A.class_maps(model, xs, classes=c)[:, 0])
        gs.append(A.grad_cam(model, xs, classes=c, target="score")[:, 0])
        gp.append(A.grad_cam(model, xs, classes=c, target="probability")[:, 0])
    out = {k: _np(torch.stack(v, 1)) for k, v in (("fa", fa), ("gc_score", gs), ("gc_prob", gp))}
    return dict(out, corr_score=_np(score["corr"]), corr_prob=_np(prob["corr"]),
                diff_score=_np(score["max_abs_diff"]), diff_prob=_np(prob["max_abs_diff"]),
                images=test.images[idx[show]].numpy(), labels=ys.numpy(),
                classes=classes.numpy(), indices=idx.numpy(), class_names=list(test.classes),
                layer=int(score["layer"]), dataset=test.name)


THEOREM1_KEYS = ("score_min", "score_mean", "score_share", "prob_min", "prob_mean",
                 "prob_share", "prob_undefined", "score_undefined", "n_maps", "score_max_diff")


def theorem1_summary(values) -> dict[str, Any]:
    """The numbers the book quotes, per Grad-CAM target (score, prob): min and mean
    correlation over defined maps, the share of maps above 0.999, maps where the
    probability-target Grad-CAM or the class map is constant (correlation undefined: a
    class map that is zero everywhere, Y^c = 0), the number of maps, and the largest
    difference of min-max-scaled maps with the score target over all maps. A missing
    result gives a dict of that MissingResult."""
    if not isinstance(values, dict):
        return dict.fromkeys(THEOREM1_KEYS, values)
    out: dict[str, Any] = {}
    for t in ("score", "prob"):
        c = np.asarray(values[f"corr_{t}"], float).ravel()
        ok = c[~np.isnan(c)]
        out[f"{t}_min"] = float(ok.min()) if len(ok) else math.nan
        out[f"{t}_mean"] = float(ok.mean()) if len(ok) else math.nan
        out[f"{t}_share"] = float((ok > 0.999).mean()) if len(ok) else math.nan
        out[f"{t}_undefined"] = int(np.isnan(c).sum())
        if t == "score":
            out["n_maps"] = int(c.size)
    out["score_max_diff"] = float(np.nanmax(values["diff_score"]))
    return out


# -- Theorem 2 -------------------------------------------------------------------------------

def bounded_increment_study(model, name: str, test: D.ArrayDataset, n_images: int,
                            seed: int = 0) -> dict[str, Any]:
    """Theorem 2 on one FA-CNN-type model: per layer the max increment of the rescaled maps
    S_L^(N) against delta = 1/N and the range check, on ``n_images`` test images; and for
    the first image its label's class-averaged S_0 .. S_N (the morph strip)."""
    idx = pick(len(test), n_images, seed)
    x = test.normalised(idx)
    label = int(test.labels[idx[0]])
    r = T.bounded_increment(model, x)
    s = T.rescaled_features(model, x[:1])                              # [(1, K, h, w)] * (N+1)
    strip = torch.stack([_class_avg(si, model.num_classes)[0, label] for si in s])
    return dict(rows=pd.DataFrame([dict(model=name, **row) for row in r["rows"]]),
                morph=_np(strip), image=test.images[idx[0]].numpy(), label=label,
                class_name=test.classes[label], name=name, n_images=len(idx))


def combine_bounded(results: dict[str, Any]) -> dict[str, Any] | Any:
    """Merge per-model results (name -> values, missing ones skipped) for the plot."""
    ok = {k: v for k, v in results.items() if isinstance(v, dict)}
    if not ok:
        return next(iter(results.values()))
    first = next(iter(ok.values()))
    return dict(rows=pd.concat([v["rows"] for v in ok.values()], ignore_index=True),
                models=list(ok), class_name=first["class_name"], image=first["image"],
                **{"morph_" + _key(k): v["morph"] for k, v in ok.items()})


def _class_avg(x: Tensor, c: int) -> Tensor:
    from facnn.layers import class_average
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
    return out[["model", "max_increment", "delta", "increment / delta", "holds", "worst_margin",
                "layers"]]


def bounded_increment_numbers(summary, names) -> dict[str, str | None]:
    """Per model name: "<key>_max" (largest increment) and "<key>_ratio" (over delta), as
    text for the book; None where the model is missing."""
    out: dict[str, str | None] = {}
    for name in names:
        rows = summary[summary["model"] == name] if isinstance(summary, pd.DataFrame) else []
        ok = len(rows) > 0
        out[f"{_key(name)}_max"] = f"{rows['max_increment'].iloc[0]:.4g}" if ok else None
        out[f"{_key(name)}_ratio"] = f"{rows['increment / delta'].iloc[0]:.2f}" if ok else None
    return out


# -- Figure 4 ------------------------------------------------------------------------------------

def removal_study(model, test: D.ArrayDataset, n_images: int, rise_masks: int, seed: int = 0,
                  methods: Sequence[str] | None = None, orders: Sequence[str] = ("lerf", "morf"),
                  fractions: Sequence[float] | None = None,
                  kocc_window: int | None = None, n_boot: int = 200,
                  progress: bool = False, maps_dir: str | Path | None = None) -> dict[str, Any]:
    """Figure 4: removal curves for every method at the last and an intermediate layer,
    both orders, plus LeRF with the maps that can be negative clipped at zero (the paper's
    negative-attribution explanation); the AUC table, timings, settings, each curve's
    per-image outcomes (facnnbook.figure4 reads the paper's statements from them) and a
    bootstrap over images (``n_boot`` resamples) of every AUC. ``progress``: a bar per
    method; ``maps_dir``: where RISE's and K-OCC's maps are kept and reused."""
    from facnn import removal as Rm
    methods = tuple(methods or Rm.METHODS)
    res = Rm.run_benchmark(model, test, methods=methods,
                           removal=Rm.Removal(fractions or Rm.FRACTIONS), orders=tuple(orders),
                           n_images=n_images, seed=seed,
                           method_kwargs={"rise": {"n_masks": rise_masks},
                                          "k-occ": {"window": kocc_window}}, progress=progress,
                           clip_negative=clipped_methods(methods), keep_correct=True,
                           maps_dir=maps_dir)
    meta = {k: v for k, v in res.meta.items() if k != "indices"}
    keys = sorted(res.correct, key=str)
    curve_keys = pd.DataFrame([dict(method=m, layer=l, order=o, seed=s) for m, l, o, s in keys])
    correct = np.stack([res.correct[k] for k in keys]).astype(bool)      # (curves, F, n)
    fr = np.asarray(meta["fractions"], float)
    return dict(curves=res.table, auc=res.auc, timing=res.timing, meta=meta,
                indices=np.asarray(res.meta["indices"]), curve_keys=curve_keys, correct=correct,
                auc_boot=bootstrap_auc(curve_keys, correct, fr, n_boot, seed), n_boot=n_boot)


def clipped_methods(methods: Sequence[str]) -> list[str]:
    """The methods whose maps are also run clipped at zero: those that can be negative."""
    return [m for m in methods if A.METHODS[m].can_be_negative]


def bootstrap_auc(curve_keys: pd.DataFrame, correct: np.ndarray, fractions: np.ndarray,
                  n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Resample the benchmark's images with replacement ``n_boot`` times (the same images
    for every curve, since all methods share them): the 95 % interval of each curve's AUC.
    One row per (method, layer, order); RAND's seeds averaged."""
    rng = np.random.default_rng(seed)
    n = correct.shape[2]
    aucs = np.asarray([np.trapezoid(correct[:, :, rng.integers(0, n, n)].mean(2), fractions, axis=1)
                       for _ in range(n_boot)])
    keys = curve_keys.assign(auc_lo=np.percentile(aucs, 2.5, axis=0),
                             auc_hi=np.percentile(aucs, 97.5, axis=0))
    return keys.groupby(["method", "layer", "order"], dropna=False, sort=False)[["auc_lo", "auc_hi"]].mean().reset_index()


def statement_verdict(holds: str, support: float) -> str:
    """holds / fails / inconclusive for one statement: decided when at least 97.5 % of the
    bootstrap resamples agree, else inconclusive; "not run" where a method is missing."""
    if holds == "n/a":
        return "not run"
    if support >= 0.975:
        return "holds"
    if support <= 0.025:
        return "fails"
    return "inconclusive"


def _curve(t: pd.DataFrame, method: str, order: str, layer: int | None) -> pd.Series:
    rows = t[(t["method"] == method) & (t["order"] == order)]
    rows = rows[rows["layer"] == layer] if layer is not None else rows[rows["layer"].isna()]
    return rows.set_index("fraction")["accuracy"].sort_index()


def auc_pivot(auc: pd.DataFrame) -> pd.DataFrame:
    """AUC per curve (rows "fa-cnn @ layer 9", "rise", ...) and order (columns)."""
    a = auc.copy()
    a["curve"] = [m if pd.isna(l) else f"{m} @ layer {int(l)}" for m, l in zip(a["method"], a["layer"])]
    out = a.pivot(index="curve", columns="order", values="auc")
    out = out.reindex(a["curve"].drop_duplicates())
    out.columns = [f"AUC {c.upper()}" for c in out.columns]
    return out.reset_index()


def auc_table(values: dict[str, Any]) -> pd.DataFrame:
    """From a removal_study result: the AUC table, one row per curve, LeRF and MoRF, with
    their 95 % bootstrap intervals. (The paper's statements: facnnbook.figure4.)"""
    auc = auc_pivot(values["auc"])
    boot = values["auc_boot"].copy()
    boot["curve"] = [m if l is None or l != l else f"{m} @ layer {int(l)}"
                     for m, l in zip(boot["method"], boot["layer"])]
    for order in ("lerf", "morf"):
        b = boot[boot["order"] == order].set_index("curve")
        auc[f"95 % {order.upper()}"] = [f"[{b.loc[c, 'auc_lo']:.3f}, {b.loc[c, 'auc_hi']:.3f}]"
                                        if c in b.index else "—" for c in auc["curve"]]
    return auc


def _gain(s: pd.Series) -> float:
    """Largest accuracy gain over the clean image at 10-20 % removed (points of accuracy)."""
    return float(s[(s.index > 0) & (s.index <= 0.2 + 1e-9)].max() - s.iloc[0])


# whether each method's maps can be negative (facnn.attribution.METHODS), RAND aside
CAN_BE_NEGATIVE = {name: m.can_be_negative for name, m in A.METHODS.items() if not m.seeded}


def negative_note(curves: pd.DataFrame) -> str:
    """The paper explains RISE's and K-OCC's LeRF rise by their negative attributions. One
    sentence that tests that against the methods whose maps cannot be negative: which of
    them rise anyway (best gain over the clean images at 10-20 % removed, last layer), and
    what clipping K-OCC at zero leaves of its rise."""
    last = max(int(v) for v in curves["layer"].dropna())
    gain = {m: 100 * _gain(_curve(curves, m, "lerf", last if m in A.LAYERED else None))
            for m in CAN_BE_NEGATIVE}
    rising = [f"{m} {g:+.1f}" for m, g in gain.items() if not CAN_BE_NEGATIVE[m] and g > 0]
    clipped = {m: 100 * _gain(_curve(curves, m + "+clip", "lerf", None))
               for m, neg in CAN_BE_NEGATIVE.items() if neg}
    kept = "; ".join(f"{m}, whose maps can be negative, rises {gain[m]:+.1f} points, and "
                     f"{clipped[m]:+.1f} with its negative values clipped at zero" for m in clipped)
    if not rising:
        return (f"no method whose maps cannot be negative raises accuracy at 10-20 % removed, "
                f"so this test cannot tell the explanation apart; {kept}")
    return (f"maps that cannot be negative ({', '.join(m for m, n in CAN_BE_NEGATIVE.items() if not n)}) "
            f"raise accuracy too ({', '.join(rising)} points), so a rise does not need negative "
            f"attributions; {kept}")


# -- Figures 1 and 5 -------------------------------------------------------------------------------

def sample_photo(name: str) -> Path:
    """One of the 20 ImageNet sample photos: in the shared offline copy beside the checkout,
    else under data/imagenet-samples/."""
    shared = D.shared_data_dir()
    return (shared if shared is not None else Path("data")) / "imagenet-samples" / name


def load_photo(path: str | Path, size: int = 32) -> Tensor:
    """A photo as uint8 (3, size, size): centre square crop, then an antialiased resize."""
    from PIL import Image
    from .provenance import MissingResult
    if not Path(path).is_file():
        raise MissingResult(f"the photo {Path(path).name}", [f"cp ../shared/data/imagenet-samples/"
                            f"{Path(path).name} data/imagenet-samples/"], f"{path} is absent")
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def figure_layers(depth: int, most: int = 8) -> list[int]:
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
    layers = list(layers or figure_layers(model.depth))
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


def _distinct(labels: Tensor, n: int, seed: int = 0) -> Tensor:
    """Positions of ``n`` labels of distinct classes, in a seeded random order (fewer
    distinct classes than ``n``: the rest repeat classes), sorted."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    seen: set[int] = set()
    out = [i for i in order if not (int(labels[i]) in seen or seen.add(int(labels[i])))][:n]
    out += [i for i in order if i not in out][:n - len(out)]
    return torch.tensor(sorted(out))


def class_index(test: D.ArrayDataset, class_name: str) -> int:
    """The label of ``class_name`` in ``test``; a name it lacks is refused with its classes."""
    if class_name not in test.classes:
        raise ValueError(f"{class_name!r} is not a class of {test.name}; its classes: "
                         f"{', '.join(test.classes)}")
    return list(test.classes).index(class_name)


def images_of_class(test: D.ArrayDataset, class_name: str) -> Tensor:
    """Indices of the test images of class ``class_name``."""
    return torch.nonzero(test.labels == class_index(test, class_name))[:, 0]


def first_of_class(test: D.ArrayDataset, class_name: str, seed: int = 0) -> int:
    """A test image of class ``class_name``, drawn with ``seed``."""
    idx = images_of_class(test, class_name)
    return int(idx[torch.randint(len(idx), (1,), generator=torch.Generator().manual_seed(seed))])


def distinct_classes(test: D.ArrayDataset, n: int, seed: int = 0) -> Tensor:
    """Indices of ``n`` test images of distinct classes (seeded)."""
    return _distinct(test.labels, n, seed)


def qualitative_test(model, test: D.ArrayDataset, n: int, seed: int = 0, **kw) -> dict[str, Any]:
    """Figures 1/5 on ``n`` test images of distinct classes, each with its label's maps."""
    idx = distinct_classes(test, n, seed)
    v = qualitative_study(model, test.images[idx], test.labels[idx], test.name, **kw)
    return dict(v, indices=idx.numpy(), class_names=list(test.classes))


def qualitative_photo(model, path: str | Path, class_name: str | None, class_names: Sequence[str],
                      dataset: str, size: int = 32, **kw) -> dict[str, Any]:
    """Figures 1/5 on a photo (e.g. the white stork), resized to the model's input and
    scored with the class ``class_name`` of the model's dataset (e.g. CIFAR-10 "bird"; None:
    the model's top class for the photo)."""
    img = load_photo(path, size)
    if class_name is None:
        c = int(predict(model, D.normalise(img[None], dataset))[0][0])
    else:
        c = list(class_names).index(class_name)
    v = qualitative_study(model, img[None], torch.tensor([c]), dataset, **kw)
    return dict(v, class_names=list(class_names), photo=Path(path).name)


def runner_up_image(model, test: D.ArrayDataset, first: str, second: str) -> int:
    """The test image of class ``first`` to which the model gives the highest probability of
    class ``second`` (the paper's Figure 5: a crate whose scene pulls toward "ashcan")."""
    idx = images_of_class(test, first)
    with torch.no_grad():
        p = model.probabilities(test.normalised(idx)).float()[:, class_index(test, second)]
    return int(idx[int(p.argmax())])


def qualitative_classes(model, test: D.ArrayDataset, index: int, class_names: Sequence[str],
                        **kw) -> dict[str, Any]:
    """Figures 1/5 for one test image with the maps of several classes (one row pair per
    class), e.g. Figure 5's crate image with "crate" and "ashcan"."""
    cs = torch.tensor([class_index(test, c) for c in class_names])
    imgs = test.images[index][None].expand(len(cs), -1, -1, -1).contiguous()
    v = qualitative_study(model, imgs, cs, test.name, **kw)
    with torch.no_grad():
        probs = model.probabilities(test.normalised(slice(index, index + 1))).float()[0]
    return dict(v, class_names=list(test.classes), index=index, label=int(test.labels[index]),
                probs=_np(probs))


def class_map_agreement(v: dict[str, Any]) -> np.ndarray:
    """For a qualitative_classes dict of two classes: per layer, the Pearson correlation
    between the two classes' FA-CNN maps (low: the classes look at different regions)."""
    fa = torch.as_tensor(v["fa"])                               # (2, nL, H, W)
    return _np(T.pearson(fa[0], fa[1]))


# -- the explorer ----------------------------------------------------------------------------

def explore(model, image: Tensor, cls: int, layer: int, fraction: float, order: str,
            dataset: str) -> dict[str, Any]:
    """Everything the explorer shows for one uint8 image (3, H, W): the class map and
    Grad-CAM at ``layer``, the class map through every layer (the morph strip), the image
    with ``fraction`` of its pixels removed in ``order`` by the class map, and the model's
    prediction before and after."""
    from facnn.removal import Removal, remove_pixels
    x = D.normalise(image[None], dataset)
    size = tuple(x.shape[-2:])
    c = torch.tensor([cls])
    fa = A.upsample(A.class_maps(model, x, layer, classes=c), size)
    gc = A.upsample(A.grad_cam(model, x, layer, classes=c), size)
    strip = A.class_maps_layers(model, x, list(range(1, model.depth + 1)), c)
    strip = torch.cat([A.upsample(m, size) for m in strip], 1)[0]          # (N, H, W)
    removed = remove_pixels(x, fa, Removal([fraction], order))[0]            # (1, 3, H, W)
    before, after = model.probabilities(x).float()[0], model.probabilities(removed).float()[0]
    return dict(image=image.numpy(), cls=cls, layer=layer, fraction=fraction, order=order,
                fa=_np(fa[0, 0]), gc=_np(gc[0, 0]), strip=_np(strip),
                removed=(D.denormalise(removed[0], dataset) * 255).round().byte().numpy(),
                before=_np(before), after=_np(after))


def layer_correlation_study(model, test: D.ArrayDataset, n_images: int, seed: int = 0,
                            batch: int = 250) -> dict[str, Any]:
    """Figures 1/5 over a whole split: for ``n_images`` test images (all of them when
    ``n_images`` >= the split), each with its own label's class, the Pearson correlation
    between the averaged FA-CNN class map and Grad-CAM (score target) at every layer, at that
    layer's resolution. ``corr`` (n, N): NaN where either map is constant (no correlation)."""
    idx = pick(len(test), n_images, seed)
    rows = []
    for s in range(0, len(idx), batch):                 # all layers at once costs memory
        part = idx[s:s + batch]
        out = T.layer_correlations(model, test.normalised(part), classes=test.labels[part])
        rows.append(np.stack([np.asarray(r["corr"], np.float32)[:, 0] for r in out], 1))
    return dict(corr=np.concatenate(rows), layers=np.arange(1, model.depth + 1), depth=model.depth,
                indices=idx.numpy(), labels=test.labels[idx].numpy(), dataset=test.name,
                n_images=len(idx))


def layer_correlation_stats(v: dict[str, Any], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per layer of a layer_correlation_study: relative depth L/N, the median correlation
    over images with its interquartile range and a bootstrap 95 % interval (images
    resampled ``n_boot`` times), the mean, and the images with and without a correlation."""
    corr, depth = np.asarray(v["corr"], float), int(v["depth"])
    rng = np.random.default_rng(seed)
    out = []
    for j, layer in enumerate(np.asarray(v["layers"]).astype(int)):
        ok = corr[~np.isnan(corr[:, j]), j]
        boot = np.median(ok[rng.integers(0, len(ok), (n_boot, len(ok)))], 1) if len(ok) else [np.nan]
        q = np.quantile(ok, [0.25, 0.5, 0.75]) if len(ok) else [np.nan] * 3
        out.append(dict(dataset=v["dataset"], layer=int(layer), rel_depth=layer / depth,
                        median=float(q[1]), q25=float(q[0]), q75=float(q[2]),
                        ci_lo=float(np.percentile(boot, 2.5)), ci_hi=float(np.percentile(boot, 97.5)),
                        mean=float(ok.mean()) if len(ok) else np.nan, n=int(len(ok)),
                        n_undefined=int(len(corr) - len(ok))))
    return pd.DataFrame(out)


def last_layer_verdict(row: pd.Series, equal: float = 0.999) -> str:
    """Theorem 1 read off Figures 1/5: the last layer's class map equals Grad-CAM when the
    95 % interval of its median correlation lies above ``equal`` (holds), below (fails)."""
    return "holds" if row["ci_lo"] > equal else ("fails" if row["ci_hi"] < equal else "inconclusive")


# The paper's "middle layers" (Figure 1's stork: "layers 12 and onward", of 24) read as
# relative depth L/N >= 0.5. What "high" correlation means is ours: the thresholds below,
# of which OUR_THRESHOLD is the one we would pick; the verdict counts only if it is the same
# at all three.
MIDDLE_FROM = 0.5
THRESHOLDS = (0.5, 0.7, 0.9)
OUR_THRESHOLD = 0.7


def middle_layer_verdict(stats: pd.DataFrame, threshold: float, from_depth: float = MIDDLE_FROM
                         ) -> str:
    """At one threshold: holds when, at every layer with L/N >= ``from_depth``, the 95 %
    interval of the median correlation lies at or above ``threshold``; fails when at some
    such layer it lies below; else inconclusive."""
    rows = stats[stats["rel_depth"] >= from_depth - 1e-9]
    if rows.empty:
        raise ValueError(f"no layer at relative depth >= {from_depth}")
    if (rows["ci_lo"] >= threshold).all():
        return "holds"
    return "fails" if (rows["ci_hi"] < threshold).any() else "inconclusive"


def agrees_from(stats: pd.DataFrame, threshold: float) -> float | None:
    """The smallest relative depth from which the median correlation stays >= ``threshold``
    through the last layer (None: not even the last layer)."""
    s = stats.sort_values("layer")
    below = np.flatnonzero((s["median"] < threshold).to_numpy())
    k = int(below[-1]) + 1 if len(below) else 0          # the first layer after the last miss
    return None if k == len(s) else float(s["rel_depth"].iloc[k])


def middle_layer_table(stats: pd.DataFrame, thresholds: Sequence[float] = THRESHOLDS,
                       from_depth: float = MIDDLE_FROM) -> pd.DataFrame:
    """The verdict at each threshold, with the weakest layer from ``from_depth`` on (its
    median and interval) and the relative depth from which the median stays above the
    threshold (the paper's stork: 12/24 = 0.5; its crate: 21/24 = 0.875)."""
    rows = stats[stats["rel_depth"] >= from_depth - 1e-9]
    weak = rows.loc[rows["median"].idxmin()]
    return pd.DataFrame([dict(threshold=t, verdict=middle_layer_verdict(stats, t, from_depth),
                              weakest_layer=int(weak["layer"]), median=weak["median"],
                              ci_lo=weak["ci_lo"], ci_hi=weak["ci_hi"],
                              median_above_from=agrees_from(stats, t)) for t in thresholds])


# middle_layer_table's columns as the page shows them
TABLE_NAMES = {"threshold": "threshold t (ours)", "weakest_layer": "weakest layer, L/N >= 0.5",
               "median": "its median r", "ci_lo": "95 % low", "ci_hi": "95 % high",
               "median_above_from": "median >= t from L/N"}


def middle_layer_claim(table: pd.DataFrame, choice: float = OUR_THRESHOLD) -> tuple[str, str]:
    """(counted verdict, reason) from a middle_layer_table: the verdict at our ``choice`` when
    every threshold gives the same, else inconclusive because it depends on our threshold."""
    if choice not in set(table["threshold"]):
        raise ValueError(f"our threshold {choice} is not one of {list(table['threshold'])}")
    verdicts = dict(zip(table["threshold"], table["verdict"]))
    at = ", ".join(f"{v} at {t:g}" for t, v in verdicts.items())
    if len(set(verdicts.values())) > 1:
        return "inconclusive", f"depends on our threshold ({at})"
    v = verdicts[choice]
    if v == "inconclusive":
        return v, f"the interval of the median spans every threshold ({at})"
    return v, f"the same verdict at all three of our thresholds ({at})"


# The paper's statements about where its class maps agree with Grad-CAM, each about one photo:
# (quote key, the relative depth it names (N = 24 in the paper), what that is, its label on
# the plot or None).
PAPER_DEPTHS = (("fig1_middle", MIDDLE_FROM, "our reading of \"the middle layers\": L/N >= 0.5", None),
                ("fig1_layer12", 12 / 24, "the stork: 'highly agree' from layer 12 of 24", None),
                ("fig1_stork", 12 / 24, "the stork: from layer 12 of 24", "stork, 12/24"),
                ("fig5_layers", 21 / 24, "the crate: strong from layer 21 of 24 (visual from 9: 0.375)",
                 "crate, 21/24"))


def paper_depths() -> pd.DataFrame:
    """The paper's own words on where class maps and Grad-CAM agree, beside the relative
    depth each names (a table for the page, next to our per-layer plot)."""
    from .paper import quote
    return pd.DataFrame([{"where": quote(k)[0], "the paper says": quote(k)[1], "relative depth": d,
                          "which is": what} for k, d, what, _ in PAPER_DEPTHS])


def paper_marks() -> list[tuple[float, str]]:
    """(relative depth, label) of the paper's photos for plots.layer_correlations."""
    return [(d, mark) for _, d, _, mark in PAPER_DEPTHS if mark]


def figures15_claims(ch, stats: pd.DataFrame, table: pd.DataFrame, split: str) -> tuple[str, str]:
    """Record the two claims read off the per-layer correlations of chapter ``ch``'s dataset
    (``split``: "test" or "val"): the last layer (a repeat of Theorem 1, not counted) and the
    middle layers at our thresholds (counted). Returns the counted (verdict, reason)."""
    ds, n = ch.runs.dataset, int(stats["n"].iloc[0] + stats["n_undefined"].iloc[0])
    last = stats.sort_values("layer").iloc[-1]
    first = int(stats[stats["rel_depth"] >= MIDDLE_FROM - 1e-9]["layer"].min())
    depth = int(last["layer"])
    ch.claim(f"figures15.{ds}.last_layer", "fig1_identical",
             f"the median Pearson r between the class map and Grad-CAM at layer N over all {n} "
             f"{split} images is 1, its bootstrap 95 % interval above 0.999 (our float tolerance)",
             f"median Pearson r at layer N over {split} images", 1.0, last["median"],
             last_layer_verdict(last), "Figures 1/5", ci95=(last["ci_lo"], last["ci_hi"]),
             reason="repeats Theorem 1 (theorem1.score_target, counted there): the same identity "
                    "read off the figure", counted=False)
    verdict, reason = middle_layer_claim(table)
    weak = table.iloc[0]
    ch.claim(f"figures15.{ds}.middle_layers", "fig1_middle",
             f"our reading: the paper's middle layers are its layers 12 and onward of 24, relative "
             f"depth L/N >= {MIDDLE_FROM} (layers {first}-{depth} of {depth} here), and 'high' is "
             f"a median r over the {n} {split} images of at least {OUR_THRESHOLD} at each of "
             f"them (our threshold, also checked at "
             f"{' and '.join(f'{t:g}' for t in THRESHOLDS if t != OUR_THRESHOLD)}), decided by "
             f"the bootstrap 95 % interval of the median; counted only if the verdict is the "
             f"same at all three",
             f"lowest median Pearson r over layers with L/N >= {MIDDLE_FROM} "
             f"(layer {int(weak['weakest_layer'])})", None, weak["median"], verdict, "Figures 1/5",
             ci95=(weak["ci_lo"], weak["ci_hi"]), reason=reason,
             by_threshold={f"{t:g}": v for t, v in zip(table["threshold"], table["verdict"])})
    return verdict, reason
