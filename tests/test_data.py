"""Datasets and the tensor-resident loader."""
import numpy as np
import pytest
import torch

from facnn import data as D
from facnn import loaders as Ld


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
    out = Ld.augment(x, centre, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(out, x)
    out = Ld.augment(x, centre, torch.ones(3, dtype=torch.bool))
    assert torch.equal(out, x.flip(-1))
    shifted = Ld.augment(x, torch.tensor([[0, 4]] * 3), torch.zeros(3, dtype=torch.bool))
    assert torch.equal(shifted[:, :, 4:], x[:, :, :4]) and (shifted[:, :, :4] == 0).all()


def test_normalise_roundtrip():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    z = D.normalise(x, "cifar10")
    torch.testing.assert_close(D.denormalise(z, "cifar10"), x.float() / 255)


def test_loader_order_depends_only_on_seed_and_epoch():
    ds = D.make_shapes(230, seed=0)
    loader = Ld.TensorLoader(ds, 50, train=True, seed=1)
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
    ranks = [Ld.TensorLoader(ds, 20, True, seed=0, rank=r, world=2) for r in (0, 1)]
    seen = torch.cat([y for r in ranks for _, y in r])
    single = torch.cat([y for _, y in Ld.TensorLoader(ds, 20, True, seed=0)])
    assert len(seen) == 200 and sorted(seen.tolist()) == sorted(single.tolist())


@pytest.mark.parametrize("n, batch, world, steps", [
    (210, 20, 2, 5),    # 11 batches: the short 11th is dropped, or rank 0 steps once more
    (200, 20, 3, 3),    # 10 batches over 3 ranks: 9 used
    (210, 20, 1, 11),   # one process keeps every batch
])
def test_every_rank_steps_the_same_number_of_times(n, batch, world, steps):
    """Under DDP a rank with one batch more would wait forever in the all-reduce."""
    ds = D.make_shapes(n, seed=0)
    ranks = [Ld.TensorLoader(ds, batch, True, seed=0, rank=r, world=world) for r in range(world)]
    assert [len(r) for r in ranks] == [steps] * world
    assert [sum(1 for _ in r) for r in ranks] == [steps] * world


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



# -- held-out validation split (rates chosen without the test split) ----------------------

@pytest.mark.parametrize("per_class", [1, 20, 99])
def test_hold_out_is_balanced_disjoint_and_fixed(per_class):
    data = D.make_shapes(1000, seed=3)
    rest, held = D.hold_out(data, per_class)
    assert len(rest) + len(held) == len(data)
    assert held.labels.bincount(minlength=10).tolist() == [per_class] * 10
    # disjoint and covering: every image lands in exactly one part
    key = lambda ds: sorted(map(bytes, ds.images.flatten(1).numpy()))
    assert sorted(key(rest) + key(held)) == key(data)
    again = D.hold_out(data, per_class)[1]
    assert torch.equal(again.images, held.images)          # same split every call
    assert not torch.equal(D.hold_out(data, per_class, seed=1)[1].images, held.images)


@pytest.mark.parametrize("per_class", [100, 1000])
def test_hold_out_refuses_to_empty_a_class(per_class):
    with pytest.raises(ValueError, match="holdout=.*choose holdout below 100"):
        D.hold_out(D.make_shapes(1000, seed=3), per_class)


def test_config_holdout_never_reads_the_test_split(monkeypatch):
    from facnn.config import preset
    cfg = preset("smoke", "shapes", "fa-pool", holdout=10, shapes_train=200)
    calls = []
    real = D.load
    monkeypatch.setattr(D, "load", lambda name, split, *a, **k: calls.append(split) or real(name, split, *a, **k))
    train, held = D.load_config_data(cfg)
    assert calls == ["train"] and len(held) == 100 and len(train) == 100
    assert cfg.hash() != preset("smoke", "shapes", "fa-pool", shapes_train=200).hash()
