"""Saliency maps for the pixel-removal benchmark and Figures 1, 4, 5 (SPEC sections 3, 7, 8).

Every method takes a model and a batch of NORMALISED images x (B, 3, H, W) and returns raw
float32 maps (B, C_sel, h, w), one per selected class:

- ``classes=None``: all C classes, C_sel = C;
- a list/tuple of ints: those classes for every image;
- a LongTensor of shape (B,): one class per image, C_sel = 1.

``class_maps`` and ``grad_cam`` give maps at their layer's resolution (h, w); the
perturbation methods and ``random_maps`` at the input's (H, W). ``upsample`` brings maps to
the input size and ``minmax`` rescales each map to [0, 1]; the raw maps stay available.

Symbols (paper): A_k = channel k of the layer's features X_L, a_k^c = Grad-CAM's weight of
channel k for class c, Y^c = the pre-logit score of class c, R maps per class, N layers.
Models run in eval mode during attribution (BatchNorm must not mix the images of a batch).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, Union

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from . import layers as L
from .checks import (check_batch_size, check_choice, check_classes, check_float, check_images,
                     check_int, check_layer, check_model, check_tensor, require_features)
from .models import default_batch, fast_layout

Layer = Union[int, str, None]   # FA-CNN layer L in 1..N, a module name, or None (the last)


# -- shared helpers ------------------------------------------------------------------------

def upsample(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize (B, M, h, w) -> (B, M, *size), half-pixel centres (as cv2.resize)."""
    maps = check_tensor("maps", maps)
    if maps.dim() != 4 or not maps.is_floating_point():
        raise ValueError(f"maps must be float (B, M, h, w), got {maps.dtype} {tuple(maps.shape)}")
    size = _pair(size, "size")
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F_.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def minmax(maps: Tensor) -> Tensor:
    """Rescale every map (last two dims) to [0, 1]; a constant map becomes all zeros."""
    maps = check_tensor("maps", maps)
    if maps.dim() < 2 or maps.numel() == 0 or not maps.is_floating_point():
        raise ValueError(f"maps must be non-empty floats (..., h, w), got {maps.dtype} "
                         f"{tuple(maps.shape)}")
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    # a constant map has span 0 and numerator 0: clamp keeps it 0 instead of 0/0
    return (maps - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny)


def class_selection(classes, batch: int, num_classes: int, device=None) -> Tensor:
    """The class index of every output map: LongTensor (B, C_sel). Raises ValueError for a
    class outside 0..C-1 or a per-image tensor of the wrong length (facnn.checks)."""
    batch = check_int("batch", batch, 1)
    return check_classes(classes, batch, check_int("num_classes", num_classes, 1)).to(device)


def _pick(maps: Tensor, sel: Tensor) -> Tensor:
    """(B, C, h, w) maps of all classes -> (B, C_sel, h, w) of the selected ones."""
    if sel.shape[1] == maps.shape[1] and bool((sel == torch.arange(maps.shape[1],
                                                                      device=sel.device)).all()):
        return maps
    return maps.gather(1, sel[:, :, None, None].expand(-1, -1, *maps.shape[-2:]))


@contextmanager
def eval_mode(model: nn.Module):
    """Run in eval mode and restore the caller's mode afterwards."""
    was = check_model(model).training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _num_classes(model: nn.Module, x: Tensor) -> int:
    c = getattr(model, "num_classes", None)
    if c is None:
        with torch.no_grad():
            c = model(x[:1]).shape[1]
    return int(c)


def _layers(model: nn.Module, layers: Sequence[Layer]) -> list:
    if isinstance(layers, (str, int)) or layers is None or not len(layers):
        raise ValueError(f"layers={layers!r} must be a non-empty list, e.g. [1, {getattr(model, 'depth', 'N')}]")
    return [check_layer(model, l) for l in layers]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# -- intrinsic maps (FA-CNN, Theorem 1) ----------------------------------------------------

def class_maps(model: nn.Module, x: Tensor, layer: int | None = None, classes=None) -> Tensor:
    """FA-CNN's intrinsic class maps at layer L: L_c(i, j) = (1/R) sum_{floor(k/R)=c} A_k(i, j).

    One forward pass, no gradients, whatever C is (the paper's headline). At L = N, with the
    pooling head, the pixel mean of L_c is the score Y^c. Returns (B, C_sel, h_L, w_L).
    """
    require_features(model, "class_maps")
    check_images(x)
    return class_maps_layers(model, x, [check_layer(model, layer)], classes)[0]


def class_maps_layers(model: nn.Module, x: Tensor, layers: Sequence[int], classes=None) -> list[Tensor]:
    """``class_maps`` at several layers from the same single forward pass."""
    require_features(model, "class_maps")
    check_images(x)
    layers = _layers(model, layers)
    sel = class_selection(classes, len(x), model.num_classes, x.device)
    with eval_mode(model), torch.no_grad():
        feats = model.forward_features(x)   # [X_1 .. X_N], X_L: (B, K, h_L, w_L)
        return [_pick(L.class_average(feats[l - 1], model.num_classes), sel).float()
                for l in layers]


# -- Grad-CAM --------------------------------------------------------------------------------

@contextmanager
def _capture(model: nn.Module, names: Sequence[str]):
    """Record the outputs of the named modules during a forward pass (hooks removed after)."""
    store: dict[str, list[Tensor]] = {n: [] for n in names}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, i, out, n=n: store[n].append(out)) for n in names]
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


def _activations(model: nn.Module, x: Tensor, layers: list, target: str) -> tuple[list[Tensor], Tensor]:
    """One forward: the activations A at ``layers`` (in the graph) and the target (B, C)."""
    if all(isinstance(l, int) for l in layers):
        feats = model.forward_features(x)
        acts, scores = [feats[l - 1] for l in layers], model.forward_head(feats[-1])
    else:
        names = [l if isinstance(l, str) else f"layers.{l - 1}" for l in layers]
        with _capture(model, names) as store:
            scores = model(x)
        for n in names:
            if len(store[n]) != 1:
                raise ValueError(f"module {n!r} ran {len(store[n])} times in one forward; "
                                 f"Grad-CAM needs a module that runs once")
        acts = [store[n][0] for n in names]
    if target == "score":
        return acts, scores
    return acts, model.normalise(scores)


def grad_cam(model: nn.Module, x: Tensor, layer: Layer = None, classes=None,
             target: str = "score", relu: bool = True, batch_size: int = 32,
             class_chunk: int = 10) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at any layer: sum_k a_k^c A_k, optionally ReLU'd, with
    a_k^c = (1/Z) sum_ij dT^c / dA_k(i, j), Z = pixels of the layer.

    ``target`` T is "score" (the model's output: the pre-logit Y^c of the pooling head, the
    logit otherwise; Theorem 1 uses this) or "probability" (``model.normalise``: the
    L1-normalised Y or the softmax). ``layer`` is L in 1..N for models with
    forward_features, or a module name (e.g. "layer4" on CifarResNet, "net.layer4" on
    TorchvisionResNet). One forward per ``batch_size`` images; the classes' gradients come
    from one batched backward per ``class_chunk`` classes. Returns (B, C_sel, h, w).
    """
    return grad_cam_layers(model, x, [layer], classes, target, relu, batch_size, class_chunk)[0]


def grad_cam_layers(model: nn.Module, x: Tensor, layers: Sequence[Layer], classes=None,
                    target: str = "score", relu: bool = True, batch_size: int = 32,
                    class_chunk: int = 10) -> list[Tensor]:
    """``grad_cam`` at several layers, sharing the forward and backward passes."""
    check_model(model)
    check_images(x)
    if target not in ("score", "probability"):
        raise ValueError(f"unknown target {target!r}; choose 'score' (Y^c) or 'probability'")
    check_batch_size("batch_size", batch_size, optional=False)
    check_int("class_chunk", class_chunk, 1)
    layers = _layers(model, layers)
    sel = class_selection(classes, len(x), _num_classes(model, x), x.device)
    parts = [_grad_cam_batch(model, x[s], layers, sel[s], target, class_chunk)
             for s in _chunks(len(x), batch_size)]
    maps = [torch.cat(p) for p in zip(*parts)]
    return [m.clamp_min(0) if relu else m for m in maps]


def _grad_cam_batch(model, x, layers, sel, target, class_chunk) -> list[Tensor]:
    with eval_mode(model), torch.enable_grad():
        # input grad makes the graph exist even when the weights are frozen; it is not computed
        acts, out = _activations(model, x.detach().requires_grad_(True), layers, target)
        maps: list[list[Tensor]] = [[] for _ in layers]
        for s in _chunks(sel.shape[1], class_chunk):
            # one one-hot grad_output per selected class: (m, B, C)
            go = F_.one_hot(sel[:, s].T, out.shape[1]).to(out.dtype)
            grads = _batched_grad(out, acts, go)   # each (m, B, K, h, w)
            for i, (a, g) in enumerate(zip(acts, grads)):
                alpha = g.mean(dim=(-2, -1))                                # a_k^c: (m, B, K)
                maps[i].append(torch.einsum("mbk,bkhw->bmhw", alpha, a.detach()).float())
        return [torch.cat(m, dim=1) for m in maps]


def _batched_grad(out: Tensor, acts: list[Tensor], go: Tensor) -> tuple[Tensor, ...]:
    """d<out, go[j]>/d acts for every j: a vmap-batched backward (one pass for m targets)."""
    if go.shape[0] == 1:   # a plain backward is cheaper than vmap with a batch of one
        return tuple(g[None] for g in torch.autograd.grad(out, acts, go[0], retain_graph=True))
    return torch.autograd.grad(out, acts, go, retain_graph=True, is_grads_batched=True)


# -- perturbation methods ----------------------------------------------------------------------

def rise_masks(n_masks: int, size: tuple[int, int], cell: int = 7, p: float = 0.5, seed: int = 0,
               chunk: int = 256, device=None) -> Iterator[Tensor]:
    """RISE masks (Petsiuk et al. 2018), yielded in chunks (m, H, W) of floats in [0, 1].

    Each mask is a binary cell x cell grid (1 with probability p), upsampled bilinearly to
    (cell + 1) * ceil(H / cell) pixels and cropped at a random shift, so its edges are smooth
    and fall anywhere. Only the small grids and shifts of all N masks are drawn up front
    (seeded), so the masks do not depend on ``chunk``, and never all N exist at full size.
    """
    n_masks, cell, chunk = (check_int(k, v, 1) for k, v in
                            (("n_masks", n_masks), ("cell", cell), ("chunk", chunk)))
    check_float("p", p, 0.0, 1.0, lo_open=True)
    h, w = _pair(size, "size")
    g = torch.Generator().manual_seed(check_int("seed", seed))
    ch, cw = math.ceil(h / cell), math.ceil(w / cell)
    grids = (torch.rand(n_masks, 1, cell, cell, generator=g) < p).float()   # (N, 1, s, s)
    dy = torch.randint(0, ch, (n_masks,), generator=g)
    dx = torch.randint(0, cw, (n_masks,), generator=g)
    for s in _chunks(n_masks, chunk):
        up = upsample(grids[s].to(device), ((cell + 1) * ch, (cell + 1) * cw))[:, 0]
        rows = (dy[s, None] + torch.arange(h)).to(up.device)                # (m, H)
        cols = (dx[s, None] + torch.arange(w)).to(up.device)                # (m, W)
        idx = torch.arange(len(rows), device=up.device)[:, None, None]
        # bilinear weights sum to 1 up to rounding: clamp so masks stay in [0, 1]
        yield up[idx, rows[:, :, None], cols[:, None, :]].clamp_(0, 1)      # (m, H, W)


def rise(model: nn.Module, x: Tensor, classes=None, n_masks: int = 4000, cell: int = 7,
         p: float = 0.5, batch_size: int | None = None, seed: int = 0) -> Tensor:
    """RISE saliency: S_c = sum_i P_c(x * M_i) M_i / (N p), scored with model.probabilities.

    Masking multiplies the NORMALISED image, so a hidden pixel takes the dataset mean (0).
    The same N seeded masks serve every image of the batch; ``batch_size`` masked images
    go through the model per forward. ``cell`` is the grid side s (7 in the paper's RISE).
    Returns (B, C_sel, H, W).
    """
    check_model(model)
    check_images(x)
    check_int("n_masks", n_masks, 1)                 # RISE averages over N masks
    check_float("p", p, 0.0, 1.0, lo_open=True)      # the probability that a cell is kept
    check_int("cell", cell, 1)
    batch_size = check_batch_size("batch_size", batch_size) or default_batch(x)
    b, _, h, w = x.shape
    sel = class_selection(classes, b, _num_classes(model, x), x.device)
    sal = x.new_zeros(b, sel.shape[1], h, w, dtype=torch.float32)
    per = max(1, batch_size // b)   # masks per forward, shared by the b images
    with eval_mode(model), torch.no_grad():
        for masks in rise_masks(n_masks, (h, w), cell, p, seed, per, x.device):
            xm = fast_layout((x[:, None] * masks[None, :, None]).flatten(0, 1))  # (b*m, 3, H, W)
            prob = model.probabilities(xm).float().view(b, len(masks), -1)
            prob = prob.gather(2, sel[:, None, :].expand(-1, len(masks), -1))  # (b, m, C_sel)
            sal += torch.einsum("bmc,mhw->bchw", prob, masks)
    return sal / (n_masks * p)


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    try:
        pair = (v, v) if isinstance(v, int) else tuple(v)
        pair = tuple(check_int(name, t, 1) for t in pair)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name}={v!r} must be a positive int or a pair of them")
    return pair


def _starts(size: int, window: int, stride: int) -> Tensor:
    """Window starts 0, s, 2s, ... until one reaches the border (the last may be cut off,
    as in Captum's Occlusion), so every pixel is covered when stride <= window."""
    return torch.arange(math.ceil((size - window) / stride) + 1) * stride


def _coverage(starts: Tensor, window: int, size: int) -> Tensor:
    pos = torch.arange(size)
    return ((pos[None] >= starts[:, None]) & (pos[None] < starts[:, None] + window)).float()


def k_occlusion(model: nn.Module, x: Tensor, classes=None, window: int | tuple | None = None,
                stride: int | tuple | None = None, fill: float = 0.0, target: str = "score",
                batch_size: int | None = None) -> Tensor:
    """Sliding-window occlusion (Zeiler and Fergus 2014), the paper's K-OCC.

    S_c(i, j) = mean over windows w covering (i, j) of [T^c(x) - T^c(x with w set to fill)],
    T = the score Y^c (or the probability). ``fill`` is in normalised units: 0 is the dataset
    mean. Equals Captum's Occlusion with the same window, stride and baseline. Defaults:
    window = min(H, W) / 8 (4 px at 32x32, 28 at 224), stride = window / 2. Many windows
    (``batch_size`` occluded images) per forward. Returns (B, C_sel, H, W).
    """
    check_model(model)
    check_images(x)
    check_float("fill", fill)
    b, _, h, w = x.shape
    window = _pair(window if window is not None else max(1, round(min(h, w) / 8)), "window")
    stride = _pair(stride if stride is not None else max(1, window[0] // 2), "stride")
    if window[0] > h or window[1] > w:
        raise ValueError(f"window {window} is larger than the image {(h, w)}; choose a window "
                         f"of at most the image size")
    if any(s > k for s, k, n in zip(stride, window, (h, w)) if k < n):
        raise ValueError(f"stride {stride} > window {window} would leave pixels never occluded")
    if target not in ("score", "probability"):
        raise ValueError(f"unknown target {target!r}; choose 'score' or 'probability'")
    batch_size = check_batch_size("batch_size", batch_size) or default_batch(x)
    tops, lefts = _starts(h, window[0], stride[0]), _starts(w, window[1], stride[1])
    rows, cols = _coverage(tops, window[0], h), _coverage(lefts, window[1], w)   # (P_h, H), (P_w, W)
    n_pos = len(tops) * len(lefts)
    score = (lambda z: model(z)) if target == "score" else model.probabilities
    with eval_mode(model), torch.no_grad():
        base = score(x).float()
        sel = class_selection(classes, b, base.shape[1], x.device)
        base = base.gather(1, sel)                                        # (B, C_sel)
        sal = x.new_zeros(b, sel.shape[1], h * w, dtype=torch.float32)
        rows, cols = rows.to(x.device), cols.to(x.device)
        for s in _chunks(b * n_pos, batch_size):
            idx = torch.arange(s.start, s.stop, device=x.device)
            img, pos = idx // n_pos, idx % n_pos
            occ = rows[pos // len(lefts), :, None] * cols[pos % len(lefts), None, :]  # (m, H, W)
            xo = fast_layout(torch.where(occ[:, None] > 0, torch.as_tensor(fill, dtype=x.dtype), x[img]))
            drop = base[img] - score(xo).float().gather(1, sel[img])      # (m, C_sel)
            for i in img.unique():
                here = img == i
                sal[i] += drop[here].T @ occ[here].flatten(1)             # (C_sel, H*W)
        count = rows.sum(0)[:, None] * cols.sum(0)[None, :]               # windows per pixel
    return sal.view(b, -1, h, w) / count.clamp_min(1)


# -- random baseline ------------------------------------------------------------------------

def random_maps(model: nn.Module, x: Tensor, classes=None, seed: int = 0) -> Tensor:
    """The RAND baseline: i.i.d. uniform maps (B, C_sel, H, W) from a seeded generator."""
    check_model(model)
    check_images(x)
    sel = class_selection(classes, len(x), _num_classes(model, x))
    g = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.rand(*sel.shape, *x.shape[-2:], generator=g).to(x.device)


# -- registry ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One attribution method of Figure 4: adding a method is one entry of METHODS."""
    fn: Callable[..., Tensor]     # (model, x, classes=..., **kw) -> (B, C_sel, h, w)
    label: str                    # as the paper writes it
    layered: bool = False         # reads the FA-CNN layer L (``layer=``)
    seeded: bool = False          # each seed draws other maps (RAND: one curve per seed)
    can_be_negative: bool = False
    expensive: bool = False       # many forward passes per image: worth storing its maps


# FA-CNN's class maps are means of ReLU outputs and Grad-CAM ends in a ReLU (relu=True, the
# benchmark's setting); RISE is a probability-weighted mean of masks in [0, 1]; K-OCC's drops
# of the class score when a window is occluded take both signs.
METHODS: dict[str, Method] = {
    "fa-cnn": Method(class_maps, "FA-CNN", layered=True),
    "grad-cam": Method(grad_cam, "Grad-CAM", layered=True),
    "rise": Method(rise, "RISE", expensive=True),
    "k-occ": Method(k_occlusion, "K-OCC", can_be_negative=True, expensive=True),
    "random": Method(random_maps, "RAND", seeded=True),
}
LAYERED = {name for name, m in METHODS.items() if m.layered}


def attribute(method: str, model: nn.Module, x: Tensor, classes=None, layer: Layer = None,
              **kw) -> Tensor:
    """Raw maps of ``method`` (a key of METHODS); ``layer`` only reaches layered methods."""
    check_choice("attribution method", method, METHODS)
    check_model(model)
    if METHODS[method].layered:
        kw["layer"] = layer
    return METHODS[method].fn(model, x, classes=classes, **kw)
