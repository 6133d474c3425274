"""The models and images every section measures, and the sizes of each mode."""
from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from facnn import layers as L
from facnn.config import preset
from facnn.models import FACNN, build_model, randomise_batchnorm
from facnn.models import default_batch as models_default_batch

# One dict per mode: every number that sets the cost of a run (cf. airbench's `hyp`).
#   profile, size: the FA-CNN preset and the input side; rounds: timed rounds per comparison
#   maps_cases: (C, images) of section 1; lib_classes: classes the libraries loop over per round
#   rise_n, rise_images, rise_rounds: RISE maps/s (and class_maps against it)
#   rise_ref_n: masks for ours vs the reference loops (2 images)
#   occ_images, window, stride: K-OCC vs Captum; removal_images: images of the removal curves
#   train_* / paper_*: batch, steps per round and rounds at the profile's and at paper size
SIZES = {
    "full": dict(profile="cpu", size=32, classes=(10, 100), rounds=7,
                 maps_cases=((10, 16), (100, 4)), lib_classes=10,
                 rise_n=4000, rise_images=1, rise_rounds=3, rise_ref_n=96,
                 occ_images=2, window=4, stride=2, removal_images=64,
                 train_batch=32, train_steps=2, train_rounds=7,
                 paper_profile="paper", paper_batch=8, paper_steps=1, paper_rounds=5,
                 compile=True),
    "quick": dict(profile="cpu", size=32, classes=(10, 100), rounds=3,
                  maps_cases=((10, 4), (100, 1)), lib_classes=5,
                  rise_n=1000, rise_images=1, rise_rounds=1, rise_ref_n=16,
                  occ_images=1, window=4, stride=2, removal_images=16,
                  train_batch=32, train_steps=1, train_rounds=3,
                  paper_profile="paper", paper_batch=2, paper_steps=1, paper_rounds=2,
                  compile=False),
    # for tests/test_bench.py: the whole pipeline on toy sizes in seconds
    "tiny": dict(profile="smoke", size=16, classes=(3, 10), rounds=2,
                 maps_cases=((3, 2), (10, 2)), lib_classes=10,
                 rise_n=64, rise_images=1, rise_rounds=1, rise_ref_n=8,
                 occ_images=1, window=4, stride=4, removal_images=4,
                 train_batch=8, train_steps=1, train_rounds=2,
                 paper_profile="smoke", paper_batch=2, paper_steps=1, paper_rounds=1,
                 compile=False),
}

def default_batch(fn, device: torch.device) -> int:
    """The images-per-forward default of one of our functions (its ``batch_size``), so the
    libraries can be given the same; None means facnn.models.default_batch (by device)."""
    import inspect
    d = inspect.signature(fn).parameters["batch_size"].default
    if d is None or d is inspect.Parameter.empty:
        return models_default_batch(torch.empty(0, device=device))
    return int(d)


seeded = randomise_batchnorm


def facnn(profile: str, num_classes: int, seed: int = 0) -> FACNN:
    """FA-CNN (pooling head) at a profile's size for ``num_classes`` classes, seeded:
    cpu: N = 9, pools after layers 3 and 6, R = 4 for C = 10 and R = 1 for C = 100
    (the cifar10 and cifar100 presets); paper: N = 24, K = 200 for C = 10."""
    cfg = preset(profile, "cifar10" if num_classes <= 10 else "cifar100", "fa-pool")
    torch.manual_seed(seed)
    model = build_model("fa-pool", num_classes, maps_per_class=cfg.maps_per_class,
                        depth=cfg.depth, pool_every=cfg.pool_every)
    return seeded(model, seed)


def shape_text(model: FACNN, size: int) -> str:
    return (f"FA-CNN N={model.depth}, K={model.width} (C={model.num_classes} x "
            f"R={model.maps_per_class}), pool after every {model.pool_every}, {size}x{size} input")


def images(n: int, size: int = 32, seed: int = 1) -> Tensor:
    """Normalised-space images (B, 3, size, size): seeded standard normal."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class BareStack(nn.Module):
    """FA-CNN without its dampened skip: X_L = ReLU(BN(Conv3x3(X_{L-1}))), the same convs,
    BatchNorms, max-pools and pooling head, so the two differ only by the skip's
    elementwise work (1 - b_L) X_{L-1} + b_L tanh(F) that FA-CNN adds per layer."""

    def __init__(self, like: FACNN):
        super().__init__()
        self.num_classes, self.depth = like.num_classes, like.depth
        self.pool_every = like.pool_every
        self.layers = nn.ModuleList(L.ConvBN(m.f[0].in_channels, m.f[0].out_channels)
                                    for m in like.layers)

    def forward(self, x: Tensor) -> Tensor:
        for i, f in enumerate(self.layers, 1):
            x = torch.relu(f(x))
            if i % self.pool_every == 0 and i < self.depth:
                x = F_.max_pool2d(x, 2)
        return L.class_pool(x, self.num_classes)

    def loss(self, scores: Tensor, y: Tensor) -> Tensor:
        return L.l1_nll_loss(scores, y)
