"""Faults: bad input, damaged files, full disks, Ctrl-C, NaN losses. Each behaviour is an
entry of tests/reliability.py (the book's Reliability page); tests parametrise over those
entries where the input is a command line or a call."""
from __future__ import annotations

import errno
import importlib
import inspect
import io
import json
import math
import os
import re
import shlex
import signal
from pathlib import Path

import pytest
import torch

import facnn
import facnn.__main__ as M
import facnn.attribution as A
import facnn.checkpoint as CK
import facnn.maps as MP
import facnn.removal as R
import facnn.theory as T
import facnn.train as TR
from facnn.interrupt import TrainingInterrupted
from facnnbook.plan import main as plan_main
from facnn import checks, fileio, preset
from facnn.config import cli_command

from reliability import CASES, CATEGORIES

ROOT = Path(__file__).resolve().parents[1]


def cases(test: str) -> list:
    """Registry entries checked by ``test`` (a function of this file), as pytest params."""
    return [pytest.param(c, id=c["id"]) for c in CASES if c["test"].endswith(f"::{test}[{c['id']}]")]


def fragment(case: dict) -> str:
    """The text in `backticks` that the error message must contain."""
    return re.search(r"`([^`]+)`", case["behaviour"]).group(1)


def tiny(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path), progress=False, shapes_train=100, shapes_test=50, epochs=1,
                maps_per_class=1, batch_size=20)
    return preset("smoke", "shapes", "fa-pool", **{**base, **kw})


def parsed(argv: list[str], monkeypatch):
    """The Config the CLI builds from argv (training replaced by recording it)."""
    seen = []
    monkeypatch.setattr(M, "cmd_train", lambda args: seen.append(M._config(args)))
    M.main(argv)
    return seen[0]


# -- the registry itself ----------------------------------------------------------------------

def test_registry_is_well_formed():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 100
    for c in CASES:
        assert set(c) == {"id", "category", "input", "behaviour", "test"}, c["id"]
        assert c["category"] in CATEGORIES and "\n" not in c["input"] + c["behaviour"], c["id"]
    assert {c["category"] for c in CASES} == set(CATEGORIES)


def _explicit_ids(fn) -> set[str]:
    out = set()
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        values = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("argvalues", [])
        ids = mark.kwargs.get("ids")
        if isinstance(ids, (list, tuple)):
            out |= {str(i) for i in ids}
        out |= {v.id for v in values if getattr(v, "id", None)}
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_registry_node_ids_exist(case):
    """Every entry's test exists: the file, the function, and the parameter id when the
    node names one (ids of this file's parametrised tests are the entries' ids)."""
    path, _, rest = case["test"].partition("::")
    assert (ROOT / path).exists(), path
    name, _, param = rest.partition("[")
    module = importlib.import_module(Path(path).stem)
    fn = getattr(module, name, None)
    assert callable(fn), f"{case['test']}: no function {name}"
    if param:
        assert param.rstrip("]") in _explicit_ids(fn), f"{case['test']}: no parameter {param}"


# -- CLI -----------------------------------------------------------------------------------------

def test_repeated_set_accumulates(monkeypatch):
    cfg = parsed(["train", "--dataset", "shapes", "--profile", "smoke", "--set", "epochs=1",
                  "shapes_train=200", "--set", "out_dir=runs/x"], monkeypatch)
    assert (cfg.epochs, cfg.shapes_train, cfg.out_dir) == (1, 200, "runs/x")


@pytest.mark.parametrize("case", cases("test_cli_config_refused"))
def test_cli_config_refused(case, monkeypatch, capsys):
    argv = shlex.split(case["input"])[3:]     # after "python -m facnn"
    monkeypatch.setattr(M, "cmd_train", lambda args: M._config(args))
    with pytest.raises(SystemExit) as e:
        M.main(argv)
    assert str(e.value.code).startswith("error: ") and fragment(case) in str(e.value.code)


@pytest.mark.parametrize("cfg", [
    dict(profile="smoke", dataset="shapes", model="fa-pool", lr=0.05, epochs=3, shapes_train=100),
    dict(profile="cpu", dataset="cifar10", model="resnet18", recipe="standard", epochs=30),
    dict(profile="cpu", dataset="cifar10", model="resnet18", recipe="standard", epochs=30,
         milestones=(2, 3)),
    dict(profile="paper", dataset="imagenet100", model="resnet50", recipe="standard"),
    dict(profile="smoke", dataset="cifar10", model="vanilla", out_dir="my runs/a b", width=None,
         progress=False, subset="none-such"),
], ids=["overrides", "epochs-rederive", "epochs-pinned-milestones", "plain", "spaces"])
def test_cli_command_round_trips(cfg, monkeypatch):
    kw = dict(cfg)
    want = preset(kw.pop("profile"), kw.pop("dataset"), kw.pop("model"), kw.pop("recipe", None), **kw)
    cmd = cli_command(want)
    assert cmd.startswith("python -m facnn train --dataset")
    back = parsed(shlex.split(cmd)[3:], monkeypatch)
    assert back == want and back.hash() == want.hash()


@pytest.mark.parametrize("cfg,shown", [
    (dict(profile="cpu", dataset="cifar10", model="fa-pool", seed=2, precision="fp32"),
     "--set seed=2 precision=fp32"),
    (dict(profile="cpu", dataset="cifar10", model="resnet18", recipe="standard", epochs=7,
          milestones=(2, 3)), "--set epochs=7 milestones=2,3"),
    (dict(profile="smoke", dataset="shapes", model="vanilla", out_dir="/tmp/my runs"),
     "--set 'out_dir=/tmp/my runs'"),
], ids=["overrides", "pinned-milestones", "own-folder"])
def test_the_books_command_leaves_out_where_a_run_happens(cfg, shown, monkeypatch):
    """The book passes its folders resolved and its own progress and device: the line it
    shows names none of them, and still rebuilds the same run (hash and folder)."""
    from facnn.config import ROOT, apply_overrides
    kw = dict(cfg)
    want = preset(kw.pop("profile"), kw.pop("dataset"), kw.pop("model"), kw.pop("recipe", None), **kw)
    book = apply_overrides(want, dict(data_root=str(ROOT / "data"), progress=False, device="cpu",
                                      **({} if "out_dir" in cfg else {"out_dir": str(ROOT / "results")})))
    cmd = cli_command(book, checkout=True)
    assert cmd.endswith(shown) and "data_root" not in cmd and "progress" not in cmd
    back = parsed(shlex.split(cmd)[3:], monkeypatch)
    assert back.hash() == want.hash() and (ROOT / TR.run_dir(back)).resolve() == (ROOT / TR.run_dir(book)).resolve()


def test_eval_without_weights_names_the_exact_command(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, lr=0.3)
    with pytest.raises(FileNotFoundError) as e:
        CK.load_trained(cfg)
    cmd = str(e.value).split("train it with: ")[1]
    assert "--set" in cmd and "lr=0.3" in cmd
    assert parsed(shlex.split(cmd)[3:], monkeypatch).hash() == cfg.hash()


def test_cli_ctrl_c_exits_130(monkeypatch, capsys):
    def stopped(args):
        raise TrainingInterrupted("stopped; rerun the same command to resume from epoch 2 batch 7")
    monkeypatch.setattr(M, "cmd_train", stopped)
    with pytest.raises(SystemExit) as e:
        M.main(["train"])
    assert e.value.code == 130 and "resume from epoch 2 batch 7" in capsys.readouterr().err


def test_cli_storage_error_is_one_line(tmp_path):
    import subprocess
    import sys
    code = ("import errno, os, sys; import facnn.fileio as F\n"
            "def full(fd): raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "F.os.fsync = full\n"
            "from facnn.__main__ import main\n"
            "main(sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-c", code, "train", "--dataset", "shapes", "--profile",
                        "smoke", "--set", "epochs=1", "shapes_train=20", "shapes_test=10",
                        f"out_dir={tmp_path}"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write") and "free space" in line and "out_dir" in line


# -- library: direct calls ---------------------------------------------------------------------

@pytest.mark.parametrize("case", cases("test_library_call_refused"))
def test_library_call_refused(case):
    with pytest.raises((ValueError, TypeError), match=re.escape(fragment(case))):
        eval(case["input"], {"facnn": facnn})


@pytest.mark.parametrize("call,error,message", [
    (lambda: checks.check_int("n_images", "1000"), TypeError, "without quotes, e.g. n_images=1000"),
    (lambda: checks.check_int("n_images", True), TypeError, "must be an int"),
    (lambda: checks.check_int("n_images", 2.5), TypeError, "must be an int"),
    (lambda: checks.check_int("n_images", 0, 1), ValueError, "n_images=0 must be >= 1"),
    (lambda: checks.check_int("n_images", 11, 1, 10), ValueError, r"must be in \[1, 10\]"),
    (lambda: checks.check_bool("progress", "maybe"), TypeError, "True or False without quotes"),
    (lambda: checks.check_bool("progress", 2), TypeError, "True or False"),
    (lambda: checks.check_choice("profile", "gpu", ("cpu", "paper")), ValueError, "choose one of cpu, paper"),
    (lambda: checks.check_float("lr", math.nan), ValueError, "finite"),
    (lambda: checks.check_float("lr", "0.1"), TypeError, "without quotes"),
    (lambda: checks.check_fraction("p", 1.5), ValueError, r"in \[0, 1\]"),
    (lambda: checks.check_increasing("milestones", (3, 2)), ValueError, "strictly increasing"),
])
def test_scalar_checks(call, error, message):
    with pytest.raises(error, match=message):
        call()
    assert checks.check_int("n", 3.0) == 3 and checks.check_bool("b", 1) is True


# -- library: the public boundary of attribution, theory and removal -----------------------------

@pytest.fixture(scope="module")
def mx():
    torch.manual_seed(0)
    model = facnn.build_model("fa-pool", 3, maps_per_class=2, depth=4, pool_every=2).eval()
    return model, torch.randn(2, 3, 16, 16)


def _frame():
    import pandas as pd
    return pd.DataFrame({"method": ["x"]})


E = (ValueError, TypeError)
BOUNDARY = [  # (id, function, call(model, x), message fragment)
    ("upsample-3d", A.upsample, lambda m, x: A.upsample(x[0], 8), "(B, M, h, w)"),
    ("upsample-size", A.upsample, lambda m, x: A.upsample(x, 0), "size=0"),
    ("minmax-int", A.minmax, lambda m, x: A.minmax(torch.ones(2, 2, dtype=torch.long)), "floats"),
    ("class_selection-float", A.class_selection, lambda m, x: A.class_selection([1.5], 2, 3), "must be an int"),
    ("class_selection-range", A.class_selection, lambda m, x: A.class_selection([3], 2, 3), "outside 0..2"),
    ("eval_mode-not-module", A.eval_mode, lambda m, x: A.eval_mode("model").__enter__(), "nn.Module"),
    ("class_maps-empty", A.class_maps, lambda m, x: A.class_maps(m, x[:0]), "is empty"),
    ("class_maps-3d", A.class_maps, lambda m, x: A.class_maps(m, x[0]), "x[None]"),
    ("class_maps_layers-none", A.class_maps_layers, lambda m, x: A.class_maps_layers(m, x, []), "non-empty list"),
    ("grad_cam-int-images", A.grad_cam, lambda m, x: A.grad_cam(m, (x * 10).long()), "normalise"),
    ("grad_cam-float64", A.grad_cam, lambda m, x: A.grad_cam(m, x.double()), "convert it with x.float()"),
    ("grad_cam-float-class", A.grad_cam, lambda m, x: A.grad_cam(m, x, classes=[0.5]), "must be an int"),
    ("grad_cam-class-tensor-float", A.grad_cam, lambda m, x: A.grad_cam(m, x, classes=torch.tensor([0.0, 1.0])), "integers"),
    ("grad_cam_layers-batch", A.grad_cam_layers, lambda m, x: A.grad_cam_layers(m, x, [4], batch_size=0), "batch_size=0"),
    ("rise_masks-n", A.rise_masks, lambda m, x: next(A.rise_masks(0, (8, 8))), "n_masks=0"),
    ("rise-batch-size", A.rise, lambda m, x: A.rise(m, x, n_masks=4, batch_size=0), "batch_size=0 must be >= 1"),
    ("rise-not-model", A.rise, lambda m, x: A.rise("model", x), "nn.Module"),
    ("k_occlusion-fill", A.k_occlusion, lambda m, x: A.k_occlusion(m, x, fill=math.nan), "finite"),
    ("random_maps-empty", A.random_maps, lambda m, x: A.random_maps(m, x[:0]), "is empty"),
    ("attribute-unknown", A.attribute, lambda m, x: A.attribute("lime", m, x), "unknown attribution method"),
    ("pearson-shapes", T.pearson, lambda m, x: T.pearson(x[:, :1], x[:1, :1]), "same shape"),
    ("theorem1-target", T.theorem1, lambda m, x: T.theorem1(m, x, target="logit"), "unknown target"),
    ("theorem1-empty", T.theorem1, lambda m, x: T.theorem1(m, x[:0]), "is empty"),
    ("layer_correlations-layer", T.layer_correlations, lambda m, x: T.layer_correlations(m, x, layers=[0]), "outside 1..4"),
    ("rescaled_features-int", T.rescaled_features, lambda m, x: T.rescaled_features(m, x.long()), "normalise"),
    ("bounded_increment-tol", T.bounded_increment, lambda m, x: T.bounded_increment(m, x, tol=-1.0), "tol=-1"),
    ("check_fractions-range", R.check_fractions, lambda m, x: R.check_fractions([0, 2]), "must lie in"),
    ("select_maps-float-classes", R.select_maps, lambda m, x: R.select_maps(torch.rand(2, 3, 4, 4), 2, torch.tensor([0.0, 1.0])), "integers"),
    ("removal_ranks-channels", R.removal_ranks, lambda m, x: R.removal_ranks(torch.rand(2, 3, 4, 4), (8, 8)), "(B, 1, h, w)"),
    ("pixel_counts-n", R.pixel_counts, lambda m, x: R.pixel_counts(torch.tensor([0.5]), 0), "n_pixels=0"),
    ("gaussian_blur-sigma", R.gaussian_blur, lambda m, x: R.gaussian_blur(x, 0.0), "sigma=0"),
    ("fill_values-3d", R.fill_values, lambda m, x: R.fill_values(x[0]), "(B, 3, H, W)"),
    ("remove_pixels-empty", R.remove_pixels, lambda m, x: R.remove_pixels(x[:0], torch.rand(0, 1, 4, 4), R.Removal([0.5])), "is empty"),
    ("trapezoid_auc-lengths", R.trapezoid_auc, lambda m, x: R.trapezoid_auc([0, 1], [1.0]), "same length"),
    ("removal_curve-float-labels", R.removal_curve, lambda m, x: R.removal_curve(m, x, torch.tensor([0.0, 1.0]), torch.rand(2, 1, 4, 4)), "integers"),
    ("removal_curve-label-range", R.removal_curve, lambda m, x: R.removal_curve(m, x, torch.tensor([0, 7]), torch.rand(2, 1, 4, 4)), "must lie in 0..2"),
    ("removal_curve-batch", R.removal_curve, lambda m, x: R.removal_curve(m, x, torch.tensor([0, 1]), torch.rand(2, 1, 4, 4), batch_size=-1), "batch_size=-1"),
    ("intermediate_layer-0", R.intermediate_layer, lambda m, x: R.intermediate_layer(0), "depth=0"),
    ("default_layers-not-model", R.default_layers, lambda m, x: R.default_layers("fa-pool"), "nn.Module"),
    ("compute_maps-batch", MP.compute_maps, lambda m, x: MP.compute_maps("fa-cnn", m, x, torch.tensor([0, 1]), None, batch=0), "batch=0"),
    ("compute_maps-method", MP.compute_maps, lambda m, x: MP.compute_maps("lime", m, x, torch.tensor([0, 1]), None), "unknown method"),
    ("run_benchmark-n-images", R.run_benchmark, lambda m, x: R.run_benchmark(m, None, n_images=0), "n_images=0"),
    ("aggregate-columns", R.aggregate, lambda m, x: R.aggregate(_frame()), "lacks the column"),
    ("auc_table-columns", R.auc_table, lambda m, x: R.auc_table(_frame()), "lacks the column"),
]


@pytest.mark.parametrize("fn,call,message", [b[1:] for b in BOUNDARY], ids=[b[0] for b in BOUNDARY])
def test_public_boundary(mx, fn, call, message):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=re.escape(message)):
        call(*mx)


def test_every_public_function_is_in_the_table():
    covered = {b[1] for b in BOUNDARY}
    for module in (A, T, R):
        public = [f for n, f in vars(module).items() if inspect.isfunction(f)
                  and f.__module__ == module.__name__ and not n.startswith("_")]
        missing = [f.__name__ for f in public if f not in covered]
        assert not missing, f"{module.__name__}: no bad-input row for {missing}"


# -- files -----------------------------------------------------------------------------------

def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp*")]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_failed_write_leaves_no_temp_file(tmp_path, exc):
    fileio.atomic_write_text(tmp_path / "x.txt", "old")

    def boom(f):
        f.write(b"partial")
        raise exc
    with pytest.raises(type(exc)):
        fileio.atomic_write_bytes(tmp_path / "x.txt", boom)
    assert (tmp_path / "x.txt").read_text() == "old" and not _temps(tmp_path)


def test_stale_temp_files_are_swept(tmp_path):
    cfg = tiny(tmp_path)
    out = TR.run_dir(cfg)
    out.mkdir(parents=True)
    dead = 2 ** 22 + 12345           # above the default pid_max: no such process
    stale = out / f".checkpoint.pt.tmp{dead}"
    alive = out / f".metrics.jsonl.tmp{os.getppid()}"
    stale.write_bytes(b"x")
    alive.write_bytes(b"x")
    TR.train(cfg)
    assert not stale.exists() and alive.exists()


@pytest.mark.parametrize("code,fix", [(errno.ENOSPC, "free space"), (errno.EROFS, "not writable"),
                                      (errno.EACCES, "not writable")],
                         ids=["ENOSPC", "EROFS", "EACCES"])
def test_storage_errors_name_the_path_and_fix(tmp_path, monkeypatch, code, fix):
    """Simulated with a failing fsync (chmod does not stop root, who may run the tests)."""
    cfg = tiny(tmp_path)

    def fail(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fileio.os, "fsync", fail)
    with pytest.raises(fileio.StorageError) as e:
        TR.train(cfg)
    msg = str(e.value)
    assert "\n" not in msg and str(TR.run_dir(cfg)) in msg and fix in msg and "--set out_dir=" in msg
    assert not _temps(tmp_path)


def test_unwritable_out_dir(tmp_path, monkeypatch):
    cfg = tiny(tmp_path / "ro")

    def refuse(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(fileio.StorageError, match=r"cannot write .*ro.* not writable .*--set out_dir="):
        TR.train(cfg)


def test_truncated_json_names_file_and_fix(tmp_path):
    cfg = tiny(tmp_path)
    TR.train(cfg)
    summary = TR.run_dir(cfg) / "summary.json"
    summary.write_text(summary.read_text()[:40])
    with pytest.raises(ValueError, match=r"summary\.json is truncated.*delete it and rerun python -m facnn train"):
        TR.train(cfg)
    summary.unlink()                       # the fix: the finished checkpoint rewrites it
    assert TR.train(cfg)["epochs"] == 1
    metrics = TR.run_dir(cfg) / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 2, "lr"')
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 2 is truncated"):
        fileio.read_jsonl(metrics)


def test_weights_missing_a_key(tmp_path):
    cfg = tiny(tmp_path)
    TR.train(cfg)
    folder = TR.run_dir(cfg)
    (folder / "checkpoint.pt").unlink()
    w = torch.load(folder / "weights.pt", weights_only=False)
    dropped = next(iter(w["model"]))
    del w["model"][dropped]
    torch.save(w, folder / "weights.pt")
    with pytest.raises(CK.CheckpointError, match=rf"1 key\(s\) missing \({re.escape(dropped)}\).*python -m facnn train"):
        CK.load_trained(cfg)


def _finished_without(tmp_path, damage, capsys):
    cfg = tiny(tmp_path)
    first = TR.train(cfg)
    folder = TR.run_dir(cfg)
    (folder / "checkpoint.pt").unlink()
    damage(folder / "weights.pt")
    capsys.readouterr()
    again = TR.train(cfg)
    err = capsys.readouterr().err
    assert "retraining it from scratch" in err and "about" in err
    assert (folder / "summary.previous.json").exists() and (folder / "weights.pt").exists()
    assert again["accuracy"] == first["accuracy"]          # the same run, rebuilt
    CK.load_trained(cfg)                                   # eval works again
    assert TR.train(cfg) == again                          # and the next call is a cache hit


def test_finished_run_without_weights_retrains(tmp_path, capsys):
    _finished_without(tmp_path, Path.unlink, capsys)


def test_corrupt_weights_retrain(tmp_path, capsys):
    _finished_without(tmp_path, lambda p: p.write_bytes(p.read_bytes()[:100]), capsys)


# -- training ------------------------------------------------------------------------------

def test_nan_loss_stops_naming_the_batch(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, batch_size=10)          # 10 batches; the flag is read at the end
    real, calls = facnn.models.Classifier.loss, []

    def loss(self, scores, y):
        calls.append(1)
        out = real(self, scores, y)
        return out * math.nan if len(calls) == 6 else out
    monkeypatch.setattr(facnn.models.Classifier, "loss", loss)
    with pytest.raises(FloatingPointError, match="NaN or inf at epoch 1, batch 5.*--set lr="):
        TR.train(cfg)
    assert not (TR.run_dir(cfg) / "checkpoint.pt").exists()


def _interrupt_at(monkeypatch, batch: int, presses: int = 1):
    """Press Ctrl-C (SIGINT) ``presses`` times while the loop lays out batch ``batch``."""
    real, seen = TR._layout, []

    def layout(x, channels_last=None):
        seen.append(1)
        if len(seen) - 1 == batch:
            for _ in range(presses):   # call the installed handler: two raised signals
                handler = signal.getsignal(signal.SIGINT)   # may coalesce into one delivery
                handler(signal.SIGINT, None)
        return real(x, channels_last)
    monkeypatch.setattr(TR, "_layout", layout)


def test_ctrl_c_saves_and_resumes_bitwise(tmp_path, monkeypatch):
    straight = tiny(tmp_path / "a", batch_size=10)
    TR.train(straight)
    cut = tiny(tmp_path / "b", batch_size=10)
    _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt, match="rerun the same command to resume from epoch 1 batch 4 \\(of 1 epochs"):
        TR.train(cut)
    monkeypatch.undo()
    ckpt = CK.load_checkpoint(TR.run_dir(cut) / "checkpoint.pt", cut)
    assert (ckpt["epoch"], ckpt["batch"]) == (0, 4)
    TR.train(cut)
    a = CK.load_checkpoint(TR.run_dir(straight) / "checkpoint.pt")["model"]
    b = CK.load_checkpoint(TR.run_dir(cut) / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_second_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, batch_size=10)
    before = signal.getsignal(signal.SIGINT)     # SIG_IGN in a background job, else Python's
    _interrupt_at(monkeypatch, 3, presses=2)     # the second press stops mid-batch
    with pytest.raises(KeyboardInterrupt, match="before the first checkpoint"):
        TR.train(cfg)
    assert not (TR.run_dir(cfg) / "checkpoint.pt").exists()
    assert signal.getsignal(signal.SIGINT) == before      # training hands the handler back


def _syncs(monkeypatch, cfg) -> int:
    """Device-to-host reads (bool/int/float/item of a tensor) during train(cfg)."""
    count = [0]
    for name in ("__bool__", "__int__", "__float__", "item"):
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, **k):
            count[0] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, wrapped)
    TR.train(cfg)
    monkeypatch.undo()
    return count[0]


def test_training_reads_the_device_rarely(tmp_path, monkeypatch):
    few = _syncs(monkeypatch, tiny(tmp_path / "a", shapes_train=100, batch_size=20))    # 5 batches
    many = _syncs(monkeypatch, tiny(tmp_path / "b", shapes_train=380, batch_size=20))   # 19 batches
    assert many - few <= 2, (few, many)       # not one per batch
    cfg = tiny(tmp_path / "a", shapes_train=100, batch_size=20)
    with pytest.raises(ValueError, match="NaN or inf"):   # user calls keep their input checks
        CK.load_trained(cfg)(torch.full((1, 3, 32, 32), math.nan))


def test_training_matches_a_plain_loop(tmp_path):
    """The loop without per-step checks gives the weights of the plain loop it replaced
    (forward with input checks, isfinite(loss) read every step), bitwise."""
    cfg = tiny(tmp_path, epochs=2, batch_size=25)
    TR.train(cfg)
    torch.manual_seed(cfg.seed)
    model = facnn.model_from_config(cfg)
    opt = TR.make_optimizer(model, cfg)
    train_loader, _ = TR.make_loaders(cfg, torch.device("cpu"))
    steps = len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: TR.lr_factor(cfg, s, steps))
    for epoch in range(cfg.epochs):
        model.train()
        train_loader.set_epoch(epoch, 0)
        for x, y in train_loader:
            loss = model.loss(model(x), y)
            assert torch.isfinite(loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    got = CK.load_checkpoint(TR.run_dir(cfg) / "checkpoint.pt", cfg)["model"]
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


def test_compile_is_ignored_on_cpu(tmp_path, capsys):
    cfg = tiny(tmp_path, compile=True, device="cpu")
    assert cfg.hash() == tiny(tmp_path).hash()
    TR.train(cfg)
    assert "compile=true is ignored on cpu" in capsys.readouterr().err


# -- round two: refused before anything is written -------------------------------------------

@pytest.mark.parametrize("case", cases("test_cli_refused_before_writing"))
def test_cli_refused_before_writing(case, tmp_path, monkeypatch):
    """The real command, run in an empty folder (results/ and data/ are relative): a one-line
    error naming the fix, and the folder stays empty."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = shlex.split(case["input"])
    main = {"facnn": M.main, "facnnbook.plan": plan_main}[argv[2]]
    with pytest.raises(SystemExit) as e:
        main(argv[3:])
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "\n" not in msg and fragment(case) in msg, msg
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_importing():
    """Ctrl-C while torch imports (the first second or two of python -m facnn): exit 130,
    no traceback. The KeyboardInterrupt that Python's SIGINT handler raises is raised as the
    import of torch starts (a real os.kill is delivered asynchronously, and code inside the
    import may swallow it, so the test would sometimes press nothing)."""
    import subprocess
    import sys
    code = ("import runpy, sys\n"
            "class Press:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch': raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Press())\n"
            "sys.argv = ['facnn', 'info', '--profile', 'smoke']\n"
            "runpy.run_module('facnn', run_name='__main__', alter_sys=True)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 130 and "Traceback" not in r.stderr, (r.returncode, r.stderr)


class _FullDisk(io.FileIO):
    """A file on a disk that fills after ``room`` bytes."""
    room = 1000

    def write(self, b):
        if self.tell() + len(b) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def _fill_disk(monkeypatch):
    import builtins
    monkeypatch.setattr(fileio, "open", lambda path, mode="r", *a, **k: _FullDisk(path, "w") if mode == "wb"
                        else builtins.open(path, mode, *a, **k), raising=False)


def test_checkpoint_save_on_a_full_disk(tmp_path, monkeypatch):
    """torch.save reports a failed write as "enforce fail at inline_container.cc"."""
    cfg = tiny(tmp_path)
    _fill_disk(monkeypatch)
    with pytest.raises(fileio.StorageError) as e:
        TR.train(cfg)
    msg = str(e.value)
    assert "\n" not in msg and "free space" in msg and "enforce" not in msg and "--set out_dir=" in msg
    assert not _temps(tmp_path)


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    """A pack of 60 train and 20 test random images of 10 classes."""
    import numpy as np
    from facnn import pack
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("src")
    x = rng.integers(0, 256, (80, 8, 8, 3)).repeat(4, 1).repeat(4, 2).astype(np.uint8)
    arrays = dict(x_train=x[:60], y_train=np.arange(60) % 10, x_test=x[60:], y_test=np.arange(20) % 10,
                  classes=np.array([f"c{i}" for i in range(10)]))
    np.savez(folder / "cifar10.npz", **arrays)
    out = folder / "pack"
    pack.pack("cifar10", out, max_mb=1.0, source=folder / "cifar10.npz")
    return folder / "cifar10.npz", out


def _copy_pack(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(folder: Path, edit) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def _relabel(folder: Path, **arrays) -> None:
    import hashlib
    import numpy as np
    with np.load(folder / "labels.npz") as z:
        labels = {**{k: z[k] for k in z.files}, **arrays}
    np.savez(folder / "labels.npz", **labels)
    digest = hashlib.sha256((folder / "labels.npz").read_bytes()).hexdigest()
    _edit_manifest(folder, lambda m: m["checksums"].update({"labels.npz": digest}))


def _escape(f):
    _edit_manifest(f, lambda m: m.update(dataset="../../escaped"))


def _no_checksum(f):
    _edit_manifest(f, lambda m: m["checksums"].pop("labels.npz"))


def _says_cifar100(f):
    _edit_manifest(f, lambda m: m.update(dataset="cifar100"))


def _label_11(f):
    import numpy as np
    _relabel(f, y_train=(np.arange(60) % 10) + 2)


def _count(f):
    _edit_manifest(f, lambda m: m["train"].update(count=100))


def _file_outside(f):
    _edit_manifest(f, lambda m: m["train"].update(files=["../../etc/passwd"]))


@pytest.mark.parametrize("spoil,message", [
    (_escape, "names dataset '../../escaped'"), (_no_checksum, "has no checksum for labels.npz"),
    (_says_cifar100, "holds 10 classes, but cifar100 has 100"), (_label_11, "labels 2..11, outside 0..9"),
    (_file_outside, "not a plain file name"), (_count, "counts 100 train images"),
], ids=["escape", "no-checksum", "says-cifar100", "label-out-of-range", "file-outside", "count"])
def test_a_bad_manifest_is_refused_and_nothing_written(small_pack, tmp_path, spoil, message):
    from facnn import pack
    folder = _copy_pack(small_pack[1], tmp_path / "a" / "b" / "pack")
    spoil(folder)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(pack.PackError, match=re.escape(message)):
        pack.unpack(folder, tmp_path / "a" / "b" / "data")
    assert sorted(tmp_path.rglob("*")) == before


def test_pack_refuses_bad_input_before_writing(small_pack, tmp_path):
    import numpy as np
    from facnn import pack
    with pytest.raises(pack.PackError, match="holds 10 classes, but cifar100 has 100; pack it as cifar10"):
        pack.pack("cifar100", tmp_path / "p", source=small_pack[0])
    with np.load(small_pack[0]) as z:
        bad = {**{k: z[k] for k in z.files}, "y_test": np.full(20, 12)}
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(pack.PackError, match="labels 12..12, outside 0..9"):
        pack.pack("cifar10", tmp_path / "p", source=tmp_path / "bad.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(pack.PackError, match="text.npz is not a .npz archive"):
        pack.pack("cifar10", tmp_path / "p", source=tmp_path / "text.npz")
    for mb in (math.nan, -1, math.inf):
        with pytest.raises(pack.PackError, match="--max-mb .* must be a positive number"):
            pack.pack("cifar10", tmp_path / "p", max_mb=mb, source=small_pack[0])
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("action", ["pack", "unpack"], ids=["pack", "unpack"])
def test_pack_and_unpack_on_a_full_disk(small_pack, tmp_path, monkeypatch, capsys, action):
    src, packed = small_pack
    target = str(src if action == "pack" else packed)
    argv = ["data", action, "cifar10" if action == "pack" else target, "--out", str(tmp_path / "out")]
    if action == "pack":
        argv += ["--source", target]
    _fill_disk(monkeypatch)
    with pytest.raises(SystemExit) as e:
        M.main(argv)
    msg = str(e.value.code)
    assert msg.startswith("error: cannot write") and "free space" in msg and "--out DIR" in msg, msg
    assert not _temps(tmp_path)


def test_worker_errors_are_one_line(tmp_path):
    """A truncated JPEG read by a DataLoader worker: the worker's one line, as the tensor path says."""
    from facnn import imagenet as IN, loaders as Ld
    from test_imagenet import WNIDS, write_tree
    root = write_tree(tmp_path / "imagenet20", n_train=1)
    path = root / "train" / WNIDS[7] / f"{WNIDS[7]}_0.jpg"
    path.write_bytes(path.read_bytes()[:40])
    ds = IN.FolderDataset("imagenet20", root, "train", IN.class_list("imagenet20", root), 16)
    loader = Ld.FolderLoader(ds, 4, False, num_workers=1)
    with pytest.raises(ValueError) as e:
        list(loader)
    assert str(e.value).startswith(f"image {path} does not decode") and "\n" not in str(e.value)


def test_a_finished_runs_damaged_checkpoint(tmp_path, capsys):
    """checkpoint.pt truncated, weights.pt intact: eval uses the weights; train moves the
    damaged checkpoint aside and says so."""
    cfg = tiny(tmp_path)
    first = TR.train(cfg)
    ckpt = TR.run_dir(cfg) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    CK.load_trained(cfg)
    capsys.readouterr()
    assert TR.train(cfg) == first
    assert "checkpoint.damaged.pt" in capsys.readouterr().err and not ckpt.exists()
    CK.load_trained(cfg)


def test_two_trainings_of_one_run(tmp_path):
    cfg = tiny(tmp_path)
    folder = fileio.make_dir(TR.run_dir(cfg))
    with fileio.run_lock(folder):
        with pytest.raises(fileio.RunLocked, match=rf"being trained by process {os.getpid()} .*wait for it"):
            TR.train(cfg)
    assert TR.train(cfg)["epochs"] == 1 and not (folder / ".lock").exists()


def test_a_finished_run_in_a_read_only_folder(tmp_path, monkeypatch):
    import builtins
    cfg = tiny(tmp_path)
    first = TR.train(cfg)

    def read_only(path, mode="r", *a, **k):
        if "r" not in mode or "+" in mode:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return builtins.open(path, mode, *a, **k)
    monkeypatch.setattr(fileio, "open", read_only, raising=False)
    assert TR.train(cfg) == first


def test_eval_of_an_unfinished_run_says_so(tmp_path, monkeypatch, capsys):
    cfg = tiny(tmp_path, epochs=2)
    TR.train(cfg, stop_after=1)
    argv = shlex.split(cli_command(cfg, "eval"))[3:]
    capsys.readouterr()
    M.main(argv)
    out, err = capsys.readouterr()
    assert json.loads(out)["finished"] is False and "unfinished" in err
    TR.train(cfg)
    M.main(argv)
    out, err = capsys.readouterr()
    assert json.loads(out)["finished"] is True and not err


def test_book_refuses_a_profile_in_set(tmp_path):
    from facnnbook import pipeline as P
    with pytest.raises(SystemExit, match="use --profile cpu instead"):
        P.main(["--profile", "smoke", "--only", "02", "--set", "profile=cpu", "--root", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_book_chapter_error_is_one_line(tmp_path, monkeypatch):
    import papermill as pm
    from facnnbook import pipeline as P

    def fails(src, dst, *a, **k):
        raise pm.PapermillExecutionError(3, 3, "ch.size('n_images', n_images)", "ValueError",
                                         "n_images=-5 must be >= 1",
                                         [f"line {i}" for i in range(27)])
    monkeypatch.setattr(P, "execute_chapter", fails)
    monkeypatch.setattr(P, "ensure_kernel", lambda: None)
    with pytest.raises(SystemExit) as e:
        P.main(["--profile", "smoke", "--only", "04", "--no-build", "--root", str(tmp_path),
                "--set", "n_images=-5"])
    msg = str(e.value.code)
    assert "\n" not in msg and "ValueError: n_images=-5 must be >= 1" in msg and "line 3" not in msg


def _constant_edited(monkeypatch, module: str, source: str):
    """Pretend facnn's module source now defines ``source`` (e.g. STATS = ...)."""
    import ast
    from facnnbook import constants as K
    real = K._parsed

    def parsed(name):
        defs, imports = real(name)
        if name == module:
            node = ast.parse(source).body[0]
            defs = {**defs, node.targets[0].id: node}
        return defs, imports
    monkeypatch.setattr(K, "_parsed", parsed)


@pytest.mark.parametrize("legacy", [False, True], ids=["hashes", "older-entry-against-git"])
def test_a_changed_library_constant_marks_results_stale(tmp_path, monkeypatch, legacy):
    from facnnbook import cache as Cc
    mod = tmp_path / "chapter_stats.py"
    mod.write_text("from facnn import data as D\n\n\ndef study(x):\n    return {'x': float(D.normalise(x).sum())}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import chapter_stats
    monkeypatch.setattr(Cc, "git_commit", lambda: "HEAD")
    Cc.Cache("smoke", tmp_path / "r").get("s", {}, lambda: {"x": 1}, {}, [chapter_stats.study])
    root = tmp_path / "r" / "smoke" / "analysis"
    if legacy:   # an entry written before constants were tracked
        meta_path = next(root.glob("s-*")) / "meta.json"
        meta = json.loads(meta_path.read_text())
        for k in ("constants", "meta_sha256"):
            meta.pop(k)
        meta_path.write_text(json.dumps(meta))
    assert Cc.stale_entries(root) == []
    _constant_edited(monkeypatch, "facnn.data", "STATS = {'cifar10': ((0.5,) * 3, (0.25,) * 3)}")
    assert Cc.stale_entries(root) == [(next(root.glob("s-*")).name,
                                       "a constant it reads has changed (facnn.data.STATS)")]


def test_an_edited_meta_json_is_refused(tmp_path):
    from facnnbook import cache as Cc
    calls = []
    get = lambda: Cc.Cache("smoke", tmp_path).get("s", {}, lambda: calls.append(1) or {"x": 1}, {}, ["facnn.layers"])
    get()
    meta_path = next((tmp_path / "smoke" / "analysis").glob("s-*")) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["provenance"]["commit"] = "0000000"
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="meta.json was edited after it was written"):
        _, prov = get()
    assert len(calls) == 2 and prov.commit != "0000000"


def test_book_ctrl_c_exits_130():
    import subprocess
    import sys
    code = ("import runpy, facnnbook.pipeline as P\n"
            "def stop(argv=None): raise KeyboardInterrupt\n"
            "P.main = stop\n"
            "runpy.run_module('facnnbook', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 130 and "Traceback" not in r.stderr and "rerun" in r.stderr, r.stderr


def test_book_into_an_unwritable_root(tmp_path):
    from facnnbook import pipeline as P
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        P.main(["--profile", "smoke", "--root", str(tmp_path / "file" / "book"), "--no-execute", "--no-build"])
    assert str(e.value.code).startswith("error: cannot write the book into") and "\n" not in str(e.value.code)


def test_a_sweep_reads_finished_runs_and_never_retrains_them(tmp_path, monkeypatch, capsys):
    """A clone keeps only the summaries of sweep runs (no weights): sweep must read them, not
    retrain every rate from scratch (train() retrains a finished run whose weights are gone)."""
    from facnn.config import apply_overrides, lr_sweep, run_dir
    cfgs = [apply_overrides(c, {"out_dir": str(tmp_path)}) for c in lr_sweep("smoke", "fa-pool")]
    first = run_dir(cfgs[0])
    first.mkdir(parents=True)
    (first / "summary.json").write_text(json.dumps({"accuracy": 0.25}))
    trained = []
    monkeypatch.setattr(TR, "train", lambda cfg: trained.append(cfg.lr) or {"accuracy": 0.5})
    M.main(["sweep", "--profile", "smoke", "--model", "fa-pool", "--set", f"out_dir={tmp_path}"])
    assert trained == [c.lr for c in cfgs[1:]]          # only the rates without a summary
    out = capsys.readouterr().out
    assert f"lr {cfgs[0].lr:g}: accuracy 0.2500" in out and f"lr {cfgs[1].lr:g}: accuracy 0.5000" in out
