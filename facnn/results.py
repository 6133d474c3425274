"""Where the book's results live, where they came from, and what stands in for a missing one.

Every expensive step of a chapter (training, attribution maps, the removal benchmark) is
cached under ``results/<profile>/``, keyed by a hash of what it computes:

    results/<profile>/<dataset>-<model>-<config hash>/    a training run (facnn.train)
    results/<profile>/analysis/<name>-<key>/              a chapter's result:
        meta.json     provenance {profile, config hash, commit, date}, parameters, scalars
        arrays.npz    the few arrays its figures need (maps of a handful of images)
        <table>.json  tables (pandas, orient="table", dtypes kept)

A rerun reuses a fresh entry; ``fresh=True`` (``FRESH=1``) recomputes it. These files are
small and committed, so the book rebuilds from them on a clone that has neither the data
nor the checkpoints (``checkpoint.pt`` is never committed; the few ``weights.pt`` the
chapters' models need are, so the explorer works on a clone).

A result that is neither cached nor computable here (no checkpoint, and training it is not
allowed at this profile) is a :class:`MissingResult`: it carries the command that makes it,
and the book prints that command where the figure would be.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import data as D
from .config import Config, preset
from .config import table1_cells as _cells

ROOT = Path(__file__).resolve().parents[1]   # the checkout (facnn is installed editable)

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet100": "ImageNet-100",
                 "shapes": "shapes (synthetic)"}

_ALL = _cells("paper", "cifar10")   # Table 1's rows: (model, recipe), the paper's order
_CPU10 = [("fa-pool", "minimal"), ("fa-linear", "minimal"), ("vanilla", "minimal"),
          ("resnet18", "minimal"), ("resnet18", "standard")]
_FA3 = _CPU10[:3]
# The runs behind Table 1 at each profile: (dataset, model, recipe). The first dataset is
# the one the attribution chapters (02-06) use.
PLAN: dict[str, list[tuple[str, str, str]]] = {
    "smoke": [("shapes", m, r) for m, r in _CPU10[:4]],
    "cpu": [("cifar10", m, r) for m, r in _CPU10] + [("cifar100", m, r) for m, r in _FA3],
    "paper": [(d, m, r) for d in ("cifar10", "cifar100", "imagenet100") for m, r in _ALL],
}

# Per-profile sizes of the attribution chapters (parameters of notebooks 02-06 default to
# these). kocc_window None = facnn.attribution's default (image side / 8).
ANALYSIS = {
    "smoke": dict(n_images=16, n_removal=24, rise_masks=100, kocc_window=8, n_show=3,
                  n_qualitative=2),
    # cpu: 1000 test images as the paper; RISE with 500 masks (the paper's RISE uses
    # thousands) because its cost is n_removal x rise_masks forward passes; K-OCC 4 px
    # windows, stride 2 (225 forwards per image): about 30 min on one core. Theorems 1 and 2
    # on 1000 test images take seconds.
    "cpu": dict(n_images=1000, n_removal=1000, rise_masks=500, kocc_window=None, n_show=3,
                n_qualitative=3),
    "paper": dict(n_images=500, n_removal=1000, rise_masks=4000, kocc_window=None, n_show=3,
                  n_qualitative=3),
}


def resolve(path: str | Path) -> Path:
    """A path relative to the checkout (so notebooks find results from any cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def key_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def git_commit() -> str:
    """The checkout's short commit, with "+dirty" when tracked files differ from it."""
    from .train import git_commit as head
    commit = head()
    try:
        # results/ changes as runs progress; only the code makes a result "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               capture_output=True, text=True, cwd=ROOT, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("+dirty" if dirty and commit != "unknown" else "")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")


# -- provenance and missing results -------------------------------------------------------

@dataclass
class Provenance:
    """Where a figure or table came from."""

    profile: str
    config_hash: str
    commit: str
    date: str

    def line(self) -> str:
        return (f"profile {self.profile} · config {self.config_hash} · commit {self.commit}"
                f" · {self.date}")

    def __str__(self) -> str:
        return self.line()

    @classmethod
    def of(cls, items: Sequence["Provenance"]) -> "Provenance":
        """One provenance for a figure built from several results: distinct values joined."""
        items = [p for p in items if isinstance(p, Provenance)]
        if not items:
            return cls("?", "?", "?", "?")

        def join(name: str) -> str:
            return ",".join(dict.fromkeys(getattr(p, name) for p in items))
        return cls(join("profile"), join("config_hash"), join("commit"),
                   max(p.date for p in items))


class MissingResult(Exception):
    """A result that is not here, and the commands that would make it."""

    def __init__(self, what: str, commands: Sequence[str] = (), why: str = ""):
        self.what, self.commands, self.why = what, list(commands), why
        super().__init__(str(self))

    def __str__(self) -> str:
        cmd = "; ".join(self.commands)
        return f"missing: {self.what}" + (f" ({self.why})" if self.why else "") + \
            (f". Run: {cmd}" if cmd else "")

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        cmds = "".join(f"<pre><code>{escape(c)}</code></pre>" for c in self.commands)
        why = f" ({escape(self.why)})" if self.why else ""
        return (f'<div class="admonition warning facnn-missing"><p class="admonition-title">'
                f'Result not available</p><p><b>missing:</b> {escape(self.what)}{why}.'
                + (" Produce it with:</p>" + cmds if cmds else "</p>") + "</div>")

    def _repr_markdown_(self) -> str:
        cmds = "\n".join(f"    {c}" for c in self.commands)
        return f"**missing:** {self.what}" + (f" ({self.why})" if self.why else "") + \
            (f". Produce it with:\n\n{cmds}\n" if cmds else "")


def is_missing(x: Any) -> bool:
    return isinstance(x, MissingResult)


def first_missing(*xs: Any) -> MissingResult | None:
    return next((x for x in xs if is_missing(x)), None)


def train_command(cfg: Config, defaults: Config | None = None) -> str:
    """The CLI line that trains ``cfg`` (overrides beyond the preset given with --set)."""
    base = defaults or preset(cfg.profile, cfg.dataset, cfg.model, cfg.recipe)
    skip = {"out_dir", "data_root", "device", "progress", "num_workers", "save_every_s"}
    sets = [f"{k}={_cli(v)}" for k, v in cfg.to_dict().items()
            if k not in skip and v != base.to_dict().get(k)]
    cmd = f"python -m facnn train --dataset {cfg.dataset} --model {cfg.model} --profile {cfg.profile}"
    if cfg.recipe != "minimal":
        cmd += f" --recipe {cfg.recipe}"
    # the default folder may arrive resolved to an absolute path; only a real change is shown
    if Path(cfg.out_dir).resolve() != (ROOT / "results").resolve():
        sets.append(f"out_dir={cfg.out_dir}")
    return cmd + (" --set " + " ".join(sets) if sets else "")


def _cli(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(i) for i in v)
    return str(v)


# -- the cache ------------------------------------------------------------------------------

def save_entry(folder: Path, values: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write arrays to arrays.npz, DataFrames to <key>.json, the rest into meta.json."""
    from .train import atomic_write_bytes, atomic_write_text
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arrays, scalars, tables = {}, {}, []
    for k, v in values.items():
        if isinstance(v, pd.DataFrame):
            atomic_write_text(tmp / f"{k}.json", v.to_json(orient="table", index=False, indent=0))
            tables.append(k)
        elif isinstance(v, np.ndarray) or _is_tensor(v):
            arrays[k] = np.asarray(v.detach().cpu() if _is_tensor(v) else v)
        else:
            scalars[k] = _plain(v)
    if arrays:
        atomic_write_bytes(tmp / "arrays.npz", lambda f: np.savez_compressed(f, **arrays))
    atomic_write_text(tmp / "meta.json", json.dumps(
        {**meta, "values": scalars, "tables": tables, "arrays": sorted(arrays)}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_entry(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    meta = json.loads((folder / "meta.json").read_text())
    values = dict(meta.get("values", {}))
    for k in meta.get("tables", []):
        values[k] = pd.read_json(io.StringIO((folder / f"{k}.json").read_text()), orient="table")
    if meta.get("arrays"):
        with np.load(folder / "arrays.npz") as z:
            values.update({k: z[k] for k in z.files})
    return values, meta


def _is_tensor(v: Any) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "detach")


def _plain(v: Any) -> Any:
    """JSON-able form of a value (numpy scalars, tuples, nested dicts)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if _is_tensor(v):
        return v.tolist()
    return v


# -- a chapter's view of a profile -------------------------------------------------------------

class Study:
    """What a chapter works on: a profile, its runs, the dataset of the attribution chapters,
    the trained models (or the cached results that stand in for them), and provenance.

    Args:
        profile: "smoke", "cpu" or "paper".
        dataset: the dataset of chapters 02-06; None = the profile's first (shapes, cifar10).
        overrides: extra Config fields for every run, e.g. {"depth": 8}; unknown keys raise.
        results_dir: the results folder (relative paths are relative to the checkout).
        data_root: where datasets live; CIFAR is unpacked there from ../shared/data on need.
        allow_training: train a run that is missing; None = only at the smoke profile.
        fresh: recompute cached chapter results (training runs are reused; delete a run's
            folder to retrain it).
        device: for the chapters' computations ("cpu" keeps them reproducible).
    """

    def __init__(self, profile: str = "smoke", dataset: str | None = None,
                 overrides: Mapping[str, Any] | None = None, results_dir: str | Path = "results",
                 data_root: str | Path = "data", allow_training: bool | None = None,
                 fresh: bool = False, device: str = "cpu"):
        if profile not in PLAN:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PLAN)}")
        self.profile = profile
        self.dataset = dataset or PLAN[profile][0][0]
        self.overrides = dict(overrides or {})
        self.results_dir = resolve(results_dir)
        self.data_root = resolve(data_root)
        self.allow_training = (profile == "smoke") if allow_training is None else bool(allow_training)
        self.fresh, self.device = bool(fresh), device
        self.sizes = dict(ANALYSIS[profile])
        self._models: dict[tuple[str, str], Any] = {}
        self.compute_s: dict[str, float | None] = {}   # cache entry -> seconds to compute
        self.config("fa-pool")   # validates dataset and overrides now, not deep in a chapter

    def __repr__(self) -> str:
        return (f"Study(profile={self.profile!r}, dataset={self.dataset!r}, overrides="
                f"{self.overrides}, results_dir='{self.results_dir}', allow_training="
                f"{self.allow_training}, fresh={self.fresh})")

    # -- configs and runs --------------------------------------------------------------------
    def config(self, model: str, recipe: str = "minimal", dataset: str | None = None) -> Config:
        return preset(self.profile, dataset or self.dataset, model, recipe,
                      out_dir=str(self.results_dir), data_root=str(self.data_root),
                      progress=False, **self.overrides)

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

    def run_dir(self, cfg: Config) -> Path:
        from .train import run_dir
        return run_dir(cfg)

    def summary(self, model: str, recipe: str = "minimal", dataset: str | None = None):
        """The run's summary dict, training it first where allowed; else MissingResult."""
        return self.summary_of(self.config(model, recipe, dataset))

    def sweep_configs(self) -> list[Config]:
        """The profile's learning-rate sweep (facnn.config.SWEEP), in this study's folders."""
        from .config import apply_overrides, lr_sweep
        return [apply_overrides(c, dict(out_dir=str(self.results_dir), progress=False,
                                        data_root=str(self.data_root), **self.overrides))
                for c in lr_sweep(self.profile)]

    def sweep(self) -> dict[float, Any]:
        """lr -> summary (or MissingResult) of each run of the learning-rate sweep."""
        return {cfg.lr: self.summary_of(cfg) for cfg in self.sweep_configs()}

    def summary_of(self, cfg: Config):
        """The summary of the run ``cfg``, training it first where allowed; else MissingResult."""
        path = self.run_dir(cfg) / "summary.json"
        if path.exists():
            return json.loads(path.read_text())
        if self.allow_training:
            if cfg.dataset != "shapes":
                self.ensure_data(cfg.dataset, cfg.subset)
            from .train import train
            return train(cfg)
        ckpt = self.run_dir(cfg) / "checkpoint.pt"
        why = "a checkpoint is there: the run is unfinished" if ckpt.exists() else \
            f"no run in {self.run_dir(cfg)}"
        return MissingResult(f"{DATASET_NAMES.get(cfg.dataset, cfg.dataset)} {cfg.model} "
                             f"({cfg.recipe} recipe, lr {cfg.lr:g}) at profile {cfg.profile}",
                             [train_command(cfg)], why)

    def history(self, model: str, recipe: str = "minimal", dataset: str | None = None):
        """Per-epoch metrics of a run as a DataFrame (or MissingResult)."""
        cfg = self.config(model, recipe, dataset)
        path = self.run_dir(cfg) / "metrics.jsonl"
        if not path.exists():
            s = self.summary(model, recipe, dataset)
            if is_missing(s):
                return s
        return pd.read_json(path, lines=True)

    def provenance(self, model: str = "fa-pool", recipe: str = "minimal",
                   dataset: str | None = None) -> Provenance:
        """Provenance of a training run (its summary's commit and date)."""
        return self.config_provenance(self.config(model, recipe, dataset))

    def config_provenance(self, cfg: Config) -> Provenance:
        """Provenance of the run ``cfg``: its summary's commit and date, or now if unfinished."""
        path = self.run_dir(cfg) / "summary.json"
        if path.exists():
            s = json.loads(path.read_text())
            return Provenance(cfg.profile, cfg.hash(), s.get("commit", "?"),
                              str(s.get("finished", "?"))[:16])
        return Provenance(cfg.profile, cfg.hash(), git_commit(), now())

    def model(self, model: str = "fa-pool", recipe: str = "minimal", dataset: str | None = None):
        """The trained model in eval mode; raises MissingResult when it cannot be had."""
        key = (model, recipe, dataset or self.dataset)
        if key not in self._models:
            cfg = self.config(model, recipe, dataset)
            folder = self.run_dir(cfg)
            s = self.summary(model, recipe, dataset)   # only finished runs are used
            if is_missing(s):
                raise s
            if not any((folder / f).exists() for f in ("checkpoint.pt", "weights.pt")):
                raise MissingResult(   # a finished run whose weights were not committed
                    f"the weights of {cfg.run_name()} (profile {cfg.profile})",
                    [f"rm {folder / 'summary.json'}", train_command(cfg)],
                    "its summary is committed, its checkpoint.pt and weights.pt are not")
            from .train import load_trained
            self._models[key] = load_trained(cfg, self.device)
        return self._models[key]

    def run_status(self, runs: Mapping[tuple[str, str, str], Any]) -> pd.DataFrame:
        """One row per run: done or missing, accuracy, epochs, wall time, config hash, and
        for a missing run the command that makes it."""
        rows = []
        for (d, m, r), s in runs.items():
            cfg = self.config(m, r, d)
            done = not is_missing(s)
            rows.append({"dataset": DATASET_NAMES.get(d, d), "model": m, "recipe": r,
                         "status": "done" if done else "missing",
                         "accuracy (%)": round(100 * s["accuracy"], 2) if done else None,
                         "epochs": s["epochs"] if done else None,
                         "wall time (min)": round(s["wall_s"] / 60, 1) if done else None,
                         "config": cfg.hash(), "command": "" if done else train_command(cfg)})
        return pd.DataFrame(rows)

    def histories(self, runs: Mapping[tuple[str, str, str], Any]):
        """label -> per-epoch metrics of each finished run; MissingResult when none is."""
        out = {}
        for (d, m, r), s in runs.items():
            if not is_missing(s):
                h = self.history(m, r, d)
                if not is_missing(h):
                    out[f"{d} {m}" + (" (standard)" if r == "standard" else "")] = h
        if not out:
            (d, m, r), *rest = runs
            return MissingResult(f"learning curves: no training run of profile {self.profile} "
                                 f"has finished", [train_command(self.config(m, r, d))],
                                 f"this is the first of {len(runs)} runs; the runs table "
                                 f"lists every command" if rest else "")
        return out

    def provenance_of(self, runs: Mapping[tuple[str, str, str], Any]) -> Provenance:
        """One provenance line for a table built from several runs."""
        return Provenance.of([self.provenance(m, r, d) for (d, m, r), s in runs.items()
                              if not is_missing(s)] or [self.provenance()])

    def describe(self) -> str:
        """What this profile shrank against the paper, in one sentence per dataset."""
        parts = []
        for d in dict.fromkeys(d for d, _, _ in self.plan()):
            c, p = self.config("fa-pool", dataset=d), preset("paper", d, "fa-pool")
            parts.append(
                f"{DATASET_NAMES.get(d, d)}: FA-CNN N={c.depth} layers, max-pool every "
                f"{c.pool_every}, R={c.maps_per_class} maps per class (K={c.channels}), "
                f"{c.epochs} epochs, ResNet width {c.resnet_width}"
                + ("" if d == "shapes" else
                   f" (the paper: N={p.depth}, pool every {p.pool_every}, R={p.maps_per_class}"
                   f" (K={p.channels}), {p.epochs} epochs, width {p.resnet_width})"))
        return "; ".join(parts) + "."

    def untrained(self, model: str = "fa-pool", seed: int = 0):
        """A freshly initialised model of the profile (Theorem 2 holds for any weights)."""
        import torch
        from .models import model_from_config
        torch.manual_seed(seed)
        return model_from_config(self.config(model)).eval()

    # -- data --------------------------------------------------------------------------------
    def ensure_data(self, dataset: str, subset: str | None = None) -> None:
        """Unpack <data_root>/<dataset>[-<subset>].npz from ../shared/data when it is not
        there yet (subset None: the study's own)."""
        cfg = self.config("fa-pool", dataset=dataset)
        if subset is not None:
            cfg.subset = subset
        name = f"{dataset}-{cfg.subset}.npz" if cfg.subset else f"{dataset}.npz"
        if dataset == "shapes" or (self.data_root / name).exists():
            return
        shared = D.shared_data_dir()
        if shared is None or not (shared / "unpack.py").exists():
            raise MissingResult(f"the {DATASET_NAMES.get(dataset, dataset)} test images",
                                [f"python ../shared/data/unpack.py {dataset} --out data",
                                 "or: add --set download=true to the train command"],
                                f"{self.data_root / name} is absent and ../shared/data is not here")
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
        return D.load(cfg.dataset, "test", str(self.data_root), cfg.subset)

    # -- chapter results -----------------------------------------------------------------------
    def analysis_dir(self, name: str, key: str) -> Path:
        return self.results_dir / self.profile / "analysis" / f"{name}-{key}"

    def run_id(self, model: str, recipe: str = "minimal", trained: bool = True) -> str:
        """A run's identity for cache keys: its config hash, and for a trained model the
        time its training finished (a retrained run invalidates what was computed from it)."""
        cfg = self.config(model, recipe)
        path = self.run_dir(cfg) / "summary.json"
        if not trained or not path.exists():
            return cfg.hash()
        return f"{cfg.hash()}@{json.loads(path.read_text()).get('finished', '?')}"

    def cached(self, name: str, params: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]],
               models: Sequence[str] = ("fa-pool",), trained: bool = True):
        """``compute()``'s result, stored under results/<profile>/analysis/<name>-<key>/ where
        key hashes ``params`` and the identity of the runs of ``models`` ("model" or
        "model/recipe"; ``trained=False`` for freshly initialised ones). Returns (values
        dict, Provenance), or the MissingResult that compute raised (nothing is stored)."""
        ids = {m: self.run_id(*m.split("/"), trained=trained) for m in models}
        hashes = {m: i.split("@")[0] for m, i in ids.items()}
        folder = self.analysis_dir(name, key_hash({"params": _plain(dict(params)), "runs": ids}))
        if (folder / "meta.json").exists() and not self.fresh:
            values, meta = load_entry(folder)
            self.compute_s[folder.name] = meta.get("compute_s")
            return values, Provenance(**meta["provenance"])
        t0 = time.perf_counter()
        try:
            values = dict(compute())
        except MissingResult as m:
            return m
        seconds = self.compute_s[folder.name] = time.perf_counter() - t0
        prov = Provenance(self.profile, ",".join(hashes.values()), git_commit(), now())
        save_entry(folder, values, {"name": name, "params": _plain(dict(params)), "runs": ids,
                                    "provenance": asdict(prov), "compute_s": seconds})
        return values, prov

    def compute_minutes(self) -> float | None:
        """Minutes the chapter's cached results took to compute (on the machine that
        computed them); None when none was computed or timed."""
        known = [s for s in self.compute_s.values() if s is not None]
        return sum(known) / 60 if known else None
