"""The runs a profile's book needs, what they cost, and which are done.

``python -m facnn plan --profile paper`` lists every training run behind the book at a
profile, as :mod:`facnn.experiments` tables them: the Table 1 cells of each of the profile's
datasets at their seeds, chapter 01's shared-rate runs, the chapters' models, and the
learning-rate sweeps of the minimal recipe (:func:`facnn.config.lr_sweep`), deduplicated by
config hash. For each run: its size (parameters, forward FLOPs per image), the images it
trains on, an estimate of its hours on a device, whether
``results/<profile>/<run>/summary.json`` exists, and the command that trains it.

Hours (the cost model). A training step costs about 3x the forward FLOPs (forward, and a
backward of twice the forward), evaluation 1x, so

    hours = (3 F n_train E + F n_test E) / (rate x 3600)

with F the forward FLOPs of one image (facnn.info.count_flops), E epochs, and ``rate`` the
sustained FLOP/s of training on the device, looked up by (device kind, precision, size
class) in :func:`throughput_table`. Its figures are derived from the measured benchmarks
(``results/benchmarks/*.json``: ``make bench``; ``results/gpu/*.json``: ``make gpu-check``)
when present, each with its source; the H200 figures are stated assumptions until a GPU
check has run. With ``--measure`` the rate of each distinct architecture is instead timed
on this machine (:func:`measure_images_per_s`, a few real training steps).

This module imports only facnn.config, facnn.experiments, facnn.models, facnn.info, torch
and the standard library (facnn.train lazily, to time and to run steps).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from . import info
from .checks import check_batch_size
from .config import (Config, apply_overrides, cli_command, lr_sweep, preset, run_dir,
                     sweep_probes)
from .experiments import (CHAPTER_MODELS, CHAPTER_OVERRIDES, HELDOUT_SWEEP, IMAGENET, MINIMAL_LR,
                          PLAN, SEED_OVERRIDES, SEEDS, SWEEP_MODELS)
from .models import model_from_config

ROOT = Path(__file__).resolve().parents[1]

# -- the runs the book reads (facnn.book.runs.Runs reads them through run_config) -----------

def run_config(profile: str, dataset: str, model: str, recipe: str = "minimal",
               seed: int | None = None, **extra: Any) -> Config:
    """The config of a run the book reads: the Table 1 cell (``dataset``, ``model``,
    ``recipe``) at ``seed`` with that seed's SEED_OVERRIDES; without a seed, the chapters'
    model: seed 0 with its CHAPTER_OVERRIDES. ``extra`` (e.g. lr=0.8, out_dir) comes last."""
    per_seed = SEED_OVERRIDES.get(profile, {}).get(dataset, {}).get(0 if seed is None else seed, {})
    chapter = ({} if seed is not None or recipe != "minimal"
               else CHAPTER_OVERRIDES.get(profile, {}).get((dataset, model), {}))
    return preset(profile, dataset, model, recipe,
                  **{**per_seed, **chapter, **({} if seed is None else {"seed": seed}), **extra})


# Training-set and test-set sizes. ImageNet-100: 100 classes of the ILSVRC-2012 train set
# average 1281 images (1,281,167 / 1000; the exact count depends on the seeded class choice),
# 50 validation images each. ImageNet-20: 20 classes x 500 train + 100 val (../shared/data/imagenet20).
TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "imagenet100": 128_117, "imagenet20": 10_000}
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "imagenet100": 5_000, "imagenet20": 2_000}

DEVICE_KINDS = ("cpu-2core", "h200")
SMALL_GFLOP = 1.0    # forward GFLOPs per image below which a model is "small" (launch/overhead bound)

# Dense bf16 tensor-core peak of an H200 (SXM), FLOP/s: the vendor's datasheet
H200_BF16_PEAK = info.BF16_PEAK["H200"]
# Assumptions for the H200 until results/gpu/*.json holds a measurement (make gpu-check):
# the fraction of the bf16 peak a training step sustains. Large convnets (>= 1 GFLOP per
# image, batch 100, channels_last) reach roughly a third of peak in cuDNN; small ones at
# 32x32 are bound by kernel launches and memory traffic.
H200_ASSUMED_FRACTION = {"large": 0.30, "small": 0.08}
FP32_VS_BF16_ON_GPU = 0.5   # assumption: TF32 convolutions at half the bf16 rate


# -- the runs ---------------------------------------------------------------------------

def book_configs(profile: str, out_dir: str | Path = "results",
                 datasets: Sequence[str] | None = None) -> list[tuple[str, Config]]:
    """(kind, config) of every run the book reads at ``profile``, deduplicated by config
    hash (first occurrence kept): "table1" (PLAN's cells at each of SEEDS, with their
    SEED_OVERRIDES), "shared lr" (chapter 01's second answer, every minimal-recipe model
    at MINIMAL_LR), "chapters" (the models the attribution chapters analyse) and "sweep"
    (the learning-rate sweeps and the runs beside them). ``datasets`` restricts the first
    three."""
    if profile not in PLAN:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PLAN)}")
    where = {"out_dir": str(out_dir)}
    cells = [(d, m, r) for d, m, r in PLAN[profile] if datasets is None or d in datasets]
    seeds = SEEDS[profile]
    found: list[tuple[str, Config]] = []
    for d, m, r in cells:
        found += [("table1", run_config(profile, d, m, r, s, **where)) for s in seeds.get(d, (0,))]
    for d, m, r in cells:
        if r == "minimal":
            found += [("shared lr", run_config(profile, d, m, r, s, lr=MINIMAL_LR, **where))
                      for s in seeds.get(d, (0,))]
    roles = {"first": PLAN[profile][0][0], "imagenet": IMAGENET[profile]}
    for role, models in CHAPTER_MODELS.items():
        if datasets is None or roles[role] in datasets:
            found += [("chapters", run_config(profile, roles[role], m, **where)) for m in models]
    for model in SWEEP_MODELS:
        held = [c for d in HELDOUT_SWEEP.get(profile, {}) for c in lr_sweep(profile, model, d)]
        for cfg in [*lr_sweep(profile, model), *sweep_probes(profile, model), *held]:
            found.append(("sweep", apply_overrides(cfg, where)))
    seen: set[str] = set()
    out = []
    for kind, cfg in found:
        if cfg.hash() not in seen:
            seen.add(cfg.hash())
            out.append((kind, cfg))
    return out


def train_images(cfg: Config) -> int:
    """Training images of one epoch: the dataset's train split, the subset's, or shapes'."""
    if cfg.dataset == "shapes":
        return cfg.shapes_train
    if cfg.subset:
        return _subset_count(cfg.subset, 0, cfg.num_classes)
    return TRAIN_SIZE[cfg.dataset]


def test_images(cfg: Config) -> int:
    """Images a run evaluates on each epoch: its held-out training images (holdout per
    class), shapes', the subset's test split, or the dataset's."""
    if cfg.holdout:
        return cfg.holdout * cfg.num_classes
    if cfg.dataset == "shapes":
        return cfg.shapes_test
    if cfg.subset:
        return _subset_count(cfg.subset, 1, cfg.num_classes)
    return TEST_SIZE[cfg.dataset]


def _subset_count(subset: str, which: int, classes: int) -> int:
    m = re.fullmatch(r"(\d+)x(\d+)", subset)
    if not m:
        raise ValueError(f"subset {subset!r} is not TRAINxTEST images per class, e.g. 1000x100")
    return int(m.group(which + 1)) * classes


# -- size -------------------------------------------------------------------------------

_ARCH_FIELDS = ("model", "dataset", "depth", "maps_per_class", "width", "pool_every", "block",
                "stem", "eps", "resnet_form", "resnet_width", "image_size")
_SIZE_CACHE: dict[tuple, tuple[int, int]] = {}


def architecture(cfg: Config) -> tuple:
    """What fixes a run's network and input size (many runs share one)."""
    d = cfg.to_dict()
    return tuple((k, d[k]) for k in _ARCH_FIELDS if k != "dataset") + \
        (("classes", cfg.num_classes), ("input", info.input_size(cfg)))


def size(cfg: Config) -> tuple[int, int]:
    """(parameters, forward FLOPs of one image), cached per architecture. The network is
    built on the meta device, so even ImageNet-size models cost no memory or compute;
    the count is facnn.info.count_flops's (multiply-adds count 2)."""
    key = architecture(cfg)
    if key not in _SIZE_CACHE:
        with torch.device("meta"):
            model = model_from_config(cfg)
            # the input check asks whether the values are finite: meta tensors have none
            model.check_input = lambda x: None
            flops = info.count_flops(model, info.input_size(cfg))
        _SIZE_CACHE[key] = (sum(p.numel() for p in model.parameters()), int(flops))
    return _SIZE_CACHE[key]


# -- throughput ---------------------------------------------------------------------------

@dataclass
class Rate:
    """Sustained training FLOP/s (3 x forward FLOPs per image x images/s) and where it comes from."""

    flops_per_s: float
    source: str


def size_class(gflops: float) -> str:
    return "small" if gflops < SMALL_GFLOP else "large"


def _bench_rate(doc: dict, case: str, method: str) -> float | None:
    for m in doc.get("measurements", []):
        if m.get("section") == "training" and m.get("case") == case and m.get("method") == method:
            return float(m["rate"]["median"])
    return None


def _gflops_of_profile(profile: str) -> float:
    return size(preset(profile, "cifar10", "fa-pool"))[1] / 1e9


def throughput_table(root: str | Path = ROOT) -> dict[str, dict[tuple[str, str], Rate]]:
    """{device kind: {(precision, size class): Rate}} from the benchmark files under
    ``root/results``, with stated assumptions where nothing is measured.

    cpu-2core: ``results/benchmarks/cpu-2core*.json`` (``make bench``, FA-CNN training steps
    on 2 busy cores): fp32 small = "train cpu size, eager" (N=9, K=40), fp32 large =
    "train paper size, eager" (N=24, K=200), bf16 small = "train cpu size, fp32 vs bf16" /
    "bf16 channels_last", bf16 large = fp32 large x the measured bf16/fp32 ratio.
    h200: ``results/gpu/*.json`` (``make gpu-check``: paper-size FA-CNN, bf16) when present,
    else the bf16 peak x an assumed fraction (H200_ASSUMED_FRACTION).
    """
    root = Path(root)
    table: dict[str, dict[tuple[str, str], Rate]] = {k: {} for k in DEVICE_KINDS}
    for path in sorted((root / "results" / "benchmarks").glob("cpu-2core*.json")):
        doc = json.loads(path.read_text())
        rel = path.relative_to(root)
        small_f, large_f = _gflops_of_profile("cpu") * 3e9, _gflops_of_profile("paper") * 3e9
        fp32_s = _bench_rate(doc, "train cpu size, eager", "fa-cnn")
        fp32_l = _bench_rate(doc, "train paper size, eager", "fa-cnn")
        f32 = _bench_rate(doc, "train cpu size, fp32 vs bf16", "fp32")
        b16 = _bench_rate(doc, "train cpu size, fp32 vs bf16", "bf16 channels_last")
        if fp32_s:
            table["cpu-2core"][("fp32", "small")] = Rate(
                fp32_s * small_f, f"{rel}: 'train cpu size, eager' fa-cnn {fp32_s:.1f} images/s x 3 x "
                                  f"{small_f / 3e9:.3f} GFLOP")
        if fp32_l:
            table["cpu-2core"][("fp32", "large")] = Rate(
                fp32_l * large_f, f"{rel}: 'train paper size, eager' fa-cnn {fp32_l:.2f} images/s x 3 x "
                                  f"{large_f / 3e9:.2f} GFLOP")
        if b16:
            table["cpu-2core"][("bf16", "small")] = Rate(
                b16 * small_f, f"{rel}: 'train cpu size, fp32 vs bf16' bf16 channels_last {b16:.1f} "
                               f"images/s x 3 x {small_f / 3e9:.3f} GFLOP")
        if b16 and f32 and fp32_l:
            table["cpu-2core"][("bf16", "large")] = Rate(
                fp32_l * large_f * b16 / f32, f"{rel}: fp32 large x the measured bf16/fp32 ratio "
                                              f"{b16 / f32:.2f} (no paper-size bf16 measurement)")
        break
    rates = table["h200"]
    gpu = _gpu_measurement(root)
    if gpu is not None:
        rate, src = gpu
        rates[("bf16", "large")] = Rate(rate, src)
        rates[("bf16", "small")] = Rate(
            rate * H200_ASSUMED_FRACTION["small"] / H200_ASSUMED_FRACTION["large"],
            f"the measured large rate x the assumed small/large ratio "
            f"{H200_ASSUMED_FRACTION['small']}/{H200_ASSUMED_FRACTION['large']}")
    else:
        for cls, frac in H200_ASSUMED_FRACTION.items():
            rates[("bf16", cls)] = Rate(
                H200_BF16_PEAK * frac, f"assumed: {frac:.0%} of the H200's bf16 peak "
                                       f"{H200_BF16_PEAK / 1e12:.0f} TFLOP/s (no results/gpu/*.json "
                                       f"yet; run make gpu-check)")
    for cls in ("small", "large"):
        rates[("fp32", cls)] = Rate(rates[("bf16", cls)].flops_per_s * FP32_VS_BF16_ON_GPU,
                                    f"assumed: {FP32_VS_BF16_ON_GPU} x the bf16 rate (TF32)")
    return table


def _gpu_measurement(root: Path) -> tuple[float, str] | None:
    """The paper-size FA-CNN training rate from a gpu check's JSON (scripts/gpu_check.py)."""
    for path in sorted((root / "results" / "gpu").glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            b = doc["parts"]["bench"]["paper_fa"]
            ips, gflops = float(b["images_per_s"]), float(b["gflops_per_image"])
        except (ValueError, KeyError, TypeError):
            continue
        gpu = (doc.get("machine") or {}).get("gpu") or "a GPU"
        return ips * 3 * gflops * 1e9, (f"{path.relative_to(root)}: paper-size FA-CNN on {gpu}, "
                                        f"{ips:.0f} images/s x 3 x {gflops:.2f} GFLOP")
    return None


def detect_device() -> str:
    """The device kind of this machine for the estimates: h200 with CUDA, else cpu-2core."""
    return "h200" if torch.cuda.is_available() else "cpu-2core"


def precision_on(cfg: Config, kind: str) -> str:
    """The precision a run trains in on a device kind (facnn.train.use_bf16's rule)."""
    if cfg.precision == "auto":
        return "bf16" if kind == "h200" else "fp32"
    return cfg.precision


def measure_images_per_s(cfg: Config, device: str | torch.device | None = None, steps: int = 3,
                         batch: int | None = None) -> float:
    """Training images/s of ``cfg``'s network on ``device``: ``steps`` timed optimiser steps
    (after one warm-up) on a synthetic batch of the config's size (or ``batch``), with the
    optimiser, precision and memory layout facnn.train uses."""
    from . import train as T
    device = T.resolve_device(cfg.device) if device is None else torch.device(device)
    batch = batch or cfg.batch_size
    info.check_memory(apply_overrides(cfg, {"batch_size": batch}), device)
    side = info.input_size(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg).to(device).train()
    bf16 = T.use_bf16(cfg.precision, device)
    layout = device.type == "cuda" or bf16
    if layout:
        model = model.to(memory_format=torch.channels_last)
    opt = T.make_optimizer(model, cfg)
    x = T._layout(torch.randn(batch, 3, side, side, device=device), layout)
    y = torch.arange(batch, device=device) % cfg.num_classes

    def step():
        with T._autocast(device, bf16):
            scores = model(x)
        loss = model.loss(scores, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * steps / (time.perf_counter() - t0)


# -- the plan -----------------------------------------------------------------------------

@dataclass
class PlannedRun:
    kind: str                 # "table1", "shared lr", "chapters" or "sweep" (book_configs)
    dataset: str
    model: str
    recipe: str
    lr: float
    seed: int
    config_hash: str
    run_dir: str
    parameters: int
    gflops_per_image: float
    images: int               # training images over all epochs
    epochs: int
    precision: str
    hours: float
    rate_source: str
    done: bool
    actual_hours: float | None   # a finished run's own wall time (summary.json), for calibration
    command: str
    config: Config = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("config")
        return d


@dataclass
class Plan:
    profile: str
    device: str
    runs: list[PlannedRun]
    rates: dict[str, str]     # "precision/class" -> source of the figure used
    measured: bool = False

    @property
    def missing(self) -> list[PlannedRun]:
        return [r for r in self.runs if not r.done]

    def total_hours(self, runs: Iterable[PlannedRun] | None = None) -> float:
        return sum(r.hours for r in (self.runs if runs is None else runs))

    def by_dataset(self) -> dict[str, dict[str, float]]:
        """{dataset (or "sweep"): {"runs", "done", "hours", "hours_missing"}}."""
        out: dict[str, dict[str, float]] = {}
        for r in self.runs:
            key = r.dataset if r.kind == "table1" else f"{r.kind} ({r.dataset})"
            s = out.setdefault(key, {"runs": 0, "done": 0, "hours": 0.0, "hours_missing": 0.0})
            s["runs"] += 1
            s["done"] += r.done
            s["hours"] += r.hours
            s["hours_missing"] += 0.0 if r.done else r.hours
        return out

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "device": self.device, "measured": self.measured,
                "runs": [r.to_json() for r in self.runs],
                "total_hours": self.total_hours(), "missing_hours": self.total_hours(self.missing),
                "per_dataset": self.by_dataset(), "rates": self.rates}

    def text(self) -> str:
        lines = [f"profile {self.profile}: {len(self.runs)} runs ({len(self.runs) - len(self.missing)} done),"
                 f" hours on {self.device} ({'timed here' if self.measured else 'estimated'})"]
        head = f"{'kind':<10}{'dataset':<12}{'model':<10}{'recipe':<9}{'lr':>6}{'seed':>5} {'hash':<11}" \
               f"{'params':>9}{'GFLOP':>8}{'Mimages':>9}{'hours':>9}  done"
        lines.append(head)
        for r in self.runs:
            lines.append(f"{r.kind:<10}{r.dataset:<12}{r.model:<10}{r.recipe:<9}{r.lr:>6g}{r.seed:>5} {r.config_hash:<11}"
                         f"{r.parameters / 1e6:>8.1f}M{r.gflops_per_image:>8.2f}{r.images / 1e6:>9.1f}"
                         f"{r.hours:>9.1f}  " + ("no" if not r.done else "yes" if r.actual_hours is None
                                              else f"yes, took {r.actual_hours:.2f} h")
                         + ("" if not r.done or _has_weights(r) else "; summary only"))
        summary_only = [r for r in self.runs if r.done and not _has_weights(r)]
        if summary_only:
            lines.append(f"{len(summary_only)} done runs keep only their summary (git keeps the weights "
                         f"the book loads); a run's own train command retrains it, e.g.\n  "
                         f"{summary_only[0].command}")
        lines.append("")
        for k, s in self.by_dataset().items():
            lines.append(f"{k:<22} {int(s['runs']):>3} runs, {int(s['done']):>3} done, "
                         f"{s['hours']:>9.1f} h ({s['hours_missing']:.1f} h missing)")
        lines.append(f"{'total':<22} {len(self.runs):>3} runs, {len(self.runs) - len(self.missing):>3} done, "
                     f"{self.total_hours():>9.1f} h ({self.total_hours(self.missing):.1f} h missing)")
        lines.append("hours = (train images + test images / 3) x epochs / timed training images/s; "
                     "rates:" if self.measured else
                     "hours = (3 x forward FLOPs x train images + forward FLOPs x test images) x epochs"
                     " / training FLOP/s; figures used:")
        lines += [f"  {k}: {v}" for k, v in self.rates.items()]
        return "\n".join(lines)

    def shell(self, gpus: int = 1) -> str:
        """The missing runs as a bash script, one command each (torchrun with ``gpus`` > 1)."""
        total = self.total_hours(self.missing) / max(gpus, 1)
        lines = ["#!/usr/bin/env bash",
                 f"# The {len(self.missing)} missing runs of profile {self.profile}, about {total:.1f} h on "
                 f"{gpus} x {self.device} (estimate; linear scaling assumed across GPUs).",
                 "# Each run resumes from its checkpoint when rerun: rerun this script after an interruption.",
                 "set -euo pipefail"]
        for r in self.missing:
            cmd = r.command
            if gpus > 1:
                cmd = cmd.replace("python -m facnn", f"torchrun --nproc_per_node={gpus} -m facnn", 1)
            lines.append(f"# {r.dataset} {r.model} {r.recipe} lr {r.lr:g}: {r.hours / max(gpus, 1):.1f} h")
            lines.append(cmd)
        return "\n".join(lines) + "\n"


def make_plan(profile: str, device: str | None = None, out_dir: str | Path = "results",
              measure: bool = False, measure_batch: int | None = None, measure_steps: int = 2,
              root: str | Path = ROOT, datasets: Sequence[str] | None = None) -> Plan:
    """The plan of ``profile``: every run, its cost on ``device`` (a DEVICE_KINDS entry;
    None = this machine's), and whether it is done (relative ``out_dir`` is resolved
    against the current folder, as facnn.train does)."""
    check_batch_size("measure_batch", measure_batch)
    device = device or detect_device()
    if device not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {device!r}; choose one of {', '.join(DEVICE_KINDS)}")
    table = {} if measure else throughput_table(root)[device]
    timed: dict[tuple, float] = {}
    runs, used = [], {}
    for kind, cfg in book_configs(profile, out_dir, datasets):
        params, flops = size(cfg)
        summary = run_dir(cfg) / "summary.json"
        done = summary.exists()
        prec = precision_on(cfg, device)
        n_train, n_test = train_images(cfg) * cfg.epochs, test_images(cfg) * cfg.epochs
        if measure:
            key = architecture(cfg) + (("precision", cfg.precision), ("batch", measure_batch or cfg.batch_size))
            if key not in timed:
                timed[key] = measure_images_per_s(cfg, None, measure_steps, measure_batch)
            ips = timed[key]
            hours = (n_train + n_test / 3) / ips / 3600
            source = f"timed here: {ips:.1f} training images/s (batch {measure_batch or cfg.batch_size})"
            used[f"{cfg.model}/{cfg.dataset}"] = source
        else:
            cls = size_class(flops / 1e9)
            rate = table.get((prec, cls))
            if rate is None:
                raise ValueError(f"no throughput figure for {prec} {cls} models on {device}: "
                                 f"results/benchmarks has no cpu-2core*.json; run make bench, "
                                 f"or use --measure to time the steps here")
            hours = (3 * n_train + n_test) * flops / rate.flops_per_s / 3600
            source = rate.source
            used[f"{prec}/{cls}"] = source
        runs.append(PlannedRun(kind, cfg.dataset, cfg.model, cfg.recipe, cfg.lr, cfg.seed, cfg.hash(),
                               str(run_dir(cfg)), params, flops / 1e9, n_train, cfg.epochs, prec,
                               hours, source, done, _actual_hours(summary), cli_command(cfg), cfg))
    return Plan(profile, device, runs, used, measure)


def _has_weights(r: PlannedRun) -> bool:
    return any((Path(r.run_dir) / f).exists() for f in ("weights.pt", "checkpoint.pt"))


def _actual_hours(summary: Path) -> float | None:
    try:
        return float(json.loads(summary.read_text())["wall_s"]) / 3600
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_missing(plan: Plan, say=print) -> list[dict]:
    """Train the plan's missing runs one after another (each resumes where it stopped)."""
    from .train import train
    out = []
    for i, r in enumerate(plan.missing, 1):
        say(f"[{i}/{len(plan.missing)}] {r.command}  (about {r.hours:.1f} h)")
        out.append(train(r.config))
    return out
