"""Section 1: maps of all C classes per second.

class_maps (one forward, no gradients) against Grad-CAM for every class three ways: ours
(one forward, the classes' gradients in batched backwards), pytorch-grad-cam's GradCAM
looped over the classes and Captum's LayerGradCam looped over the classes (a forward and a
backward per class each). Same model, same images, same layer (X_N).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from facnn import attribution as A

from . import cases
from .harness import Report, max_abs_diff, measure


def pytorch_grad_cam_all(model, x, classes: int) -> list[np.ndarray]:
    """pytorch-grad-cam as its README uses it, once per class 0..classes-1: (B, H, W) maps
    in [0, 1]. Its hooks live only inside the ``with`` (they would fire in our grad_cam)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    with GradCAM(model, [model.layers[-1]]) as cam:
        return [cam(x, [ClassifierOutputTarget(c)] * len(x)) for c in range(classes)]


def captum_all(lgc, x, classes: int) -> torch.Tensor:
    """Captum's LayerGradCam, once per class 0..classes-1: raw maps (B, classes, h, w)."""
    return torch.cat([lgc.attribute(x, target=c).detach() for c in range(classes)], 1)


def _checks(report: Report, case: str, model, x, lgc, c: int) -> None:
    """Our grad_cam against both libraries on classes 0..c-1, and class_maps against it."""
    from pytorch_grad_cam.utils.image import scale_cam_image
    ours = A.grad_cam(model, x, relu=False)[:, :c]                           # (B, c, h, w)
    theirs = captum_all(lgc, x, c)
    scale = float(theirs.abs().max())
    d = max_abs_diff(ours, theirs)
    report.check(f"{case}: our grad_cam == Captum LayerGradCam (raw)", d <= 1e-5 * scale + 1e-7,
                 max_abs_diff=d, tolerance=1e-5 * scale + 1e-7)
    pgc = np.stack(pytorch_grad_cam_all(model, x, c), 1)                       # (B, C, H, W)
    size = tuple(x.shape[-2:])[::-1]
    # their pipeline on our raw maps: ReLU, min-max, resize to the input, min-max again
    mine = np.stack([scale_cam_image(scale_cam_image(np.maximum(ours[:, k].cpu().numpy(), 0), size))
                     for k in range(c)], 1)
    d = float(np.abs(mine - pgc).max())
    report.check(f"{case}: our grad_cam == pytorch-grad-cam (after its ReLU and min-max)",
                 d <= 2e-5, max_abs_diff=d, tolerance=2e-5)
    # Theorem 1: at X_N with the pooling head, Grad-CAM of Y^c = L_c / Z (Z = pixels of X_N)
    maps = A.class_maps(model, x)
    z = maps.shape[-2] * maps.shape[-1]
    d = max_abs_diff(A.grad_cam(model, x, relu=False), maps / z)
    tol = 1e-5 * float((maps / z).abs().max()) + 1e-8
    report.check(f"{case}: class_maps / Z == grad_cam at X_N (Theorem 1)", d <= tol,
                 max_abs_diff=d, tolerance=tol)


def run(report: Report, sizes: dict, device: torch.device) -> None:
    """Per (C, images): the libraries loop over ``lib_classes`` of the C classes per round
    (their cost is a forward and a backward per class, so the time per map does not depend
    on how many classes are timed); ours make all C maps. Ratios are per map."""
    from captum.attr import LayerGradCam
    warnings.filterwarnings("ignore", module="captum")
    for c, b in sizes["maps_cases"]:
        model = cases.facnn(sizes["profile"], c).to(device)
        x = cases.images(b, sizes["size"]).to(device)
        lib = min(c, sizes["lib_classes"])
        case = f"C={c}"
        lgc = LayerGradCam(model, model.layers[-1])
        _checks(report, case, model, x, lgc, lib)
        fns = {"class_maps": lambda: A.class_maps(model, x),
               "grad_cam": lambda: A.grad_cam(model, x),
               "pytorch-grad-cam": lambda: pytorch_grad_cam_all(model, x, lib),
               "captum": lambda: captum_all(lgc, x, lib)}
        t = measure(fns, sizes["rounds"])
        per_call = {"class_maps": b * c, "grad_cam": b * c, "pytorch-grad-cam": b * lib,
                    "captum": b * lib}
        info = dict(num_classes=c, images=b, library_classes_timed=lib, layer=model.depth,
                    model=cases.shape_text(model, x.shape[-1]))
        report.add_timing("maps", case, t, per_call, "maps", **info)
        for fast, slow, goal, text in [
                ("class_maps", "pytorch-grad-cam", c,
                 f"class_maps >= C = {c} times faster than pytorch-grad-cam, all classes"),
                ("class_maps", "captum", None, ""), ("class_maps", "grad_cam", None, ""),
                ("grad_cam", "pytorch-grad-cam", 1.0,
                 "our grad_cam at least as fast as pytorch-grad-cam"),
                ("grad_cam", "captum", 1.0,
                 "our grad_cam at least as fast as Captum LayerGradCam")]:
            report.compare("maps", case, t, fast, slow, goal=goal, goal_text=text,
                           per_unit=per_call, **info)
