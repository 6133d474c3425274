"""Section 4: training images/s of FA-CNN against a bare conv+BN stack of the same shape.

The bare stack (cases.BareStack) has FA-CNN's convolutions, BatchNorms, max-pools and
pooling head but X_L = ReLU(BN(Conv(X_{L-1}))): the ratio of their step times is the cost
of the dampened skip. One training step = forward, loss, backward, SGD step, on a fixed
batch. Variants: eager, channels_last, torch.compile (where it runs), and on CUDA bf16
autocast with channels_last, with and without compile. On a CPU with native bf16, also
FA-CNN in fp32 against bf16 autocast + channels_last (the cpu profile's precision). At the profile's size and at paper
size (N = 24, K = 200; a few steps).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from facnnbook import bench
from facnn.info import count_flops

from . import cases
from .harness import Report, measure


def _step_fn(model: nn.Module, x, y, autocast: bool):
    """A closure doing one SGD training step of ``model`` on (x, y), as facnn.train does."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    device = next(model.parameters()).device.type
    ctx = (lambda: torch.autocast(device, torch.bfloat16)) if autocast else nullcontext

    def step():
        with ctx():
            scores = model(x)
        loss = model.loss(scores, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _variants(device: torch.device, compile_ok: bool) -> list[dict]:
    cuda = device.type == "cuda"
    v = [dict(name="eager", channels_last=False, compile=False, autocast=cuda),
         dict(name="channels_last", channels_last=True, compile=False, autocast=cuda)]
    if compile_ok:
        v.append(dict(name="compile", channels_last=cuda, compile=True, autocast=cuda))
    return v


def _pair(profile: str, num_classes: int, device, variant: dict):
    fa = cases.facnn(profile, num_classes).train()
    bare = cases.BareStack(fa).train()
    fmt = torch.channels_last if variant["channels_last"] else torch.contiguous_format
    fa, bare = fa.to(device, memory_format=fmt), bare.to(device, memory_format=fmt)
    if variant["compile"]:
        # compile the modules in place, so model.loss and the optimiser see the same params
        fa.compile()
        bare.compile()
    return fa, bare


def _size_case(report: Report, device, label: str, profile: str, size: int, batch: int,
               steps: int, rounds: int, compile_ok: bool) -> None:
    for variant in _variants(device, compile_ok):
        fa, bare = _pair(profile, 10, device, variant)
        fmt = torch.channels_last if variant["channels_last"] else torch.contiguous_format
        x = cases.images(batch, size).to(device).contiguous(memory_format=fmt)
        y = torch.arange(batch, device=device) % 10
        fns = {}
        for name, model in (("fa-cnn", fa), ("bare conv+bn", bare)):
            step = _step_fn(model, x, y, variant["autocast"])
            fns[name] = (lambda s=step: [s() for _ in range(steps)])
        t = measure(fns, rounds, warmup=2 if variant["compile"] else 1)
        case = f"train {label}, {variant['name']}"
        info = dict(size=label, profile=profile, variant=variant["name"], batch=batch, steps=steps,
                    model=cases.shape_text(fa, size), **{k: variant[k] for k in
                                                         ("channels_last", "compile", "autocast")})
        report.add_timing("training", case, t, {k: batch * steps for k in fns}, "images", **info)
        report.compare("training", case, t, "bare conv+bn", "fa-cnn", goal=1.3, at_most=True,
                       goal_text="FA-CNN training step <= 1.3x the bare conv+BN stack's", **info)
        row = next(m for m in report.measurements if m["case"] == case and m["method"] == "fa-cnn")
        row.update(_flops(profile, size, t.rate("fa-cnn", batch * steps)["median"], device))


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 runs natively here: CUDA, or a CPU with AVX512-BF16 / AMX (oneDNN)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _precision_case(report: Report, device, label: str, profile: str, size: int, batch: int,
                    steps: int, rounds: int) -> None:
    """FA-CNN's training step in fp32 against bf16 autocast with channels_last, what
    Config.precision = "bf16" does (the cpu profile's setting)."""
    if not bf16_native(device):
        report.note(f"training: bf16 not measured (no native bf16 on this {device.type})")
        return
    fa32 = cases.facnn(profile, 10).train().to(device)
    fa16 = cases.facnn(profile, 10).train().to(device, memory_format=torch.channels_last)
    x = cases.images(batch, size).to(device)
    y = torch.arange(batch, device=device) % 10
    steps32 = _step_fn(fa32, x, y, False)
    steps16 = _step_fn(fa16, x.contiguous(memory_format=torch.channels_last), y, True)
    fns = {"fp32": lambda: [steps32() for _ in range(steps)],
           "bf16 channels_last": lambda: [steps16() for _ in range(steps)]}
    t = measure(fns, rounds, warmup=1)
    case = f"train {label}, fp32 vs bf16"
    info = dict(size=label, profile=profile, batch=batch, steps=steps,
                model=cases.shape_text(fa32, size))
    report.add_timing("training", case, t, {k: batch * steps for k in fns}, "images", **info)
    report.compare("training", case, t, "bf16 channels_last", "fp32", goal=1.5,
                   goal_text="bf16 autocast trains >= 1.5x faster than fp32 where bf16 is native",
                   **info)


def _flops(profile: str, size: int, images_per_s: float, device) -> dict:
    """Achieved FLOP/s of FA-CNN's training step (3x the forward's FLOPs: the forward and
    two for the backward) and, on CUDA, its fraction of the chip's dense bf16 peak (the
    GPU columns: None on the CPU)."""
    fwd = count_flops(cases.facnn(profile, 10), size)      # an eager twin: same FLOPs
    achieved = 3 * fwd * images_per_s
    peak = bench.bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    return dict(train_flops_per_image=3 * fwd, achieved_flops=achieved, bf16_peak_flops=peak,
                fraction_of_peak=None if peak is None else achieved / peak)


def _compile_works(device) -> tuple[bool, str]:
    """Whether torch.compile can build a training step here (it needs a C++ compiler on
    the CPU and Triton on CUDA); the reason when it cannot."""
    try:
        m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).to(device)
        m.compile()
        m(torch.randn(2, 3, 8, 8, device=device)).sum().backward()
        return True, ""
    except Exception as e:  # inductor raises many kinds of errors for a missing toolchain
        return False, f"{type(e).__name__}: {str(e)[:200]}"


def run(report: Report, sizes: dict, device: torch.device) -> None:
    compile_ok, why = (_compile_works(device) if sizes["compile"] else (False, "off in this mode"))
    if not compile_ok:
        report.note(f"training: torch.compile not measured ({why})")
    _size_case(report, device, f"{sizes['profile']} size", sizes["profile"], sizes["size"],
               sizes["train_batch"], sizes["train_steps"], sizes["train_rounds"], compile_ok)
    if device.type == "cpu":   # on CUDA bf16 is the default of every variant above
        _precision_case(report, device, f"{sizes['profile']} size", sizes["profile"],
                        sizes["size"], sizes["train_batch"], sizes["train_steps"],
                        sizes["train_rounds"])
    # paper size: eager and channels_last only on the CPU (compiling N = 24 layers takes
    # minutes there and the convolutions dominate the step); everything on CUDA
    _size_case(report, device, "paper size", sizes["paper_profile"], sizes["size"],
               sizes["paper_batch"], sizes["paper_steps"], sizes["paper_rounds"],
               compile_ok and device.type == "cuda")
