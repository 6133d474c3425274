"""The offline data pack: a round trip on a small subset (test images bit-exact, train
images within the manifest's stated loss, labels and classes equal) and damage detection."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facnn import pack
from facnn.data import load


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small CIFAR-like archive: 600 train images (a partial sheet of 12 rows),
    130 test images, 10 classes. Real CIFAR-10 pixels where data/cifar10.npz exists."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("src")
    try:
        with np.load("data/cifar10.npz") as z:
            x_tr, x_te, classes = z["x_train"][:600], z["x_test"][:130], z["classes"]
    except OSError:
        smooth = rng.integers(0, 256, (730, 8, 8, 3)).repeat(4, 1).repeat(4, 2).astype(np.uint8)
        x_tr, x_te, classes = smooth[:600], smooth[600:], np.array([f"c{i}" for i in range(10)])
    arrays = dict(x_train=x_tr, y_train=rng.integers(0, 10, 600).astype(np.int64), x_test=x_te,
                  y_test=rng.integers(0, 10, 130).astype(np.int64), classes=classes)
    np.savez(folder / "cifar10.npz", **arrays)
    return folder / "cifar10.npz", arrays


@pytest.fixture(scope="module")
def packed(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "cifar10"
    return out, pack.pack("cifar10", out, max_mb=0.6, source=source[0])


def test_tiles_round_trip():
    x = np.random.default_rng(1).integers(0, 256, (2071, 32, 32, 3)).astype(np.uint8)
    sheets = pack.tile(x)
    assert [s.shape for s in sheets] == [(1280, 1600, 3), (64, 1600, 3)]
    assert np.array_equal(pack.untile(sheets, len(x)), x)
    assert np.array_equal(pack.unplanes(pack.planes(sheets[1])), sheets[1])


def test_pack_fits_and_states_its_loss(packed, source):
    out, m = packed
    total = sum(p.stat().st_size for p in out.iterdir())
    assert total <= 0.6e6
    assert m["size_bytes"] == total - (out / "manifest.json").stat().st_size
    assert pack.QUALITY_RANGE[0] <= m["train"]["quality"] <= pack.QUALITY_RANGE[1]
    assert set(m["checksums"]) == {p.name for p in out.iterdir()} - {"manifest.json"}
    assert json.loads((out / "manifest.json").read_text()) == m


def test_round_trip(packed, source, tmp_path):
    out, m = packed
    _, orig = source
    path = pack.unpack(out, tmp_path)
    assert path == tmp_path / "cifar10.npz"
    with np.load(path) as z:
        got = {k: z[k] for k in z.files}
    assert set(got) == set(orig)
    for k in ("x_test", "y_train", "y_test", "classes"):
        assert np.array_equal(got[k], orig[k]) and got[k].dtype == orig[k].dtype, k
    assert got["x_train"].dtype == np.uint8 and got["x_train"].shape == orig["x_train"].shape
    measured = pack.loss(orig["x_train"], got["x_train"])
    assert measured == pytest.approx(m["train"]["loss"])          # the manifest states the truth
    assert measured["psnr_db"] > 28 and measured["mean_abs_error"] < 6
    # facnn.data reads the unpacked file
    ds = load("cifar10", "test", root=tmp_path)
    assert len(ds) == 130 and ds.images.shape == (130, 3, 32, 32)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_file_is_named(packed, tmp_path, damage):
    import shutil
    out, m = packed
    copy = tmp_path / "pack"
    shutil.copytree(out, copy)
    victim = copy / m["train"]["files"][0]
    if damage == "flip":
        b = bytearray(victim.read_bytes())
        b[len(b) // 2] ^= 0xFF
        victim.write_bytes(bytes(b))
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        victim.unlink()
    with pytest.raises(pack.PackError, match=victim.name) as e:
        pack.unpack(copy, tmp_path / "data")
    assert ("sha256" in str(e.value) or "missing" in str(e.value)) and "copy" in str(e.value)
    assert not (tmp_path / "data" / "cifar10.npz").exists()


def test_budget_too_small_and_bad_input(source, tmp_path):
    with pytest.raises(pack.PackError, match="max-mb"):
        pack.pack("cifar10", tmp_path / "p", max_mb=0.1, source=source[0])
    with pytest.raises(pack.PackError, match="not found"):
        pack.pack("cifar10", tmp_path / "p", source=tmp_path / "none.npz")
    with pytest.raises(pack.PackError, match="not a facnn data pack"):
        pack.unpack(tmp_path, tmp_path / "d")
