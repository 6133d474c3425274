"""Model summaries: layers, channels, parameters and FLOPs per image."""
from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import Config
from .models import model_from_config


def input_size(cfg: Config) -> int:
    return cfg.image_size if cfg.dataset.startswith("imagenet") else 32


def count_flops(model: torch.nn.Module, size: int) -> int:
    """FLOPs of one forward pass on one image (multiply-adds count as 2)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, size, size))
    return fc.get_total_flops()


def describe(cfg: Config) -> str:
    model = model_from_config(cfg)
    size = input_size(cfg)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"{cfg.model} on {cfg.dataset} (profile {cfg.profile}, config {cfg.hash()})"]
    if hasattr(model, "forward_features"):
        with torch.no_grad():
            feats = model.eval().forward_features(torch.zeros(1, 3, size, size))
        lines.append(f"N={model.depth} layers, K={model.width} channels (C={model.num_classes} x "
                     f"R={model.maps_per_class}), max-pool after every {model.pool_every}")
        for i, f in enumerate(feats, 1):
            pool = "  + maxpool" if model.pools_after(i) else ""
            lines.append(f"  X_{i:<3d} {tuple(f.shape[1:])}{pool}")
        lines.append(f"head: {'3D GAP + L1 (pooling)' if model.head == 'pool' else 'GAP + Linear + softmax'}")
    lines.append(f"parameters: {params:,}")
    lines.append(f"FLOPs per image ({size}x{size}): {count_flops(model, size):,}")
    return "\n".join(lines)


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, FLOP/s. The SXM
# parts; a PCIe card of the same name is slower, so the fraction is then a lower bound.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "B200": 2250e12,
             "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12}


def bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like torch.cuda.get_device_name(), or None."""
    for key in sorted(BF16_PEAK, key=len, reverse=True):      # "A10G" before "A10"
        if re.search(rf"\b{key}\b", device_name, re.I):
            return BF16_PEAK[key]
    return None
