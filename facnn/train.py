"""Training with resumable, atomic checkpoints (SPEC 5).

A run lives in ``<out_dir>/<profile>/<dataset>-<model>-<config hash>/``:

    config.json      the Config
    checkpoint.pt    model, optimiser, scheduler, RNG, epoch, history (written every epoch,
                     atomically: temp file + rename)
    metrics.jsonl    one line per epoch (rewritten from the checkpoint's history)
    summary.json     written when the last epoch is done

Calling :func:`train` again resumes from the checkpoint, or returns the summary at once
when the run is complete. Under ``torchrun`` it trains with DistributedDataParallel.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import data as D
from .config import Config
from .models import Classifier, model_from_config


# -- plumbing -----------------------------------------------------------------------------

def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def run_dir(cfg: Config) -> Path:
    return Path(cfg.out_dir) / cfg.profile / cfg.run_name()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_write_bytes(path: Path, write) -> None:
    """Write through ``write(file)`` to a temp file beside ``path``, then rename: a kill
    mid-write leaves the previous file intact."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


class CheckpointError(RuntimeError):
    pass


def load_checkpoint(path: Path, cfg: Config | None = None) -> dict[str, Any]:
    """Load a checkpoint, refusing a truncated file or one written for another config."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for a damaged zip
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: "
                              f"{str(e)[:120]}); delete it to train from scratch") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config_hash" not in ckpt:
        raise CheckpointError(f"{path} is not a facnn checkpoint; delete it or point elsewhere")
    if cfg is not None and ckpt["config_hash"] != cfg.hash():
        raise CheckpointError(
            f"checkpoint {path} was written for config {ckpt['config_hash']}, not this one "
            f"({cfg.hash()}); use another out_dir or delete the checkpoint. Differences: "
            f"{_diff(ckpt.get('config', {}), cfg.to_dict())}")
    return ckpt


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys) or "none recorded"


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
    """Top-1 accuracy and mean loss over a loader."""
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in loader:
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(x.device):
            scores = model(_layout(x))
        loss_sum += float(_unwrap(model).loss(scores, y)) * len(y)
        correct += int((scores.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": total}


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
    channels_last = x.is_cuda if channels_last is None else channels_last
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _unwrap(model: nn.Module) -> Classifier:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# -- data ---------------------------------------------------------------------------------

def make_loaders(cfg: Config, device: torch.device, rank: int = 0, world: int = 1):
    """(train, test) loaders for a config: tensor-resident for in-memory datasets."""
    if cfg.dataset == "imagenet100":
        return _imagenet_loaders(cfg, rank, world)
    train, test = D.load_config_data(cfg)
    per_rank = max(1, cfg.batch_size // world)
    return (D.TensorLoader(train, per_rank, True, device, cfg.seed, rank, world),
            D.TensorLoader(test, 500, False, device))


def _imagenet_loaders(cfg: Config, rank: int, world: int):
    from torch.utils.data import DataLoader, DistributedSampler
    classes = D.imagenet100_classes(cfg.data_root, cfg.classes_file, cfg.seed)
    tr = D.imagenet100_folder(cfg.data_root, "train", classes, cfg.image_size)
    va = D.imagenet100_folder(cfg.data_root, "val", classes, cfg.image_size)
    sampler = DistributedSampler(tr, world, rank, seed=cfg.seed) if world > 1 else None
    g = torch.Generator().manual_seed(cfg.seed)
    train = DataLoader(tr, cfg.batch_size // world, shuffle=sampler is None, sampler=sampler,
                       num_workers=cfg.num_workers, pin_memory=True, drop_last=True, generator=g)
    train.set_epoch = sampler.set_epoch if sampler else (lambda e: None)
    return train, DataLoader(va, 250, num_workers=cfg.num_workers)


# -- the loop -----------------------------------------------------------------------------

def train(cfg: Config, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume, or return the finished summary of) the run ``cfg`` describes.

    ``stop_after`` ends this call after that many epochs in total (the run stays
    resumable): it is how tests and notebooks simulate an interruption.
    """
    cfg.validate()
    rank, world = _dist_setup()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out = run_dir(cfg)
    summary_path, ckpt_path = out / "summary.json", out / "checkpoint.pt"
    if summary_path.exists() and stop_after is None:
        return json.loads(summary_path.read_text())   # finished: a cache hit
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
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
    # "batch" and "partial" describe an epoch cut short by a mid-epoch checkpoint
    state = {"epoch": 0, "batch": 0, "partial": None, "history": [], "wall_s": 0.0,
             "images": 0, "train_s": 0.0}

    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, cfg)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if device.type == "cuda" and ckpt.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng_cuda"], device)
        state = {k: ckpt[k] for k in state}
        if rank == 0 and state["epoch"] < cfg.epochs:
            _say(cfg, f"resuming {out.name} at epoch {state['epoch'] + 1}/{cfg.epochs}, "
                      f"batch {state['batch']}/{steps}")

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    for epoch in range(state["epoch"], last):
        def save_partial(batch: int, partial: dict) -> None:
            if rank == 0:
                _save(ckpt_path, model, opt, sched, cfg, {**state, "batch": batch, "partial": partial}, device)

        t0 = time.perf_counter()
        train_stats = _train_epoch(net, model, opt, sched, train_loader, epoch, cfg, device, rank,
                                   state["batch"], state["partial"], save_partial)
        test_stats = evaluate(model, test_loader, device)
        dt = time.perf_counter() - t0
        state.update(epoch=epoch + 1, batch=0, partial=None)
        state["wall_s"] += dt
        state["train_s"] += train_stats.pop("seconds")
        state["images"] += train_stats["images"] * world
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **{f"train_{k}": v for k, v in train_stats.items()},
               "test_accuracy": test_stats["accuracy"], "test_loss": test_stats["loss"], "seconds": dt}
        state["history"].append(row)
        if rank == 0:
            _say(cfg, f"epoch {epoch + 1}/{cfg.epochs}: test accuracy {test_stats['accuracy']:.4f}, "
                      f"train loss {train_stats['loss']:.4f}, {train_stats['images_per_s']:.0f} images/s")
            _save(ckpt_path, model, opt, sched, cfg, state, device)
            atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state["history"]))

    summary = _summary(cfg, state, device, world)
    if rank == 0 and state["epoch"] >= cfg.epochs:
        save_weights(cfg)
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
    if world > 1:
        dist.barrier()
    return summary


def _train_epoch(net, model, opt, sched, loader, epoch, cfg, device, rank, start_batch=0,
                 partial=None, save_partial=None) -> dict[str, float]:
    """One epoch from batch ``start_batch`` on; ``partial`` carries the running sums of
    the batches before it. Calls ``save_partial`` every ``cfg.save_every_s`` seconds."""
    from tqdm.auto import tqdm
    net.train()
    bf16 = use_bf16(cfg.precision, device)
    loader.set_epoch(epoch, start_batch)
    p = partial or {"loss_sum": 0.0, "correct": 0, "n": 0, "seconds": 0.0}
    bar = tqdm(loader, desc=f"{cfg.dataset}/{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
               disable=not cfg.progress or rank != 0, leave=False, unit="batch",
               initial=start_batch, total=len(loader))
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    n, t0 = 0, time.perf_counter()
    last_save = t0
    for i, (x, y) in enumerate(bar, start=start_batch):
        x, y = _layout(x.to(device, non_blocking=True), device.type == "cuda" or bf16), y.to(device, non_blocking=True)
        with _autocast(device, bf16):
            scores = net(x)
        loss = model.loss(scores, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} at epoch {epoch + 1}, batch {i}; "
                                     f"lower the learning rate (lr={cfg.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.detach() * len(y)
        correct += (scores.detach().argmax(1) == y).sum()
        n += len(y)
        now = time.perf_counter()
        if i % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", img_s=f"{n / (now - t0):.0f}")
        if save_partial is not None and now - last_save > cfg.save_every_s and i + 1 < len(loader):
            save_partial(i + 1, _sums(p, loss_sum, correct, n, now - t0))
            last_save = now
    p = _sums(p, loss_sum, correct, n, time.perf_counter() - t0)
    return {"loss": p["loss_sum"] / p["n"], "accuracy": p["correct"] / p["n"], "images": p["n"],
            "images_per_s": p["n"] / p["seconds"], "seconds": p["seconds"]}


def _sums(p: dict, loss_sum, correct, n: int, seconds: float) -> dict:
    return {"loss_sum": p["loss_sum"] + float(loss_sum), "correct": p["correct"] + int(correct),
            "n": p["n"] + n, "seconds": p["seconds"] + seconds}


def _save(path, model, opt, sched, cfg, state, device) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "config": cfg.to_dict(), "config_hash": cfg.hash(), **state}
    atomic_write_bytes(path, lambda f: torch.save(ckpt, f))


def _summary(cfg: Config, state: dict, device: torch.device, world: int) -> dict[str, Any]:
    h = state["history"]
    return {"run": cfg.run_name(), "profile": cfg.profile, "dataset": cfg.dataset, "model": cfg.model,
            "recipe": cfg.recipe, "accuracy": h[-1]["test_accuracy"] if h else None,
            "best_accuracy": max((r["test_accuracy"] for r in h), default=None),
            "epochs": state["epoch"], "wall_s": state["wall_s"],
            "images_per_s": state["images"] / state["train_s"] if state["train_s"] else None,
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


def save_weights(cfg: Config) -> Path:
    """Write <run>/weights.pt: the finished model's fp32 weights alone (no optimiser, no RNG),
    small enough to commit so a clone can use the model without retraining it."""
    ckpt = load_checkpoint(run_dir(cfg) / "checkpoint.pt", cfg)
    weights = {k: v.float().contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in ckpt["model"].items()}
    path = run_dir(cfg) / "weights.pt"
    atomic_write_bytes(path, lambda f: torch.save(
        {"model": weights, "config": cfg.to_dict(), "config_hash": cfg.hash()}, f))
    return path


def load_trained(cfg: Config, device: str | torch.device = "cpu") -> Classifier:
    """The model of a run in eval mode, from its checkpoint, or else from its weights.pt."""
    folder = run_dir(cfg)
    path = next((p for p in (folder / "checkpoint.pt", folder / "weights.pt") if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"no checkpoint.pt or weights.pt in {folder}; train it with: "
                                f"python -m facnn train --dataset {cfg.dataset} --model "
                                f"{cfg.model} --profile {cfg.profile}")
    model = model_from_config(cfg)
    model.load_state_dict(load_checkpoint(path, cfg)["model"])
    return model.to(device).eval()
