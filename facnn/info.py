"""Model summaries: layers, channels, parameters and FLOPs per image."""
from __future__ import annotations

import os
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


# -- memory ---------------------------------------------------------------------------------

GB = 2 ** 30
SLACK = 2.0


def memory_estimate(cfg: Config) -> dict[str, float]:
    """Bytes a training run of ``cfg`` needs, roughly: ``data`` (the in-memory images, on the
    host), ``model`` (fp32 weights, gradients and momentum) and ``activations`` (every
    module's output for one batch, kept for the backward pass). The network is built on the
    meta device, so a config too large to allocate costs nothing here."""
    side = input_size(cfg)
    outputs = [0]
    with torch.device("meta"):
        model = model_from_config(cfg)
        model.check_input = lambda x: None      # meta tensors have no values to check
        hooks = [m.register_forward_hook(lambda m, i, o: outputs.__setitem__(0, outputs[0] + o.numel()))
                 for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    if cfg.dataset == "shapes":   # generated as float32 images and masks, kept as uint8
        data = (cfg.shapes_train + cfg.shapes_test) * side * side * (3 * 4 + 3 + 1)
    elif cfg.dataset == "imagenet100":   # streamed by DataLoader workers
        data = 0
    else:
        data = 60_000 * side * side * 3
    return {"data": float(data), "model": 12.0 * params, "activations": 4.0 * outputs[0] * cfg.batch_size}


def host_memory() -> float | None:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: Config, device: torch.device) -> None:
    """Refuse, before anything is allocated or written, a config whose estimated memory
    exceeds this machine's (the host's RAM, or the GPU's for the model and activations) by
    more than the estimate's slack (it counts every module's output as kept)."""
    need = memory_estimate(cfg)
    ram = host_memory()
    on_gpu = device.type == "cuda"
    gpu = torch.cuda.get_device_properties(device).total_memory if on_gpu else None
    budgets = [("data", ram, "RAM")] + [(k, gpu if on_gpu else ram, "GPU memory" if on_gpu else "RAM")
                                        for k in ("model", "activations")]
    for where in ("RAM", "GPU memory"):
        parts = {k: need[k] for k, _, w in budgets if w == where}
        have = next((b for _, b, w in budgets if w == where), None)
        if not parts or have is None or sum(parts.values()) <= SLACK * have:
            continue
        biggest = max(parts, key=parts.get)
        raise ValueError(
            f"this config needs about {sum(parts.values()) / GB:,.1f} GiB of {where} (mostly "
            f"{biggest}: {parts[biggest] / GB:,.1f} GiB), more than the {have / GB:,.1f} GiB here; "
            f"lower {_DRIVERS[biggest]}")


_DRIVERS = {"data": "shapes_train/shapes_test (or use a subset)",
            "model": "maps_per_class, width, depth or resnet_width",
            "activations": "batch_size (or maps_per_class, width, depth)"}
