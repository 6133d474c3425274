"""An offline data pack: CIFAR in a few WebP sheets small enough to carry to another machine.

``python -m facnn data pack cifar10 --out DIR --max-mb 50`` writes into DIR

    train-NN.webp   training images, LOSSY WebP: each sheet holds up to 2000 images (40 rows
                    x 50 columns of 32x32 tiles), stored as its R, G and B planes stacked
                    vertically in one greyscale image. Greyscale avoids WebP's 4:2:0 chroma
                    subsampling, which otherwise costs colour edges up to 128 grey levels;
                    the quality is the highest whose pack fits --max-mb.
    test-NN.webp    test images, LOSSLESS WebP (RGB sheets): bit-exact.
    labels.npz      y_train, y_test (int64) and classes, as facnn.data reads them.
    manifest.json   format, counts, codecs, the WebP quality, the training images' loss
                    against the originals (PSNR, mean and max absolute error), the sha256 of
                    the original and of the decoded arrays, and the sha256 of every file.

``python -m facnn data unpack DIR --out data`` checks every file's sha256, decodes, checks
the test images bit for bit, and writes ``data/<dataset>.npz`` (x_train (N, 32, 32, 3)
uint8, y_train int64, x_test, y_test, classes), the file facnn.data loads.

Needs numpy and Pillow (or torchvision, whose decoder is the fallback for unpacking).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .fileio import atomic_write_bytes, make_dir

FORMAT = "facnn-pack/1"
ROWS, COLS, SIDE = 40, 50, 32          # a sheet: ROWS x COLS tiles of SIDE x SIDE pixels
PER_SHEET = ROWS * COLS
MB = 1e6
LOSSLESS = dict(lossless=True, quality=0, method=0)   # fastest lossless setting (size within 5 %)
LOSSY_METHOD = 4
QUALITY_RANGE = (20, 100)   # below 20 the sheets lose more than 9 grey levels RMS (PSNR < 29 dB)
DATASETS = ("cifar10", "cifar100")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
HINT = "--out DIR"


class PackError(ValueError):
    """A pack that cannot be written or read; the message names the file and the fix."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_sha256(x: np.ndarray) -> str:
    return sha256(np.ascontiguousarray(x).tobytes())


# -- sheets --------------------------------------------------------------------------------

def tile(x: np.ndarray) -> list[np.ndarray]:
    """(N, 32, 32, 3) uint8 -> RGB sheets (rows*32, 50*32, 3), each up to 2000 images in
    row-major order; the last sheet has as many rows as it needs (zeros pad its last row)."""
    sheets = []
    for start in range(0, len(x), PER_SHEET):
        part = x[start:start + PER_SHEET]
        rows = math.ceil(len(part) / COLS)
        pad = np.zeros((rows * COLS - len(part), SIDE, SIDE, 3), np.uint8)
        grid = np.concatenate([part, pad]).reshape(rows, COLS, SIDE, SIDE, 3)
        sheets.append(grid.transpose(0, 2, 1, 3, 4).reshape(rows * SIDE, COLS * SIDE, 3))
    return sheets


def untile(sheets: list[np.ndarray], count: int) -> np.ndarray:
    """The inverse of :func:`tile`: the first ``count`` images of the sheets."""
    parts = []
    for s in sheets:
        rows = s.shape[0] // SIDE
        parts.append(s.reshape(rows, SIDE, COLS, SIDE, 3).transpose(0, 2, 1, 3, 4)
                     .reshape(rows * COLS, SIDE, SIDE, 3))
    return np.concatenate(parts)[:count] if parts else np.zeros((0, SIDE, SIDE, 3), np.uint8)


def planes(sheet: np.ndarray) -> np.ndarray:
    """RGB sheet (H, W, 3) -> greyscale (3H, W): R, G, B stacked vertically."""
    return np.concatenate([sheet[..., c] for c in range(3)], 0)


def unplanes(grey: np.ndarray) -> np.ndarray:
    h = grey.shape[0] // 3
    return np.stack([grey[c * h:(c + 1) * h] for c in range(3)], -1)


def encode(sheet: np.ndarray, quality: int | None = None) -> bytes:
    """An RGB sheet as WebP: its planes in greyscale at ``quality``, or lossless RGB (None)."""
    from PIL import Image
    buf = io.BytesIO()
    if quality is None:
        Image.fromarray(sheet, "RGB").save(buf, "WEBP", **LOSSLESS)
    else:
        Image.fromarray(planes(sheet), "L").save(buf, "WEBP", quality=int(quality), method=LOSSY_METHOD)
    return buf.getvalue()


def decode(data: bytes, grey: bool) -> np.ndarray:
    """WebP bytes -> uint8 array ((H, W) greyscale or (H, W, 3) RGB): Pillow, else torchvision."""
    try:
        from PIL import Image
        return np.asarray(Image.open(io.BytesIO(data)).convert("L" if grey else "RGB"))
    except ImportError:
        pass
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        raise PackError("decoding the pack needs Pillow or torchvision: pip install pillow") from None
    t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                     ImageReadMode.GRAY if grey else ImageReadMode.RGB)
    return t[0].numpy() if grey else t.permute(1, 2, 0).numpy()


def _map(fn: Callable, items: list) -> list:
    """fn over items on a few threads (libwebp releases the GIL); order kept."""
    workers = max(1, min(len(items), os.cpu_count() or 1, 8))
    if workers == 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def loss(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """PSNR (dB, peak 255), mean and max absolute error in grey levels, RMSE."""
    d = decoded.astype(np.float64) - original.astype(np.float64)
    mse = float((d ** 2).mean()) if d.size else 0.0
    return {"psnr_db": float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse),
            "rmse": math.sqrt(mse), "mean_abs_error": float(np.abs(d).mean()) if d.size else 0.0,
            "max_abs_error": float(np.abs(d).max()) if d.size else 0.0}


# -- pack ------------------------------------------------------------------------------------

def _arrays(npz: Path) -> dict[str, np.ndarray]:
    if not npz.exists():
        raise PackError(f"{npz} not found. Write it with: python ../shared/data/unpack.py "
                        f"{npz.stem} --out {npz.parent}")
    try:
        z = np.load(npz)
    except (OSError, ValueError, EOFError) as e:
        raise PackError(f"{npz} is not a .npz archive ({str(e).split('.')[0]}); give the .npz "
                        f"that ../shared/data/unpack.py writes") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise PackError(f"{npz} is a single .npy array, not a .npz archive of the CIFAR splits")
    with z:
        missing = {"x_train", "y_train", "x_test", "y_test", "classes"} - set(z.files)
        if missing:
            raise PackError(f"{npz} lacks {', '.join(sorted(missing))}: not a CIFAR archive as "
                            f"../shared/data/unpack.py writes it")
        a = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test", "classes")}
    for split in ("train", "test"):
        x = a[f"x_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (SIDE, SIDE, 3):
            raise PackError(f"{npz}: x_{split} is {x.dtype} {x.shape}, expected uint8 (N, 32, 32, 3)")
        if len(a[f"y_{split}"]) != len(x):
            raise PackError(f"{npz}: {len(x)} {split} images but {len(a[f'y_{split}'])} labels")
    return a


def choose_quality(train_sheets: list[np.ndarray], budget_bytes: float,
                   sample: int = 3) -> tuple[int, float]:
    """The highest quality in QUALITY_RANGE whose estimated train size (from ``sample``
    sheets spread over the set, scaled by image count) fits ``budget_bytes``; binary search.
    Returns (quality, estimated bytes)."""
    idx = sorted({round(i * (len(train_sheets) - 1) / max(sample - 1, 1)) for i in range(sample)})
    picked = [train_sheets[i] for i in idx]
    scale = sum(s.shape[0] for s in train_sheets) / sum(s.shape[0] for s in picked)

    def estimate(q: int) -> float:
        return scale * sum(len(b) for b in _map(lambda s: encode(s, q), picked))

    lo, hi = QUALITY_RANGE
    if estimate(lo) > budget_bytes:
        return lo, estimate(lo)
    while lo < hi:                    # invariant: lo fits
        mid = (lo + hi + 1) // 2
        if estimate(mid) <= budget_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo, estimate(lo)


def pack(dataset: str, out: str | Path, max_mb: float = 50.0, source: str | Path | None = None,
         say: Callable[[str], Any] = lambda m: None) -> dict[str, Any]:
    """Write the pack of ``dataset`` (cifar10, cifar100) from ``source`` (default
    data/<dataset>.npz) into ``out``; returns the manifest."""
    t0 = time.perf_counter()
    if dataset not in DATASETS:
        raise PackError(f"cannot pack {dataset!r}: choose cifar10 or cifar100")
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not 0 < max_mb < math.inf:
        raise PackError(f"--max-mb {max_mb} must be a positive number of MB, e.g. --max-mb 50")
    src = Path(source) if source else Path("data") / f"{dataset}.npz"
    a = _arrays(src)
    n = len(a["classes"])
    named = next((d for d, c in NUM_CLASSES.items() if c == n), f"a {n}-class dataset")
    _check_labels(a, dataset, src, f"pack it as {named}")
    out = make_dir(out, HINT)
    files: dict[str, bytes] = {}

    for i, b in enumerate(_map(encode, tile(a["x_test"]))):
        files[f"test-{i:02d}.webp"] = b
    buf = io.BytesIO()
    np.savez(buf, y_train=a["y_train"].astype(np.int64), y_test=a["y_test"].astype(np.int64),
             classes=a["classes"])
    files["labels.npz"] = buf.getvalue()
    fixed = sum(len(b) for b in files.values()) + 4096          # + the manifest
    budget = max_mb * MB - fixed
    if budget <= 0:
        raise PackError(f"the lossless test images and labels alone take {fixed / MB:.1f} MB, over "
                        f"--max-mb {max_mb:g}; raise --max-mb")

    train_sheets = tile(a["x_train"])
    quality, _ = choose_quality(train_sheets, budget * 0.98)
    while True:
        encoded = _map(lambda s: encode(s, quality), train_sheets)
        if sum(len(b) for b in encoded) <= budget or quality <= QUALITY_RANGE[0]:
            break
        quality -= 2
    if sum(len(b) for b in encoded) > budget:
        need = (fixed + sum(len(b) for b in encoded)) / MB
        raise PackError(f"{dataset} needs {need:.1f} MB even at WebP quality {quality}; "
                        f"raise --max-mb to at least {math.ceil(need)}")
    for i, b in enumerate(encoded):
        files[f"train-{i:02d}.webp"] = b
    decoded = untile([unplanes(decode(b, grey=True)) for b in encoded], len(a["x_train"]))

    for name, data in files.items():
        _write(out / name, data)
    manifest = {
        "format": FORMAT, "dataset": dataset, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source": str(src), "classes": [str(c) for c in a["classes"]],
        "sheet": {"rows": ROWS, "cols": COLS, "side": SIDE, "order": "row-major tiles"},
        "train": {"count": int(len(a["x_train"])),
                  "files": sorted(n for n in files if n.startswith("train-")),
                  "codec": "webp-lossy, R/G/B planes stacked as one greyscale image",
                  "quality": int(quality), "method": LOSSY_METHOD,
                  "loss": loss(a["x_train"], decoded),
                  "sha256_uint8_original": array_sha256(a["x_train"]),
                  "sha256_uint8_decoded": array_sha256(decoded)},
        "test": {"count": int(len(a["x_test"])),
                 "files": sorted(n for n in files if n.startswith("test-")),
                 "codec": "webp-lossless, RGB", "sha256_uint8": array_sha256(a["x_test"])},
        "labels": "labels.npz",
        "max_mb": max_mb,
        "size_bytes": sum(len(b) for b in files.values()),   # every file but manifest.json
        "checksums": {n: sha256(b) for n, b in sorted(files.items())},
    }
    manifest["seconds"] = round(time.perf_counter() - t0, 1)
    _write(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    say(f"packed {dataset} into {out}: {manifest['size_bytes'] / MB:.1f} MB, quality {quality}")
    return manifest


def _write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, lambda f: f.write(data), HINT)


def _check_labels(a: dict[str, np.ndarray], dataset: str, where: Any, fix: str) -> None:
    """The class list has the dataset's length and every label indexes it: a 10-class file
    must not become cifar100, nor a label 11 reach training."""
    want = NUM_CLASSES[dataset]
    if len(a["classes"]) != want:
        raise PackError(f"{where} holds {len(a['classes'])} classes, but {dataset} has {want}; {fix}")
    for split in ("train", "test"):
        y = a[f"y_{split}"]
        if len(y) and (y.min() < 0 or y.max() >= want):
            raise PackError(f"{where}: y_{split} holds labels {int(y.min())}..{int(y.max())}, "
                            f"outside 0..{want - 1} of {dataset}; {fix}")


# -- unpack ----------------------------------------------------------------------------------

def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The pack's manifest, checked for what unpack relies on: a known dataset (it names the
    output file), plain file names (no folders: nothing is read or written outside the pack
    and --out), and a checksum for every file it reads."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.exists():
        raise PackError(f"{folder} is not a facnn data pack (no manifest.json); make one with "
                        f"python -m facnn data pack cifar10 --out {folder}")
    try:
        m = json.loads(path.read_text())
    except ValueError:
        raise PackError(f"{path} is truncated or not JSON; copy the pack again") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise PackError(f"{path} has format {m.get('format') if isinstance(m, dict) else None!r}, "
                        f"this facnn reads {FORMAT}")
    fix = "the pack is damaged or was edited; copy it again or re-create it with python -m facnn data pack"
    if m.get("dataset") not in DATASETS:
        raise PackError(f"{path} names dataset {m.get('dataset')!r}, not one of {', '.join(DATASETS)}; {fix}")
    try:
        names = [*m["train"]["files"], *m["test"]["files"], m["labels"]]
        counts = [m["train"]["count"], m["test"]["count"]]
        sums = m["checksums"]
    except (KeyError, TypeError) as e:
        raise PackError(f"{path} lacks the entry {e}; {fix}") from None
    if not all(isinstance(c, int) and c >= 0 for c in counts) or not isinstance(sums, dict):
        raise PackError(f"{path} has a malformed count or checksum table; {fix}")
    for name in [*names, *sums]:
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise PackError(f"{path} names the file {name!r}, which is not a plain file name in the "
                            f"pack folder; {fix}")
    unchecked = [n for n in names if n not in sums]
    if unchecked:
        raise PackError(f"{path} has no checksum for {', '.join(unchecked)}; {fix}")
    return m


def verify(folder: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of the pack, read and checked against the manifest's sha256."""
    folder = Path(folder)
    m = manifest or read_manifest(folder)
    data = {}
    for name, want in m["checksums"].items():
        path = folder / name
        if not path.exists():
            raise PackError(f"pack file {path} is missing; copy the whole pack folder again")
        b = path.read_bytes()
        got = sha256(b)
        if got != want:
            raise PackError(f"pack file {path} fails its sha256 check (expected {want[:16]}..., got "
                            f"{got[:16]}...): the pack is damaged; copy it again or re-create it "
                            f"with python -m facnn data pack {m['dataset']} --out {folder}")
        data[name] = b
    return data


def load(folder: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of a pack (as facnn.data's .npz holds them) and a report of the checks."""
    m = read_manifest(folder)
    data = verify(folder, m)
    test = untile(_map(lambda n: decode(data[n], grey=False), m["test"]["files"]), m["test"]["count"])
    train = untile(_map(lambda n: unplanes(decode(data[n], grey=True)), m["train"]["files"]),
                   m["train"]["count"])
    with np.load(io.BytesIO(data[m["labels"]])) as z:
        arrays = {"x_train": train, "y_train": z["y_train"], "x_test": test, "y_test": z["y_test"],
                  "classes": z["classes"]}
    for split in ("train", "test"):
        x, y, count = arrays[f"x_{split}"], arrays[f"y_{split}"], m[split]["count"]
        if not len(x) == count == len(y):
            raise PackError(f"{folder}: the manifest counts {count} {split} images, its sheets hold "
                            f"{len(x)} and labels.npz {len(y)} labels; the pack is damaged or was "
                            f"edited; copy it again")
    if array_sha256(test) != m["test"]["sha256_uint8"]:
        raise PackError(f"{folder}: the decoded test images differ from the originals although "
                        f"the files are intact; this WebP decoder is broken (update Pillow)")
    _check_labels(arrays, m["dataset"], Path(folder) / m["labels"],
                  "the pack is damaged or mislabelled; re-create it from the original .npz")
    report = {"files_checked": len(data),
              "train_decoded_as_packed": array_sha256(train) == m["train"]["sha256_uint8_decoded"],
              "train_loss": m["train"]["loss"]}
    return arrays, report


def unpack(folder: str | Path, out: str | Path = "data") -> Path:
    """Check and decode the pack in ``folder`` into ``out/<dataset>.npz``; returns its path."""
    arrays, _ = load(folder)
    return write_npz(arrays, out, read_manifest(folder)["dataset"])


def write_npz(arrays: dict[str, np.ndarray], out: str | Path, dataset: str) -> Path:
    """``out/<dataset>.npz`` with the keys facnn.data reads, written atomically."""
    if dataset not in DATASETS:   # it names the file: so nothing is written outside out
        raise PackError(f"cannot write {dataset!r}: a pack holds cifar10 or cifar100")
    target = make_dir(out, HINT) / f"{dataset}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write(target, buf.getvalue())
    return target
