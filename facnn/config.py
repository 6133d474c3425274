"""One config dataclass for every run, its presets per profile, and overrides.

A run is described entirely by a :class:`Config`. Presets give every Table 1 cell at
profile ``paper`` (the paper's sizes and recipes) and at the reduced profiles ``cpu`` and
``smoke``, which keep the protocol and shrink only width, depth, epochs and data. Which
runs are made, and at which learning rates, is :mod:`facnn.experiments`'s table.
Overrides from the CLI (``--set key=value``) and from papermill parameters both go
through :func:`apply_overrides`, so an unknown key or a bad value fails the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shlex
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from .checks import check_bool, check_choice, check_float, check_increasing, check_int, check_str
from .experiments import HELDOUT_SWEEP, SWEEP, TABLE1_CELLS, minimal_lr

ROOT = Path(__file__).resolve().parents[1]   # the checkout: where the default folders lie

PROFILES = ("paper", "cpu", "smoke")
MODELS = ("fa-pool", "fa-linear", "vanilla", "resnet18", "resnet50")
DATASETS = ("cifar10", "cifar100", "imagenet100", "imagenet20", "shapes")
RECIPES = ("minimal", "standard")
DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")
# The values of each field that names one of a few choices
CHOICES = {"profile": PROFILES, "dataset": DATASETS, "model": MODELS, "recipe": RECIPES,
           "block": ("single", "double"), "stem": ("none", "imagenet"),
           "resnet_form": ("cifar", "torchvision"), "schedule": ("cosine", "multistep", "step"),
           "precision": ("auto", "bf16", "fp32"), "loader": ("auto", "tensor", "workers")}
MAX_LR = 1000.0
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet100": 100, "imagenet20": 20, "shapes": 10}
# ImageNet subsets (ImageFolder layout, the ImageNet stem): their native image size
IMAGE_SIZE = {"imagenet100": 224, "imagenet20": 84}

# Fields that say where or how a run happens, not what it computes: left out of the hash
# so a run resumes on another device or from another data folder.
_NOT_HASHED = {"device", "data_root", "out_dir", "download", "progress", "num_workers",
               "save_every_s", "compile"}


@dataclass
class Config:
    """Everything that defines a run. Symbols follow the paper: N = depth, R = maps per
    class, C = classes, K = C*R channels per layer."""

    # what
    profile: str = "cpu"
    dataset: str = "cifar10"
    model: str = "fa-pool"
    # FA-CNN / Vanilla backbone
    depth: int = 24                 # N
    maps_per_class: int = 20        # R
    width: int | None = None        # K; None means C*R. Must equal C*R for the pooling head.
    pool_every: int = 8             # MaxPool2d(2) after every `pool_every` layers (not after N)
    block: str = "single"           # F = BN(conv3x3) ("single") or conv-BN-ReLU-conv-BN ("double")
    stem: str = "none"              # "none" for 32x32, "imagenet" for 224x224 inputs
    eps: float = 1e-6               # epsilon of the pooling-head NLL (SPEC 2)
    # ResNet baselines
    resnet_form: str = "cifar"      # "cifar" (3x3 stem, no max-pool) or "torchvision"
    resnet_width: int = 64          # channels of the first stage (64 in the usual ResNets)
    # data
    data_root: str = "data"
    subset: str | None = None       # e.g. "200x100" reads <data_root>/cifar10-200x100.npz
    download: bool = False          # let torchvision download when the .npz is absent
    shapes_train: int = 2000        # size of the synthetic `shapes` splits
    shapes_test: int = 500
    image_size: int = 224           # ImageNet crop size (preset: IMAGE_SIZE of the subset)
    classes_file: str | None = None  # ImageNet class list (wnids or a classes.json); None =
                                     # imagenet20's classes.json, imagenet100's seeded choice
    num_workers: int = 4            # only for ImageFolder data; in-memory data uses none
    loader: str = "auto"            # ImageNet subsets: "tensor" (decoded once into memory),
                                    # "workers" (DataLoader); auto = tensor for imagenet20 only
    holdout: int = 0                # images per class moved out of the training split to be
                                    # the evaluation split instead of the test split (to choose
                                    # learning rates without reading the test set Table 1 reports)
    # training
    recipe: str = "minimal"         # SPEC 5
    epochs: int = 300
    batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "cosine"        # "cosine" (to 0), "multistep", "step"
    milestones: tuple[int, ...] = ()  # epochs, for "multistep"
    step_size: int = 30             # epochs, for "step"
    gamma: float = 0.1
    seed: int = 0
    precision: str = "auto"         # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "bf16", "fp32"
    # where / how
    device: str = "auto"            # auto = cuda, then mps, then cpu
    out_dir: str = "results"
    progress: bool = True
    save_every_s: float = 600.0     # also checkpoint mid-epoch this often (paper-size epochs are long)
    compile: bool = False           # torch.compile the model (CUDA only; ignored on CPU)

    # -- derived -----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def channels(self) -> int:
        """K, the channel count of every FA-CNN layer."""
        return self.width if self.width is not None else self.num_classes * self.maps_per_class

    def hash(self) -> str:
        """A short, stable hash of the fields that change what a run computes."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        return apply_overrides(cls(), d)

    def run_name(self) -> str:
        return f"{self.dataset}-{self.model}-{self.hash()}"

    def validate(self) -> "Config":
        """Raise ValueError naming the problem and the fix; return self when fine."""
        check_names(**{name: getattr(self, name) for name in CHOICES})
        self._validate_numbers()
        # options of one data source that another would silently ignore (and hash)
        if self.subset is not None and self.dataset not in ("cifar10", "cifar100"):
            raise ValueError(f"subset={self.subset} applies to CIFAR only, not {self.dataset}; drop it"
                             f" (shapes sizes its splits with shapes_train and shapes_test)")
        if self.classes_file is not None and self.dataset not in IMAGE_SIZE:
            raise ValueError(f"classes_file applies to the ImageNet subsets only, not {self.dataset}; "
                             f"drop it")
        if self.model == "fa-pool" and self.channels != self.num_classes * self.maps_per_class:
            raise ValueError(
                f"width={self.width} does not match C*R = {self.num_classes}*{self.maps_per_class}"
                f" = {self.num_classes * self.maps_per_class}: the pooling head needs exactly R"
                f" channels per class. Drop the width override or set maps_per_class instead.")
        return self

    def _validate_numbers(self) -> None:
        """Every numeric and boolean field by type and range (a Config built directly, not
        through apply_overrides, may hold a string or a NaN)."""
        for name, lo in (("depth", 1), ("maps_per_class", 1), ("pool_every", 1), ("epochs", 1),
                         ("batch_size", 1), ("resnet_width", 1), ("shapes_train", 1),
                         ("shapes_test", 1), ("image_size", 8), ("num_workers", 0),
                         ("step_size", 1), ("seed", 0), ("holdout", 0)):
            check_int(name, getattr(self, name), lo)
        if self.width is not None:
            check_int("width", self.width, 1)
        # above this the first step overflows float32 weights (lr=1e308 would fail deep in torch)
        check_float("lr", self.lr, 0.0, lo_open=True)
        check_float("lr", self.lr, hi=MAX_LR)
        check_float("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("gamma", self.gamma, 0.0, lo_open=True)
        check_float("eps", self.eps, 0.0, lo_open=True)
        check_float("save_every_s", self.save_every_s, 0.0)
        check_increasing("milestones", self.milestones, strict=False)
        for name in ("download", "progress", "compile"):
            check_bool(name, getattr(self, name))
        for name in ("data_root", "out_dir", "device"):
            check_str(name, getattr(self, name))
        check_device(self.device)
        for name in ("subset", "classes_file"):
            check_str(name, getattr(self, name), optional=True)


def run_dir(cfg: Config) -> Path:
    """``<out_dir>/<profile>/<dataset>-<model>-<config hash>``: the folder a run writes
    (facnn.train), the plan checks and the book reads."""
    return Path(cfg.out_dir) / cfg.profile / cfg.run_name()


def check_names(**values: Any) -> None:
    """Each value one of CHOICES[its name], e.g. check_names(profile="cpu", model="vanilla")."""
    for name, value in values.items():
        check_choice(name, value, CHOICES[name])


def check_device(device: str) -> None:
    """A device torch knows by name; whether this machine has it is checked where it is used
    (facnn.train.resolve_device)."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind not in ("cuda", "xpu") or not index.isdigit())):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps "
                         f"(--set device=auto picks the best one here)")


# -- presets --------------------------------------------------------------------------

def _recipe_fields(recipe: str, dataset: str, epochs: int, model: str) -> dict[str, Any]:
    """SPEC 5. The standard recipe's milestones scale with the epoch budget so that a
    reduced profile decays at the same fractions of training (100/300 and 150/300)."""
    if recipe == "minimal":
        return dict(recipe="minimal", lr=minimal_lr(model, dataset), momentum=0.0, weight_decay=0.0,
                    schedule="cosine")
    if dataset in IMAGE_SIZE:
        return dict(recipe="standard", lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
                    step_size=max(1, round(epochs * 30 / 100)), gamma=0.1)
    # two distinct milestones whenever the budget has room: at 5 epochs round() gives 2 and 2
    first = max(1, round(epochs / 3))
    second = max(first + 1, round(epochs / 2)) if epochs > first + 1 else first
    return dict(recipe="standard", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="multistep",
                milestones=(first, second), gamma=0.1)


# Per profile: backbone size, maps per class per dataset, epochs per dataset, ResNet width.
_PROFILE = {
    "paper": dict(depth=24, pool_every=8, R={"cifar10": 20, "cifar100": 6, "imagenet100": 6,
                                            "imagenet20": 10, "shapes": 20},
                  epochs={"cifar10": 300, "cifar100": 300, "imagenet100": 100, "imagenet20": 100,
                          "shapes": 300},
                  resnet_width=64),
    # cpu: sized so that every run of Table 1, the lr sweep and the chapters fit about two
    # hours of two CPU cores (book/reproduce.md gives the measured times); bf16 autocast
    # because these CPUs have native bf16 and it trains 2.3x faster (make bench)
    # imagenet20: 30 epochs, where the held-out curves flatten (about 28 min of one thread for
    # FA-CNN, K=40 at 84x84 with the ImageNet stem; the book's Table 1 chapter shows the curves)
    "cpu": dict(depth=9, pool_every=3, R={"cifar10": 4, "cifar100": 1, "imagenet100": 1,
                                          "imagenet20": 2, "shapes": 4},
                epochs={"cifar10": 5, "cifar100": 2, "imagenet100": 5, "imagenet20": 30,
                        "shapes": 10},
                resnet_width=16, precision="bf16",
                # ImageNet-20 has no bf16 runs to stay consistent with, and bf16 is emulated
                # (6-8x slower than fp32) on CPUs without AVX512-BF16: fp32 runs everywhere
                precision_of={"imagenet20": "fp32"}),
    "smoke": dict(depth=4, pool_every=2, R={"cifar10": 2, "cifar100": 1, "imagenet100": 1,
                                            "imagenet20": 1, "shapes": 4},
                  epochs={"cifar10": 2, "cifar100": 2, "imagenet100": 1, "imagenet20": 1,
                          "shapes": 6},
                  resnet_width=8),
}


def preset(profile: str = "cpu", dataset: str = "cifar10", model: str = "fa-pool",
           recipe: str | None = None, **overrides: Any) -> Config:
    """The config of one Table 1 cell at a profile, with optional overrides.

    ``recipe`` defaults to "minimal" (the top rows of Table 1); "standard" gives the
    ResNet rows at the bottom.
    """
    check_names(profile=profile, dataset=dataset, model=model)
    p = _PROFILE[profile]
    epochs = p["epochs"][dataset]
    base: dict[str, Any] = dict(profile=profile, dataset=dataset, model=model, depth=p["depth"],
                                pool_every=p["pool_every"], maps_per_class=p["R"][dataset],
                                epochs=epochs, resnet_width=p["resnet_width"],
                                precision=p.get("precision_of", {}).get(dataset, p.get("precision", "auto")))
    if dataset in IMAGE_SIZE:   # ImageNet subsets: the ImageNet stem, torchvision's ResNets
        base.update(stem="imagenet", resnet_form="torchvision", image_size=IMAGE_SIZE[dataset])
    base.update(_recipe_fields(recipe or "minimal", dataset, epochs, model))
    cfg = apply_overrides(Config(), base)
    # epochs given as an override keep the recipe's fractions
    if "epochs" in overrides and "milestones" not in overrides:
        epochs = apply_overrides(cfg, {"epochs": overrides["epochs"]}).epochs
        base.update(_recipe_fields(cfg.recipe, dataset, epochs, model))
        cfg = apply_overrides(cfg, base)
    return apply_overrides(cfg, overrides).validate()


def lr_sweep(profile: str, model: str = "fa-pool", dataset: str | None = None) -> list[Config]:
    """The configs of the profile's learning-rate sweep for ``model`` (minimal recipe), one
    per learning rate: same grid, subset and epochs for every model, and the rates by which
    the grid was extended for a model whose best lay on its top edge (SWEEP "extend").
    With ``dataset``, that dataset's held-out sweep (HELDOUT_SWEEP)."""
    check_names(profile=profile, model=model)
    if dataset is not None:
        heldout = HELDOUT_SWEEP.get(profile, {})
        if dataset not in heldout:
            raise ValueError(f"profile {profile} has no held-out sweep on {dataset}; choose one of "
                             f"{', '.join(heldout) or 'none'} or drop --dataset")
        s = heldout[dataset]
    else:
        s = SWEEP[profile]
    overrides = {**s["overrides"], **s.get("model_overrides", {}).get(model, {})}
    lrs = (*s["lrs"], *s.get("extend", {}).get(model, ()))
    return [preset(profile, s["dataset"], model, **overrides, lr=lr) for lr in lrs]


def sweep_probes(profile: str, model: str = "fa-pool") -> list[Config]:
    """The configs of the runs beside ``model``'s sweep (SWEEP "probes"): its subset and
    epochs with another rate and precision; shown beside the sweep, never used by its rule."""
    s = SWEEP[profile]
    return [preset(profile, s["dataset"], model, **{**s["overrides"], **p})
            for p in s.get("probes", {}).get(model, ())]


def table1_cells(profile: str, dataset: str) -> list[tuple[str, str]]:
    """(model, recipe) of each Table 1 row, in the paper's order. ImageNet-20 (our 84x84
    stand-in for ImageNet-100 on CPUs) has the minimal-recipe rows up to ResNet-18."""
    check_names(dataset=dataset)
    return TABLE1_CELLS[:4] if dataset == "imagenet20" else list(TABLE1_CELLS)


# -- overrides --------------------------------------------------------------------------

def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """["epochs=3", "lr=0.05"] -> {"epochs": "3", "lr": "0.05"} (values still strings)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value, e.g. --set epochs=3")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a copy of ``cfg`` with ``overrides`` applied, values coerced to the field's
    type (strings from the CLI or papermill are parsed). Unknown keys raise."""
    known = {f.name: f for f in fields(Config)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(unknown)}; known keys: "
                         f"{', '.join(sorted(known))}")
    changes = {k: _coerce(k, v) for k, v in overrides.items()}
    return dataclasses.replace(cfg, **changes)


def cli_command(cfg: Config, cmd: str = "train", checkout: bool = False) -> str:
    """The command line that rebuilds ``cfg``: ``python -m facnn train --dataset D --model M
    --profile P [--recipe R] [--set k=v ...]``, with a --set for exactly the fields that
    differ from the preset (so parsing it back gives the same config and hash).

    ``checkout=True`` gives the line a reader types at the checkout's root to make the same
    run (the book's): the fields that only say where or how a run happens are left out, and
    a folder is named only when it is not the checkout's own (the book passes them resolved)."""
    base = preset(cfg.profile, cfg.dataset, cfg.model, cfg.recipe)
    names = [f.name for f in fields(Config) if f.name not in ("profile", "dataset", "model", "recipe")]
    diff = {k: getattr(cfg, k) for k in names if getattr(cfg, k) != getattr(base, k)}
    # an epochs override re-derives the recipe's milestones; spell out what still differs
    back = preset(cfg.profile, cfg.dataset, cfg.model, cfg.recipe, **diff)
    diff.update({k: getattr(cfg, k) for k in names if getattr(back, k) != getattr(cfg, k)})
    if checkout:
        diff = {k: v for k, v in diff.items() if k not in _NOT_HASHED
                or (k in ("out_dir", "data_root") and _in_checkout(v) != _in_checkout(getattr(base, k)))}
    parts = ["python -m facnn", cmd, "--dataset", cfg.dataset, "--model", cfg.model,
             "--profile", cfg.profile]
    if cfg.recipe != "minimal":
        parts += ["--recipe", cfg.recipe]
    if diff:
        parts += ["--set"] + [shlex.quote(f"{k}={_cli_value(v)}") for k, v in diff.items()]
    return " ".join(parts)


def _in_checkout(folder: str) -> Path:
    return (ROOT / folder).resolve()


def _cli_value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(i) for i in v)
    return str(v)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(name: str, value: Any) -> Any:
    """``value`` (a string from the CLI or papermill, or a Python value) as field ``name``'s
    type: int, float, bool, str, tuple[int, ...], each optionally ``| None``."""
    typ = _field_types()[name]
    args = typing.get_args(typ)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else typ
    kind = typing.get_origin(base) or base
    try:
        if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
            if optional:
                return None
            raise ValueError("None is not allowed here")
        if kind is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(int(v) for v in value)
        if kind is bool:
            if not isinstance(value, str):
                return bool(value)
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError("expected true or false")
            return value.lower() in _TRUE
        if kind is int:
            if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                value = float(value)     # "1e4" is an int too
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        return float(value) if kind is float else str(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad value {value!r} for {name} ({_type_name(typ)}): {e}") from None


@functools.lru_cache(maxsize=None)
def _field_types() -> dict[str, Any]:
    """Config's field types, resolved (its annotations are strings)."""
    return typing.get_type_hints(Config)


def _type_name(typ: Any) -> str:
    return typ.__name__ if isinstance(typ, type) else str(typ)
