"""Training with resumable, atomic checkpoints (SPEC 5).

A run lives in ``<out_dir>/<profile>/<dataset>-<model>-<config hash>/``:

    config.json      the Config
    checkpoint.pt    model, optimiser, scheduler, RNG, epoch, history (written every epoch,
                     atomically: temp file + rename)
    metrics.jsonl    one line per epoch (rewritten from the checkpoint's history)
    summary.json     written when the last epoch is done
    weights.pt       the finished model's fp32 weights (small enough to commit)
    .lock            while a process trains it (its PID); removed when it stops

A finished run whose weights are gone or damaged (a clone with summary.json alone) is
trained again by the same command; its old summary is kept as summary.previous.json.
Ctrl-C stops after the current batch with a checkpoint there (exit code 130 in the CLI).

Calling :func:`train` again resumes from the checkpoint, or returns the summary at once
when the run is complete. Under ``torchrun`` it trains with DistributedDataParallel.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from . import data as D, imagenet as IN, loaders as Ld
from .checkpoint import finished_summary, load_checkpoint, save_checkpoint, save_weights
from .config import Config, run_dir
from .fileio import atomic_write_text, file_sha256, git_commit, make_dir, run_lock, sweep_stale_temps
from .interrupt import deferred, interrupted
from .info import check_memory
from .models import Classifier, fast_layout, inputs_unchecked, model_from_config


# -- plumbing -----------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> torch.device:
    """The torch.device of cfg.device; a ValueError with the fix when this machine lacks it."""
    if name != "auto":
        device = torch.device(name)
        kind = device.type
        backend = getattr(torch, kind, None) if kind != "mps" else getattr(torch.backends, "mps", None)
        if kind != "cpu" and not (backend is not None and backend.is_available()):
            raise ValueError(f"device={name} but this machine has no {kind} device torch can use; "
                             f"--set device=auto picks the best one here (or device=cpu)")
        if kind == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# -- optimisation -------------------------------------------------------------------------

def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def lr_factor(cfg: Config, step: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (stepped every batch)."""
    epoch = step / steps_per_epoch
    if cfg.schedule == "cosine":   # minimal recipe, DECIDED: cosine to 0 over the run
        return 0.5 * (1 + math.cos(math.pi * min(epoch / cfg.epochs, 1.0)))
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return cfg.gamma ** int(epoch // cfg.step_size)


# -- evaluation ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: Classifier, loader, device: torch.device | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean loss over a loader. The sums stay on the device (float64
    where it has one) and are read once at the end: no host sync per batch."""
    was_training = model.training
    model.eval()
    total, correct, loss_sum = 0, None, None
    for x, y in loader:
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(x.device):
            scores = model(_layout(x))
        if correct is None:
            wide = torch.float32 if x.device.type == "mps" else torch.float64
            correct = torch.zeros((), dtype=torch.long, device=x.device)
            loss_sum = torch.zeros((), dtype=wide, device=x.device)
        loss_sum += _unwrap(model).loss(scores, y).to(loss_sum.dtype) * len(y)
        correct += (scores.argmax(1) == y).sum()
        total += len(y)
    model.train(was_training)
    if correct is None:
        return {"accuracy": 0.0, "loss": 0.0, "n": 0}
    return {"accuracy": int(correct) / total, "loss": float(loss_sum) / total, "n": total}


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: "auto" means on CUDA only. On CPUs with
    native bf16 (AVX512-BF16, AMX) "bf16" trains about 2x faster (benchmarks/training.py)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _autocast(device: torch.device, bf16: bool | None = None):
    # evaluation passes no flag: bf16 on CUDA, fp32 on CPU, so a CPU run's test accuracy
    # is that of the fp32 model the attribution chapters use
    bf16 = device.type == "cuda" if bf16 is None else bf16
    return torch.autocast(device.type, torch.bfloat16) if bf16 else nullcontext()


def _layout(x: torch.Tensor, channels_last: bool | None = None) -> torch.Tensor:
    """channels_last (models.fast_layout) on CUDA by default, or when asked."""
    channels_last = x.is_cuda if channels_last is None else channels_last
    return fast_layout(x) if channels_last else x


def _unwrap(model: nn.Module) -> Classifier:
    """The Classifier inside torch.compile's and DistributedDataParallel's wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# -- data ---------------------------------------------------------------------------------

def make_loaders(cfg: Config, device: torch.device, rank: int = 0, world: int = 1):
    """(train, test) loaders for a config: tensor-resident for in-memory datasets and
    ImageNet-20, a DataLoader with workers for ImageNet-100 (``cfg.loader`` chooses for
    ImageNet subsets). Both kinds take ``set_epoch(epoch, start_batch)``."""
    imagenet = cfg.dataset in IN.IMAGENET_SUBSETS
    # auto decodes ImageNet-20 (12,000 small JPEGs, a few seconds) into memory and streams
    # ImageNet-100 (130,000 photos) through workers
    loader = cfg.loader if cfg.loader != "auto" else "tensor" if cfg.dataset == "imagenet20" else "workers"
    if imagenet and loader == "workers":
        if cfg.holdout:
            raise ValueError(f"holdout={cfg.holdout} needs the in-memory loader; add --set loader=tensor")
        return _imagenet_loaders(cfg, device, rank, world)
    train, test = D.load_config_data(cfg)
    crop = dict(drop_last=True, augmentation="resized-crop") if imagenet else {}
    return (Ld.TensorLoader(train, max(1, cfg.batch_size // world), True, device, cfg.seed, rank, world,
                           **crop),
            Ld.TensorLoader(test, 500, False, device))


def _imagenet_loaders(cfg: Config, device: torch.device, rank: int, world: int):
    """An ImageNet subset through a DataLoader with ``cfg.num_workers`` workers (0: in this
    process); order and augmentation fixed by (seed, epoch), so resume is exact."""
    root = IN.imagenet_root(cfg.dataset, cfg.data_root)
    wnids = IN.class_list(cfg.dataset, root, cfg.classes_file, IN.CLASS_CHOICE_SEED)
    tr, va = (IN.FolderDataset(cfg.dataset, root, split, wnids, cfg.image_size) for split in ("train", "val"))
    common = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    return (Ld.FolderLoader(tr, max(1, cfg.batch_size // world), True, cfg.seed, rank, world,
                           drop_last=True, **common),
            Ld.FolderLoader(va, 250, False, **common))


# -- the loop -----------------------------------------------------------------------------

@dataclass
class Progress:
    """How far a run has got. The first seven fields are checkpoint.pt's keys of those names;
    the rest tell a Ctrl-C what it can save."""

    epoch: int = 0                           # epochs done
    batch: int = 0                           # batches of the next epoch done
    partial: dict | None = None              # their sums: loss_sum, correct, n, seconds
    history: list[dict] = field(default_factory=list)   # metrics.jsonl's rows
    wall_s: float = 0.0
    images: int = 0
    train_s: float = 0.0
    sums: Callable[[], dict] | None = None   # reads the sums at `batch` now (kept on the device)
    safe: bool = True                        # model, optimiser and sums agree with (epoch, batch)
    saved: tuple[int, int] | None = None     # the (epoch, batch) checkpoint.pt holds
    saving: bool = False                     # checkpoint.pt is being written
    stop: bool = False                       # Ctrl-C: stop after this batch

    SAVED = ("epoch", "batch", "partial", "history", "wall_s", "images", "train_s")

    def checkpoint(self) -> dict[str, Any]:
        """The fields checkpoint.pt keeps, the running sums read now."""
        partial = self.sums() if self.sums else self.partial
        return {k: partial if k == "partial" else getattr(self, k) for k in self.SAVED}

    def finish_epoch(self, row: dict, train_s: float, images: int) -> None:
        """Epoch ``epoch`` is done with metrics ``row``: the next one starts at its batch 0."""
        self.epoch, self.batch, self.partial, self.sums = self.epoch + 1, 0, None, None
        self.wall_s += row["seconds"]
        self.train_s += train_s
        self.images += images
        self.history.append(row)


def train(cfg: Config, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume, or return the finished summary of) the run ``cfg`` describes.

    ``stop_after`` ends this call after that many epochs in total (the run stays
    resumable): it is how tests and notebooks simulate an interruption. A finished run
    whose weights are gone or damaged is trained again from scratch (see the module's
    docstring). Ctrl-C saves a checkpoint after the current batch and raises
    :class:`facnn.interrupt.TrainingInterrupted` saying where a rerun resumes (a second
    Ctrl-C stops at once, keeping the last checkpoint). The config, the device and the memory it needs are
    checked before anything is written; one process trains a run at a time (a second
    raises RunLocked naming the first).
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    check_memory(cfg, device)
    out = make_dir(run_dir(cfg))
    if int(os.environ.get("RANK", 0)) != 0:   # torchrun: rank 0 holds the run's lock
        return _train(cfg, stop_after, device)
    with run_lock(out):
        return _train(cfg, stop_after, device)


def _train(cfg: Config, stop_after: int | None, device: torch.device) -> dict[str, Any]:
    rank, world = _dist_setup()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out = run_dir(cfg)
    summary_path, ckpt_path = out / "summary.json", out / "checkpoint.pt"
    if summary_path.exists() and stop_after is None:
        summary = finished_summary(cfg, rank, world)
        if summary is not None:
            return summary
    make_dir(out)
    if rank == 0:
        sweep_stale_temps(out)
        atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=1))

    torch.manual_seed(cfg.seed)
    model = model_from_config(cfg).to(device)
    bf16 = use_bf16(cfg.precision, device)
    if device.type == "cuda" or bf16:   # oneDNN's bf16 convolutions want channels_last too
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    train_loader, test_loader = make_loaders(cfg, device, rank, world)
    steps = len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps))
    state = _resume(ckpt_path, cfg, model, opt, sched, device) if ckpt_path.exists() else Progress()
    if rank == 0 and state.saved is not None and state.epoch < cfg.epochs:
        _say(cfg, f"resuming {out.name} at epoch {state.epoch + 1}/{cfg.epochs}, batch {state.batch}/{steps}")
    net: nn.Module = model
    if world > 1:
        ids = [device] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    elif cfg.compile and rank == 0:
        print(f"note: compile=true is ignored on {device.type} (torch.compile is used on CUDA only)",
              file=sys.stderr)

    def save() -> None:
        """Bring checkpoint.pt up to the state (rank 0 writes it)."""
        fields = state.checkpoint()   # reads the running sums: a NaN stops here, on every rank
        if rank == 0:
            state.saving = True
            save_checkpoint(ckpt_path, model, opt, sched, cfg, fields, device)
            state.saving, state.saved = False, (fields["epoch"], fields["batch"])

    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    try:
        with inputs_unchecked(model), deferred(state):
            for epoch in range(state.epoch, last):
                t0 = time.perf_counter()
                stats = _train_epoch(net, opt, sched, train_loader, cfg, device, rank, state, save)
                test_stats = evaluate(model, test_loader, device)
                row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                       **{f"train_{k}": v for k, v in stats.items() if k != "seconds"},
                       "test_accuracy": test_stats["accuracy"], "test_loss": test_stats["loss"],
                       "seconds": time.perf_counter() - t0}
                state.safe = False   # the epoch's bookkeeping: resume from its checkpoint
                state.finish_epoch(row, stats["seconds"], stats["images"] * world)
                if rank == 0:
                    _say(cfg, f"epoch {epoch + 1}/{cfg.epochs}: test accuracy {test_stats['accuracy']:.4f}, "
                              f"train loss {stats['loss']:.4f}, {stats['images_per_s']:.0f} images/s")
                    save()
                    atomic_write_text(out / "metrics.jsonl",
                                      "".join(json.dumps(r) + "\n" for r in state.history))
                state.safe = True
                if state.stop:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if rank == 0 and state.safe and not state.saving and state.saved != (state.epoch, state.batch):
            save()
        raise interrupted(cfg, ckpt_path, state, steps) from None

    summary = _summary(cfg, state, device, world)
    if rank == 0 and state.epoch >= cfg.epochs:
        # the sha256 lets a clone that keeps only the summary tell a retrained model apart
        summary["weights_sha256"] = file_sha256(save_weights(cfg))
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
    if world > 1:
        dist.barrier()
    return summary


def _train_epoch(net, opt, sched, loader, cfg: Config, device: torch.device, rank: int,
                 state: Progress, save: Callable[[], None]) -> dict[str, float]:
    """Epoch ``state.epoch`` from its batch ``state.batch`` on (``state.partial``: the running
    sums of the batches before it); calls ``save()`` every ``cfg.save_every_s`` seconds.

    No host sync per batch: the sums stay on the device, and a non-finite loss is recorded
    on the device (the first batch that gave one) and checked every ``_CHECK_EVERY``
    batches and before any checkpoint, so a NaN never reaches checkpoint.pt. ``state`` (the
    resume point) is updated after every batch; training stops there when ``state.stop``."""
    from tqdm.auto import tqdm
    epoch, start, model = state.epoch, state.batch, _unwrap(net)
    net.train()
    bf16 = use_bf16(cfg.precision, device)
    loader.set_epoch(epoch, start)
    p = state.partial or {"loss_sum": 0.0, "correct": 0, "n": 0, "seconds": 0.0}
    bar = tqdm(loader, desc=f"{cfg.dataset}/{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
               disable=not cfg.progress or rank != 0, leave=False, unit="batch",
               initial=start, total=len(loader))
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    bad = torch.full((), -1, dtype=torch.long, device=device)   # first batch with a non-finite loss
    n, t0 = 0, time.perf_counter()
    last_save = t0

    def sums() -> dict:
        _check_finite(bad, epoch, cfg)
        return {"loss_sum": p["loss_sum"] + float(loss_sum), "correct": p["correct"] + int(correct),
                "n": p["n"] + n, "seconds": p["seconds"] + (time.perf_counter() - t0)}

    state.sums, state.safe = sums, True
    for i, (x, y) in enumerate(bar, start=start):
        state.safe = False   # BatchNorm statistics change in the forward
        x = _layout(x.to(device, non_blocking=True), device.type == "cuda" or bf16)
        y = y.to(device, non_blocking=True)
        with _autocast(device, bf16):
            scores = net(x)
        loss = model.loss(scores, y)
        bad = torch.where((bad < 0) & ~torch.isfinite(loss.detach()), i, bad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.detach() * len(y)
        correct += (scores.detach().argmax(1) == y).sum()
        n += len(y)
        state.batch, state.safe = i + 1, True
        now = time.perf_counter()
        if i % _CHECK_EVERY == 0:
            _check_finite(bad, epoch, cfg)
            if not bar.disable:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", img_s=f"{n / (now - t0):.0f}")
        if now - last_save > cfg.save_every_s and i + 1 < len(loader):
            save()
            last_save = now
        if state.stop:
            raise KeyboardInterrupt
    total = sums()
    state.sums = lambda: total
    return {"loss": total["loss_sum"] / total["n"], "accuracy": total["correct"] / total["n"],
            "images": total["n"], "images_per_s": total["n"] / total["seconds"],
            "seconds": total["seconds"]}


_CHECK_EVERY = 20   # batches between reads of the non-finite-loss flag (a host sync)


def _check_finite(bad: torch.Tensor, epoch: int, cfg: Config) -> None:
    step = int(bad)
    if step >= 0:
        raise FloatingPointError(
            f"the loss became NaN or inf at epoch {epoch + 1}, batch {step}; training stopped "
            f"before saving it (the last checkpoint is intact). Lower the learning rate "
            f"(lr={cfg.lr:g}), e.g. --set lr={cfg.lr / 10:g}")


def _resume(path: Path, cfg: Config, model, opt, sched, device: torch.device) -> Progress:
    """Load what :func:`facnn.checkpoint.save_checkpoint` wrote into model, optimiser,
    scheduler and RNG; the progress."""
    ckpt = load_checkpoint(path, cfg)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
    state = Progress(**{k: ckpt[k] for k in Progress.SAVED})
    state.saved = (state.epoch, state.batch)
    return state


def _summary(cfg: Config, state: Progress, device: torch.device, world: int) -> dict[str, Any]:
    h = state.history
    return {"run": cfg.run_name(), "profile": cfg.profile, "dataset": cfg.dataset, "model": cfg.model,
            "recipe": cfg.recipe, "accuracy": h[-1]["test_accuracy"] if h else None,
            "best_accuracy": max((r["test_accuracy"] for r in h), default=None),
            "epochs": state.epoch, "wall_s": state.wall_s,
            "images_per_s": state.images / state.train_s if state.train_s else None,
            "config": cfg.to_dict(), "config_hash": cfg.hash(), "commit": git_commit(),
            "device": str(device), "precision": "bf16" if use_bf16(cfg.precision, device) else "fp32",
            "world_size": world, "torch": torch.__version__,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def _say(cfg: Config, msg: str) -> None:
    if cfg.progress:
        from tqdm.auto import tqdm
        tqdm.write(msg)


def _dist_setup() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)
