"""Training: learning, exact resume, checkpoint safety, DDP and the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import facnn.checkpoint as CK
import facnn.train as T
from facnn import fileio
from facnn import preset

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path, model="fa-pool", **kw):
    base = dict(out_dir=str(tmp_path), progress=False, shapes_train=300, shapes_test=100, epochs=2)
    return preset("smoke", "shapes", model, **{**base, **kw})


def weights(cfg):
    return CK.load_checkpoint(T.run_dir(cfg) / "checkpoint.pt", cfg)["model"]


def test_few_steps_lower_the_loss(tmp_path):
    cfg = tiny(tmp_path, epochs=4, shapes_train=600, maps_per_class=2)
    T.train(cfg)
    rows = [json.loads(line) for line in (T.run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.05


def test_summary_and_cache(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    s = T.train(cfg)
    out = T.run_dir(cfg)
    assert {p.name for p in out.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.jsonl", "summary.json"}
    assert s["config_hash"] == cfg.hash() and s["epochs"] == 1 and s["images_per_s"] > 0
    assert 0 <= s["accuracy"] <= 1 and s["commit"]
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    assert T.train(cfg) == s  # finished: returned from the summary, nothing retrained
    assert (out / "checkpoint.pt").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("model", ["fa-pool", "vanilla"])
def test_resume_after_an_epoch_is_bitwise(tmp_path, model):
    straight = tiny(tmp_path / "a", model=model)
    T.train(straight)
    resumed = tiny(tmp_path / "b", model=model)
    T.train(resumed, stop_after=1)
    assert (T.run_dir(resumed) / "checkpoint.pt").exists()
    assert not (T.run_dir(resumed) / "summary.json").exists()
    T.train(resumed)
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_mid_epoch_is_bitwise(tmp_path, monkeypatch):
    """A kill after a mid-epoch checkpoint loses nothing: the rerun continues from that batch."""
    straight = tiny(tmp_path / "a")
    T.train(straight)
    cut = tiny(tmp_path / "b", save_every_s=0.0)
    real_save, calls = T.save_checkpoint, []

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        calls.append(args[-2]["batch"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed right after the second mid-epoch save
    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.train(cut)
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    assert calls == [1, 2]
    ckpt = CK.load_checkpoint(T.run_dir(cut) / "checkpoint.pt", cut)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 2)
    T.train(cut)
    a, b = weights(straight), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist_a = json.loads((T.run_dir(straight) / "summary.json").read_text())["accuracy"]
    assert json.loads((T.run_dir(cut) / "summary.json").read_text())["accuracy"] == hist_a


def test_checkpoint_from_another_config_is_refused(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    T.train(cfg, stop_after=1)
    other = tiny(tmp_path, epochs=1, lr=0.05)
    (T.run_dir(other)).mkdir(parents=True)
    (T.run_dir(other) / "checkpoint.pt").write_bytes((T.run_dir(cfg) / "checkpoint.pt").read_bytes())
    from facnn.experiments import MINIMAL_LR
    with pytest.raises(CK.CheckpointError, match=f"written for config .* lr: {MINIMAL_LR} -> 0.05"):
        T.train(other)


def test_truncated_checkpoint_is_refused(tmp_path):
    cfg = tiny(tmp_path, epochs=2)
    T.train(cfg, stop_after=1)
    path = T.run_dir(cfg) / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CK.CheckpointError, match="truncated or corrupt.*delete it"):
        T.train(cfg)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.txt"
    fileio.atomic_write_text(path, "old")

    def boom(f):
        f.write(b"partial")
        raise OSError("disk full")
    with pytest.raises(OSError):
        fileio.atomic_write_bytes(path, boom)
    assert path.read_text() == "old"


@pytest.mark.parametrize("schedule,epoch,want", [
    ("cosine", 0, 1.0), ("cosine", 5, 0.5), ("cosine", 10, 0.0),
    ("multistep", 2.9, 1.0), ("multistep", 3, 0.1), ("multistep", 6, 0.01),
])
def test_lr_schedules(schedule, epoch, want):
    cfg = preset("cpu", "cifar10", "fa-pool", epochs=10, schedule=schedule, milestones="3,6")
    assert T.lr_factor(cfg, int(epoch * 10), 10) == pytest.approx(want, abs=1e-9)


@pytest.mark.realdata
def test_one_epoch_on_real_cifar10_beats_chance(cifar10_subset, tmp_path):
    cfg = preset("cpu", "cifar10", "fa-pool", epochs=1, subset="200x100", data_root=str(cifar10_subset),
                 out_dir=str(tmp_path), progress=False)
    s = T.train(cfg)
    assert s["accuracy"] > 0.15  # chance is 0.10; 1000 test images put 0.15 far outside noise


def test_ddp_gloo_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    code = ("from facnn import preset; from facnn.train import train; "
            f"train(preset('smoke','shapes','fa-pool', epochs=1, shapes_train=200, shapes_test=50, "
            f"out_dir=r'{tmp_path}', progress=False))")
    script = tmp_path / "ddp.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        "--master_port=29533", str(script)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ckpts = list(tmp_path.rglob("checkpoint.pt"))
    assert len(ckpts) == 1
    summary = json.loads((ckpts[0].parent / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 1


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "facnn", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_cli_train_eval_info(tmp_path):
    common = ["--dataset", "shapes", "--model", "fa-pool", "--profile", "smoke",
              "--set", "epochs=1", "shapes_train=200", "shapes_test=50", f"out_dir={tmp_path}"]
    r = cli("train", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "images/s" in r.stdout
    r = cli("eval", *common, cwd=tmp_path)
    assert r.returncode == 0 and 0 <= json.loads(r.stdout.splitlines()[-1])["accuracy"] <= 1
    r = cli("info", "--profile", "paper", cwd=tmp_path)
    assert "N=24 layers, K=200" in r.stdout and "FLOPs per image" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "--set", "epochz=1"], "unknown config key"),
    (["train", "--dataset", "cifar100", "--set", "data_root=/nonexistent"], "three ways"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_cli_sweep_trains_each_learning_rate(tmp_path):
    r = cli("sweep", "--profile", "smoke", "--set", "epochs=1", "shapes_train=200", "shapes_test=50",
            f"out_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lrs = [line.split()[1].rstrip(":") for line in r.stdout.splitlines() if line.startswith("lr ")]
    assert lrs == ["0.2", "0.8"]
    assert len(list(tmp_path.glob("smoke/shapes-fa-pool-*/summary.json"))) == 2


def test_bf16_training_on_cpu_evaluates_in_fp32(tmp_path):
    """precision=bf16 trains under autocast on CPU; the reported test accuracy is that of
    the fp32 model (what the attribution chapters use), recomputed here by hand."""
    cfg = tiny(tmp_path, epochs=1, precision="bf16")
    s = T.train(cfg)
    assert s["precision"] == "bf16" and 0 <= s["accuracy"] <= 1
    model = CK.load_trained(cfg)
    _, test = T.make_loaders(cfg, torch.device("cpu"))
    correct = total = 0
    with torch.no_grad():
        for x, y in test:
            correct += int((model(x.float()).argmax(1) == y).sum())
            total += len(y)
    assert s["accuracy"] == correct / total
    assert T.train(tiny(tmp_path / "fp", epochs=1))["precision"] == "fp32"


def test_finished_run_leaves_weights_that_load_alone(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    T.train(cfg)
    folder = T.run_dir(cfg)
    x = torch.randn(4, 3, 32, 32)
    want = CK.load_trained(cfg)(x)
    (folder / "checkpoint.pt").unlink()
    assert (folder / "weights.pt").stat().st_size < 2e6
    assert torch.equal(CK.load_trained(cfg)(x), want)
    other = tiny(tmp_path, epochs=1, seed=1)
    T.run_dir(other).mkdir(parents=True)
    (folder / "weights.pt").rename(T.run_dir(other) / "weights.pt")
    with pytest.raises(CK.CheckpointError, match="written for config"):
        CK.load_trained(other)
    with pytest.raises(FileNotFoundError, match="weights.pt"):
        CK.load_trained(cfg)


def test_summary_carries_the_weights_sha256(trained_smoke):
    """A clone that keeps only summary.json can still tell whether retrained weights are the
    committed ones."""
    from facnn.fileio import file_sha256
    from facnn.train import run_dir
    cfg, _ = trained_smoke
    summary = json.loads((run_dir(cfg) / "summary.json").read_text())
    assert summary["weights_sha256"] == file_sha256(run_dir(cfg) / "weights.pt")


def test_committed_summaries_match_their_committed_weights():
    from facnn.fileio import file_sha256
    root = Path(__file__).resolve().parents[1] / "results"
    pairs = [(s, s.parent / "weights.pt") for s in root.glob("*/*/summary.json")
             if (s.parent / "weights.pt").exists()]
    for summary, weights in pairs:
        assert json.loads(summary.read_text()).get("weights_sha256") == file_sha256(weights), summary
