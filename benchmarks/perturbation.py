"""Section 2: the perturbation methods.

RISE: ours against two references at equal N and equal masks (so the maps must agree):
the plain loop over masks and images, and the form of the authors' code (Petsiuk et al.
2018, explain.py: per image, the masked copies in batches, then P^T M / (N p)); then our
maps/s at N = 4000 and class_maps against it on the same images.
K-OCC: ours against Captum's Occlusion at equal window, stride and baseline, for one class
(equal work) and for all classes (Captum needs a call per class).
"""
from __future__ import annotations

import warnings

import torch

from facnn import attribution as A

from . import cases
from .harness import Report, max_abs_diff, measure


def rise_loop(model, x, masks, p: float) -> torch.Tensor:
    """RISE as a plain loop: one forward per mask and image. -> (B, C, H, W)"""
    sal = torch.zeros(len(x), model.num_classes, *x.shape[-2:], device=x.device)
    with torch.no_grad():
        for m in masks:
            for b in range(len(x)):
                sal[b] += model.probabilities((x[b] * m)[None])[0, :, None, None] * m
    return sal / (len(masks) * p)


def rise_authors(model, x, masks, p: float, batch: int = 256) -> torch.Tensor:
    """RISE as the authors' explain.py computes it, image by image: the N masked copies in
    batches of ``batch``, then sal = P^T M / (N p). -> (B, C, H, W)"""
    n, (h, w) = len(masks), x.shape[-2:]
    out = []
    with torch.no_grad():
        for img in x:
            stack = masks[:, None] * img                                   # (N, 3, H, W)
            prob = torch.cat([model.probabilities(stack[i:i + batch]) for i in range(0, n, batch)])
            out.append((prob.T @ masks.view(n, h * w)).view(-1, h, w) / (n * p))
    return torch.stack(out)


def _rise(report: Report, sizes: dict, device) -> None:
    model = cases.facnn(sizes["profile"], sizes["classes"][0]).to(device)
    c = model.num_classes
    size = sizes["size"]
    shape = cases.shape_text(model, size)
    cell, p, n = 7, 0.5, sizes["rise_ref_n"]
    x = cases.images(2, size).to(device)
    masks = next(A.rise_masks(n, (size, size), cell, p, seed=0, chunk=n, device=device))
    ours = A.rise(model, x, n_masks=n, cell=cell, p=p, seed=0)
    for name, ref in (("plain loop", rise_loop), ("authors' form", rise_authors)):
        theirs = ref(model, x, masks, p)
        d, tol = max_abs_diff(ours, theirs), 1e-5 * float(theirs.abs().max()) + 1e-7
        report.check(f"RISE N={n}: ours == {name}", d <= tol, max_abs_diff=d, tolerance=tol)
    fns = {"rise": lambda: A.rise(model, x, n_masks=n, cell=cell, p=p, seed=0),
           "rise-loop": lambda: rise_loop(model, x, masks, p),
           "rise-authors": lambda: rise_authors(model, x, masks, p)}
    t = measure(fns, sizes["rounds"])
    info = dict(num_classes=c, images=len(x), n_masks=n, model=shape)
    case = f"RISE N={n}"
    report.add_timing("perturbation", case, t, {k: len(x) * c for k in fns}, "maps", **info)
    report.compare("perturbation", case, t, "rise", "rise-loop", **info)
    report.compare("perturbation", case, t, "rise", "rise-authors", goal=1.0,
                   goal_text="our rise at least as fast as the authors' form at equal N", **info)

    # maps/s at N = 4000, and class_maps on the same images in the same rounds
    n4 = sizes["rise_n"]
    x1 = cases.images(sizes["rise_images"], size, seed=2).to(device)
    fns = {"class_maps": lambda: A.class_maps(model, x1),
           "rise": lambda: A.rise(model, x1, n_masks=n4, cell=cell, p=p, seed=0)}
    t = measure(fns, sizes["rise_rounds"])
    info = dict(num_classes=c, images=len(x1), n_masks=n4, model=shape)
    case = f"RISE N={n4}"
    report.add_timing("perturbation", case, t, {k: len(x1) * c for k in fns}, "maps", **info)
    goal = dict(goal=1000.0, goal_text="class_maps >= 1000 times faster than RISE at N = 4000") \
        if n4 == 4000 else {}
    report.compare("perturbation", case, t, "class_maps", "rise", **goal, **info)


def _occlusion(report: Report, sizes: dict, device) -> None:
    from captum.attr import Occlusion
    warnings.filterwarnings("ignore", module="captum")
    model = cases.facnn(sizes["profile"], sizes["classes"][0]).to(device)
    c, size = model.num_classes, sizes["size"]
    win, st, batch = sizes["window"], sizes["stride"], 256
    x = cases.images(sizes["occ_images"], size, seed=3).to(device)
    occ = Occlusion(model)
    # the same number of occluded images per forward as ours: Captum's count is per input
    per_eval = max(1, batch // len(x))

    def captum(classes) -> torch.Tensor:
        return torch.cat([occ.attribute(x, sliding_window_shapes=(3, win, win), strides=(3, st, st),
                                        baselines=0.0, target=k, perturbations_per_eval=per_eval)[:, :1]
                          for k in classes], 1)

    ours = A.k_occlusion(model, x, window=win, stride=st, fill=0.0, batch_size=batch)
    theirs = captum(range(c))
    d, tol = max_abs_diff(ours, theirs), 1e-5 * float(theirs.abs().max()) + 1e-6
    report.check(f"K-OCC window {win} stride {st}: ours == Captum Occlusion (all classes)",
                 d <= tol, max_abs_diff=d, tolerance=tol)
    shape = cases.shape_text(model, size)
    for case, classes in ((f"K-OCC one class", [0]), (f"K-OCC all {c} classes", list(range(c)))):
        sel = None if len(classes) == c else classes
        fns = {"k_occlusion": lambda: A.k_occlusion(model, x, classes=sel, window=win, stride=st,
                                                    fill=0.0, batch_size=batch),
               "captum-occlusion": lambda: captum(classes)}
        t = measure(fns, sizes["rounds"])
        info = dict(num_classes=c, classes=len(classes), images=len(x), window=win, stride=st,
                    model=shape)
        report.add_timing("perturbation", case, t, {k: len(x) * len(classes) for k in fns},
                          "maps", **info)
        goal = dict(goal=1.0, goal_text="our k_occlusion at least as fast as Captum's Occlusion "
                                        "(equal window, stride, baseline; one class)") \
            if len(classes) == 1 else {}
        report.compare("perturbation", case, t, "k_occlusion", "captum-occlusion", **goal, **info)


def run(report: Report, sizes: dict, device: torch.device) -> None:
    _rise(report, sizes, device)
    _occlusion(report, sizes, device)
