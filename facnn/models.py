"""FA-CNN, Vanilla-CNN and the ResNet baselines, built by name (SPEC sections 1-2, Table 1).

Every model returns class scores (B, C) from ``model(x)``: the non-negative pre-logits Y
for the pooling head, logits for linear heads. ``model.probabilities(x)`` gives the
matching distribution and ``model.loss(scores, y)`` the matching loss. Inputs are
normalised images (B, 3, H, W); they are checked at the boundary so bad input fails with a
message instead of a NaN.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from . import layers as L
from .checks import check_choice, check_float, check_int
from .config import Config, preset


class Classifier(nn.Module):
    """Shared behaviour: input checks, the head's distribution and loss."""

    head: str = "linear"   # "pool" (L1-normalised 3D GAP) or "linear" (softmax)
    num_classes: int
    min_size: int = 1      # smallest input side the model accepts
    eps: float = 1e-6
    checks_inputs: bool = True   # False inside facnn's training loop (see inputs_unchecked)

    def check_input(self, x: Tensor) -> None:
        if not self.checks_inputs:
            return
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor of images (B, 3, H, W), got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}; "
                             f"add a batch dimension with x[None] or convert to RGB")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is too small for this model: it pools "
                             f"down by {self.min_size}x; use inputs of at least "
                             f"{self.min_size}x{self.min_size} or fewer pools (pool_every)")
        if not x.is_floating_point():
            raise TypeError(f"expected float images normalised with the dataset's mean and std, "
                            f"got {x.dtype}; use facnn.data.normalise(x)")
        if torch.compiler.is_compiling():
            return
        if not torch.isfinite(x).all():
            raise ValueError("the input batch contains NaN or inf; check the data pipeline "
                             "(facnn.data normalises uint8 images, which are always finite)")

    def probabilities(self, x: Tensor) -> Tensor:
        """The output distribution: L1-normalised pre-logits (pool) or softmax (linear)."""
        return self.normalise(self(x))

    def normalise(self, scores: Tensor) -> Tensor:
        if self.head == "pool":
            return L.l1_normalise(scores, self.eps)
        return F_.softmax(scores.float(), dim=1)

    def loss(self, scores: Tensor, y: Tensor) -> Tensor:
        if self.head == "pool":
            return L.l1_nll_loss(scores, y, self.eps)
        return F_.cross_entropy(scores.float(), y)


class FACNN(Classifier):
    """FA-CNN and its Vanilla twin: N layers of K = C*R channels, max-pool after every
    ``pool_every`` layers (not after the last), then a head.

    Args:
        num_classes: C.
        maps_per_class: R.
        depth: N (24 in the paper).
        pool_every: layers between max-pools (8 in the paper: pools after 8 and 16).
        width: K; defaults to C*R and must equal it for the pooling head.
        skip: "dampened" (FA-CNN) or "residual" (Vanilla-CNN).
        head: "pool" (3D GAP + L1) or "linear" (GAP + Linear(K, C) + softmax).
        block: form of F, "single" or "double".
        stem: "none" (32x32 inputs) or "imagenet" (conv7x7/2 + maxpool, 224 -> 56).
    """

    def __init__(self, num_classes: int, maps_per_class: int = 20, depth: int = 24,
                 pool_every: int = 8, width: int | None = None, skip: str = "dampened",
                 head: str = "pool", block: str = "single", stem: str = "none",
                 eps: float = 1e-6):
        super().__init__()
        num_classes = check_int("num_classes", num_classes, 1)
        maps_per_class = check_int("maps_per_class", maps_per_class, 1)
        depth = check_int("depth", depth, 1)
        pool_every = check_int("pool_every", pool_every, 1)
        width = None if width is None else check_int("width", width, 1)
        check_choice("skip", skip, ("dampened", "residual"))
        check_choice("block", block, tuple(L.BLOCKS))
        check_choice("stem", stem, ("none", "imagenet"))
        eps = check_float("eps", eps, 0.0, lo_open=True)
        k = num_classes * maps_per_class if width is None else width
        if head == "pool" and k != num_classes * maps_per_class:
            raise ValueError(f"width K={k} does not match C*R = {num_classes}*{maps_per_class}; "
                             f"the pooling head needs exactly R channels per class")
        if depth % pool_every:
            raise ValueError(f"depth N={depth} is not a multiple of pool_every={pool_every}; the "
                             f"paper's pattern pools after every {pool_every} layers, so choose "
                             f"N in {[pool_every * i for i in range(1, 5)]}... or change pool_every")
        if head not in ("pool", "linear"):
            raise ValueError(f"unknown head {head!r}; choose pool or linear")
        self.num_classes, self.maps_per_class, self.depth = num_classes, maps_per_class, depth
        self.width, self.pool_every, self.head, self.skip, self.eps = k, pool_every, head, skip, eps
        self.stem = L.ImageNetStem(k) if stem == "imagenet" else nn.Identity()
        c0 = k if stem == "imagenet" else 3
        self.layers = nn.ModuleList(
            L.SkipLayer(c0 if i == 1 else k, k, i, skip, block) for i in range(1, depth + 1))
        self.num_pools = depth // pool_every - 1
        self.min_size = 2 ** self.num_pools * (4 if stem == "imagenet" else 1)
        self.fc = nn.Linear(k, num_classes) if head == "linear" else None

    def pools_after(self, layer: int) -> bool:
        """Whether a max-pool follows layer L (after every pool_every layers, not after N)."""
        return layer % self.pool_every == 0 and layer < self.depth

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """[X_1 .. X_N], each (B, K, H_L, W_L), taken after the layer's ReLU and before any
        following max-pool (SPEC 1: the pool acts on X_8 before it enters layer 9)."""
        self.check_input(x)
        feats = []
        h = self.stem(x)
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
            if self.pools_after(layer.layer):
                h = F_.max_pool2d(h, 2)
        return feats

    def forward_head(self, x_n: Tensor) -> Tensor:
        """Scores from X_N: Y (B, C) for the pooling head, logits for the linear head."""
        if self.fc is None:
            return L.class_pool(x_n, self.num_classes)
        return self.fc(x_n.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x)[-1])


# -- ResNets ------------------------------------------------------------------------------

class _Basic(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.short = _shortcut(c_in, c, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.short = _shortcut(c_in, c * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.short(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


_RESNET = {"resnet18": (_Basic, (2, 2, 2, 2)), "resnet50": (_Bottleneck, (3, 4, 6, 3))}


class CifarResNet(Classifier):
    """ResNet-18/50 in the usual CIFAR form: 3x3 stride-1 stem, no max-pool (SPEC 2).
    ``width`` is the first stage's channels (64 in the standard nets)."""

    def __init__(self, name: str, num_classes: int, width: int = 64):
        super().__init__()
        block, counts = _RESNET[name]
        num_classes, width = check_int("num_classes", num_classes, 1), check_int("width", width, 1)
        self.num_classes, self.min_size = num_classes, 8
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, c_in = [], width
        for i, n in enumerate(counts):
            c = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, c, 2 if (j == 0 and i > 0) else 1))
                c_in = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(h.mean(dim=(2, 3)))


class TorchvisionResNet(Classifier):
    """torchvision's ResNet-18/50 (for ImageNet-size inputs: 7x7 stride-2 stem, max-pool),
    with the Classifier API. ``width`` is the first stage's channels: 64 is torchvision's
    own network; other widths scale every stage alike (see torchvision_resnet). The
    torchvision module is ``self.net``; its stages are reachable as ``net.layer4`` etc."""

    def __init__(self, name: str, num_classes: int, width: int = 64):
        super().__init__()
        num_classes, width = check_int("num_classes", num_classes, 1), check_int("width", width, 1)
        self.net = torchvision_resnet(name, num_classes, width)
        self.num_classes, self.min_size, self.width = num_classes, 32, width

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.net(x)


def torchvision_resnet(name: str, num_classes: int, width: int = 64) -> nn.Module:
    """torchvision's ``resnet18``/``resnet50`` with stages of width, 2 width, 4 width and
    8 width channels (times the block's expansion). torchvision fixes 64; a reduced profile
    asks for fewer (cpu: 16), so the stem, the four stages and the classifier are rebuilt
    with torchvision's own ``_make_layer`` and initialisation: same blocks, same strides,
    same module names, only narrower."""
    import torchvision
    net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if width == 64:
        return net
    block, counts = type(net.layer1[0]), _RESNET[name][1]
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i, n in enumerate(counts):
        setattr(net, f"layer{i + 1}", net._make_layer(block, width * 2 ** i, n, stride=1 if i == 0 else 2))
    net.fc = nn.Linear(width * 8 * block.expansion, num_classes)
    for m in net.modules():   # torchvision.models.ResNet.__init__'s initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


@contextmanager
def inputs_unchecked(model: nn.Module) -> Iterator[nn.Module]:
    """Skip the input checks of every Classifier in ``model`` inside the block: the training
    loop feeds data facnn made itself, and the NaN check reads the batch back to the host
    (a sync per step on a GPU). Calls from user code keep their checks."""
    parts = [m for m in model.modules() if isinstance(m, Classifier)]
    before = [m.checks_inputs for m in parts]
    try:
        for m in parts:
            m.checks_inputs = False
        yield model
    finally:
        for m, b in zip(parts, before):
            m.checks_inputs = b


def default_batch(x: Tensor) -> int:
    """Images per forward for the many-forward methods (RISE, occlusion, pixel removal).
    Measured on 2 CPU cores: 271-307 images/s at 16-64 images per forward, 190 at 256."""
    return 256 if x.is_cuda else 64


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, in eval mode: a fresh model's
    eval-mode BN is the identity, so checks (tests, benchmarks) would not see the layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def fast_layout(x: Tensor) -> Tensor:
    """channels_last: 15-28 % faster convolutions on CPU and CUDA for these models."""
    return x.contiguous(memory_format=torch.channels_last)


# -- registry -----------------------------------------------------------------------------

def build_model(name: str, num_classes: int, **overrides: Any) -> Classifier:
    """Build a Table 1 model by name: fa-pool, fa-linear, vanilla, resnet18, resnet50.

    ``overrides`` are FACNN arguments (maps_per_class, depth, pool_every, width, block,
    stem, eps) or, for ResNets, ``form`` ("cifar" or "torchvision") and ``width``.
    """
    if isinstance(name, Config):
        raise TypeError("build_model takes a model name such as 'fa-pool'; to build the model "
                        "a Config describes, call facnn.models.model_from_config(cfg)")
    num_classes = check_int("num_classes", num_classes, 1)
    if name in ("fa-pool", "fa-linear", "vanilla"):
        head = "pool" if name == "fa-pool" else "linear"
        skip = "residual" if name == "vanilla" else "dampened"
        allowed = {"maps_per_class", "depth", "pool_every", "width", "block", "stem", "eps"}
        _check_kwargs(name, overrides, allowed)
        return FACNN(num_classes, skip=skip, head=head, **overrides)
    if name in _RESNET:
        _check_kwargs(name, overrides, {"form", "width"})
        check_choice("form", overrides.get("form", "cifar"), ("cifar", "torchvision"))
        if overrides.get("form", "cifar") == "torchvision":
            return TorchvisionResNet(name, num_classes, overrides.get("width", 64))
        return CifarResNet(name, num_classes, overrides.get("width", 64))
    raise ValueError(f"unknown model {name!r}; choose one of fa-pool, fa-linear, vanilla, "
                     f"resnet18, resnet50")


def _check_kwargs(name: str, given: dict, allowed: set) -> None:
    bad = sorted(set(given) - allowed)
    if bad:
        raise ValueError(f"{name} does not take {', '.join(bad)}; it takes {', '.join(sorted(allowed))}")


def model_from_config(cfg: Config) -> Classifier:
    """The model a Config describes."""
    cfg.validate()
    if cfg.model.startswith("resnet"):
        return build_model(cfg.model, cfg.num_classes, form=cfg.resnet_form, width=cfg.resnet_width)
    return build_model(cfg.model, cfg.num_classes, maps_per_class=cfg.maps_per_class,
                       depth=cfg.depth, pool_every=cfg.pool_every, width=cfg.width,
                       block=cfg.block, stem=cfg.stem, eps=cfg.eps)
