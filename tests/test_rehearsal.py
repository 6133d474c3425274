"""Rehearsal of the paper profile on the CPU: every Table 1 config of CIFAR-10, CIFAR-100 and
ImageNet-100 builds at its exact size and takes two optimiser steps (batch 2) through
facnn.train.train itself, with only the data replaced by a synthetic batch of the right
shape; and a two-process DistributedDataParallel run (torchrun, gloo) takes two steps at
the paper's depth and width. What fails here would fail in the first minute on the GPU.

Precision: bf16 autocast where this CPU has native bf16 (what "auto" means on CUDA), else
fp32. Budget: the three ImageNet-100 FA-CNN cells (N=24, K=600, 216 GFLOP per 224x224
image) are built at their exact size, but take their two steps on 64x64 inputs (every
weight the same, activations 12x smaller; about 100 CPU-seconds each at 224 on two cores)
unless FACNN_REHEARSAL=full. ResNets keep 224x224. The ImageNet JPEG loader is rehearsed
in the data tests.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import facnn.checkpoint as CK
import facnn.train as T
from facnn import preset
from facnn.config import table1_cells
from facnn.info import input_size
from facnn.models import model_from_config

pytestmark = [pytest.mark.rehearsal, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("cifar10", "cifar100", "imagenet100")
CELLS = [(d, m, r) for d in DATASETS for m, r in table1_cells("paper", d)]
# the paper's sizes (Section 4): N = 24 layers, K = C x R channels
PAPER_K = {"cifar10": 200, "cifar100": 600, "imagenet100": 600}
BATCH, STEPS = 2, 2


def _bf16_native() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


PRECISION = "bf16" if _bf16_native() else "fp32"
FULL = os.environ.get("FACNN_REHEARSAL") == "full"


def step_side(cfg) -> int:
    """The input side the rehearsal trains on: the config's, but 64 for the ImageNet FA-CNNs
    unless FACNN_REHEARSAL=full (see the module docstring)."""
    if cfg.dataset == "imagenet100" and not cfg.model.startswith("resnet") and not FULL:
        return 64
    return input_size(cfg)


class SyntheticLoader:
    """What facnn.train's loop reads from a loader: ``len``, ``set_epoch(epoch, start_batch)``
    and (x, y) batches, x normalised float (B, 3, S, S) on the device."""

    def __init__(self, cfg, batches: int, device):
        self.side, self.classes, self.batches, self.device = step_side(cfg), cfg.num_classes, batches, device
        self.served, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.start = start_batch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(self.start, self.batches):
            self.served += 1
            yield (torch.randn(BATCH, 3, self.side, self.side, generator=g).to(self.device),
                   torch.randint(0, self.classes, (BATCH,), generator=g).to(self.device))


@pytest.mark.parametrize("dataset,model,recipe", CELLS, ids=[f"{d}-{m}-{r}" for d, m, r in CELLS])
def test_paper_config_takes_two_steps(dataset, model, recipe, tmp_path, monkeypatch):
    cfg = preset("paper", dataset, model, recipe, out_dir=str(tmp_path), progress=False,
                 precision=PRECISION)
    built, saved, loaders = {}, {}, {}
    real_build, real_save = T.model_from_config, T.save_checkpoint

    def build(c):                       # train() builds the model once: keep its initial weights
        net = real_build(c)
        built["net"], built["init"] = net, {k: v.clone() for k, v in net.state_dict().items()}
        return net

    def save(path, net, opt, sched, c, state, device):
        # the checkpoint's content, in memory; written to disk (and read back) only for the
        # CIFAR-10 cells: a 78M-parameter checkpoint costs seconds of disk per cell
        saved.update(model=net.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                     **state)
        if c.dataset == "cifar10":
            real_save(path, net, opt, sched, c, state, device)

    def make_loaders(c, device, rank=0, world=1):
        # evaluation on one batch only where it is cheap (a 32x32 FA-CNN at K=200)
        loaders["train"] = SyntheticLoader(c, STEPS, device)
        loaders["test"] = SyntheticLoader(c, 1 if dataset == "cifar10" else 0, device)
        return loaders["train"], loaders["test"]

    monkeypatch.setattr(T, "model_from_config", build)
    monkeypatch.setattr(T, "save_checkpoint", save)
    monkeypatch.setattr(T, "make_loaders", make_loaders)
    T.train(cfg, stop_after=1)

    net = built["net"]                  # the exact paper size
    if model.startswith("resnet"):
        assert net.__class__.__name__ == ("TorchvisionResNet" if dataset == "imagenet100" else "CifarResNet")
    else:
        assert (net.depth, net.width, net.pool_every) == (24, PAPER_K[dataset], 8)
        assert cfg.stem == ("imagenet" if dataset == "imagenet100" else "none")
    assert input_size(cfg) == (224 if dataset == "imagenet100" else 32)
    assert loaders["train"].served == STEPS
    ckpt = CK.load_checkpoint(T.run_dir(cfg) / "checkpoint.pt", cfg) if dataset == "cifar10" else saved
    assert ckpt["epoch"] == 1 and ckpt["scheduler"]["last_epoch"] == STEPS
    row = ckpt["history"][0]
    assert math.isfinite(row["train_loss"]) and row["train_images"] == BATCH * STEPS
    # the learning rate followed the recipe's schedule for two of its steps
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr * T.lr_factor(cfg, STEPS, STEPS))
    init = built["init"]
    changed = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert any(k.endswith("weight") for k in changed), "no weight moved in two SGD steps"
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_torchrun_two_processes_at_paper_width(tmp_path):
    """DDP over gloo, 2 processes, N=24 and K=200 (the `shapes` data at the paper's size):
    each rank takes two steps of its half of a batch of 4."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    code = ("from facnn import preset; from facnn.train import train; "
            "train(preset('paper', 'shapes', 'fa-pool', epochs=1, shapes_train=8, shapes_test=4, "
            f"batch_size=4, out_dir=r'{tmp_path}', progress=False), stop_after=1)")
    script = tmp_path / "ddp.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        "--master_port=29541", str(script)], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = preset("paper", "shapes", "fa-pool", epochs=1, shapes_train=8, shapes_test=4, batch_size=4,
                 out_dir=str(tmp_path))
    ckpt = CK.load_checkpoint(T.run_dir(cfg) / "checkpoint.pt", cfg)
    model = model_from_config(cfg)
    assert (model.depth, model.width) == (24, 200)
    assert ckpt["scheduler"]["last_epoch"] == 2            # two optimiser steps per rank
    assert ckpt["images"] == 8                               # both ranks' images counted
    summary = json.loads((T.run_dir(cfg) / "summary.json").read_text())
    assert summary["world_size"] == 2
