"""The maps the pixel-removal benchmark ranks pixels by: one per image for its class, computed
in chunks, and a store that keeps the expensive ones (RISE, K-OCC: hours on a CPU) so a
change to the curves never recomputes them.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from . import attribution as A
from .checks import check_choice, check_images, check_int, check_labels, check_model
from .fileio import atomic_write_bytes


def compute_maps(method: str, model, x: Tensor, classes: Tensor, layer: int | None,
                 batch: int = 100, bar=None, store: str | Path | None = None, **kw) -> Tensor:
    """One map per image for its class, via facnn.attribution, in chunks of ``batch``
    images. x (B, 3, H, W) -> (B, 1, h, w) on the CPU. RAND runs on the whole batch at once:
    its seeded draw would otherwise repeat itself in every chunk.

    ``store``: a folder where the chunks of an expensive method (RISE, K-OCC) are kept, each
    under a hash of everything it depends on (see :func:`_map_key`), so a later call with the
    same inputs loads them instead of recomputing, and a killed run loses one chunk."""
    check_choice("method", method, A.METHODS)
    check_model(model)
    check_images(x)
    check_labels(classes, len(x), getattr(model, "num_classes", None), name="classes")
    batch = check_int("batch", batch, 1)
    if A.METHODS[method].seeded:
        batch = len(x)
    folder = Path(store) / method if store is not None and A.METHODS[method].expensive else None
    weights = _state_hash(model) if folder else ""
    out = []
    for s in range(0, len(x), batch):
        xs, cs = x[s:s + batch], classes[s:s + batch]
        path = folder / f"{_map_key(method, weights, xs, cs, layer, kw)}.pt" if folder else None
        m = _load_maps(path) if path else None
        if m is None:
            m = A.attribute(method, model, xs, classes=cs, layer=layer, **kw).detach().float().cpu()
            if path:
                _save_maps(path, m)
        out.append(m)
        if bar is not None:
            bar.update(1)
    return torch.cat(out)


# -- the store -------------------------------------------------------------------------------

def _state_hash(model) -> str:
    """sha256 of the model's parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _code_hash() -> str:
    """sha256 of the code that computes a map (the methods, the models, the layers; parsed,
    so comments do not count): a change to it makes every stored map unreachable."""
    import ast
    from . import layers, models
    return hashlib.sha256("".join(ast.dump(ast.parse(inspect.getsource(m))) for m in (A, models, layers))
                          .encode()).hexdigest()


def _map_key(method: str, weights: str, x: Tensor, classes: Tensor, layer: int | None,
            kw: Mapping[str, Any]) -> str:
    """The identity of one chunk of maps: method, its arguments, layer, the model's weights,
    the exact input images and classes, the code, torch's version and the device type (a
    GPU's maps differ from a CPU's in the last bits)."""
    h = hashlib.sha256(json.dumps([method, layer, dict(kw), weights, _code_hash(), torch.__version__,
                                   x.device.type], sort_keys=True, default=str).encode())
    for t in (x, classes):
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def _load_maps(path: Path) -> Tensor | None:
    """A stored chunk, or None when it is absent or unreadable (then it is recomputed)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # a damaged file: recompute it rather than fail
        return None


def _save_maps(path: Path, maps: Tensor) -> None:
    """Write by rename, so a killed run never leaves a half-written chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda f: torch.save(maps, f))
