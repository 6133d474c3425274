"""A run's model files: checkpoint.pt (to resume) and weights.pt (the finished model, small
enough to commit), read with errors that name the file and the command that rebuilds it, and
whether a finished run still has its model (else facnn.train trains it again).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .config import Config, cli_command, run_dir
from .fileio import atomic_write_bytes, read_json
from .models import Classifier, model_from_config


class CheckpointError(RuntimeError):
    pass


def load_checkpoint(path: Path, cfg: Config | None = None) -> dict[str, Any]:
    """Load a checkpoint (or weights.pt), refusing a truncated file or one written for
    another config. With ``cfg`` the errors give the command that rebuilds the file."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for a damaged zip
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: "
                              f"{str(e)[:120]}); {_rebuild(path, cfg)}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config_hash" not in ckpt:
        raise CheckpointError(f"{path} is not a facnn checkpoint; {_rebuild(path, cfg)}")
    if cfg is not None and ckpt["config_hash"] != cfg.hash():
        raise CheckpointError(
            f"checkpoint {path} was written for config {ckpt['config_hash']}, not this one "
            f"({cfg.hash()}); use another out_dir or delete the checkpoint. Differences: "
            f"{_diff(ckpt.get('config', {}), cfg.to_dict())}")
    return ckpt


def _rebuild(path: Path, cfg: Config | None) -> str:
    """How to get a good file at ``path`` again."""
    if cfg is None:
        return "delete it to train from scratch"
    if path.name == "weights.pt":   # train() retrains a finished run whose weights are unusable
        return f"rebuild it (this retrains the run) with: {cli_command(cfg)}"
    return f"delete it to train from scratch, then run: {cli_command(cfg)}"


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys) or "none recorded"


def save_checkpoint(path, model, opt, sched, cfg, fields: dict, device) -> None:
    """Write checkpoint.pt atomically: model, optimiser, scheduler, RNG and the run's
    :class:`facnn.train.Progress` fields."""
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "config": cfg.to_dict(), "config_hash": cfg.hash(), **fields}
    atomic_write_bytes(path, lambda f: torch.save(ckpt, f))


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
    """The model of a run in eval mode, from its checkpoint, or else from its weights.pt.
    Errors name the file and give the command that rebuilds it (with the config's own
    overrides)."""
    folder = run_dir(cfg)
    path = next((p for p in (folder / "checkpoint.pt", folder / "weights.pt") if p.exists()), None)
    if path is None:
        finished = ""
        if (folder / "summary.json").exists():
            finished = (" (the run finished before and kept only its summary; this command "
                        "retrains it)")
        raise FileNotFoundError(f"no checkpoint.pt or weights.pt in {folder}; train it with: "
                                f"{cli_command(cfg)}{finished}")
    model = model_from_config(cfg)
    try:
        weights = load_checkpoint(path, cfg)["model"]
    except CheckpointError:
        if path.name != "checkpoint.pt" or not is_finished(cfg) or not (folder / "weights.pt").exists():
            raise
        path = folder / "weights.pt"   # eval needs only the finished run's weights
        weights = load_checkpoint(path, cfg)["model"]
    want = model.state_dict()
    missing, extra = [k for k in want if k not in weights], [k for k in weights if k not in want]
    if missing or extra:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
        raise CheckpointError(
            f"{path} does not match the model: {len(missing)} key(s) missing ({some(missing)}), "
            f"{len(extra)} unexpected ({some(extra)}); it was written by another version of facnn "
            f"or damaged: {_rebuild(path, cfg)}")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:   # a shape that differs
        raise CheckpointError(f"{path} does not match the model ({str(e).splitlines()[-1].strip()[:160]}); "
                              f"{_rebuild(path, cfg)}") from None
    return model.to(device).eval()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _unusable_weights(cfg: Config) -> str | None:
    """None when a finished run still has its model (a loadable checkpoint.pt or
    weights.pt), else why not. A damaged checkpoint.pt is moved aside (eval needs only the
    weights, and a retrain could not resume from it)."""
    folder = run_dir(cfg)
    ckpt = folder / "checkpoint.pt"
    if ckpt.exists():
        try:
            load_checkpoint(ckpt, cfg)
            return None
        except CheckpointError as e:
            os.replace(ckpt, folder / "checkpoint.damaged.pt")
            print(f"{str(e).split(' (')[0]}: moved it to checkpoint.damaged.pt (a finished run "
                  f"needs only its weights.pt)", file=sys.stderr, flush=True)
    if not (folder / "weights.pt").exists():
        return "neither weights.pt nor checkpoint.pt is there"
    try:
        load_checkpoint(folder / "weights.pt", cfg)
    except CheckpointError as e:
        return f"its weights.pt cannot be used ({str(e).split(';')[0]})"
    return None


def is_finished(cfg: Config) -> bool:
    """Whether the run trained all its epochs (its summary.json was written)."""
    return (run_dir(cfg) / "summary.json").exists()


def finished_summary(cfg: Config, rank: int, world: int) -> dict | None:
    """The summary of a finished run that still has its model (a cache hit); else None, with
    the summary moved to summary.previous.json and a note that the run is retrained."""
    path = run_dir(cfg) / "summary.json"
    summary = read_json(path, f"delete it and rerun {cli_command(cfg)} (it resumes from "
                              f"checkpoint.pt, or retrains)")
    why = _unusable_weights(cfg)
    if why is None:
        return summary
    if world > 1:
        dist.barrier()   # every rank has read the summary before it moves
    if rank == 0:
        took = summary.get("wall_s") if isinstance(summary, dict) else None
        eta = f"about {_duration(took)} on {summary.get('device', 'its device')} last time" if took \
            else "its duration unrecorded"
        print(f"{run_dir(cfg)} finished before (summary.json) but {why}: retraining it from scratch "
              f"({eta}); the old summary is kept as summary.previous.json", file=sys.stderr, flush=True)
        os.replace(path, path.with_name("summary.previous.json"))
    return None
