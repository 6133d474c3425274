"""Datasets held in memory: CIFAR-10/100, the synthetic ``shapes``, and (through
:mod:`facnn.imagenet`) ImageNet-20; :mod:`facnn.loaders` serves their batches.

Each split is an :class:`ArrayDataset` of uint8 images (N, 3, H, W) and int64 labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# Per-channel train mean and std (published values; checked against ../shared/data).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet20": ((0.4696, 0.4368, 0.3832), (0.2670, 0.2629, 0.2722)),  # its classes.json
    "shapes": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
SHAPES_CLASSES = ("red disc", "green disc", "blue disc", "red square", "green square",
                  "blue square", "yellow triangle", "cyan triangle", "magenta cross",
                  "white ring")


@dataclass
class ArrayDataset:
    """One split held in memory. images: uint8 (N, 3, H, W); labels: int64 (N,);
    masks: bool (N, H, W) ground-truth object masks where the dataset has them; wnids and
    imagenet_index (the ImageNet-1k label of each class) for ImageNet subsets."""

    name: str
    images: Tensor
    labels: Tensor
    classes: list[str]
    masks: Tensor | None = None
    wnids: list[str] | None = None
    imagenet_index: list[int] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalised(self, idx=slice(None), device: str | torch.device = "cpu") -> Tensor:
        """Float images normalised with the dataset's mean and std."""
        return normalise(self.images[idx].to(device), self.name)


def normalise(x: Tensor, dataset: str = "cifar10") -> Tensor:
    """uint8 (or [0, 1] float) images -> (x - mean) / std, per channel."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype)[:, None, None] for v in STATS[dataset])
    return (x - mean) / std


def denormalise(x: Tensor, dataset: str = "cifar10") -> Tensor:
    """The inverse of :func:`normalise`, clipped to [0, 1], for plotting."""
    mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype)[:, None, None] for v in STATS[dataset])
    return (x * std + mean).clamp(0, 1)


# -- loading ------------------------------------------------------------------------------

def load(name: str, split: str = "train", root: str | Path = "data", subset: str | None = None,
         download: bool = False, **kwargs) -> ArrayDataset:
    """Load split ``train`` or ``test`` of ``cifar10``, ``cifar100``, ``shapes`` or an
    ImageNet subset in memory.

    CIFAR comes from ``<root>/<name>.npz`` (or ``<name>-<subset>.npz``) as written by
    ``../shared/data/unpack.py``, else from torchvision's files under ``<root>``,
    downloading them when ``download`` is true. ImageNet subsets (``test`` = the val
    folder) go through :func:`facnn.imagenet.load_folder`; kwargs image_size, classes_file,
    seed.
    """
    from .imagenet import IMAGENET_SUBSETS, load_folder   # facnn.imagenet imports this module
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose train or test")
    if name == "shapes":
        n = kwargs.get("n", 2000 if split == "train" else 500)
        return make_shapes(n, seed=kwargs.get("seed", 0) + (0 if split == "train" else 1))
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, Path(root), subset, download)
    if name in IMAGENET_SUBSETS:
        return load_folder(name, split, root, kwargs.get("image_size", 224),
                           kwargs.get("classes_file"), kwargs.get("seed", 0))
    raise ValueError(f"unknown dataset {name!r}; choose one of cifar10, cifar100, "
                     f"{', '.join(IMAGENET_SUBSETS)}, shapes")


def _load_cifar(name: str, split: str, root: Path, subset: str | None, download: bool) -> ArrayDataset:
    npz = root / (f"{name}-{subset}.npz" if subset else f"{name}.npz")
    if npz.exists():
        with np.load(npz) as z:
            x, y, classes = z[f"x_{split}"], z[f"y_{split}"], [str(c) for c in z["classes"]]
        return ArrayDataset(name, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
                            torch.from_numpy(y).long(), classes)
    if subset:
        raise FileNotFoundError(
            f"{npz} not found. Write it with: python ../shared/data/unpack.py {name} --out {root} "
            f"--per-class {subset.replace('x', ' ')}")
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        ds = cls(str(root), train=split == "train", download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{name} is not available under {root} ({e}). Provide it one of three ways:\n"
            f"  1. from the shared copy: python ../shared/data/unpack.py {name} --out {root}\n"
            f"  2. with internet: python -m facnn data get {name} (or add --set download=true "
            f"to a train command; torchvision downloads it to {root})\n"
            f"  3. copy torchvision's extracted folder "
            f"({'cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python'}) into {root}/"
        ) from None
    return ArrayDataset(name, torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor(ds.targets).long(), list(ds.classes))


# The held-out split is the same for every run (whatever its seed), so every rate of a
# sweep is scored on the same images.
HOLDOUT_SEED = 0


def hold_out(data: ArrayDataset, per_class: int,
             seed: int = HOLDOUT_SEED) -> tuple[ArrayDataset, ArrayDataset]:
    """(rest, held): ``per_class`` images of every class, drawn at random with ``seed``, move
    from ``data`` (a training split) to ``held``, a validation split that no reported number
    reads. Raises ValueError when a class has too few images to keep any for training."""
    counts = torch.bincount(data.labels, minlength=data.num_classes)
    if per_class >= int(counts.min()):
        raise ValueError(f"holdout={per_class} leaves no training image in the smallest class of "
                         f"{data.name} ({int(counts.min())} images); choose holdout below "
                         f"{int(counts.min())}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    held = torch.zeros(len(data), dtype=torch.bool)
    for c in range(data.num_classes):   # the first per_class images of class c in that order
        held[order[data.labels[order] == c][:per_class]] = True

    def part(keep: Tensor) -> ArrayDataset:
        return ArrayDataset(data.name, data.images[keep], data.labels[keep], data.classes,
                            None if data.masks is None else data.masks[keep], data.wnids,
                            data.imagenet_index)
    return part(~held), part(held)


def load_config_data(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, evaluation) for a Config with an in-memory dataset: the test split, or with
    ``cfg.holdout`` images per class held out of the training split (the test split unread)."""
    from .imagenet import CLASS_CHOICE_SEED

    def split(name: str) -> ArrayDataset:
        # shapes draws its images from the run's seed; an ImageNet subset's classes never do
        return load(cfg.dataset, name, cfg.data_root, cfg.subset, cfg.download,
                    n=cfg.shapes_train if name == "train" else cfg.shapes_test,
                    seed=cfg.seed if cfg.dataset == "shapes" else CLASS_CHOICE_SEED,
                    image_size=cfg.image_size, classes_file=cfg.classes_file)
    if cfg.holdout:
        return hold_out(split("train"), cfg.holdout)
    return split("train"), split("test")


# -- shapes -------------------------------------------------------------------------------

_COLOURS = {"red": (1, .15, .15), "green": (.15, .9, .15), "blue": (.2, .3, 1),
            "yellow": (1, 1, .1), "cyan": (.1, 1, 1), "magenta": (1, .1, 1), "white": (1, 1, 1)}


def make_shapes(n: int, size: int = 32, seed: int = 0) -> ArrayDataset:
    """A deterministic synthetic dataset: 10 classes of coloured shapes (class = colour and
    shape, see ``SHAPES_CLASSES``) at random position and scale on textured backgrounds
    (smooth noise plus stripes of random angle). Returns the object masks too."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.empty((n, size, size), bool)
    for i, c in enumerate(labels):
        colour_name, shape = SHAPES_CLASSES[c].split()
        r = rng.uniform(0.17, 0.3) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        dy, dx = yy - cy, xx - cx
        if shape == "disc":
            m = dy ** 2 + dx ** 2 <= r ** 2
        elif shape == "square":
            m = (abs(dy) <= r * .8) & (abs(dx) <= r * .8)
        elif shape == "triangle":
            m = (dy <= r * .7) & (dy >= -r) & (abs(dx) <= (dy + r) * 0.6)
        elif shape == "cross":
            m = ((abs(dy) <= r * .3) & (abs(dx) <= r)) | ((abs(dx) <= r * .3) & (abs(dy) <= r))
        else:  # ring
            d = np.sqrt(dy ** 2 + dx ** 2)
            m = (d <= r) & (d >= r * .55)
        # background: grey-ish stripes of random angle and frequency plus pixel noise
        ang, freq = rng.uniform(0, np.pi), rng.uniform(0.3, 1.2)
        stripes = 0.5 + 0.2 * np.sin(freq * (np.cos(ang) * xx + np.sin(ang) * yy))
        tint = rng.uniform(0.6, 1.0, 3)
        bg = stripes[..., None] * tint + rng.normal(0, 0.06, (size, size, 3))
        img = bg * 0.7
        img[m] = np.array(_COLOURS[colour_name]) * rng.uniform(0.75, 1.0) + rng.normal(0, .04, (m.sum(), 3))
        images[i], masks[i] = img, m
    x = torch.from_numpy((np.clip(images, 0, 1) * 255).round().astype(np.uint8)).permute(0, 3, 1, 2)
    return ArrayDataset("shapes", x.contiguous(), torch.from_numpy(labels).long(),
                        list(SHAPES_CLASSES), torch.from_numpy(masks))


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout, where the project keeps real data offline."""
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else None
