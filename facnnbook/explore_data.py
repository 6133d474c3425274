"""What the book's static explorer (facnnbook.interactive.explorer_html) shows, computed
once: for a few test images, the class maps of every class at every layer, Grad-CAM at the
last layer, and the images after pixel removal with the model's predictions.

The images are the chapters' (facnnbook.chapters.distinct_classes); the maps and removals
come from facnn.attribution and facnn.removal; the result is a dict of numpy arrays
(np.savez can store it without pickling).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from facnn import attribution as A
from facnn import data as D
from facnn.removal import ORDERS, Removal, check_fractions, remove_pixels

from .chapters import distinct_classes

FRACTIONS = (0, .1, .2, .3, .4, .5, .6, .7, .8, .9)


@torch.no_grad()
def _predict(model, x: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """(predicted class, its probability), each (B,), from model.probabilities."""
    p = torch.cat([model.probabilities(x[s:s + batch]).float() for s in range(0, len(x), batch)])
    conf, cls = p.max(1)
    return cls, conf


def _uint8(x: Tensor, dataset: str) -> np.ndarray:
    """Normalised images (..., 3, H, W) -> uint8 numpy for display."""
    return (D.denormalise(x, dataset) * 255).round().byte().cpu().numpy()


def explorer_data(model, test: D.ArrayDataset, n_images: int = 12,
                  layers: Sequence[int] | None = None,
                  fractions: Sequence[float] = FRACTIONS, seed: int = 0) -> dict[str, np.ndarray]:
    """Everything the static explorer shows for ``n_images`` test images of distinct
    classes (seeded), as numpy arrays. With n images, L layers, C classes, F fractions:

    - images uint8 (n, 3, H, W); labels, pred (n,) int64; prob (n,) float32: the clean
      prediction and its probability; probabilities (n, C) float32; indices (n,) into test;
    - layers (L,) int64 (default 1..N); class_maps float16 (n, L, C, H, W): L_c at each
      layer for every class, upsampled (bilinear) to the image size;
    - grad_cam float16 (n, C, H, W): Grad-CAM (score target) at the last layer N, per class;
    - fractions (F,) float64, orders (2,) str ("lerf", "morf"); removed uint8
      (n, 2, F, 3, H, W): each image with that fraction of its pixels replaced by the mean
      (the mean fill), ranked by its LABEL's class map at layer N; removal_pred (n, 2, F)
      int64 and removal_prob (n, 2, F) float32: the prediction after removal;
    - class_names (C,) str.

    Size: n = 12, L = 9, C = 10, 32 x 32 gives ~2.2 MB of class maps.
    """
    f = check_fractions(fractions)
    depth = int(model.depth)
    layers = list(range(1, depth + 1)) if layers is None else [int(l) for l in layers]
    for l in layers:
        A.check_layer(model, l)
    device = next(model.parameters()).device
    model = model.eval()
    idx = distinct_classes(test, n_images, seed)   # the chapters' choice of images
    x = test.normalised(idx, device)                                       # (n, 3, H, W)
    y = test.labels[idx].to(device)
    size = tuple(x.shape[-2:])

    maps = A.class_maps_layers(model, x, sorted(set(layers) | {depth}))    # [(n, C, h, w)]
    by_layer = dict(zip(sorted(set(layers) | {depth}), maps))
    class_maps = torch.stack([A.upsample(by_layer[l], size) for l in layers], 1)  # (n, L, C, H, W)
    grad_cam = A.upsample(A.grad_cam(model, x, depth, target="score"), size)     # (n, C, H, W)

    pred, prob = _predict(model, x)
    with torch.no_grad():
        probabilities = model.probabilities(x).float()
    removed, r_pred, r_prob = [], [], []
    for order in ORDERS:
        # (F, n, 3, H, W): the label's last-layer map ranks the pixels
        xr = remove_pixels(x, by_layer[depth], Removal(f, order, fill="mean"), classes=y)
        c, p = _predict(model, xr.flatten(0, 1))
        removed.append(_uint8(xr, test.name).swapaxes(0, 1))                # (n, F, 3, H, W)
        r_pred.append(c.view(len(f), -1).T)
        r_prob.append(p.view(len(f), -1).T)
    for name, m in (("class maps", class_maps), ("Grad-CAM", grad_cam)):
        if m.abs().max() > np.finfo(np.float16).max:
            raise ValueError(f"the {name} exceed float16's range ({float(m.abs().max()):.3g}); "
                             f"is this a trained FA-CNN? Vanilla-CNN maps grow with depth")
    return dict(
        images=test.images[idx].numpy(), labels=y.cpu().numpy(), indices=idx.numpy(),
        pred=pred.cpu().numpy(), prob=prob.cpu().numpy(), probabilities=probabilities.cpu().numpy(),
        layers=np.asarray(layers, dtype=np.int64),
        class_maps=class_maps.cpu().numpy().astype(np.float16),
        grad_cam=grad_cam.cpu().numpy().astype(np.float16),
        fractions=f.double().numpy(), orders=np.asarray(ORDERS),
        removed=np.stack(removed, 1),
        removal_pred=torch.stack(r_pred, 1).cpu().numpy(),
        removal_prob=torch.stack(r_prob, 1).cpu().numpy(),
        class_names=np.asarray(list(test.classes)))
