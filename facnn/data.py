"""Datasets and loaders: CIFAR-10/100, ImageNet-100, ImageNet-20 and the synthetic ``shapes``.

In-memory datasets (CIFAR, shapes, ImageNet-20) are kept as uint8 tensors (N, 3, H, W) and
served by :class:`TensorLoader`, which augments on the device, as airbench does: no
DataLoader workers for small images. ImageNet-100 streams from its ImageFolder layout
through :class:`FolderLoader` (a DataLoader with workers); ImageNet-20 has the same layout
and is read by the same functions, then decoded once into memory.
"""
from __future__ import annotations

import functools
import json
import math
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
    folder) go through :func:`load_folder`; kwargs image_size, classes_file, seed.
    """
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


# -- loaders ------------------------------------------------------------------------------

class _Epochs:
    """The batches of an epoch, ``start:start + batch_size`` of an order that depends only on
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would. With
    ``world > 1`` (DDP) rank r takes every ``world``-th batch."""

    even = False   # True: drop the last batches that do not split evenly over the ranks

    def __init__(self, n: int, batch_size: int, train: bool, seed: int = 0, rank: int = 0,
                 world: int = 1, drop_last: bool = False):
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.rank, self.world, self.drop_last = rank, world, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch ``epoch`` from its batch ``start_batch`` on (a mid-epoch resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _mine(self) -> list[int]:
        last = self.n - (self.batch_size - 1 if self.drop_last else 0)
        stops = list(range(0, max(last, 0), self.batch_size))
        if self.even and self.world > 1:
            stops = stops[:len(stops) - len(stops) % self.world]
        return stops[self.rank::self.world]

    def __len__(self) -> int:
        return len(self._mine())

    def _next_pass(self) -> tuple[list[int], torch.Generator]:
        """The batch starts this pass serves and the generator of the epoch's random draws;
        the pass after it starts at batch 0."""
        start_batch, self.start_batch = self.start_batch, 0
        return self._mine()[start_batch:], torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)


class TensorLoader(_Epochs):
    """Batches of normalised, augmented images from a uint8 tensor held on ``device``, in the
    order of :class:`_Epochs`. ``augmentation`` for training: "pad-crop" (CIFAR's random crop
    with padding 4 + flip) or "resized-crop" (ImageNet's RandomResizedCrop + flip, to the
    stored size).
    """

    def __init__(self, data: ArrayDataset, batch_size: int, train: bool, device="cpu",
                 seed: int = 0, rank: int = 0, world: int = 1, drop_last: bool = False,
                 augmentation: str = "pad-crop"):
        if augmentation not in ("pad-crop", "resized-crop"):
            raise ValueError(f"unknown augmentation {augmentation!r}; choose pad-crop or resized-crop")
        super().__init__(len(data), batch_size, train, seed, rank, world, drop_last)
        self.images, self.labels = data.images.to(device), data.labels.to(device)
        self.name, self.device, self.augmentation = data.name, torch.device(device), augmentation

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        starts, g = self._next_pass()
        n, size = self.n, self.batch_size
        if self.train:
            # every random draw of the epoch up front, so batch b is the same whether or not
            # the batches before it were served (exact mid-epoch resume)
            order = torch.randperm(n, generator=g)
            if self.augmentation == "resized-crop":
                crops = resized_crop_boxes(n, *self.images.shape[-2:], g)
            else:
                crops = torch.randint(0, 9, (n, 2), generator=g)
            flips = torch.rand(n, generator=g) < 0.5
        else:
            order = torch.arange(n)
        for start in starts:
            idx = order[start:start + size].to(self.device)
            x = self.images[idx]
            if self.train:
                batch = crops[start:start + size], flips[start:start + size]
                x = (augment_resized_crop(x, *batch, self.images.shape[-1])
                     if self.augmentation == "resized-crop" else augment(x, *batch))
            yield normalise(x, self.name), self.labels[idx]


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


# -- ImageNet subsets: ImageNet-100 and ImageNet-20 ----------------------------------------
#
# One code path for both: an ImageFolder layout (<root>/train/<wnid>/*.jpg, <root>/val/<wnid>/),
# a class list of wnids, labels in sorted-wnid order (what torchvision's ImageFolder does; it is
# also the ImageNet-1k index order and the order of imagenet20/classes.json). Augmentation at
# every size is ImageNet's, scaled: RandomResizedCrop(S) + flip for training, Resize(S*256/224)
# + CenterCrop(S) for evaluation (224: 256/224; 84: 96/84). Not CIFAR's pad-and-crop at 84 px:
# the reduced profiles keep the protocol and shrink only model, data and image size, so
# ImageNet-20 rehearses the very transforms ImageNet-100 trains with.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# ImageNet-20: the 20 classes of ../shared/data/imagenet20/classes.json (wnid, ImageNet-1k
# index = position in the sorted 1000 ILSVRC-2012 wnids, name), kept here too so that a copy
# fetched from the public source, which has no classes.json, reads the same 20 classes.
IMAGENET20 = (
    ("n01843383", 96, "toucan"), ("n02091244", 173, "Ibizan hound"), ("n02108089", 242, "boxer"),
    ("n02129165", 291, "lion"), ("n02457408", 364, "three-toed sloth"), ("n02747177", 412, "ashcan"),
    ("n02795169", 427, "barrel"), ("n02871525", 454, "bookshop"), ("n03062245", 503, "cocktail shaker"),
    ("n03127925", 519, "crate"), ("n03220513", 538, "dome"), ("n03337140", 553, "file"),
    ("n03400231", 567, "frying pan"), ("n03770439", 655, "miniskirt"), ("n03773504", 657, "missile"),
    ("n03838899", 683, "oboe"), ("n03854065", 687, "organ"), ("n04243546", 800, "slot"),
    ("n13054560", 997, "bolete"), ("n13133613", 998, "ear"),
)
IMAGENET_SUBSETS = {"imagenet100": 100, "imagenet20": 20}   # dataset -> number of classes
_SOURCE = {
    "imagenet100": "the ILSVRC-2012 train and val folders (val sorted into val/<wnid>/); set "
                   "data_root to the folder that holds train/ and val/",
    "imagenet20": "one of two ways:\n"
                  "  1. the public source, mini-ImageNet at 84x84 (Vinyals et al. 2016), its 20 "
                  "classes extracted and checked: python -m facnn data get imagenet20\n"
                  "  2. the project's offline copy, where a shared/data folder sits beside the "
                  "checkout: cp -r ../shared/data/imagenet20 data/ (or set "
                  "data_root=../shared/data/imagenet20)",
}


def imagenet_root(name: str, data_root: str | Path = "data") -> Path:
    """The folder holding ``train/`` and ``val/`` of an ImageNet subset: the first of
    ``<data_root>/<name>``, ``<data_root>`` and (ImageNet-20) ``../shared/data/<name>`` beside
    the checkout that has a ``train/`` folder."""
    data_root = Path(data_root)
    candidates = [data_root / name, data_root]
    shared = shared_data_dir()
    if name == "imagenet20" and shared is not None:
        candidates.append(shared / name)
    for c in candidates:
        if (c / "train").is_dir():
            return c
    raise FileNotFoundError(f"{name} not found: no train/<wnid>/ folder in "
                            f"{', '.join(str(c) for c in candidates)}. Get it from {_SOURCE[name]}")


def class_table(root: str | Path) -> list[dict]:
    """ImageNet-20's classes as [{"wnid", "imagenet_index", "name"}], from ``<root>/classes.json``
    when present, else from :data:`IMAGENET20`; sorted by wnid (= label order)."""
    path = Path(root) / "classes.json"
    if path.exists():
        rows = json.loads(path.read_text())["classes"]
        rows = [{k: r[k] for k in ("wnid", "imagenet_index", "name")} for r in rows]
    else:
        rows = [{"wnid": w, "imagenet_index": i, "name": n} for w, i, n in IMAGENET20]
    return sorted(rows, key=lambda r: r["wnid"])


# ImageNet-100's class choice is one seeded draw for every run: a run's own seed changes its
# initialisation and data order, never its classes (paired seeds compare the same task).
CLASS_CHOICE_SEED = 0


def class_list(name: str, root: str | Path, classes_file: str | Path | None = None,
               seed: int = 0) -> list[str]:
    """The wnids of an ImageNet subset, sorted (label c is the c-th). From ``classes_file``
    (whitespace-separated wnids, or a classes.json) when given; else ImageNet-20's table
    (:func:`class_table`), or for ImageNet-100 a seeded random choice among the class folders
    of ``<root>/train`` (SPEC 5, DECIDED), written to ``<root>/imagenet100_classes.txt``."""
    want = IMAGENET_SUBSETS[name]
    if classes_file is not None:
        path = Path(classes_file)
        if not path.exists():
            raise FileNotFoundError(f"class list {path} not found; fix classes_file or drop it")
        if path.suffix == ".json":
            wnids = [c["wnid"] if isinstance(c, dict) else c for c in json.loads(path.read_text())["classes"]]
        else:
            wnids = path.read_text().split()
        source = str(path)
    elif name == "imagenet20":
        wnids, source = [r["wnid"] for r in class_table(root)], str(Path(root) / "classes.json")
    else:
        return _imagenet100_choice(Path(root), seed)
    if len(wnids) != want:
        raise ValueError(f"the class list {source} has the wrong length: expected {want} wnids for "
                         f"{name}, got {len(wnids)}")
    if len(set(wnids)) != len(wnids):
        twice = sorted(w for w in set(wnids) if wnids.count(w) > 1)
        raise ValueError(f"the class list {source} names {', '.join(twice)} more than once")
    return sorted(wnids)


def _imagenet100_choice(root: Path, seed: int) -> list[str]:
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"ImageNet not found: expected {train}/<wnid>/*.JPEG (the ILSVRC-2012"
                                f" train folder); set data_root to the folder that holds train/ and val/")
    all_wnids = sorted(p.name for p in train.iterdir() if p.is_dir())
    if len(all_wnids) < 100:
        raise ValueError(f"{train} has {len(all_wnids)} class folders, fewer than 100")
    pick = sorted(np.random.default_rng(seed).choice(all_wnids, 100, replace=False).tolist())
    try:
        (root / "imagenet100_classes.txt").write_text("\n".join(pick) + "\n")
    except OSError:
        pass  # a read-only ImageNet copy: the choice is still reproducible from the seed
    return pick


def folder_samples(root: str | Path, split: str, wnids: list[str]) -> list[tuple[Path, int]]:
    """(path, label) of every image of ``<root>/<split>/<wnid>/``, label = position of the wnid
    in ``wnids``; files sorted by name. A missing or empty class folder is an error."""
    folder = Path(root) / split
    missing = [w for w in wnids if not (folder / w).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"class folder {folder / missing[0]} is missing ({len(missing)} of the {len(wnids)} "
            f"classes are absent from {folder}: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}); "
            f"point data_root at a copy with {split}/<wnid>/ for every class of the list")
    samples = []
    for label, w in enumerate(wnids):
        files = sorted(p for p in (folder / w).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"class folder {folder / w} holds no images ({', '.join(IMAGE_EXTENSIONS)});"
                             f" copy its images there or remove the class from the list")
        samples += [(p, label) for p in files]
    return samples


def open_rgb(path: str | Path):
    """A PIL image in RGB, or a ValueError naming the file that does not decode."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:  # PIL: UnidentifiedImageError, truncated data
        raise ValueError(f"image {path} does not decode ({type(e).__name__}: {e}); replace it with "
                         f"an intact copy from the source or delete it") from None


def eval_resize(image_size: int) -> int:
    """The shorter side before the centre crop: 256 for 224 (the usual ResNet evaluation),
    96 for 84, the same 8:7 ratio at every size."""
    return int(image_size * 256 / 224)


def folder_transform(train: bool, image_size: int, dataset: str):
    """PIL image -> normalised tensor (3, S, S). Train: RandomResizedCrop(S) (scale 0.08-1) +
    horizontal flip; eval: Resize(S*256/224) + CenterCrop(S)."""
    from torchvision import transforms as T
    crop = ([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()] if train else
            [T.Resize(eval_resize(image_size)), T.CenterCrop(image_size)])
    return T.Compose([*crop, T.ToTensor(), T.Normalize(*STATS[dataset])])


class FolderDataset(torch.utils.data.Dataset):
    """The images of an ImageNet subset's split, decoded per item. An item key is an index, or
    (index, seed) to draw the random transform from ``seed`` alone: the augmentation of an
    image then depends on its place in the epoch only, not on worker or resume."""

    def __init__(self, name: str, root: str | Path, split: str, wnids: list[str], image_size: int):
        self.samples = folder_samples(root, split, wnids)
        self.wnids = wnids
        self.transform = folder_transform(split == "train", image_size, name)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key) -> tuple[Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[i]
        img = open_rgb(path)
        if seed is None:
            return self.transform(img), label
        # torchvision's transforms draw from the default CPU generator: seed it for this image
        # and restore it (with num_workers=0 it is the training process's own generator)
        g = torch.default_generator
        state = g.get_state()
        g.manual_seed(seed)
        try:
            return self.transform(img), label
        finally:
            g.set_state(state)


class EpochBatchSampler(_Epochs, torch.utils.data.Sampler):
    """Batches of keys in the order of :class:`_Epochs`: indices, or when training (index,
    seed) pairs, the seed drawing that image's random transform."""

    even = True   # the same number of batches on every rank, or DDP waits forever

    def __iter__(self):
        starts, g = self._next_pass()
        if not self.train:
            for s in starts:
                yield list(range(s, min(s + self.batch_size, self.n)))
            return
        order = torch.randperm(self.n, generator=g).tolist()
        seeds = torch.randint(0, 2 ** 62, (self.n,), generator=g).tolist()
        for s in starts:
            yield [(order[k], seeds[k]) for k in range(s, min(s + self.batch_size, self.n))]


class FolderLoader:
    """A DataLoader over a FolderDataset (workers, pinned memory, persistent workers) with the
    loader interface of TensorLoader: ``set_epoch(epoch, start_batch)``, ``len`` = batches of
    a whole epoch."""

    def __init__(self, dataset: FolderDataset, batch_size: int, train: bool, seed: int = 0,
                 rank: int = 0, world: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 drop_last: bool = False):
        self.dataset = dataset
        self.sampler = EpochBatchSampler(len(dataset), batch_size, train, seed, rank, world, drop_last)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=num_workers, pin_memory=pin_memory,
            persistent_workers=num_workers > 0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_batch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        try:
            yield from self.loader
        except (ValueError, TypeError, OSError) as e:
            raise worker_error(e) from None


def worker_error(e: Exception) -> Exception:
    """The error a DataLoader worker raised, as its one line (the tensor path says the same):
    torch wraps it in "Caught ValueError in DataLoader worker process 0. Original Traceback"."""
    text = str(e)
    if not text.startswith("Caught "):
        return e
    last = text.strip().splitlines()[-1]
    try:
        return type(e)(last.removeprefix(f"{type(e).__name__}: "))
    except TypeError:
        return e


def load_folder(name: str, split: str, root: str | Path, image_size: int,
                classes_file: str | Path | None = None, seed: int = 0) -> ArrayDataset:
    """An ImageNet subset's split decoded once into uint8 (N, 3, S, S) for TensorLoader.
    ``train``: each image resized (shorter side) and centre-cropped to S, a no-op for
    ImageNet-20 at S = 84, so TensorLoader's random resized crop sees the whole photo;
    ``test`` (the val folder): the eval transform of the DataLoader path, Resize(S*256/224) +
    CenterCrop(S), applied once: both paths evaluate on the same pixels."""
    if split not in ("train", "test", "val"):
        raise ValueError(f"unknown split {split!r}; choose train or test (the val folder)")
    root = imagenet_root(name, root)
    wnids = class_list(name, root, classes_file, seed)
    images, labels = _decode_split(str(root.resolve()), "train" if split == "train" else "val",
                                   tuple(wnids), image_size)
    table = {r["wnid"]: r for r in class_table(root)} if name == "imagenet20" else {}
    names = [table[w]["name"] if w in table else w for w in wnids]
    index = [table[w]["imagenet_index"] for w in wnids] if set(wnids) <= set(table) else None
    return ArrayDataset(name, images, labels, names, wnids=wnids, imagenet_index=index)


@functools.lru_cache(maxsize=4)
def _decode_split(root: str, split: str, wnids: tuple[str, ...], size: int) -> tuple[Tensor, Tensor]:
    from torchvision import transforms as T
    samples = folder_samples(root, split, list(wnids))
    fit = T.Compose([T.Resize(size if split == "train" else eval_resize(size)), T.CenterCrop(size)])
    images = torch.empty((len(samples), 3, size, size), dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        img = open_rgb(path)
        if split != "train" or img.size != (size, size):
            img = fit(img)
        images[i] = torch.from_numpy(np.array(img)).permute(2, 0, 1)   # (3, S, S)
    return images, torch.tensor([label for _, label in samples])


def resized_crop_boxes(n: int, height: int, width: int, g: torch.Generator,
                       scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), tries: int = 10) -> Tensor:
    """torchvision's RandomResizedCrop draw for n images at once: (n, 4) boxes (x0, y0, x1, y1)
    in pixels, area a fraction ``scale`` of the image and aspect ``ratio``; the first of
    ``tries`` draws that fits, else the whole image (torchvision's fallback for a square image)."""
    area = height * width
    target = area * torch.empty(n, tries).uniform_(*scale, generator=g)
    log_r = torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    w = (target * log_r.exp()).sqrt().round()
    h = (target / log_r.exp()).sqrt().round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.int().argmax(1), -1)
    pick = first.clamp(min=0)[:, None]
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], float(width))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], float(height))
    u = torch.rand(n, 2, generator=g)
    y0 = (u[:, 0] * (height - h + 1)).floor()
    x0 = (u[:, 1] * (width - w + 1)).floor()
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def augment_resized_crop(x: Tensor, boxes: Tensor, flips: Tensor, size: int) -> Tensor:
    """RandomResizedCrop + flip on the device: crop ``boxes`` (B, 4) of the uint8 batch
    (B, 3, H, W), resize each to ``size`` x ``size`` (bilinear, averaging when it shrinks),
    flip where ``flips``. Returns floats in [0, 1]."""
    from torchvision.ops import roi_align
    b = x.shape[0]
    rois = torch.cat([torch.arange(b, dtype=torch.float32)[:, None], boxes.float()], 1).to(x.device)
    # aligned=True: box edge k is pixel k's left edge, so the whole-image box is the identity
    out = roi_align(x.float() / 255, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    return torch.where(flips.to(x.device)[:, None, None, None], out.flip(-1), out)


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout, where the project keeps real data offline."""
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    return here if here.is_dir() else None
