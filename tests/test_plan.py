"""The run plan: which runs the book needs, their cost, done-ness, and commands that
rebuild exactly their configs."""
from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path

import pytest

import facnn.experiments as E
import facnnbook.plan as P
from facnn import preset
from facnn.config import lr_sweep, table1_cells
from facnn.info import count_flops
from facnn.models import model_from_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    return P.make_plan("paper", "h200", out_dir=tmp_path_factory.mktemp("results"))


def test_paper_plan_is_table1_shared_rate_and_sweep_deduplicated(paper):
    from facnn.experiments import MINIMAL_LR
    cells = [(d, m, r) for d in ("cifar10", "cifar100", "imagenet100") for m, r in table1_cells("paper", d)]
    table1 = {preset("paper", d, m, r).hash() for d, m, r in cells}
    shared = {preset("paper", d, m, r, lr=MINIMAL_LR).hash() for d, m, r in cells if r == "minimal"}
    sweep = {c.hash() for m in E.SWEEP_MODELS for c in lr_sweep("paper", m)}
    hashes = [r.config_hash for r in paper.runs]
    assert len(hashes) == len(set(hashes))
    assert set(hashes) == table1 | shared | sweep    # the chapters' models are Table 1's seed 0
    assert {r.dataset for r in paper.runs} == {"cifar10", "cifar100", "imagenet100"}


@pytest.mark.parametrize("profile", ["cpu", "smoke", "paper"])
def test_the_plan_lists_exactly_the_runs_the_book_reads(tmp_path, profile):
    """python -m facnnbook.plan and the book's run store (facnnbook.runs.Runs) name the same
    runs: Table 1 at each seed, chapter 01's shared-rate answers, the chapters' models, the
    sweeps."""
    from facnnbook.runs import Runs
    from facnn.experiments import HELDOUT_SWEEP, MINIMAL_LR
    runs = Runs(profile, results_dir=tmp_path)
    cells = runs.plan()   # chapter 01: the profile's Table 1 cells
    book = {runs.config(m, r, d, seed=s).hash() for d, m, r in cells for s in runs.seeds(d)}
    book |= {runs.config(m, r, d, seed=s, lr=MINIMAL_LR).hash() for d, m, r in cells
             if r == "minimal" for s in runs.seeds(d)}
    book |= {runs.config(m).hash() for m in ("fa-pool", "fa-linear", "vanilla")}
    book |= {runs.config("fa-pool", dataset=E.IMAGENET[profile]).hash()}
    book |= {c.hash() for m in E.SWEEP_MODELS for c in [*runs.sweep_configs(m), *(c for c, _ in runs.probes(m))]}
    book |= {c.hash() for m in E.SWEEP_MODELS for d in HELDOUT_SWEEP.get(profile, {})
             for c in runs.sweep_configs(m, d)}
    planned = {r.config_hash for r in P.make_plan(profile, "cpu-2core", out_dir=tmp_path).runs}
    assert planned == book


@pytest.mark.parametrize("profile,dataset,model", [
    ("paper", "cifar10", "fa-pool"), ("cpu", "cifar100", "vanilla"), ("smoke", "shapes", "resnet18"),
    ("cpu", "cifar10", "resnet50")])
def test_meta_size_equals_info_count(profile, dataset, model):
    cfg = preset(profile, dataset, model)
    params, flops = P.size(cfg)
    net = model_from_config(cfg)
    assert params == sum(p.numel() for p in net.parameters())
    assert flops == count_flops(net, 32)


def test_sizes_and_images(paper):
    by = {(r.dataset, r.model, r.recipe, r.lr): r for r in paper.runs if r.kind != "sweep"}
    fa = by[("cifar10", "fa-pool", "minimal", 0.8)]
    assert fa.epochs == 300 and fa.images == 50_000 * 300
    # N=24 3x3 convolutions of K=200 at 32, 16 and 8 px (8 layers each; the first from 3
    # channels): 2 x multiply-adds (FlopCounterMode counts convolutions and matmuls only)
    conv = 2 * 9 * 200 * (200 * 8 * (32 * 32 + 16 * 16 + 8 * 8) - (200 - 3) * 32 * 32)
    assert conv <= fa.gflops_per_image * 1e9 < 1.01 * conv
    sweep = [r for r in paper.runs if r.kind == "sweep"]
    assert all(r.images == 1000 * 10 * 100 for r in sweep)    # subset 1000x100, 100 epochs
    inet = by[("imagenet100", "fa-pool", "minimal", 0.8)]
    assert inet.gflops_per_image > 100 and inet.epochs == 100


def test_hours_follow_the_cost_model(paper):
    table = P.throughput_table()["h200"]
    for r in paper.runs[:3]:
        rate = table[(r.precision, P.size_class(r.gflops_per_image))].flops_per_s
        n_test = P.test_images(r.config) * r.epochs
        assert r.hours == pytest.approx((3 * r.images + n_test) * r.gflops_per_image * 1e9 / rate / 3600)
    assert paper.total_hours() == pytest.approx(sum(r.hours for r in paper.runs))


def test_cpu_rates_come_from_the_benchmark_file():
    path = ROOT / "results" / "benchmarks" / "cpu-2core-amd-epyc.json"
    if not path.exists():
        pytest.skip("no cpu benchmark file")
    doc = json.loads(path.read_text())
    rate = next(m["rate"]["median"] for m in doc["measurements"]
                if m["case"] == "train paper size, eager" and m["method"] == "fa-cnn")
    got = P.throughput_table()["cpu-2core"][("fp32", "large")]
    assert got.flops_per_s == pytest.approx(rate * 3 * P.size(preset("paper", "cifar10", "fa-pool"))[1])
    assert "cpu-2core-amd-epyc.json" in got.source


def test_gpu_check_result_replaces_the_assumption(tmp_path):
    (tmp_path / "results" / "gpu").mkdir(parents=True)
    doc = {"machine": {"gpu": "NVIDIA H200"},
           "parts": {"bench": {"paper_fa": {"images_per_s": 5000.0, "gflops_per_image": 7.0}}}}
    (tmp_path / "results" / "gpu" / "h200.json").write_text(json.dumps(doc))
    rate = P.throughput_table(tmp_path)["h200"][("bf16", "large")]
    assert rate.flops_per_s == pytest.approx(5000 * 3 * 7e9) and "h200.json" in rate.source
    assumed = P.throughput_table(ROOT / "nowhere")["h200"][("bf16", "large")]
    assert "assumed" in assumed.source


def test_done_detection_and_run_dir(tmp_path):
    plan = P.make_plan("smoke", "cpu-2core", out_dir=tmp_path)
    import facnn.train as T
    first = plan.runs[0]
    assert Path(first.run_dir) == T.run_dir(first.config)
    assert not any(r.done for r in plan.runs)
    Path(first.run_dir).mkdir(parents=True)
    (Path(first.run_dir) / "summary.json").write_text(json.dumps({"wall_s": 7200, "device": "cuda:0"}))
    again = P.make_plan("smoke", "cpu-2core", out_dir=tmp_path)
    assert again.runs[0].done and again.runs[0].actual_hours == pytest.approx(2.0)
    assert again.runs[0].trained_on == "cuda:0" and "yes, took 2.00 h on cuda:0" in again.text()
    assert len(again.missing) == len(plan.runs) - 1


def test_commands_rebuild_the_same_config(paper):
    from facnn.__main__ import _config
    import argparse
    import shlex
    for r in paper.runs:
        argv = shlex.split(r.command)
        assert argv[:4] == ["python", "-m", "facnn", "train"]
        ap = argparse.ArgumentParser()
        for k in ("--dataset", "--model", "--profile", "--recipe"):
            ap.add_argument(k, default=None)
        ap.add_argument("--set", nargs="*", default=[])
        args = ap.parse_args(argv[4:])
        assert _config(args).hash() == r.config_hash, r.command


def test_shell_script_lists_missing_runs(paper):
    one = paper.shell(1)
    assert one.startswith("#!/usr/bin/env bash") and one.count("\npython -m facnn train") == len(paper.missing)
    four = paper.shell(4)
    assert four.count("torchrun --nproc_per_node=4 -m facnn train") == len(paper.missing)


def test_measure_times_real_steps():
    cfg = preset("smoke", "shapes", "fa-pool")
    ips = P.measure_images_per_s(cfg, "cpu", steps=1, batch=4)
    assert ips > 0


def test_cli_plan_json_and_errors(tmp_path, capsys):
    P.main(["--profile", "smoke", "--json", "--device", "cpu-2core", "--out-dir", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"] == "smoke" and doc["device"] == "cpu-2core"
    keys = {"dataset", "model", "recipe", "config_hash", "gflops_per_image", "images", "epochs",
            "hours", "done", "command"}
    assert doc["runs"] and all(keys <= set(run) for run in doc["runs"])
    assert doc["total_hours"] == pytest.approx(sum(run["hours"] for run in doc["runs"]))
    with pytest.raises(SystemExit):
        P.main(["--profile", "nope"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("files, summary_only", [
    (("summary.json",), True),                   # a clone: git kept the summary alone
    (("summary.json", "weights.pt"), False),
    (("summary.json", "checkpoint.pt"), False),
])
def test_plan_says_how_to_retrain_a_summary_only_run(tmp_path, files, summary_only):
    plan = P.make_plan("paper", "h200", out_dir=tmp_path)
    run = plan.runs[0]
    for f in files:
        (Path(run.run_dir) / f).parent.mkdir(parents=True, exist_ok=True)
        (Path(run.run_dir) / f).write_text("{}")
    text = P.make_plan("paper", "h200", out_dir=tmp_path).text()
    assert ("summary only" in text) == summary_only
    assert ("1 done runs keep only their summary" in text and run.command in text) == summary_only


@pytest.mark.parametrize("overrides,n", [
    (dict(dataset="cifar10"), 10_000), (dict(dataset="imagenet20"), 2_000),
    (dict(dataset="cifar10", subset="1000x100"), 1_000), (dict(dataset="shapes", shapes_test=70), 70),
    (dict(dataset="imagenet20", holdout=50), 1_000),
], ids=["cifar10", "imagenet20", "subset", "shapes", "holdout"])
def test_one_count_of_test_images_for_plan_and_book(overrides, n):
    from facnnbook import table1 as T1
    cfg = preset("cpu", overrides.pop("dataset"), **overrides)
    assert P.test_images(cfg) == n and T1.test_size is P.test_images


@pytest.mark.parametrize("overrides,n", [
    (dict(dataset="cifar10"), 50_000), (dict(dataset="imagenet20"), 10_000),
    (dict(dataset="cifar10", subset="1000x100"), 10_000), (dict(dataset="shapes", shapes_train=90), 90),
    (dict(dataset="imagenet20", holdout=50), 9_000), (dict(dataset="cifar10", holdout=100), 49_000),
], ids=["cifar10", "imagenet20", "subset", "shapes", "holdout", "holdout-cifar10"])
def test_training_images_leave_out_the_held_out_ones(overrides, n):
    cfg = preset("cpu", overrides.pop("dataset"), **overrides)
    assert P.train_images(cfg) == n


# The tables of what is run and the rates they train at: facnn.experiments holds each, every
# other module imports it from there
TABLES = ("TABLE1_CELLS", "_CPU10", "_FA3", "PLAN", "SEEDS", "SEED_OVERRIDES", "IMAGENET",
          "CHAPTER_MODELS", "CHAPTER_OVERRIDES", "MINIMAL_LR", "MINIMAL_LR_OF", "MINIMAL_LR_ON",
          "minimal_lr", "SWEEP_MODELS", "SWEEP", "HELDOUT_SWEEP")


@lru_cache(maxsize=None)
def _defined() -> dict[str, set[str]]:
    """module path -> the names its top level assigns or defines (imports do not count)."""
    out = {}
    for path in sorted([*(ROOT / "facnn").rglob("*.py"), *(ROOT / "facnnbook").rglob("*.py")]):
        names = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize("name", TABLES)
def test_each_table_of_runs_is_defined_once_in_facnn_experiments(name):
    assert [m for m, names in _defined().items() if name in names] == ["facnn/experiments.py"]


def test_every_committed_run_folder_is_named_by_its_configs_hash():
    """A run's folder is <dataset>-<model>-<Config.hash()>: a field added to Config (hashed at
    its default) renames runs; none may keep a stale name, and no summary or weights file
    may disagree with its folder."""
    import json
    import subprocess
    import torch
    from facnn.config import Config
    tracked = subprocess.run(["git", "ls-files", "results"], capture_output=True, text=True,
                             cwd=ROOT).stdout.split()
    folders = sorted({Path(f).parent for f in tracked if f.endswith("/config.json")})
    assert folders, "no committed runs found"
    for folder in folders:
        cfg = Config.from_dict(json.loads((ROOT / folder / "config.json").read_text()))
        assert folder.name == cfg.run_name(), f"{folder} holds the config of {cfg.run_name()}"
        summary = ROOT / folder / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            assert (s["run"], s["config_hash"]) == (folder.name, cfg.hash()), folder
        if (ROOT / folder / "weights.pt").exists():
            ck = torch.load(ROOT / folder / "weights.pt", map_location="cpu", weights_only=False)
            assert ck["config_hash"] == cfg.hash(), folder
