"""``python -m facnn data get NAME``: a dataset from its public source, checked.

- ``cifar10``, ``cifar100``: torchvision's own download into ``<out>``, kept in torchvision's
  layout (``cifar-10-batches-py/``, ``cifar-100-python/``), which facnn.data reads as it is.
- ``imagenet20``: the GitHub archive of mini-ImageNet's split (Deo0330/split_minidataset at
  the pinned commit of data/README.md); the 20 classes of ``facnn.imagenet.IMAGENET20`` are
  extracted into ``<out>/imagenet20/{train,val}/<wnid>/`` and each class and split is checked
  against ``imagenet20-sha256.json`` (the sha256 of its sorted ``sha256  path`` lines, the
  form of ``sha256sum``), so a changed file names its class.

The offline copy beside the checkout (``../shared/data``) stays one optional source.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from .imagenet import IMAGENET20

SOURCE_REPO = "Deo0330/split_minidataset"
SOURCE_COMMIT = "557ebcae0db23651f9370f54a5f31b1f0fd4064d"
ARCHIVE_URL = f"https://codeload.github.com/{SOURCE_REPO}/tar.gz/{SOURCE_COMMIT}"
SUMS = Path(__file__).with_name("imagenet20-sha256.json")
DATASETS = ("cifar10", "cifar100", "imagenet20")


class DataError(ValueError):
    """A download that failed or did not match its checksums; the message says what to do
    (a ValueError, so the command line prints it as one line)."""


def download(url: str, dest: Path) -> Path:
    """``url`` into the file ``dest`` (the step tests replace with a local fake)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f, length=2**20)
    except OSError as e:
        raise DataError(f"could not download {url} ({e}); with no internet, copy the offline "
                        f"copy instead: cp -r ../shared/data/imagenet20 data/") from None
    return dest


def get(name: str, out: str | Path = "data", fetch: Callable[[str, Path], Path] = download) -> Path:
    """Fetch dataset ``name`` into ``out``; returns where it landed."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if name == "imagenet20":
        return get_imagenet20(out, fetch)
    import torchvision
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        for train in (True, False):
            cls(str(out), train=train, download=True)
    except (OSError, RuntimeError) as e:   # no network, or a damaged download
        raise DataError(f"torchvision could not fetch {name} into {out} ({e}); with no "
                        f"internet: python ../shared/data/unpack.py {name} --out {out}, or "
                        f"python -m facnn data unpack PACK --out {out}") from None
    return out


def class_digest(lines: list[str]) -> str:
    """One digest of a class and split: sha256 of its ``sha256  path`` lines sorted by path."""
    ordered = sorted(lines, key=lambda s: s.split("  ", 1)[1])
    return hashlib.sha256("\n".join(ordered).encode()).hexdigest()


def get_imagenet20(out: Path, fetch: Callable[[str, Path], Path] = download) -> Path:
    wanted = {wnid for wnid, _, _ in IMAGENET20}
    expected = json.loads(SUMS.read_text())
    target = out / "imagenet20"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        archive = fetch(ARCHIVE_URL, Path(tmp) / "source.tar.gz")
        staging = Path(tmp) / "imagenet20"
        lines: dict[str, list[str]] = {key: [] for key in expected}
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts[1:]      # below the archive's top folder
                if (not member.isfile() or len(parts) != 3 or parts[0] not in ("train", "val")
                        or parts[1] not in wanted or not parts[2].endswith(".jpg")):
                    continue
                data = tar.extractfile(member).read()
                dest = staging.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                lines[f"{parts[0]}/{parts[1]}"].append(
                    f"{hashlib.sha256(data).hexdigest()}  {'/'.join(parts)}")
        bad = [key for key, digest in expected.items() if class_digest(lines[key]) != digest]
        if bad:
            raise DataError(f"{len(bad)} of {len(expected)} class folders differ from their "
                            f"sha256 ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}): "
                            f"{ARCHIVE_URL} is not the pinned source; nothing was written")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(staging), str(target))
    return target
