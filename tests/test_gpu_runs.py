"""scripts/gpu_runs.py: the commands it gives each run rebuild the plan's config exactly (same
hash, so the same run folder as on a CPU), its tars stay under the device tool's file limit,
and a run stopped at the deadline comes back as a checkpoint that resumes."""
from __future__ import annotations

import argparse
import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

from facnn.__main__ import _config
from facnn.config import run_dir
from facnnbook.plan import book_configs

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_runs", ROOT / "scripts" / "gpu_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


G = _module()


def _parse(argv: list[str]):
    """The config `python -m facnn <argv>` would train."""
    assert argv[0] == "train"
    ap = argparse.ArgumentParser()
    for flag in ("--dataset", "--model", "--profile", "--recipe"):
        ap.add_argument(flag, default=None)
    ap.add_argument("--set", nargs="*", action="extend", default=[])
    return _config(ap.parse_args(argv[1:]))


@pytest.mark.parametrize("kind", ["table1", "shared lr"])
@pytest.mark.parametrize("dataset", ["imagenet20", "cifar10"])
def test_train_argv_rebuilds_the_plan_config(tmp_path, kind, dataset):
    configs = [c for k, c in book_configs("cpu", tmp_path, [dataset]) if k == kind]
    assert configs
    for cfg in configs:
        argv = G.train_argv(cfg, "cuda", ".gpu-data")
        back = _parse(argv)
        assert back.hash() == cfg.hash(), argv
        assert (back.device, back.data_root, back.progress) == ("cuda", ".gpu-data", False)
        assert run_dir(back) == run_dir(cfg)
        assert argv.count("--set") == 1


def test_missing_runs_skips_finished_ones_in_plan_order(tmp_path):
    todo = G.missing_runs("cpu", "imagenet20", tmp_path)
    kinds = [k for k, _ in todo]
    assert kinds == sorted(kinds, key=lambda k: G.KINDS.index(k))   # own rates first
    # 4 minimal-recipe models x 3 seeds x 2 rates, and the standard-recipe ResNet-18 x 3 seeds
    assert len(todo) == 27
    first = run_dir(todo[0][1])
    first.mkdir(parents=True)
    (first / "summary.json").write_text("{}")
    assert [c.hash() for _, c in G.missing_runs("cpu", "imagenet20", tmp_path)] == \
        [c.hash() for _, c in todo[1:]]


@pytest.mark.parametrize("sizes, tars", [
    ([100, 100], 1),                     # small files share one tar
    ([9 * 2**20, 9 * 2**20], 2),         # two files over the limit together: two tars
    ([], 0),
])
def test_pack_splits_under_the_limit(tmp_path, sizes, tars):
    folders = []
    for i, n in enumerate(sizes):
        f = tmp_path / "runs" / f"run-{i}"
        f.mkdir(parents=True)
        (f / "summary.json").write_text("{}")
        (f / "weights.pt").write_bytes(b"\0" * n)
        (f / "checkpoint.pt").write_bytes(b"x")   # left behind: the run finished
        folders.append(f)
    out = tmp_path / "out"
    out.mkdir()
    names = G.pack(folders, out)
    assert len(names) == tars
    members = []
    for name in names:
        assert (out / name).stat().st_size <= 16 * 2**20
        with tarfile.open(out / name) as t:
            members += t.getnames()
    assert sorted(members) == sorted(f"run-{i}/{n}" for i in range(len(sizes))
                                     for n in ("summary.json", "weights.pt"))


def test_deadline_stops_a_run_with_its_checkpoint(tmp_path):
    """One smoke run on the CPU, stopped by the deadline: reported "interrupted", packed with
    its checkpoint (when it got as far as one), and the queue behind it never started."""
    out, results = tmp_path / "out", tmp_path / "results"
    rc = G.main(["--profile", "smoke", "--dataset", "shapes", "--device", "cpu", "--limit", "2",
                 "--parallel", "1", "--threads", "1", "--results", str(results), "--out", str(out),
                 "--deadline-s", "8"])
    assert rc == 1
    doc = json.loads((out / "gpu_runs.json").read_text())
    assert [r["status"] for r in doc["runs"]] == ["interrupted", "not started (deadline)"]
    assert "device=cpu" in doc["runs"][0]["command"]
    folder = Path(doc["runs"][0]["run_dir"])
    if (folder / "checkpoint.pt").exists():
        with tarfile.open(out / "runs-1.tar") as t:
            assert f"{folder.name}/checkpoint.pt" in t.getnames()
    assert "interrupted" in (out / "gpu_runs.log").read_text()


def test_no_tracked_file_holds_the_checkouts_absolute_path():
    """Run folders keep relative out_dir/data_root (not hashed, but shown to readers and
    shipped in clones): a machine path in a committed config, summary or weights file is a bug."""
    import subprocess
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    needle = str(ROOT).encode()
    hits = [f for f in tracked if f and (ROOT / f).is_file() and needle in (ROOT / f).read_bytes()]
    assert hits == []
