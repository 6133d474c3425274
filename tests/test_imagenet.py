"""ImageNet subsets (ImageNet-100, ImageNet-20) through one ImageFolder code path: class
lists, clear errors on bad folders, both loader kinds, exact mid-epoch resume, and the real
ImageNet-20 folder."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facnn.checkpoint as CK
import facnn.train as T
from facnn import data as D
from facnn import imagenet as IN, loaders as Ld
from facnn import preset
from facnn.config import table1_cells

WNIDS = [w for w, _, _ in IN.IMAGENET20]


def write_tree(root: Path, wnids=WNIDS, n_train=3, n_val=1, size=16) -> Path:
    """A tiny ImageFolder tree: train/<wnid>/*.jpg and val/<wnid>/*.jpg, one colour per class."""
    rng = np.random.default_rng(0)
    for c, w in enumerate(wnids):
        for split, n in (("train", n_train), ("val", n_val)):
            (root / split / w).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.array([c * 12 % 256, 255 - c * 12 % 256, (c * 40) % 256])
                img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / w / f"{w}_{i}.jpg", quality=90)
    return root


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "imagenet20")


def load_tensor(root, **kw):
    return IN.load_folder("imagenet20", "train", root, 16, **kw)


def load_workers(root, **kw):
    root = IN.imagenet_root("imagenet20", root)
    ds = IN.FolderDataset("imagenet20", root, "train", IN.class_list("imagenet20", root, **kw), 16)
    return [ds[i] for i in range(len(ds))]


def _drop_folder(root):
    for p in (root / "train" / WNIDS[3]).iterdir():
        p.unlink()
    (root / "train" / WNIDS[3]).rmdir()
    return {}


def _short_list(root):
    (root / "list.txt").write_text("\n".join(WNIDS[:19]))
    return {"classes_file": str(root / "list.txt")}


def _twice(root):
    (root / "list.json").write_text(json.dumps({"classes": WNIDS[:19] + WNIDS[:1]}))
    return {"classes_file": str(root / "list.json")}


def _garbage(root):
    (root / "train" / WNIDS[5] / f"{WNIDS[5]}_1.jpg").write_bytes(b"not a jpeg at all")
    return {}


def _truncated(root):
    path = root / "train" / WNIDS[7] / f"{WNIDS[7]}_0.jpg"
    path.write_bytes(path.read_bytes()[:40])
    return {}


def _empty(root):
    for p in (root / "train" / WNIDS[2]).iterdir():
        p.unlink()
    return {}


@pytest.mark.parametrize("read", [load_tensor, load_workers], ids=["tensor", "workers"])
@pytest.mark.parametrize("spoil,error,pattern", [
    (_drop_folder, FileNotFoundError, rf"class folder .*train/{WNIDS[3]} is missing \(1 of the 20"),
    (_short_list, ValueError, r"list\.txt has the wrong length: expected 20 wnids for imagenet20, got 19"),
    (_twice, ValueError, rf"names {WNIDS[0]} more than once"),
    (_garbage, ValueError, rf"image .*{WNIDS[5]}_1\.jpg does not decode"),
    (_truncated, ValueError, rf"image .*{WNIDS[7]}_0\.jpg does not decode"),
    (_empty, ValueError, rf"class folder .*train/{WNIDS[2]} holds no images"),
], ids=["missing-folder", "short-list", "duplicate", "garbage", "truncated", "empty-folder"])
def test_bad_folders_name_the_problem(tmp_path, read, spoil, error, pattern):
    root = write_tree(tmp_path / "imagenet20")
    kw = spoil(root)
    with pytest.raises(error, match=pattern) as e:
        read(tmp_path, **kw)   # data_root = the folder above, as with data/imagenet20
    if error is FileNotFoundError:
        assert str(root / "train") in str(e.value)


def test_absent_imagenet20_lists_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "shared_data_dir", lambda: None)   # as on a machine without ../shared
    with pytest.raises(FileNotFoundError) as e:
        IN.imagenet_root("imagenet20", tmp_path / "data")
    msg = str(e.value)
    assert str(tmp_path / "data" / "imagenet20") in msg and str(tmp_path / "data") in msg
    assert "shared/data" in msg and "python -m facnn data get imagenet20" in msg
    with pytest.raises(FileNotFoundError, match="ILSVRC-2012"):
        IN.imagenet_root("imagenet100", tmp_path / "data")


def test_imagenet100_class_choice_is_seeded(tmp_path):
    for i in range(120):
        (tmp_path / "train" / f"n{i:08d}").mkdir(parents=True)
    a = IN.class_list("imagenet100", tmp_path, seed=0)
    assert a == IN.class_list("imagenet100", tmp_path, seed=0) and len(a) == 100 and a == sorted(a)
    assert (tmp_path / "imagenet100_classes.txt").read_text().split() == a
    assert IN.class_list("imagenet100", tmp_path, tmp_path / "imagenet100_classes.txt") == a
    assert a != IN.class_list("imagenet100", tmp_path, seed=1)
    with pytest.raises(FileNotFoundError, match="ILSVRC"):
        IN.class_list("imagenet100", tmp_path / "nowhere")


def test_a_runs_seed_never_changes_its_imagenet100_classes(tmp_path):
    write_tree(tmp_path, wnids=[f"n{i:08d}" for i in range(120)], n_train=1, n_val=1)
    cfg = lambda seed: preset("smoke", "imagenet100", "fa-pool", data_root=str(tmp_path), image_size=16, seed=seed)
    first = IN.class_list("imagenet100", tmp_path, seed=IN.CLASS_CHOICE_SEED)
    for seed in (0, 1, 2):
        assert [ds.wnids for ds in D.load_config_data(cfg(seed))] == [first, first]
        assert T._imagenet_loaders(cfg(seed), torch.device("cpu"), 0, 1)[0].dataset.wnids == first


def test_both_paths_serve_the_same_classes_and_eval_pixels(tree):
    cached = IN.load_folder("imagenet20", "test", tree, 16)
    assert cached.wnids == WNIDS and cached.classes[9] == "crate" and cached.imagenet_index[9] == 519
    ds = IN.FolderDataset("imagenet20", tree, "val", WNIDS, 16)
    x, y = zip(*(ds[i] for i in range(len(ds))))
    assert list(y) == cached.labels.tolist() == list(range(20))
    # the cache holds the eval transform's pixels
    torch.testing.assert_close(D.normalise(cached.images, "imagenet20"), torch.stack(x))


def test_folder_loader_order_depends_only_on_seed_and_epoch(tree):
    ds = IN.FolderDataset("imagenet20", tree, "train", WNIDS, 16)
    loader = Ld.FolderLoader(ds, 8, True, seed=1, drop_last=True)
    assert len(loader) == 60 // 8
    loader.set_epoch(2)
    full = list(loader)
    loader.set_epoch(2, start_batch=5)
    tail = list(loader)
    assert len(full) == 7 and len(tail) == 2 and len(loader) == 7
    for (xa, ya), (xb, yb) in zip(full[5:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    loader.set_epoch(3)
    assert not torch.equal(next(iter(loader))[1], full[0][1])
    # workers change nothing: each image's crop and flip come from its own seed
    forked = Ld.FolderLoader(ds, 8, True, seed=1, drop_last=True, num_workers=2)
    forked.set_epoch(2)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, forked))


def test_resized_crop_draws_and_identity():
    g = torch.Generator().manual_seed(0)
    boxes = Ld.resized_crop_boxes(2000, 84, 84, g)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 84).all() and (boxes[:, 3] <= 84).all()
    area = w * h / 84 ** 2
    assert area.min() >= 0.07 and area.max() <= 1 and (w / h).min() >= 0.7 and (w / h).max() <= 1.45
    x = torch.randint(0, 256, (3, 3, 84, 84), dtype=torch.uint8)
    whole = torch.tensor([[0.0, 0, 84, 84]] * 3)
    out = Ld.augment_resized_crop(x, whole, torch.tensor([False, True, False]), 84)
    torch.testing.assert_close(out[0], x[0].float() / 255, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], x[1].flip(-1).float() / 255, atol=1e-6, rtol=0)
    corner = Ld.augment_resized_crop(x, torch.tensor([[0.0, 0, 42, 42]] * 3), torch.zeros(3, dtype=torch.bool), 42)
    torch.testing.assert_close(corner, x[:, :, :42, :42].float() / 255, atol=1e-6, rtol=0)


def test_presets_for_imagenet20():
    cpu = preset("cpu", "imagenet20", "fa-pool")
    assert (cpu.depth, cpu.pool_every, cpu.maps_per_class, cpu.channels) == (9, 3, 2, 40)
    # fp32: bf16 is emulated (6-8x slower) on CPUs without AVX512-BF16 (facnn.config)
    assert (cpu.stem, cpu.image_size, cpu.num_classes, cpu.precision) == ("imagenet", 84, 20, "fp32")
    r18 = preset("cpu", "imagenet20", "resnet18")
    assert (r18.resnet_form, r18.resnet_width) == ("torchvision", 16)
    smoke = preset("smoke", "imagenet20", "fa-pool")
    assert (smoke.depth, smoke.channels, smoke.epochs) == (4, 20, 1)
    assert [m for m, _ in table1_cells("cpu", "imagenet20")] == ["fa-pool", "fa-linear", "vanilla", "resnet18"]
    assert len(table1_cells("cpu", "imagenet100")) == 7
    assert preset("cpu", "imagenet100", "fa-pool").image_size == 224


def _kill_after_second_save(monkeypatch):
    real_save, calls = T.save_checkpoint, []

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed right after the second mid-epoch save
    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    return real_save


@pytest.mark.parametrize("loader", ["tensor", "workers"])
def test_mid_epoch_resume_is_bitwise(tmp_path, monkeypatch, loader):
    """Both loader kinds take set_epoch(epoch, start_batch): a run killed mid-epoch resumes
    from that batch and ends with the weights of an uninterrupted run."""
    root = write_tree(tmp_path / "data" / "imagenet20")

    def cfg(out, **kw):
        return preset("smoke", "imagenet20", "fa-pool", data_root=str(tmp_path / "data"), image_size=16,
                      batch_size=10, epochs=2, out_dir=str(tmp_path / out), progress=False,
                      loader=loader, num_workers=0, **kw)
    straight = cfg("a")
    T.train(straight)
    cut = cfg("b", save_every_s=0.0)
    real_save = _kill_after_second_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        T.train(cut)
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    ckpt = CK.load_checkpoint(T.run_dir(cut) / "checkpoint.pt", cut)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 2)
    T.train(cut)
    a, b = (CK.load_checkpoint(T.run_dir(c) / "checkpoint.pt", c)["model"] for c in (straight, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert root.is_dir()


# -- the real ImageNet-20 (../shared/data/imagenet20) ------------------------------------

@pytest.fixture(scope="module")
def imagenet20() -> Path:
    shared = D.shared_data_dir()
    root = shared / "imagenet20" if shared else None
    if root is None or not (root / "train").is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must have ../shared/data/imagenet20: real-data tests may not skip in CI")
        pytest.skip("../shared/data/imagenet20 is absent (real data); CI has it")
    return root


@pytest.mark.realdata
def test_real_imagenet20_through_both_paths(imagenet20):
    meta = json.loads((imagenet20 / "classes.json").read_text())
    assert [(c["wnid"], c["imagenet_index"], c["name"]) for c in meta["classes"]] == list(IN.IMAGENET20)
    assert D.STATS["imagenet20"] == (tuple(meta["train_mean"]), tuple(meta["train_std"]))
    train = D.load("imagenet20", "train", imagenet20.parent, image_size=84)
    test = D.load("imagenet20", "test", imagenet20.parent, image_size=84)
    assert train.images.shape == (10_000, 3, 84, 84) and test.images.shape == (2_000, 3, 84, 84)
    assert train.num_classes == 20 and train.wnids == sorted(train.wnids)
    assert torch.bincount(train.labels).tolist() == [500] * 20
    assert torch.bincount(test.labels).tolist() == [100] * 20
    index = dict(zip(train.classes, train.imagenet_index))
    assert index["crate"] == 519 and index["ashcan"] == 412
    mean = train.images.float().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor(meta["train_mean"]), atol=1e-3, rtol=0)
    # the same folder laid out as ImageNet, read by the ImageNet-100 code path at 224
    wnids = IN.class_list("imagenet20", imagenet20)
    loader = Ld.FolderLoader(IN.FolderDataset("imagenet20", imagenet20, "train", wnids, 224), 8, True)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 224, 224) and x.dtype == torch.float32 and y.max() < 20


@pytest.mark.realdata
def test_the_books_imagenet20_test_set_is_the_val_folder_at_the_training_size(imagenet20, tmp_path):
    from facnnbook.runs import Runs
    runs = Runs("cpu", "imagenet20", results_dir=tmp_path, data_root=imagenet20.parent)
    test = runs.test_set()
    assert test.images.shape == (2_000, 3, runs.config("fa-pool").image_size, 84)
    assert test.classes[9] == "crate" and test.classes[5] == "ashcan"
