"""ImageNet subsets: ImageNet-100 (streamed through facnn.loaders.FolderLoader) and
ImageNet-20 (decoded once into memory), read by the same functions.

One code path for both: an ImageFolder layout (<root>/train/<wnid>/*.jpg, <root>/val/<wnid>/),
a class list of wnids, labels in sorted-wnid order (what torchvision's ImageFolder does; it is
also the ImageNet-1k index order and the order of imagenet20/classes.json). Augmentation at
every size is ImageNet's, scaled: RandomResizedCrop(S) + flip for training, Resize(S*256/224)
+ CenterCrop(S) for evaluation (224: 256/224; 84: 96/84). Not CIFAR's pad-and-crop at 84 px:
the reduced profiles keep the protocol and shrink only model, data and image size, so
ImageNet-20 rehearses the very transforms ImageNet-100 trains with.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import data as D
from .data import STATS, ArrayDataset

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
    shared = D.shared_data_dir()
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
