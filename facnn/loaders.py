"""Loaders: the batches of an epoch in an order fixed by (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted one would.

In-memory datasets (CIFAR, shapes, ImageNet-20) are served by :class:`TensorLoader`, which
augments on the device, as airbench does: no DataLoader workers for small images.
ImageNet-100 streams from its folders through :class:`FolderLoader` (a DataLoader with
workers over :class:`facnn.imagenet.FolderDataset`).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from .data import ArrayDataset, normalise
from .imagenet import FolderDataset


class Epochs:
    """The batches of an epoch, ``start:start + batch_size`` of an order that depends only on
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would. With
    ``world > 1`` (DDP) rank r takes every ``world``-th batch, and the last batches that do
    not split evenly over the ranks are dropped: every rank steps the same number of times, or
    DDP's gradient all-reduce waits forever for the rank that has finished."""

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
        if self.world > 1:
            stops = stops[:len(stops) - len(stops) % self.world]
        return stops[self.rank::self.world]

    def __len__(self) -> int:
        return len(self._mine())

    def _next_pass(self) -> tuple[list[int], torch.Generator]:
        """The batch starts this pass serves and the generator of the epoch's random draws;
        the pass after it starts at batch 0."""
        start_batch, self.start_batch = self.start_batch, 0
        return self._mine()[start_batch:], torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)


class TensorLoader(Epochs):
    """Batches of normalised, augmented images from a uint8 tensor held on ``device``, in the
    order of :class:`Epochs`. ``augmentation`` for training: "pad-crop" (CIFAR's random crop
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


class EpochBatchSampler(Epochs, torch.utils.data.Sampler):
    """Batches of keys in the order of :class:`Epochs`: indices, or when training (index,
    seed) pairs, the seed drawing that image's random transform."""

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
