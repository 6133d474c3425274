"""Section 2: the perturbation methods.

RISE: ours against two references at equal N and equal masks (so the maps must agree):
the plain loop over masks and images, and the form of the authors' code (Petsiuk et al.
2018, explain.py: per image, the masked copies in batches, then P^T M / (N p)). The
references are handed the masks ready-made (the authors generate them once and reuse them
for every image); ours draws them in each call (~2 ms per 100 masks at 32x32). Then our
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
    batch = cases.default_batch(A.rise, device)
    for name, ref in (("plain loop", rise_loop), ("authors' form", rise_authors)):
        theirs = ref(model, x, masks, p)
        d, tol = max_abs_diff(ours, theirs), 1e-5 * float(theirs.abs().max()) + 1e-7
        report.check(f"RISE N={n}: ours == {name}", d <= tol, max_abs_diff=d, tolerance=tol)
    fns = {"rise": lambda: A.rise(model, x, n_masks=n, cell=cell, p=p, seed=0),
           "rise-loop": lambda: rise_loop(model, x, masks, p),
           "rise-authors": lambda: rise_authors(model, x, masks, p, batch)}
    t = measure(fns, sizes["rounds"])
    info = dict(num_classes=c, images=len(x), n_masks=n, model=shape, batch=batch)
    case = f"RISE N={n}"
    report.add_timing("perturbation", case, t, {k: len(x) * c for k in fns}, "maps", **info)
    report.compare("perturbation", case, t, "rise", "rise-loop", **info)
    report.compare("perturbation", case, t, "rise", "rise-authors", goal=1.0,
                   goal_text="our rise at least as fast as the authors' form at equal N", **info)

    # maps/s at N = 4000, and class_maps in the same rounds: on the same image(s) (one
    # forward each), and on a batch (its throughput; RISE gains nothing from batching images)
    n4 = sizes["rise_n"]
    x1 = cases.images(sizes["rise_images"], size, seed=2).to(device)
    xb = cases.images(sizes["maps_cases"][0][1], size, seed=2).to(device)
    fns = {"class_maps": lambda: A.class_maps(model, x1),
           "class_maps batched": lambda: A.class_maps(model, xb),
           "rise": lambda: A.rise(model, x1, n_masks=n4, cell=cell, p=p, seed=0)}
    t = measure(fns, sizes["rise_rounds"])
    per_call = {"class_maps": len(x1) * c, "class_maps batched": len(xb) * c,
                "rise": len(x1) * c}
    info = dict(num_classes=c, images=len(x1), batched_images=len(xb), n_masks=n4, model=shape,
                batch=cases.default_batch(A.rise, device))
    case = f"RISE N={n4}"
    report.add_timing("perturbation", case, t, per_call, "maps", **info)
    goal = dict(goal=1000.0, goal_text="class_maps >= 1000 times faster than RISE at N = 4000 "
                                       "(same image)") if n4 == 4000 else {}
    report.compare("perturbation", case, t, "class_maps", "rise", **goal, **info)
    report.compare("perturbation", case, t, "class_maps batched", "rise", per_unit=per_call,
                   **info)


def _occlusion(report: Report, sizes: dict, device) -> None:
    """One class (equal work: a sweep of every window, one forward per occluded image)
    and all classes per map: ours gets every class from the same sweep, Captum sweeps
    again for each target, so its time per map is its one-class time."""
    from captum.attr import Occlusion
    warnings.filterwarnings("ignore", module="captum")
    model = cases.facnn(sizes["profile"], sizes["classes"][0]).to(device)
    c, size = model.num_classes, sizes["size"]
    win, st = sizes["window"], sizes["stride"]
    batch = cases.default_batch(A.k_occlusion, device)
    x = cases.images(sizes["occ_images"], size, seed=3).to(device)
    occ = Occlusion(model)
    # as many occluded images per forward as ours: Captum counts perturbations per input
    per_eval = max(1, batch // len(x))

    def captum(classes) -> torch.Tensor:
        return torch.cat([occ.attribute(x, sliding_window_shapes=(3, win, win),
                                        strides=(3, st, st), baselines=0.0, target=k,
                                        perturbations_per_eval=per_eval)[:, :1]
                          for k in classes], 1)

    some = sorted({0, c // 2, c - 1})              # Captum sweeps once per class: check three
    ours = A.k_occlusion(model, x, window=win, stride=st, fill=0.0)[:, some]
    theirs = captum(some)
    d, tol = max_abs_diff(ours, theirs), 1e-5 * float(theirs.abs().max()) + 1e-6
    report.check(f"K-OCC window {win} stride {st}: ours == Captum Occlusion (classes {some})",
                 d <= tol, max_abs_diff=d, tolerance=tol)
    fns = {"k_occlusion": lambda: A.k_occlusion(model, x, classes=[0], window=win, stride=st),
           "k_occlusion all classes": lambda: A.k_occlusion(model, x, window=win, stride=st),
           "captum-occlusion": lambda: captum([0])}
    t = measure(fns, sizes["rounds"])
    maps_per_call = {"k_occlusion": len(x), "k_occlusion all classes": len(x) * c,
                     "captum-occlusion": len(x)}
    case = f"K-OCC window {win} stride {st}"
    info = dict(num_classes=c, images=len(x), window=win, stride=st, batch=batch,
                captum_perturbations_per_eval=per_eval, model=cases.shape_text(model, size))
    report.add_timing("perturbation", case, t, maps_per_call, "maps", **info)
    report.compare("perturbation", case, t, "k_occlusion", "captum-occlusion", goal=1.0,
                   goal_text="our k_occlusion at least as fast as Captum's Occlusion (equal "
                             "window, stride, baseline and images per forward; one class)", **info)
    report.compare("perturbation", case, t, "k_occlusion all classes", "captum-occlusion",
                   per_unit=maps_per_call, **info)


def run(report: Report, sizes: dict, device: torch.device) -> None:
    _rise(report, sizes, device)
    _occlusion(report, sizes, device)
