"""Section 3: our pixel-removal curve against Quantus's PixelFlipping at an equal protocol.

The protocol that makes the two compute the same thing (see tests/test_removal.py):
Quantus ranks every channel of every pixel, so ``features_in_step = 3 m`` removes m whole
pixels per step, and it requires the pixel count P to be a multiple of 3 m; the central
24x24 crop of a 32x32 image (P = 576) with m = 64 gives 9 steps, step k removing exactly our
fraction k/9. Maps with distinct values (a random permutation), most relevant first; the
fill is the constant 0 (our "mean" fill); Quantus records the score of the true class,
which ``removal_curve`` keeps in ``Curve.scores``. Both evaluate the same 9 B perturbed
images, at most ``batch_size`` (our default) per forward: Quantus can only batch the B
images of one step, we batch across steps. A third timing, the bare forwards of those
images, shows how much of either is the model itself.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from facnn import removal as R

from . import cases
from .harness import Report, max_abs_diff, measure


def run(report: Report, sizes: dict, device: torch.device) -> None:
    import quantus
    warnings.filterwarnings("ignore", module="quantus")
    model = cases.facnn(sizes["profile"], sizes["classes"][0]).to(device)
    full = sizes["size"]
    size, steps = full * 3 // 4, 9                      # 24x24 crops of 32x32 images
    pixels = size * size
    m = pixels // steps                                 # 64 pixels per step at 24x24
    b, batch = sizes["removal_images"], cases.default_batch(R.removal_curve, device)
    lo = (full - size) // 2
    x = cases.images(b, full, seed=4)[..., lo:lo + size, lo:lo + size].contiguous().to(device)
    y = torch.arange(b, device=device) % model.num_classes
    g = torch.Generator().manual_seed(3)
    maps = torch.stack([torch.randperm(pixels, generator=g) for _ in range(b)])
    maps = maps.view(b, 1, size, size).float()                  # distinct values: no ties
    spec = R.Removal([k / steps for k in range(1, steps + 1)], "morf", "mean")
    metric = quantus.PixelFlipping(features_in_step=3 * m, perturb_baseline=0.0, normalise=False,
                                   abs=False, disable_warnings=True)
    xs, ys, a = x.cpu().numpy(), y.cpu().numpy(), maps.numpy()

    def quantus_curve():
        return np.array(metric(model=model.eval(), x_batch=xs, y_batch=ys, a_batch=a, softmax=False,
                               device=str(device), channel_first=True, batch_size=batch))

    def ours():
        return R.removal_curve(model, x, y, maps.to(device), spec)

    perturbed = R.remove_pixels(x, maps.to(device), spec)                    # (9, B, 3, h, w)
    perturbed = perturbed.flatten(0, 1)

    def forwards():
        with torch.no_grad():
            return [model(perturbed[i:i + batch]) for i in range(0, len(perturbed), batch)]

    got, curve = quantus_curve(), ours()                 # (B, 9), Curve with scores (9, B)
    d = max_abs_diff(got, curve.scores.T)
    tol = 1e-4 * float(np.abs(got).max()) + 1e-6
    report.check(f"removal: our curve's scores == Quantus PixelFlipping ({steps} steps, MoRF, "
                 f"fill 0)", d <= tol, max_abs_diff=d, tolerance=tol)
    t = measure({"removal_curve": ours, "quantus-pixelflipping": quantus_curve,
                 "forwards only": forwards}, sizes["rounds"])
    info = dict(images=b, steps=steps, pixels_per_step=m, batch=batch, crop=size,
                model=cases.shape_text(model, size))
    report.add_timing("removal", "removal vs Quantus", t, {k: b for k in t.seconds}, "curves",
                      **info)
    report.compare("removal", "removal vs Quantus", t, "removal_curve", "quantus-pixelflipping",
                   goal=20.0, goal_text="our removal benchmark >= 20 times faster than Quantus "
                                        "PixelFlipping at an equal protocol", **info)
    report.compare("removal", "removal vs Quantus", t, "forwards only", "removal_curve", **info)
    report.compare("removal", "removal vs Quantus", t, "forwards only", "quantus-pixelflipping",
                   **info)
    share = t.ratio("removal_curve", "forwards only")
    report.note(f"removal: the model's forwards alone take {100 / share['median']:.0f}% of "
                f"removal_curve's time (median); both removal_curve and Quantus must run "
                f"these {steps * b} forwards")
