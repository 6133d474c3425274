"""The store of training runs a book profile uses: which runs it needs, their summaries,
learning curves, trained models and provenance.

    results/<profile>/<dataset>-<model>-<config hash>/    a training run (facnn.train)

A run that is not here and may not be trained at this profile raises
:class:`~facnnbook.provenance.MissingResult`, carrying the command that makes it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from facnn import data as D
from facnn import imagenet as IN
from facnn.fileio import read_jsonl
from facnn.config import Config, cli_command, preset, run_dir
# the runs the book reads are facnn.experiments' (the plan command lists exactly these)
from facnn.experiments import PLAN, SEED_OVERRIDES, SEEDS
from .plan import run_config
from .provenance import MissingResult, Provenance, git_commit, now, relative, resolve

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100",
                 "imagenet20": "ImageNet-20", "shapes": "shapes (synthetic)"}

def seed_changes(profile: str) -> str:
    """One sentence per dataset whose seeds change the preset (SEED_OVERRIDES), for the
    Table 1 chapter; "" when none does."""
    out = []
    for d, per_seed in SEED_OVERRIDES.get(profile, {}).items():
        plain = [s for s in SEEDS.get(profile, {}).get(d, ()) if s not in per_seed]
        for seeds, change in _group(per_seed).items():
            what = ", ".join(f"{k}={v}" for k, v in change)
            base = ", ".join(f"{k}={getattr(preset(profile, d), k)}" for k, _ in change)
            used = (f", used by seed{'s' if len(plain) > 1 else ''} {', '.join(map(str, plain))}"
                    if plain else "")
            out.append(f"{DATASET_NAMES.get(d, d)} seed{'s' if len(seeds) > 1 else ''} "
                       f"{', '.join(map(str, seeds))}: {what} (the preset: {base}{used})")
    return "; ".join(out)


def _group(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[tuple[int, ...], tuple]:
    groups: dict[tuple, list[int]] = {}
    for seed, change in sorted(per_seed.items()):
        groups.setdefault(tuple(sorted(change.items())), []).append(seed)
    return {tuple(seeds): change for change, seeds in groups.items()}


# Per-profile sizes of the attribution chapters (parameters of notebooks 02-07 default to
# these). kocc_window None = facnn.attribution's default (image side / 8). The ImageNet
# chapters (06, 07) read the *_imagenet sizes.
ANALYSIS = {
    "smoke": dict(n_images=16, n_removal=24, rise_masks=100, kocc_window=8, n_show=3,
                  n_qualitative=2, n_removal_imagenet=24, rise_masks_imagenet=100),
    # cpu: 1000 CIFAR-10 test images as the paper; RISE with 500 masks (the paper's RISE
    # uses thousands) because its cost is n_removal x rise_masks forward passes; K-OCC 4 px
    # windows, stride 2 (225 forwards per image): about 40 min of two threads, RISE most of
    # it. ImageNet-20: all 2000 val images, RISE with 1000 masks: about 75 min of two
    # threads. RISE's and K-OCC's maps are kept (results/<profile>/maps/), so recomputing
    # the curves takes minutes.
    # Theorems 1 and 2 on 1000 test images take seconds.
    "cpu": dict(n_images=1000, n_removal=1000, rise_masks=500, kocc_window=None, n_show=3,
                n_qualitative=3, n_removal_imagenet=2000, rise_masks_imagenet=1000),
    "paper": dict(n_images=500, n_removal=1000, rise_masks=4000, kocc_window=None, n_show=3,
                  n_qualitative=3, n_removal_imagenet=1000, rise_masks_imagenet=4000),
}


def train_command(cfg: Config) -> str:
    """The line a reader types at the checkout's root to train ``cfg``."""
    return cli_command(cfg, checkout=True)


# -- a chapter's view of a profile -------------------------------------------------------------

class Runs:
    """The training runs of one profile: configs, summaries, curves, models, provenance.

    Args:
        profile: "smoke", "cpu" or "paper".
        dataset: the dataset of the attribution chapters; None = the profile's first.
        overrides: extra Config fields for every run, e.g. {"depth": 8}; unknown keys raise.
        results_dir: the results folder (relative paths are relative to the checkout).
        data_root: where datasets live; CIFAR is unpacked there from the shared offline copy
            when one is beside the checkout.
        allow_training: train a run that is missing; None = only at the smoke profile.
        device: for the chapters' computations ("cpu" keeps them reproducible).
    """

    def __init__(self, profile: str = "smoke", dataset: str | None = None,
                 overrides: Mapping[str, Any] | None = None, results_dir: str | Path = "results",
                 data_root: str | Path = "data", allow_training: bool | None = None,
                 device: str = "cpu"):
        if profile not in PLAN:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PLAN)}")
        self.profile = profile
        self.dataset = dataset or PLAN[profile][0][0]
        self.overrides = dict(overrides or {})
        self.results_dir = resolve(results_dir)
        self.data_root = resolve(data_root)
        self.allow_training = (profile == "smoke") if allow_training is None else bool(allow_training)
        self.device = device
        self.sizes = dict(ANALYSIS[profile])
        self._models: dict[tuple, Any] = {}
        self.config("fa-pool")   # validates dataset and overrides now, not deep in a chapter

    def __repr__(self) -> str:
        return (f"Runs(profile={self.profile!r}, dataset={self.dataset!r}, results_dir="
                f"{relative(self.results_dir)!r})")

    # -- configs and runs --------------------------------------------------------------------
    def config(self, model: str, recipe: str = "minimal", dataset: str | None = None,
               **extra: Any) -> Config:
        """The config of a Table 1 cell at this profile (``extra``: e.g. seed=1; a seed brings
        its SEED_OVERRIDES). Without a seed, the chapters' model: seed 0 with its
        CHAPTER_OVERRIDES."""
        seed = extra.pop("seed", None)
        return run_config(self.profile, dataset or self.dataset, model, recipe, seed,
                          out_dir=str(self.results_dir), data_root=str(self.data_root),
                          progress=False, **{**self.overrides, **extra})

    def plan(self, datasets: Sequence[str] | None = None,
             models: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
        """The runs of Table 1 at this profile, optionally restricted. ``models`` items are
        "model" or "model/recipe"."""
        runs = PLAN[self.profile]
        if datasets is not None or self.dataset != runs[0][0]:
            ds = list(datasets or [self.dataset])
            runs = [(d, m, r) for d in ds for m, r in
                    (dict.fromkeys((m, r) for _, m, r in runs))]
        if models is not None:
            want = [tuple(s.split("/")) if "/" in s else (s, "minimal") for s in models]
            runs = [(d, m, r) for d in dict.fromkeys(d for d, _, _ in runs) for m, r in want]
        return runs

    run_dir = staticmethod(run_dir)

    def summary_of(self, cfg: Config) -> dict[str, Any] | None:
        """The summary of the run ``cfg`` (training it first where allowed), or None."""
        path = self.run_dir(cfg) / "summary.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError as e:
                raise ValueError(f"{relative(path)} is damaged ({e}); delete it and rerun "
                                 f"{train_command(cfg)}") from None
        if self.allow_training:
            if cfg.dataset != "shapes":
                self.ensure_data(cfg.dataset, cfg.subset)
            from facnn.train import train
            return train(cfg)
        return None

    def missing(self, cfg: Config) -> MissingResult:
        """What stands in for the run ``cfg`` when it is not here."""
        ckpt = self.run_dir(cfg) / "checkpoint.pt"
        why = ("a checkpoint is there: the run is unfinished" if ckpt.exists()
               else f"no run in {relative(self.run_dir(cfg))}")
        return MissingResult(f"{DATASET_NAMES.get(cfg.dataset, cfg.dataset)} {cfg.model} "
                             f"({cfg.recipe} recipe, lr {cfg.lr:g}, seed {cfg.seed}) at profile "
                             f"{cfg.profile}", [train_command(cfg)], why)

    def summary(self, model: str, recipe: str = "minimal", dataset: str | None = None,
                **extra: Any) -> dict[str, Any]:
        """The run's summary dict; raises MissingResult when it is not here."""
        cfg = self.config(model, recipe, dataset, **extra)
        s = self.summary_of(cfg)
        if s is None:
            raise self.missing(cfg)
        return s

    def seeds(self, dataset: str) -> tuple[int, ...]:
        """The seeds each Table 1 run of ``dataset`` is trained with at this profile."""
        return SEEDS[self.profile].get(dataset, (0,))

    def by_seed(self, runs: Sequence[tuple[str, str, str]], **extra: Any
                ) -> dict[tuple[str, str, str], dict[int, dict[str, Any] | None]]:
        """(dataset, model, recipe) -> {seed: summary, or None where that run is not here};
        ``extra`` changes every config (e.g. lr=0.8: the same runs at one shared rate)."""
        return {(d, m, r): {s: self.summary_of(self.config(m, r, d, seed=s, **extra)) for s in self.seeds(d)}
                for d, m, r in runs}

    def _in_store(self, configs: Sequence[Config]) -> list[Config]:
        """``configs`` with this store's folders and overrides."""
        from facnn.config import apply_overrides
        return [apply_overrides(c, dict(out_dir=str(self.results_dir), progress=False,
                                        data_root=str(self.data_root), **self.overrides))
                for c in configs]

    def curves(self, runs: Sequence[tuple[str, str, str]], **extra: Any
               ) -> dict[tuple[str, str, str], dict[int, list[float] | None]]:
        """(dataset, model, recipe) -> {seed: test accuracy per epoch, or None where that run
        is not here}; ``extra`` as for by_seed."""
        out: dict[tuple[str, str, str], dict[int, list[float] | None]] = {}
        for d, m, r in runs:
            out[(d, m, r)] = {}
            for s in self.seeds(d):
                cfg = self.config(m, r, d, seed=s, **extra)
                path = self.run_dir(cfg) / "metrics.jsonl"
                done = path.exists() and self.summary_of(cfg) is not None
                # fileio's reader, not pandas: pandas' fast float parser is off in the last digit
                rows = read_jsonl(path, f"rerun {train_command(cfg)} after deleting the run folder") if done else None
                out[(d, m, r)][s] = None if rows is None else [row["test_accuracy"] for row in rows]
        return out

    def sweep_configs(self, model: str = "fa-pool", dataset: str | None = None) -> list[Config]:
        """The profile's learning-rate sweep of ``model`` (facnn.experiments.SWEEP), or with
        ``dataset`` that dataset's held-out sweep (HELDOUT_SWEEP), in this store's folders."""
        from facnn.config import lr_sweep
        return self._in_store(lr_sweep(self.profile, model, dataset))

    def probes(self, model: str = "fa-pool") -> list[tuple[Config, dict[str, Any] | None]]:
        """(config, summary or None) of each run beside ``model``'s sweep
        (facnn.config.sweep_probes), in this store's folders."""
        from facnn.config import sweep_probes
        return [(c, self.summary_of(c)) for c in self._in_store(sweep_probes(self.profile, model))]

    def sweep(self, model: str = "fa-pool", dataset: str | None = None
              ) -> dict[float, dict[str, Any] | None]:
        """lr -> summary (None where missing) of each run of ``model``'s sweep."""
        return {cfg.lr: self.summary_of(cfg) for cfg in self.sweep_configs(model, dataset)}

    def history(self, cfg: Config) -> pd.DataFrame | None:
        """Per-epoch metrics of a finished run, or None where it has none."""
        path = self.run_dir(cfg) / "metrics.jsonl"
        if not path.exists() or self.summary_of(cfg) is None:
            return None
        try:
            return pd.read_json(path, lines=True)
        except ValueError as e:
            raise ValueError(f"{relative(path)} is damaged ({e}); rerun "
                             f"{train_command(cfg)} after deleting the run folder") from None

    def provenance(self, cfg: Config) -> Provenance:
        """Provenance of the run ``cfg``: its summary's commit and date, or now if unfinished."""
        path = self.run_dir(cfg) / "summary.json"
        if path.exists():
            s = json.loads(path.read_text())
            return Provenance(cfg.profile, cfg.hash(), s.get("commit", "?"),
                              str(s.get("finished", "?"))[:16])
        return Provenance(cfg.profile, cfg.hash(), git_commit(), now())

    def provenance_of(self, configs: Sequence[Config]) -> Provenance:
        """One provenance line for a table built from several finished runs."""
        return Provenance.of([self.provenance(c) for c in configs
                              if (self.run_dir(c) / "summary.json").exists()]
                             or [self.provenance(self.config("fa-pool"))])

    def model(self, model: str = "fa-pool", recipe: str = "minimal", dataset: str | None = None,
              **extra: Any):
        """The trained model in eval mode; raises MissingResult when it cannot be had."""
        key = (model, recipe, dataset or self.dataset, tuple(sorted(extra.items())))
        if key not in self._models:
            cfg = self.config(model, recipe, dataset, **extra)
            folder = self.run_dir(cfg)
            self.summary(model, recipe, dataset, **extra)   # only finished runs are used
            if not any((folder / f).exists() for f in ("checkpoint.pt", "weights.pt")):
                raise MissingResult(   # a finished run whose weights were not committed
                    f"the weights of {cfg.run_name()} (profile {cfg.profile})",
                    [train_command(cfg)],
                    "its summary is committed, its weights.pt is not; the command retrains it")
            from facnn.checkpoint import load_trained
            self._models[key] = load_trained(cfg, self.device)
        return self._models[key]

    def model_note(self, model: str = "fa-pool", dataset: str | None = None) -> str:
        """Which trained model a chapter analyses and how it ranks: its seed, rate, epochs and
        test accuracy beside every other finished run of its kind (same dataset and model,
        minimal recipe, the full test set) in this results folder."""
        cfg = self.config(model, dataset=dataset)
        s = self.summary_of(cfg)
        if s is None:
            raise self.missing(cfg)
        kind = []
        for path in sorted((self.results_dir / cfg.profile).glob(f"{cfg.dataset}-{cfg.model}-*/summary.json")):
            c = json.loads(path.read_text()).get("config", {})
            if c.get("recipe") == "minimal" and not c.get("subset") and not c.get("holdout"):
                kind.append(100 * json.loads(path.read_text())["accuracy"])
        acc = 100 * s["accuracy"]
        rank = ("the only finished run of its kind here" if len(kind) <= 1 else
                f"the best of the {len(kind)} finished runs of its kind here" if acc >= max(kind) else
                f"{sum(a > acc for a in kind)} of the {len(kind)} finished runs of its kind here do better "
                f"(up to {max(kind):.2f} %)")
        return (f"{DATASET_NAMES.get(cfg.dataset, cfg.dataset)} {cfg.model}, seed {cfg.seed}, lr {cfg.lr:g}, "
                f"{cfg.epochs} epochs ({cfg.precision}), run `{cfg.run_name()}`: **{acc:.2f} %** test "
                f"accuracy; {rank}.")

    def run_id(self, model: str, recipe: str = "minimal", trained: bool = True,
               dataset: str | None = None, **extra: Any) -> str:
        """A run's identity for cache keys: its config hash, and for a trained model the
        time its training finished (a retrained run invalidates what was computed from it)."""
        cfg = self.config(model, recipe, dataset, **extra)
        path = self.run_dir(cfg) / "summary.json"
        if not trained or not path.exists():
            return cfg.hash()
        return f"{cfg.hash()}@{json.loads(path.read_text()).get('finished', '?')}"

    def status(self, runs: Mapping[tuple[str, str, str], Mapping[int, Any]]) -> pd.DataFrame:
        """One row per run and seed: done or missing, accuracy, epochs, wall time, config
        hash, and for a missing run the command that makes it."""
        rows = []
        for (d, m, r), seed, s in ((k, seed, s) for k, v in runs.items() for seed, s in v.items()):
            cfg = self.config(m, r, d, seed=seed)
            done = s is not None
            rows.append({"dataset": DATASET_NAMES.get(d, d), "model": m, "recipe": r,
                         "seed": cfg.seed, "status": "done" if done else "missing",
                         "accuracy (%)": round(100 * s["accuracy"], 2) if done else None,
                         "epochs": s["epochs"] if done else None,
                         "wall time (min)": round(s["wall_s"] / 60, 1) if done else None,
                         "config": cfg.hash(), "command": "" if done else train_command(cfg)})
        return pd.DataFrame(rows)

    def histories(self, runs: Mapping[tuple[str, str, str], Mapping[int, Any]]) -> dict[str, pd.DataFrame]:
        """label -> per-epoch metrics of the first seed of each run (self.seeds), where it
        has finished; MissingResult when none has."""
        out = {}
        for (d, m, r), seeds in runs.items():
            first = self.seeds(d)[0]
            h = self.history(self.config(m, r, d, seed=first)) if seeds.get(first) is not None else None
            if h is not None:
                out[f"{DATASET_NAMES.get(d, d)} {m}" + (" (standard)" if r == "standard" else "")] = h
        if not out:
            (d, m, r), *rest = runs
            raise MissingResult(f"learning curves: no training run of profile {self.profile} "
                                f"has finished", [train_command(self.config(m, r, d))],
                                f"this is the first of {len(runs)} runs; the runs table "
                                f"lists every command" if rest else "")
        return out

    def scale(self) -> list[dict[str, Any]]:
        """This profile's sizes against the paper's, one row per dataset of its plan."""
        rows = []
        for d in dict.fromkeys(d for d, _, _ in self.plan(datasets=self.datasets())):
            c = self.config("fa-pool", dataset=d, seed=self.seeds(d)[0])   # a Table 1 run
            p = preset("paper", d if d != "shapes" else "cifar10", "fa-pool")
            rows.append(dict(dataset=DATASET_NAMES.get(d, d), layers=c.depth, paper_layers=p.depth,
                             maps_per_class=c.maps_per_class, paper_maps_per_class=p.maps_per_class,
                             channels=c.channels, paper_channels=p.channels,
                             epochs=c.epochs, paper_epochs=p.epochs,
                             resnet_width=c.resnet_width, paper_resnet_width=p.resnet_width))
        return rows

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(d for d, _, _ in PLAN[self.profile]))

    def untrained(self, model: str = "fa-pool", seed: int = 0):
        """A freshly initialised model of the profile (Theorem 2 holds for any weights)."""
        import torch
        from facnn.models import model_from_config
        torch.manual_seed(seed)
        return model_from_config(self.config(model)).eval()

    # -- data --------------------------------------------------------------------------------
    def ensure_data(self, dataset: str, subset: str | None = None) -> None:
        """Unpack <data_root>/<dataset>[-<subset>].npz from the shared offline copy when it
        is not there yet and the copy is beside the checkout; else MissingResult."""
        cfg = self.config("fa-pool", dataset=dataset)
        if subset is not None:
            cfg.subset = subset
        name = f"{dataset}-{cfg.subset}.npz" if cfg.subset else f"{dataset}.npz"
        if dataset not in ("cifar10", "cifar100") or (self.data_root / name).exists():
            return
        shared = D.shared_data_dir()
        if shared is None or not (shared / "unpack.py").exists():
            raise MissingResult(f"the {DATASET_NAMES.get(dataset, dataset)} images",
                                [f"python -m facnn data get {dataset}   (torchvision fetches it)"],
                                f"data/{name} is absent")
        cmd = [sys.executable, str(shared / "unpack.py"), dataset, "--out", str(self.data_root)]
        if cfg.subset:
            cmd += ["--per-class", *cfg.subset.split("x")]
        subprocess.run(cmd, check=True, capture_output=True)

    def test_set(self, dataset: str | None = None) -> D.ArrayDataset:
        """The test split the runs were evaluated on (raises MissingResult without data)."""
        cfg = self.config("fa-pool", dataset=dataset)
        if cfg.dataset == "shapes":
            return D.load("shapes", "test", n=cfg.shapes_test, seed=cfg.seed)
        self.ensure_data(cfg.dataset)
        # ImageNet subsets: the val folder at the size the run trained on (its eval transform)
        return D.load(cfg.dataset, "test", str(self.data_root), cfg.subset,
                      image_size=cfg.image_size, classes_file=cfg.classes_file,
                      seed=IN.CLASS_CHOICE_SEED)
