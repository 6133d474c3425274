"""scripts/gpu_check.py, rehearsed as the device tool sends it: the tracked tree plus the
pack (within the tool's 64 MiB, our budget 60), the exact documented COMMAND run in dry-run
mode on the CPU in a copy of the tracked tree, with tqdm and pytorch-grad-cam hidden as on
the GPU machine, and what it leaves under $OUT checked against the tool's return limits."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
SHARED = ROOT.parent / "shared" / "data"
MiB = 2**20
TRACKED_MAX = 16 * MiB
SENT_MAX = 60 * MiB       # tracked tree + pack; the device tool refuses more than 64 MiB
PACK_MAX = 40e6
HIDDEN = ("tqdm", "pytorch_grad_cam")    # absent on the GPU machine (its published environment)

# Loaded into every Python the rehearsal starts: a hidden package is None in sys.modules (import
# fails, find_spec answers None) unless a folder outside site-packages provides it, as
# scripts/shims/tqdm does once the check puts it on PYTHONPATH.
_SITECUSTOMIZE = '''
import os, sys
for _name in os.environ["FACNN_HIDE"].split(","):
    if not any(os.path.exists(os.path.join(p or ".", _name)) for p in sys.path if "-packages" not in p):
        sys.modules[_name] = None
'''


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tracked_files(root: Path = ROOT) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [root / f for f in out.stdout.split("\0") if f and (root / f).is_file()]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _fake_cifar(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (700, 8, 8, 3)).repeat(4, 1).repeat(4, 2).astype(np.uint8)
    np.savez(path, x_train=x[:600], y_train=np.arange(600) % 10, x_test=x[600:],
             y_test=np.arange(100) % 10, classes=np.array([f"c{i}" for i in range(10)]))


def make_pack(tree: Path) -> tuple[Path, bool]:
    """The pack, made by PACK_COMMAND inside ``tree``: from the real CIFAR-10 where
    ../shared/data has it (as CI does), else from a small synthetic set. Returns (pack, real)."""
    mod = _module()
    data = tree / "data"
    data.mkdir(exist_ok=True)
    real = (SHARED / "unpack.py").exists()
    if real:
        subprocess.run([sys.executable, str(SHARED / "unpack.py"), "cifar10", "--out", str(data)],
                       check=True, capture_output=True)
    elif os.environ.get("CI"):
        pytest.fail(f"CI must have {SHARED}: the pack is rehearsed on the real CIFAR-10")
    else:
        _fake_cifar(data / "cifar10.npz")
    cmd = mod.PACK_COMMAND.replace("python ", f"{sys.executable} ", 1).split()
    r = subprocess.run(cmd, cwd=tree, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tree)})
    assert r.returncode == 0, r.stdout + r.stderr
    (data / "cifar10.npz").unlink()     # the pack travels, never the unpacked arrays
    return tree / mod.CARRY[0] / "cifar10", real


def hiding_env(tmp: Path) -> dict:
    """PATH whose python3 is this interpreter with HIDDEN made unimportable (the documented
    COMMAND sets PYTHONPATH itself, so the hiding rides on the python3 wrapper)."""
    bin_dir, site = tmp / "bin", tmp / "site"
    bin_dir.mkdir(exist_ok=True)
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="$PYTHONPATH:{site}" exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FACNN_HIDE": ",".join(HIDDEN),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    """A copy of the tracked tree with the pack made inside it, as the device tool sends it."""
    tmp = tmp_path_factory.mktemp("send")
    tree = tmp / "tree"
    for f in tracked_files():
        dest = tree / f.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    pack, real = make_pack(tree)
    return tmp, tree, pack, real


@pytest.fixture(scope="module")
def rehearsal(sent):
    """The documented COMMAND, dry run, in the sent tree. Returns (out, summary, console)."""
    tmp, tree, _, _ = sent
    out = tmp / "OUT"
    r = subprocess.run(["bash", "-c", _module().COMMAND + " --dry-run"], cwd=tree,
                       env={**hiding_env(tmp), "OUT": str(out)}, capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, json.loads((out / "gpu_check.json").read_text()), r.stdout


def test_tracked_tree_within_budget():
    size = sum(f.stat().st_size for f in tracked_files())
    assert size <= TRACKED_MAX, f"tracked files weigh {size / MiB:.1f} MiB > 16 MiB"


def test_tree_and_pack_fit_the_device_tool(sent):
    tmp, tree, pack, real = sent
    tracked = sum(f.stat().st_size for f in tracked_files())
    if real:
        assert folder_bytes(pack) <= PACK_MAX, f"the pack weighs {folder_bytes(pack) / 1e6:.1f} MB"
    assert tracked + folder_bytes(pack) <= SENT_MAX, \
        f"tree {tracked / MiB:.1f} MiB + pack {folder_bytes(pack) / MiB:.1f} MiB > 60 MiB"


def test_pack_is_ignored_and_inside_the_tree():
    """Carried paths must lie inside the tree and be ignored by git (else they travel twice)."""
    for path in _module().CARRY:
        assert not Path(path).is_absolute() and ".." not in Path(path).parts
        r = subprocess.run(["git", "check-ignore", "-q", f"{path}/cifar10/manifest.json"], cwd=ROOT)
        assert r.returncode == 0, f"{path} is not ignored by git"


def test_rehearsal_passes_with_hidden_packages(rehearsal):
    out, doc, console = rehearsal
    mod = _module()
    assert mod.validate(doc) == [] and doc["complete"] and doc["mode"] == "dry-run"
    assert set(HIDDEN) <= set(doc["missing"]), doc["missing"]
    assert any("tqdm" in n and "stands in" in n for n in doc["notes"])
    parts = doc["parts"]
    assert parts["data"]["status"] == "passed" and parts["data"]["files_checked"] > 0
    assert parts["cuda_tests"]["status"] in ("passed", "skipped")      # every CUDA test skips here
    assert parts["bench"]["status"] == "passed" and parts["bench"]["paper_fa"]["images_per_s"] > 0
    assert "pytorch-grad-cam missing" in parts["bench"]["maps"]["skipped"]
    t = parts["train"]
    assert t["status"] == "passed" and t["epochs"] >= 1 and len(t["history"]) == t["epochs"]
    assert t["test_images"] == 10 * mod.DRY_SUBSET[1] and 0 <= t["test_accuracy"] <= 1
    assert all(p["seconds"] <= p["box_s"] + 5 for p in parts.values())
    assert "wrote" in console


def test_rehearsal_output_returns_whole(rehearsal):
    out, doc, _ = rehearsal
    mod = _module()
    assert mod.return_problems(out) == []
    assert {p.name for p in out.iterdir()} <= set(mod.RETURNED)
    for name in mod.PARTS:      # each part's own JSON equals its entry in the summary
        assert json.loads((out / f"{name}.json").read_text())["status"] == doc["parts"][name]["status"]
    assert "== train" in (out / "gpu_check.log").read_text()


@pytest.mark.parametrize("layout, problem", [
    ({f"f{i}.json": 10 for i in range(9)}, "9 files > 8"),
    ({"a/b/c/deep.json": 10}, "deeper than"),
    ({"big.bin": 16 * MiB + 1}, "bytes >"),
])
def test_return_problems_catch(tmp_path, layout, problem):
    for rel, size in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path / rel, "wb") as f:
            f.truncate(size)
    assert any(problem in p for p in _module().return_problems(tmp_path))


def test_summary_survives_a_kill(sent):
    """Killed after its first part, the check leaves a valid summary with that part's result
    and the rest "pending"."""
    tmp, tree, _, _ = sent
    out = tmp / "OUT-killed"
    p = subprocess.Popen(["bash", "-c", _module().COMMAND + " --dry-run"], cwd=tree,
                         env={**hiding_env(tmp), "OUT": str(out)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    doc = {}
    try:
        while time.time() < deadline and p.poll() is None:
            try:
                doc = json.loads((out / "gpu_check.json").read_text())
            except (OSError, ValueError):
                doc = {}
            if doc.get("parts", {}).get("data", {}).get("status") not in (None, "pending"):
                break
            time.sleep(0.2)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["complete"] is False and doc["finished"] == ""
    assert doc["parts"]["data"]["status"] == "passed"
    assert doc["parts"]["train"]["status"] == "pending"
    assert json.loads((out / "data.json").read_text())["status"] == "passed"


def test_timed_out_bench_keeps_what_it_measured(tmp_path):
    """A bench killed during torch.compile keeps its eager throughput (bench.json is written
    after each variant)."""
    mod = _module()
    out = tmp_path / "out"
    out.mkdir()
    partial = {"status": "pending", "variants": [{"variant": "eager", "images_per_s": 123.0}],
               "paper_fa": {"images_per_s": 123.0, "gflops_per_image": 1.0, "batch": 100,
                            "variant": "bf16 channels_last eager"}}
    (out / "bench.json").write_text(json.dumps(partial))

    class Args:
        pass
    args = Args()
    args.out, args.work = out, tmp_path / "work"
    res = mod._part_result("bench", args, "timeout", None)
    assert res["status"] == "timeout" and res["paper_fa"]["images_per_s"] == 123.0


@pytest.mark.parametrize("breakage,expect", [
    (lambda d: d.pop("parts"), "missing key parts"),
    (lambda d: d["parts"]["train"].update(status="fine"), "status 'fine'"),
    (lambda d: d["parts"].pop("bench"), "part bench missing"),
    (lambda d: d["parts"]["bench"].pop("paper_fa"), "bench.paper_fa.images_per_s missing"),
    (lambda d: d.update(mode="laptop"), "mode 'laptop'"),
    (lambda d: d["parts"]["train"].update(status="pending"), "pending in a complete document"),
])
def test_validate_catches(rehearsal, breakage, expect):
    doc = json.loads(json.dumps(rehearsal[1]))
    breakage(doc)
    assert any(expect in p for p in _module().validate(doc))


def test_command_is_written_down():
    """README and the Performance page quote the exact command, carry and time limit."""
    mod = _module()
    perf = "".join("".join(c["source"]) for c in
                   json.loads((ROOT / "notebooks" / "09_performance.ipynb").read_text())["cells"])
    for text in ((ROOT / "README.md").read_text(), perf):
        assert mod.COMMAND in text and f"{list(mod.CARRY)}".replace("'", '"') in text
        assert f"timeout_s: {mod.RUN_TIMEOUT_S}" in text and mod.PACK_COMMAND in text
    assert mod.TOTAL_S + 20 < 520 < mod.RUN_TIMEOUT_S <= 600    # the inner timeout of COMMAND


def test_tqdm_shim_takes_facnns_calls(capsys):
    """The stand-in for tqdm answers every call facnn makes (train's bar, removal's counter)."""
    sys.path.insert(0, str(ROOT / "scripts" / "shims"))
    try:
        spec = importlib.util.spec_from_file_location(
            "tqdm_shim", ROOT / "scripts" / "shims" / "tqdm" / "__init__.py")
        shim = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(shim)
    finally:
        sys.path.pop(0)
    bar = shim.tqdm(range(3), desc="epoch 1/1", disable=False, leave=False, unit="batch",
                    initial=0, total=3)
    assert list(bar) == [0, 1, 2] and bar.disable is False and len(bar) == 3
    bar.set_postfix(loss=1.0)
    bar.close()
    counter = shim.tqdm(total=5, desc="removal", disable=True, leave=False)
    counter.update(2)
    assert counter.n == 2
    shim.tqdm.write("done")
    assert "done" in capsys.readouterr().out


@pytest.mark.parametrize("name, peak", [("NVIDIA H200", 989e12), ("NVIDIA A10G", 70e12),
                                        ("NVIDIA A10", 125e12), ("Quadro K600", None)])
def test_peak_lookup_is_the_librarys(name, peak):
    """One table of bf16 peaks (facnn.info) serves the script, the benchmarks and the plan."""
    from facnn import info
    from facnnbook import bench
    assert _module().bf16_peak(name) == info.bf16_peak(name) == bench.bf16_peak(name) == peak
