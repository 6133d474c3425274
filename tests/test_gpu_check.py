"""scripts/gpu_check.py: its dry run (CPU, tiny sizes, seconds) writes the same JSON schema
the GPU run does, and the schema check catches a malformed document."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run on a tiny CIFAR-10 pack (300 train, 100 test images)."""
    from facnn import pack
    tmp = tmp_path_factory.mktemp("gpu")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (400, 8, 8, 3)).repeat(4, 1).repeat(4, 2).astype(np.uint8)
    np.savez(tmp / "cifar10.npz", x_train=x[:300], y_train=np.arange(300) % 10, x_test=x[300:],
             y_test=np.arange(100) % 10, classes=np.array([f"c{i}" for i in range(10)]))
    pack.pack("cifar10", tmp / "pack", max_mb=1, source=tmp / "cifar10.npz")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--pack", str(tmp / "pack"),
                        "--out", str(tmp / "out")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((tmp / "out" / "gpu_check.json").read_text())


def test_dry_run_schema(dry_run):
    mod = _module()
    assert mod.validate(dry_run) == []
    assert dry_run["mode"] == "dry-run" and dry_run["schema"] == mod.SCHEMA
    parts = dry_run["parts"]
    assert parts["data"]["status"] == "passed" and parts["data"]["test_images"] == 100
    assert parts["cuda_tests"]["status"] in ("passed", "skipped")      # every CUDA test skips here
    assert parts["bench"]["status"] == "passed" and parts["bench"]["paper_fa"]["images_per_s"] > 0
    t = parts["train"]
    assert t["status"] == "passed" and t["epochs"] >= 1 and t["test_images"] == 100
    assert 0 <= t["test_accuracy"] <= 1 and len(t["history"]) == t["epochs"]
    assert all(p["seconds"] <= p["box_s"] + 5 for p in parts.values())


@pytest.mark.parametrize("breakage,expect", [
    (lambda d: d.pop("parts"), "missing key parts"),
    (lambda d: d["parts"]["train"].update(status="fine"), "status 'fine'"),
    (lambda d: d["parts"].pop("bench"), "part bench missing"),
    (lambda d: d["parts"]["bench"].pop("paper_fa"), "bench.paper_fa.images_per_s missing"),
    (lambda d: d.update(mode="laptop"), "mode 'laptop'"),
])
def test_validate_catches(dry_run, breakage, expect):
    doc = json.loads(json.dumps(dry_run))
    breakage(doc)
    assert any(expect in p for p in _module().validate(doc))


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989e12), ("NVIDIA A10G", 70e12),
                                        ("NVIDIA A10", 125e12), ("Quadro K600", None)])
def test_peak_lookup_is_the_librarys(name, peak):
    """One table of bf16 peaks (facnn.info) serves the script, the benchmarks and the plan."""
    from facnn import info
    from facnn.book import bench
    assert _module().bf16_peak(name) == info.bf16_peak(name) == bench.bf16_peak(name) == peak
