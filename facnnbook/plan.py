"""The runs a profile's book needs, what they cost, and which are done.

``python -m facnnbook.plan --profile paper`` lists every training run behind the book at a
profile (:func:`book_configs`, from :mod:`facnn.experiments`' tables): for each, its size
(parameters, forward FLOPs per image), the images it trains on, an estimate of its hours on
a device, whether ``results/<profile>/<run>/summary.json`` exists, and the command that
trains it.

Hours (the cost model). A training step costs about 3x the forward FLOPs (forward, and a
backward of twice the forward), evaluation 1x, so

    hours = (3 F n_train E + F n_test E) / (rate x 3600)

with F the forward FLOPs of one image (facnn.info.count_flops), E epochs, and ``rate`` the
sustained training FLOP/s of the device (:func:`throughput_table`: measured benchmarks where
present, each with its source, stated assumptions elsewhere). With ``--measure`` each
distinct architecture is timed on this machine instead (:func:`measure_images_per_s`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import torch

from facnn import info
from facnn.checks import check_batch_size, check_choice
from facnn.config import (PROFILES, ROOT, Config, apply_overrides, cli_command, lr_sweep, preset,
                          run_dir, sweep_probes)
from facnn.experiments import (CHAPTER_MODELS, CHAPTER_OVERRIDES, HELDOUT_SWEEP, IMAGENET,
                               MINIMAL_LR, PLAN, SEED_OVERRIDES, SEEDS, SWEEP_MODELS)
from facnn.__main__ import run_command
from facnn.models import model_from_config

# -- the runs the book reads (facnnbook.runs.Runs reads them through run_config) -----------

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
    check_choice("profile", profile, PLAN)
    where = {"out_dir": str(out_dir)}
    cells = [(d, m, r) for d, m, r in PLAN[profile] if datasets is None or d in datasets]
    seeds = SEEDS[profile]
    found = [("table1", run_config(profile, d, m, r, s, **where))
             for d, m, r in cells for s in seeds.get(d, (0,))]
    found += [("shared lr", run_config(profile, d, m, r, s, lr=MINIMAL_LR, **where))
              for d, m, r in cells if r == "minimal" for s in seeds.get(d, (0,))]
    roles = {"first": PLAN[profile][0][0], "imagenet": IMAGENET[profile]}
    for role, models in CHAPTER_MODELS.items():
        if datasets is None or roles[role] in datasets:
            found += [("chapters", run_config(profile, roles[role], m, **where)) for m in models]
    for model in SWEEP_MODELS:
        held = [c for d in HELDOUT_SWEEP.get(profile, {}) for c in lr_sweep(profile, model, d)]
        found += [("sweep", apply_overrides(cfg, where))
                  for cfg in [*lr_sweep(profile, model), *sweep_probes(profile, model), *held]]
    unique: dict[str, tuple[str, Config]] = {}
    for kind, cfg in found:
        unique.setdefault(cfg.hash(), (kind, cfg))
    return list(unique.values())


def train_images(cfg: Config) -> int:
    """Training images of one epoch: the dataset's train split, the subset's, or shapes',
    less the images held out (holdout per class)."""
    if cfg.dataset == "shapes":
        n = cfg.shapes_train
    elif cfg.subset:
        n = _subset_count(cfg.subset, 0, cfg.num_classes)
    else:
        n = TRAIN_SIZE[cfg.dataset]
    return n - cfg.holdout * cfg.num_classes


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

_ARCH_FIELDS = ("model", "depth", "maps_per_class", "width", "pool_every", "block", "stem", "eps",
                "resnet_form", "resnet_width", "image_size")
_SIZE_CACHE: dict[tuple, tuple[int, int]] = {}


def architecture(cfg: Config) -> tuple:
    """What fixes a run's network and input size (many runs share one)."""
    return (*((k, getattr(cfg, k)) for k in _ARCH_FIELDS),
            ("classes", cfg.num_classes), ("input", info.input_size(cfg)))


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

class Rate(NamedTuple):
    """Sustained training FLOP/s (3 x forward FLOPs per image x images/s) and where it comes from."""
    flops_per_s: float
    source: str


def size_class(gflops: float) -> str:
    return "small" if gflops < SMALL_GFLOP else "large"


# The training benchmarks (make bench: FA-CNN steps on 2 busy cores) behind the cpu-2core
# figures: (precision, size class) -> (case, method); the size classes are profile cpu's
# FA-CNN (N=9, K=40) and profile paper's (N=24, K=200)
_CPU_CASES = {("fp32", "small"): ("train cpu size, eager", "fa-cnn"),
              ("fp32", "large"): ("train paper size, eager", "fa-cnn"),
              ("bf16", "small"): ("train cpu size, fp32 vs bf16", "bf16 channels_last")}


def _bench_rate(doc: dict, case: str, method: str) -> float | None:
    for m in doc.get("measurements", []):
        if m.get("section") == "training" and m.get("case") == case and m.get("method") == method:
            return float(m["rate"]["median"])
    return None


def throughput_table(root: str | Path = ROOT) -> dict[str, dict[tuple[str, str], Rate]]:
    """{device kind: {(precision, size class): Rate}} from the benchmark files under
    ``root/results``, with stated assumptions where nothing is measured.

    cpu-2core: the first ``results/benchmarks/cpu-2core*.json`` (``make bench``), the cases
    of _CPU_CASES; bf16 large = fp32 large x the measured bf16/fp32 ratio at the small size.
    h200: ``results/gpu/*.json`` (``make gpu-check``: paper-size FA-CNN, bf16) when present,
    else the bf16 peak x an assumed fraction (H200_ASSUMED_FRACTION).
    """
    root = Path(root)
    cpu: dict[tuple[str, str], Rate] = {}
    for path in sorted((root / "results" / "benchmarks").glob("cpu-2core*.json"))[:1]:
        doc, rel = json.loads(path.read_text()), path.relative_to(root)
        train_flops = {"small": size(preset("cpu", "cifar10", "fa-pool"))[1] / 1e9 * 3e9,
                       "large": size(preset("paper", "cifar10", "fa-pool"))[1] / 1e9 * 3e9}
        ips = {key: _bench_rate(doc, *case) for key, case in _CPU_CASES.items()}
        for (prec, cls), (case, method) in _CPU_CASES.items():
            n, f = ips[(prec, cls)], train_flops[cls]
            if n:
                digits = (1, 3) if cls == "small" else (2, 2)
                cpu[(prec, cls)] = Rate(n * f, f"{rel}: '{case}' {method} {n:.{digits[0]}f} images/s "
                                               f"x 3 x {f / 3e9:.{digits[1]}f} GFLOP")
        f32, b16 = _bench_rate(doc, "train cpu size, fp32 vs bf16", "fp32"), ips[("bf16", "small")]
        if b16 and f32 and ("fp32", "large") in cpu:
            cpu[("bf16", "large")] = Rate(
                cpu[("fp32", "large")].flops_per_s * b16 / f32,
                f"{rel}: fp32 large x the measured bf16/fp32 ratio {b16 / f32:.2f} "
                f"(no paper-size bf16 measurement)")
    small, large = H200_ASSUMED_FRACTION["small"], H200_ASSUMED_FRACTION["large"]
    gpu = _gpu_measurement(root)
    if gpu is not None:
        h200 = {("bf16", "large"): Rate(*gpu),
                ("bf16", "small"): Rate(gpu[0] * small / large, f"the measured large rate x the "
                                        f"assumed small/large ratio {small}/{large}")}
    else:
        h200 = {("bf16", cls): Rate(H200_BF16_PEAK * frac,
                                    f"assumed: {frac:.0%} of the H200's bf16 peak "
                                    f"{H200_BF16_PEAK / 1e12:.0f} TFLOP/s (no results/gpu/*.json "
                                    f"yet; run make gpu-check)")
                for cls, frac in H200_ASSUMED_FRACTION.items()}
    for cls in ("small", "large"):
        h200[("fp32", cls)] = Rate(h200[("bf16", cls)].flops_per_s * FP32_VS_BF16_ON_GPU,
                                   f"assumed: {FP32_VS_BF16_ON_GPU} x the bf16 rate (TF32)")
    return {"cpu-2core": cpu, "h200": h200}


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


def measure_images_per_s(cfg: Config, device: str | torch.device | None = None, steps: int = 3,
                         batch: int | None = None) -> float:
    """Training images/s of ``cfg``'s network on ``device``: ``steps`` timed optimiser steps
    (after one warm-up) on a synthetic batch of the config's size (or ``batch``), with the
    optimiser, precision and memory layout facnn.train uses."""
    from facnn import train as T
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
    """One run of the plan: its kind (book_configs'), its config and its cost; the fields
    without an init are read off the config and its run folder."""
    kind: str                 # "table1", "shared lr", "chapters" or "sweep"
    dataset: str = field(init=False)
    model: str = field(init=False)
    recipe: str = field(init=False)
    lr: float = field(init=False)
    seed: int = field(init=False)
    config_hash: str = field(init=False)
    run_dir: str = field(init=False)
    parameters: int
    gflops_per_image: float
    images: int               # training images over all epochs
    epochs: int = field(init=False)
    precision: str
    hours: float
    rate_source: str
    done: bool = field(init=False)
    actual_hours: float | None = field(init=False)   # a finished run's own wall time, to calibrate
    trained_on: str | None = field(init=False)       # ... and the device it ran on ("cuda:0")
    command: str = field(init=False)
    config: Config = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        c = self.config
        self.dataset, self.model, self.recipe = c.dataset, c.model, c.recipe
        self.lr, self.seed, self.epochs = c.lr, c.seed, c.epochs
        folder = run_dir(c)
        self.config_hash, self.run_dir, self.command = c.hash(), str(folder), cli_command(c)
        summary = folder / "summary.json"
        self.done = summary.exists()
        self.actual_hours, self.trained_on = _actual(summary)

    @property
    def summary_only(self) -> bool:
        """Done, but neither weights nor a checkpoint here (a clone: git keeps summaries)."""
        return self.done and not any((Path(self.run_dir) / f).exists()
                                     for f in ("weights.pt", "checkpoint.pt"))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("config")
        return d


def _actual(summary: Path) -> tuple[float | None, str | None]:
    """(hours, device) a finished run took, from its summary.json; Nones where unrecorded."""
    try:
        doc = json.loads(summary.read_text())
        return float(doc["wall_s"]) / 3600, doc.get("device")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None


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
        """{dataset (or "<kind> (<dataset>)"): {"runs", "done", "hours", "hours_missing"}}."""
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
        done = len(self.runs) - len(self.missing)
        lines = [f"profile {self.profile}: {len(self.runs)} runs ({done} done), hours on {self.device} "
                 f"({'timed here' if self.measured else 'estimated'})",
                 f"{'kind':<10}{'dataset':<12}{'model':<10}{'recipe':<9}{'lr':>6}{'seed':>5} {'hash':<11}"
                 f"{'params':>9}{'GFLOP':>8}{'Mimages':>9}{'hours':>9}  done"]
        for r in self.runs:
            state = ("no" if not r.done else "yes" if r.actual_hours is None
                     else f"yes, took {r.actual_hours:.2f} h" + (f" on {r.trained_on}" if r.trained_on else "")
                     ) + ("; summary only" if r.summary_only else "")
            lines.append(f"{r.kind:<10}{r.dataset:<12}{r.model:<10}{r.recipe:<9}{r.lr:>6g}{r.seed:>5} "
                         f"{r.config_hash:<11}{r.parameters / 1e6:>8.1f}M{r.gflops_per_image:>8.2f}"
                         f"{r.images / 1e6:>9.1f}{r.hours:>9.1f}  {state}")
        summary_only = [r for r in self.runs if r.summary_only]
        if summary_only:
            lines.append(f"{len(summary_only)} done runs keep only their summary (git keeps the weights "
                         f"the book loads); a run's own train command retrains it, e.g.\n  "
                         f"{summary_only[0].command}")
        lines.append("")
        total = {"runs": len(self.runs), "done": done, "hours": self.total_hours(),
                 "hours_missing": self.total_hours(self.missing)}
        for k, s in {**self.by_dataset(), "total": total}.items():
            lines.append(f"{k:<22} {int(s['runs']):>3} runs, {int(s['done']):>3} done, "
                         f"{s['hours']:>9.1f} h ({s['hours_missing']:.1f} h missing)")
        lines.append("hours = (train images + test images / 3) x epochs / timed training images/s; "
                     "rates:" if self.measured else
                     "hours = (3 x forward FLOPs x train images + forward FLOPs x test images) x epochs"
                     " / training FLOP/s; figures used:")
        lines += [f"  {k}: {v}" for k, v in self.rates.items()]
        return "\n".join(lines)

    def shell(self, gpus: int = 1) -> str:
        """The missing runs as a bash script, one command each (torchrun with ``gpus`` > 1)."""
        share = max(gpus, 1)     # the GPUs share the hours (linear scaling)
        lines = ["#!/usr/bin/env bash",
                 f"# The {len(self.missing)} missing runs of profile {self.profile}, about "
                 f"{self.total_hours(self.missing) / share:.1f} h on {gpus} x {self.device} "
                 f"(estimate; linear scaling assumed across GPUs).",
                 "# Each run resumes from its checkpoint when rerun: rerun this script after an "
                 "interruption.",
                 "set -euo pipefail"]
        for r in self.missing:
            cmd = r.command
            if gpus > 1:
                cmd = cmd.replace("python -m facnn", f"torchrun --nproc_per_node={gpus} -m facnn", 1)
            lines += [f"# {r.dataset} {r.model} {r.recipe} lr {r.lr:g}: {r.hours / share:.1f} h", cmd]
        return "\n".join(lines) + "\n"


def make_plan(profile: str, device: str | None = None, out_dir: str | Path = "results",
              measure: bool = False, measure_batch: int | None = None, measure_steps: int = 2,
              root: str | Path = ROOT, datasets: Sequence[str] | None = None) -> Plan:
    """The plan of ``profile``: every run, its cost on ``device`` (a DEVICE_KINDS entry;
    None = this machine's: h200 with CUDA, else cpu-2core), and whether it is done (relative
    ``out_dir`` is resolved against the current folder, as facnn.train does)."""
    check_batch_size("measure_batch", measure_batch)
    device = device or ("h200" if torch.cuda.is_available() else "cpu-2core")
    check_choice("device kind", device, DEVICE_KINDS)
    table = {} if measure else throughput_table(root)[device]
    timed: dict[tuple, float] = {}
    runs, used = [], {}
    for kind, cfg in book_configs(profile, out_dir, datasets):
        params, flops = size(cfg)
        # facnn.train.use_bf16's rule: "auto" trains in bf16 on a GPU, in fp32 on a CPU
        prec = cfg.precision if cfg.precision != "auto" else "bf16" if device == "h200" else "fp32"
        n_train, n_test = train_images(cfg) * cfg.epochs, test_images(cfg) * cfg.epochs
        if measure:
            batch = measure_batch or cfg.batch_size
            key = architecture(cfg) + (("precision", cfg.precision), ("batch", batch))
            if key not in timed:
                timed[key] = measure_images_per_s(cfg, None, measure_steps, measure_batch)
            hours = (n_train + n_test / 3) / timed[key] / 3600
            figure = f"{cfg.model}/{cfg.dataset}"
            source = f"timed here: {timed[key]:.1f} training images/s (batch {batch})"
        else:
            cls = size_class(flops / 1e9)
            figure, rate = f"{prec}/{cls}", table.get((prec, cls))
            if rate is None:
                raise ValueError(f"no throughput figure for {prec} {cls} models on {device}: "
                                 f"results/benchmarks has no cpu-2core*.json; run make bench, "
                                 f"or use --measure to time the steps here")
            hours = (3 * n_train + n_test) * flops / rate.flops_per_s / 3600
            source = rate.source
        used[figure] = source
        runs.append(PlannedRun(kind, parameters=params, gflops_per_image=flops / 1e9, images=n_train,
                               precision=prec, hours=hours, rate_source=source, config=cfg))
    return Plan(profile, device, runs, used, measure)


def run_missing(plan: Plan, say=print) -> list[dict]:
    """Train the plan's missing runs one after another (each resumes where it stopped)."""
    from facnn.train import train
    out = []
    for i, r in enumerate(plan.missing, 1):
        say(f"[{i}/{len(plan.missing)}] {r.command}  (about {r.hours:.1f} h)")
        out.append(train(r.config))
    return out


# -- the command line ----------------------------------------------------------------------

def _command(args) -> None:
    plan = make_plan(args.profile, args.device, args.out_dir, measure=args.measure,
                     measure_batch=args.measure_batch)
    if args.json:
        print(json.dumps(plan.to_json(), indent=1))
    elif args.format == "sh":
        import torch
        print(plan.shell(max(1, torch.cuda.device_count())), end="")
    else:
        print(plan.text())
    if args.run:
        run_missing(plan, say=lambda m: print(m, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> None:
    """``python -m facnnbook.plan --profile P [--device KIND] [--json] [--format sh] [--measure]
    [--run]``."""
    p = argparse.ArgumentParser(prog="python -m facnnbook.plan",
                                description="every run the book needs at a profile: cost, done, command")
    p.add_argument("--profile", default="paper", choices=PROFILES)
    p.add_argument("--device", default=None, choices=DEVICE_KINDS,
                   help="estimate hours for this device kind (default: this machine's)")
    p.add_argument("--out-dir", default="results", help="the results folder (default results)")
    p.add_argument("--json", action="store_true", help="write the plan as JSON")
    p.add_argument("--format", default="text", choices=("text", "sh"),
                   help="sh: the missing runs as a shell script")
    p.add_argument("--measure", action="store_true",
                   help="time a few training steps of each architecture here instead of the table")
    p.add_argument("--measure-batch", type=int, default=None,
                   help="batch for --measure (default: the config's)")
    p.add_argument("--run", action="store_true", help="train the missing runs one after another")
    args = p.parse_args(argv)
    run_command(lambda: _command(args))


if __name__ == "__main__":
    main()
