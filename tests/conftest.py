"""Shared fixtures. Real-data tests read ../shared/data (as CI has it); they skip only
where it is absent and CI is unset."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = ROOT / "data"


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def cifar10_subset() -> Path:
    """data/cifar10-200x100.npz (200 train, 100 test images per class), unpacked from
    ../shared/data on first use. Returns the data root."""
    target = DATA / "cifar10-200x100.npz"
    if not target.exists():
        if not (SHARED / "unpack.py").exists():
            if os.environ.get("CI"):
                pytest.fail(f"CI must have {SHARED}: real-data tests may not skip in CI")
            pytest.skip(f"{SHARED} is absent (real data); CI has it")
        subprocess.run([sys.executable, str(SHARED / "unpack.py"), "cifar10", "--out", str(DATA),
                        "--per-class", "200", "100"], check=True, capture_output=True)
    return DATA


@pytest.fixture(scope="session")
def shapes_data():
    from facnn import data
    return data.make_shapes(200, seed=0), data.make_shapes(100, seed=1)


@pytest.fixture(scope="session")
def trained_smoke(tmp_path_factory):
    """A pooling-head FA-CNN trained on `shapes` at the smoke profile (about 20 s), shared
    by every test that needs trained weights. Returns (config, model).

    lr is pinned to 0.1, the model the removal tests' thresholds were set on: trained at
    the minimal recipe's default (0.8), its LeRF curve for the ground-truth masks (black
    fill) sits on RAND's (gaps -0.05 to +0.32, mean +0.03), so that test has nothing to
    compare."""
    from facnn import preset
    from facnn.checkpoint import load_trained
    from facnn.train import train
    cfg = preset("smoke", "shapes", "fa-pool", out_dir=str(tmp_path_factory.mktemp("runs")),
                 progress=False, lr=0.1)
    train(cfg)
    return cfg, load_trained(cfg)
