"""Datasets and loaders: CIFAR-10/100, ImageNet-100, and the synthetic ``shapes``.

In-memory datasets (CIFAR, shapes) are kept as uint8 tensors (N, 3, H, W) and served by
:class:`TensorLoader`, which augments on the device, as airbench does: no DataLoader
workers for 32x32 images. ImageNet-100 goes through torchvision's ImageFolder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

# Per-channel train mean and std (published values; checked against ../shared/data).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "shapes": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
SHAPES_CLASSES = ("red disc", "green disc", "blue disc", "red square", "green square",
                  "blue square", "yellow triangle", "cyan triangle", "magenta cross",
                  "white ring")


@dataclass
class ArrayDataset:
    """One split held in memory. images: uint8 (N, 3, H, W); labels: int64 (N,);
    masks: bool (N, H, W) ground-truth object masks where the dataset has them."""

    name: str
    images: Tensor
    labels: Tensor
    classes: list[str]
    masks: Tensor | None = None

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
    """Load split ``train`` or ``test`` of ``cifar10``, ``cifar100`` or ``shapes`` in memory.

    CIFAR comes from ``<root>/<name>.npz`` (or ``<name>-<subset>.npz``) as written by
    ``../shared/data/unpack.py``, else from torchvision's files under ``<root>``,
    downloading them when ``download`` is true.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose train or test")
    if name == "shapes":
        n = kwargs.get("n", 2000 if split == "train" else 500)
        return make_shapes(n, seed=kwargs.get("seed", 0) + (0 if split == "train" else 1))
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, Path(root), subset, download)
    if name == "imagenet100":
        raise ValueError("imagenet100 does not fit in memory; use facnn.data.imagenet100_folder")
    raise ValueError(f"unknown dataset {name!r}; choose one of cifar10, cifar100, imagenet100, shapes")


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
            f"  2. with internet: add --set download=true (torchvision downloads it to {root})\n"
            f"  3. copy torchvision's extracted folder "
            f"({'cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python'}) into {root}/"
        ) from None
    return ArrayDataset(name, torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor(ds.targets).long(), list(ds.classes))


def load_config_data(cfg) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) for a Config with an in-memory dataset."""
    if cfg.dataset == "shapes":
        return (load("shapes", "train", n=cfg.shapes_train, seed=cfg.seed),
                load("shapes", "test", n=cfg.shapes_test, seed=cfg.seed))
    return (load(cfg.dataset, "train", cfg.data_root, cfg.subset, cfg.download),
            load(cfg.dataset, "test", cfg.data_root, cfg.subset, cfg.download))


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


# -- loaders ------------------------------------------------------------------------------

class TensorLoader:
    """Batches of normalised, augmented images from a uint8 tensor held on ``device``.

    The order of epoch ``e`` depends only on (seed, e), so a resumed run sees exactly the
    batches an uninterrupted one would. With ``world > 1`` (DDP) each rank takes every
    ``world``-th batch of the shared permutation.
    """

    def __init__(self, data: ArrayDataset, batch_size: int, train: bool, device="cpu",
                 seed: int = 0, rank: int = 0, world: int = 1, drop_last: bool = False):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.name, self.batch_size, self.train = data.name, batch_size, train
        self.device, self.seed, self.rank, self.world = torch.device(device), seed, rank, world
        self.drop_last = drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch ``epoch`` from its batch ``start_batch`` on (a mid-epoch resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _stops(self) -> range:
        n = len(self.labels)
        last = n - (self.batch_size - 1 if self.drop_last else 0)
        return range(0, max(last, 0), self.batch_size)

    def __len__(self) -> int:
        return len(range(self.rank, len(self._stops()), self.world))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        if self.train:
            # every random draw of the epoch up front, so batch b is the same whether or not
            # the batches before it were served (exact mid-epoch resume)
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
            crops = torch.randint(0, 9, (n, 2), generator=g)
            flips = torch.rand(n, generator=g) < 0.5
        else:
            order = torch.arange(n)
        mine = [s for b, s in enumerate(self._stops()) if b % self.world == self.rank]
        for start in mine[getattr(self, "start_batch", 0):]:
            pos = order[start:start + self.batch_size]
            idx = pos.to(self.device)
            x = self.images[idx]
            if self.train:
                x = augment(x, crops[start:start + self.batch_size], flips[start:start + self.batch_size])
            yield normalise(x, self.name), self.labels[idx]
        self.start_batch = 0


def augment(x: Tensor, crops: Tensor, flips: Tensor, pad: int = 4) -> Tensor:
    """CIFAR augmentation on a uint8 batch (B, 3, H, W): random crop with zero padding
    ``pad`` (offsets ``crops`` (B, 2) in [0, 2 pad]) and horizontal flip where ``flips`` (B,)."""
    b, _, h, w = x.shape
    dy, dx = crops.to(x.device).T
    flip = flips.to(x.device)
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)            # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)            # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


# -- ImageNet-100 --------------------------------------------------------------------------

def imagenet100_classes(root: str | Path, classes_file: str | Path | None = None,
                        seed: int = 0) -> list[str]:
    """The 100 wnids of ImageNet-100. With no file: a seeded random choice among the class
    folders of ``<root>/train`` (SPEC 5, DECIDED), written to ``<root>/imagenet100_classes.txt``."""
    root = Path(root)
    if classes_file is not None:
        wnids = Path(classes_file).read_text().split()
        if len(wnids) != 100:
            raise ValueError(f"{classes_file} lists {len(wnids)} classes, expected 100")
        return wnids
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"ImageNet not found: expected {train}/<wnid>/*.JPEG (the ILSVRC-2012"
                                f" train folder); set data_root to the folder that holds train/ and val/")
    all_wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    if len(all_wnids) < 100:
        raise ValueError(f"{train} has {len(all_wnids)} class folders, fewer than 100")
    pick = sorted(np.random.default_rng(seed).choice(all_wnids, 100, replace=False).tolist())
    out = root / "imagenet100_classes.txt"
    try:
        out.write_text("\n".join(pick) + "\n")
    except OSError:
        pass  # a read-only ImageNet copy: the choice is still reproducible from the seed
    return pick


def imagenet100_folder(root: str | Path, split: str, classes: list[str], image_size: int = 224):
    """An ImageFolder over the chosen classes, with the usual ResNet transforms."""
    import torchvision
    from torchvision import transforms as T
    mean, std = STATS["imagenet100"]
    if split == "train":
        tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(mean, std)])
    else:
        tf = T.Compose([T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size),
                        T.ToTensor(), T.Normalize(mean, std)])
    folder = Path(root) / split
    keep = set(classes)

    class _Subset(torchvision.datasets.ImageFolder):
        def find_classes(self, directory):
            names = sorted(c for c in keep if (Path(directory) / c).is_dir())
            if len(names) != len(keep):
                raise FileNotFoundError(f"{directory} lacks {len(keep) - len(names)} of the 100 classes")
            return names, {c: i for i, c in enumerate(names)}

    return _Subset(str(folder), transform=tf)


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout, where the project keeps real data offline."""
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else None

