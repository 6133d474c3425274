"""Datasets and the tensor-resident loader."""
import numpy as np
import pytest
import torch

from facnn import data as D


def test_shapes_is_deterministic_and_has_masks():
    a, b = D.make_shapes(40, seed=3), D.make_shapes(40, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.masks.shape == (40, 32, 32) and a.masks.dtype == torch.bool
    area = a.masks.float().mean(dim=(1, 2))
    assert area.min() > 0.02 and area.max() < 0.5
    assert sorted(a.labels.unique().tolist()) == list(range(10))
    assert not torch.equal(D.make_shapes(40, seed=4).images, a.images)


def test_shapes_object_pixels_carry_the_class_colour():
    ds = D.make_shapes(50, seed=0)
    for i in range(10):
        name = ds.classes[int(ds.labels[i])]
        inside = ds.images[i].float()[:, ds.masks[i]].mean(1) / 255  # (3,)
        if name.startswith("red"):
            assert inside[0] > 0.6 and inside[1] < 0.3
        if name.startswith("blue"):
            assert inside[2] > 0.6 and inside[0] < 0.35


def test_augment_identity_crop_and_flip():
    x = torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8)
    centre = torch.full((3, 2), 4)
    out = D.augment(x, centre, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(out, x)
    out = D.augment(x, centre, torch.ones(3, dtype=torch.bool))
    assert torch.equal(out, x.flip(-1))
    shifted = D.augment(x, torch.tensor([[0, 4]] * 3), torch.zeros(3, dtype=torch.bool))
    assert torch.equal(shifted[:, :, 4:], x[:, :, :4]) and (shifted[:, :, :4] == 0).all()


def test_normalise_roundtrip():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    z = D.normalise(x, "cifar10")
    torch.testing.assert_close(D.denormalise(z, "cifar10"), x.float() / 255)


def test_loader_order_depends_only_on_seed_and_epoch():
    ds = D.make_shapes(230, seed=0)
    loader = D.TensorLoader(ds, 50, train=True, seed=1)
    loader.set_epoch(2)
    full = list(loader)
    assert len(full) == len(loader) == 5 and sum(len(y) for _, y in full) == 230
    loader.set_epoch(2, start_batch=3)
    tail = list(loader)
    assert len(tail) == 2
    for (xa, ya), (xb, yb) in zip(full[3:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    loader.set_epoch(3)
    assert not torch.equal(next(iter(loader))[1], full[0][1])


def test_loader_shards_batches_across_ranks():
    ds = D.make_shapes(200, seed=0)
    ranks = [D.TensorLoader(ds, 20, True, seed=0, rank=r, world=2) for r in (0, 1)]
    seen = torch.cat([y for r in ranks for _, y in r])
    single = torch.cat([y for _, y in D.TensorLoader(ds, 20, True, seed=0)])
    assert len(seen) == 200 and sorted(seen.tolist()) == sorted(single.tolist())


@pytest.mark.realdata
def test_cifar_npz_subset(cifar10_subset):
    train = D.load("cifar10", "train", cifar10_subset, subset="200x100")
    test = D.load("cifar10", "test", cifar10_subset, subset="200x100")
    assert train.images.shape == (2000, 3, 32, 32) and len(test) == 1000
    assert train.classes[3] == "cat" and np.bincount(train.labels.numpy()).tolist() == [200] * 10
    mean = train.images.float().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor(D.STATS["cifar10"][0]), atol=0.02, rtol=0)


def test_absent_dataset_offline_lists_three_ways(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        D.load("cifar100", "train", tmp_path)
    msg = str(e.value)
    assert "unpack.py cifar100" in msg and "download=true" in msg and "cifar-100-python" in msg


def test_absent_subset_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="--per-class 50 10"):
        D.load("cifar10", "test", tmp_path, subset="50x10")


@pytest.mark.parametrize("name,split,message", [("mnist", "train", "unknown dataset"),
                                                ("shapes", "val", "unknown split")])
def test_bad_dataset_names(name, split, message):
    with pytest.raises(ValueError, match=message):
        D.load(name, split)

