#!/usr/bin/env python3
"""The prepared GPU check: one script, under 9 minutes, results as JSON.

On a machine with one CUDA GPU and its own torch (no venv, maybe none of our other pip
packages), from the checkout:

    PYTHONPATH=. python scripts/gpu_check.py --pack ../gpu-pack/cifar10 --out OUT
    make gpu-check OUT=dir [PACK=../gpu-pack/cifar10]

Parts, each in its own process with a hard time box (killed when it runs over; the rest
goes on), results in OUT/gpu_check.json (schema SCHEMA, checked by :func:`validate`):

    data        unpack the offline pack (python -m facnn data pack) into OUT/data
    cuda_tests  pytest -m cuda tests/test_cuda.py ("pytest missing" recorded if absent)
    bench       paper-size FA-CNN (N=24, K=200) training images/s in bf16 + channels_last,
                eager and torch.compile, as a fraction of the GPU's bf16 peak; class maps
                against pytorch-grad-cam when it is installed
    train       paper-size FA-CNN on CIFAR-10 from the pack, as many epochs as fit the box
                (cosine schedule over those epochs), evaluated on the full test set each epoch

``--dry-run`` runs the same parts on the CPU at tiny sizes in seconds (same schema): the
test suite runs it. Missing optional packages (pytest, tqdm, Pillow, pytorch-grad-cam) are
recorded in "missing"; tqdm is replaced by a stub so training still runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "facnn-gpu-check/1"
STATUSES = ("passed", "failed", "skipped", "timeout", "error")
PARTS = ("data", "cuda_tests", "bench", "train")
OPTIONAL = ("pytest", "tqdm", "numpy", "PIL", "torchvision", "pytorch_grad_cam")
# Hard time boxes in seconds (GPU run; the whole check stays under TOTAL_S).
TOTAL_S = 520
BOX_S = {"data": 60, "cuda_tests": 120, "bench": 100, "train": 330}
DRY_BOX_S = {"data": 60, "cuda_tests": 90, "bench": 60, "train": 60}
TRAIN_MARGIN_S = 45        # start-up, data loading and the last evaluation inside the train box

def bf16_peak(device_name: str) -> float | None:
    """facnn.info.bf16_peak, imported late: the script starts (and reports) without torch."""
    from facnn.info import bf16_peak as peak
    return peak(device_name)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# -- the schema ------------------------------------------------------------------------------

_TOP = {"schema": str, "mode": str, "started": str, "finished": str, "wall_s": (int, float),
        "machine": dict, "missing": list, "parts": dict, "notes": list}


def validate(doc: dict) -> list[str]:
    """Problems with a gpu_check.json document (empty when it is well formed)."""
    errors = []
    for k, t in _TOP.items():
        if k not in doc:
            errors.append(f"missing key {k}")
        elif not isinstance(doc[k], t):
            errors.append(f"{k} is {type(doc[k]).__name__}")
    if errors:
        return errors
    if doc["schema"] != SCHEMA:
        errors.append(f"schema {doc['schema']!r} != {SCHEMA!r}")
    if doc["mode"] not in ("gpu", "dry-run"):
        errors.append(f"mode {doc['mode']!r}")
    for name in PARTS:
        p = doc["parts"].get(name)
        if not isinstance(p, dict):
            errors.append(f"part {name} missing")
            continue
        if p.get("status") not in STATUSES:
            errors.append(f"part {name}: status {p.get('status')!r}")
        if not isinstance(p.get("seconds"), (int, float)) or not isinstance(p.get("box_s"), (int, float)):
            errors.append(f"part {name}: seconds/box_s missing")
    bench = doc["parts"].get("bench", {})
    if bench.get("status") == "passed":
        fa = bench.get("paper_fa", {})
        for k in ("images_per_s", "gflops_per_image", "batch", "variant"):
            if k not in fa:
                errors.append(f"bench.paper_fa.{k} missing")
    train = doc["parts"].get("train", {})
    if train.get("status") == "passed":
        for k in ("epochs", "test_accuracy", "test_images", "images_per_s", "history"):
            if k not in train:
                errors.append(f"train.{k} missing")
    return errors


# -- the parent --------------------------------------------------------------------------------

def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch": None, "cuda": None, "gpu": None, "bf16_peak_flops": None}
    try:
        import torch
        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            info.update(gpu=name, gpu_count=torch.cuda.device_count(), bf16_peak_flops=bf16_peak(name),
                        gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    except ImportError:
        pass
    return info


def _shims(out: Path) -> Path | None:
    """A stub tqdm (iterates, writes lines) on a path the parts import from, when tqdm is absent."""
    if have("tqdm"):
        return None
    d = out / "_shims" / "tqdm"
    d.mkdir(parents=True, exist_ok=True)
    stub = ("class tqdm:\n"
            "    def __init__(self, it=None, *a, **k): self.it = it\n"
            "    def __iter__(self): return iter(self.it)\n"
            "    def __len__(self): return len(self.it)\n"
            "    def set_postfix(self, *a, **k): pass\n"
            "    def update(self, *a, **k): pass\n"
            "    def close(self): pass\n"
            "    @staticmethod\n"
            "    def write(s, *a, **k): print(s, flush=True)\n")
    (d / "__init__.py").write_text(stub)
    (d / "auto.py").write_text("from . import tqdm\n")
    return d.parent


def _run_box(cmd: list[str], box: float, env: dict, log: Path) -> tuple[str, float, int | None]:
    """Run ``cmd`` in its own process group for at most ``box`` seconds (then kill the group).
    Returns ("done" | "timeout", seconds, return code)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=max(box, 1))
            return "done", time.perf_counter() - t0, rc
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "timeout", time.perf_counter() - t0, None


def _tail(log: Path, n: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder for the results")
    ap.add_argument("--pack", type=Path, default=None, help="the CIFAR-10 pack (facnn data pack)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, seconds")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)      # internal: one part
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        return PART_FNS[args.part](args)

    t_start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    boxes = DRY_BOX_S if args.dry_run else BOX_S
    total = sum(DRY_BOX_S.values()) if args.dry_run else TOTAL_S
    m = machine()
    mode = "dry-run" if args.dry_run else "gpu"
    notes = []
    if mode == "gpu" and not m["gpu"]:
        notes.append("no CUDA device: the GPU parts fail; use --dry-run on a CPU")
    missing = [k for k in OPTIONAL if not have(k)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([str(_shims(args.out))] if "tqdm" in missing else []) +
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    if "tqdm" in missing:
        notes.append("tqdm missing: a stub stands in for it")
    if mode == "dry-run":
        env["CUDA_VISIBLE_DEVICES"] = ""
    parts = {}
    for name in PARTS:
        left = total - (time.perf_counter() - t_start)
        box = max(1.0, min(boxes[name], left - 5))
        log = args.out / f"{name}.log"
        result_file = args.out / f"{name}.json"
        result_file.unlink(missing_ok=True)
        if name == "data" and args.pack is None:
            parts[name] = {"status": "skipped", "seconds": 0.0, "box_s": box,
                           "why": "no --pack: the train part uses the synthetic shapes data"
                           if mode == "dry-run" else "no --pack given"}
            continue
        if name == "cuda_tests" and "pytest" in missing:
            parts[name] = {"status": "skipped", "seconds": 0.0, "box_s": box, "why": "pytest missing"}
            continue
        if left < 20:
            parts[name] = {"status": "skipped", "seconds": 0.0, "box_s": box, "why": "no time left"}
            continue
        if name == "cuda_tests":
            cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                   str(ROOT / "tests" / "test_cuda.py"), f"--junitxml={args.out / 'cuda_tests.xml'}"]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--out", str(args.out),
                   "--budget", str(box)] + (["--pack", str(args.pack)] if args.pack else []) + \
                  (["--dry-run"] if args.dry_run else [])
        # plugins off: the check needs none, and some (hypothesis, nbval) cost seconds to load
        part_env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if name == "cuda_tests" else env
        how, secs, rc = _run_box(cmd, box, part_env, log)
        if name == "cuda_tests":
            res = _junit(args.out / "cuda_tests.xml")
            status = "timeout" if how == "timeout" else "passed" if rc == 0 else \
                "failed" if rc == 1 else "skipped" if rc == 5 else "error"
            res.update(status=status)
        else:
            res = _read(result_file)
            if how == "timeout":
                res["status"] = "timeout"
                if name == "train":
                    res.update(_train_progress(args.out))
            elif rc != 0 or "status" not in res:
                res.setdefault("status", "error")
                if res["status"] == "passed":
                    res["status"] = "error"
        res.update(seconds=round(secs, 1), box_s=round(box, 1), returncode=rc)
        if res["status"] in ("failed", "error", "timeout"):
            res["log_tail"] = _tail(log)
        parts[name] = res
        print(f"{name}: {res['status']} in {secs:.0f} s (box {box:.0f} s)", flush=True)

    doc = {"schema": SCHEMA, "mode": mode, "started": started,
           "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "wall_s": round(time.perf_counter() - t_start, 1), "machine": m, "missing": missing,
           "parts": parts, "notes": notes, "commit": _commit()}
    problems = validate(doc)
    if problems:
        doc["notes"].append("schema problems: " + "; ".join(problems))
    (args.out / "gpu_check.json").write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out / 'gpu_check.json'} ({doc['wall_s']:.0f} s)")
    return 0


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _junit(path: Path) -> dict:
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    cases = []
    for c in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            el = c.find(tag)
            if el is not None:
                outcome = tag
                if tag != "skipped":
                    cases.append({"name": c.get("name"), "outcome": tag,
                                  "message": (el.get("message") or "")[:300]})
                break
        if outcome in ("passed", "skipped"):
            cases.append({"name": c.get("name"), "outcome": outcome})
    return {**counts, "cases": cases}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write(args, name: str, doc: dict) -> int:
    (args.out / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str))
    return 0


# -- the parts (each runs in its own process) ----------------------------------------------------

def part_data(args) -> int:
    from facnn import pack
    t0 = time.perf_counter()
    arrays, report = pack.load(args.pack)
    m = pack.read_manifest(args.pack)
    path = pack.write_npz(arrays, args.out / "data", m["dataset"])
    return _write(args, "data", {"status": "passed", "path": str(path), "dataset": m["dataset"],
                                 "train_images": int(len(arrays["x_train"])),
                                 "test_images": int(len(arrays["x_test"])),
                                 "unpack_s": round(time.perf_counter() - t0, 1), **report})


def _device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _bench_cfg(dry: bool):
    from facnn import preset
    if dry:
        return preset("smoke", "cifar10", "fa-pool", batch_size=8)   # N=4, K=20
    return preset("paper", "cifar10", "fa-pool")                      # N=24, K=200, batch 100


def _time_steps(model, x, y, bf16: bool, steps: int, warmup: int) -> float:
    import torch
    from contextlib import nullcontext
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    ctx = (lambda: torch.autocast(x.device.type, torch.bfloat16)) if bf16 else nullcontext
    loss_fn = getattr(model, "_orig_mod", model).loss

    def step():
        with ctx():
            scores = model(x)
        loss = loss_fn(scores, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return len(x) * steps / (time.perf_counter() - t0)


def part_bench(args) -> int:
    import torch
    from facnn.info import count_flops
    from facnn.models import model_from_config
    t_end = time.perf_counter() + (args.budget or 100) - 10
    dev, dry = _device(), args.dry_run
    cfg = _bench_cfg(dry)
    bf16 = dev.type == "cuda"
    gflops = count_flops(model_from_config(cfg), 32) / 1e9
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    peak = bf16_peak(name)
    steps, warmup = (2, 1) if dry else (20, 3)
    variants = []
    for variant, compiled, batch in (("eager", False, cfg.batch_size), ("eager", False, 256),
                                     ("compile", True, cfg.batch_size)):
        if dry and (batch != cfg.batch_size or compiled):
            variants.append({"variant": variant, "batch": batch,
                             "skipped": "dry-run (torch.compile takes a minute on a CPU)"})
            continue
        if time.perf_counter() > t_end - (60 if compiled else 10):
            variants.append({"variant": variant, "batch": batch, "skipped": "no time left"})
            continue
        torch.manual_seed(0)
        model = model_from_config(cfg).to(dev).train().to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.arange(batch, device=dev) % cfg.num_classes
        row = {"variant": variant, "batch": batch, "bf16": bf16, "channels_last": True}
        try:
            if compiled:
                model = torch.compile(model)
            t0 = time.perf_counter()
            ips = _time_steps(model, x, y, bf16, steps, warmup)
            row.update(images_per_s=ips, seconds=round(time.perf_counter() - t0, 2),
                       fraction_of_bf16_peak=ips * 3 * gflops * 1e9 / peak if peak else None)
        except Exception as e:   # a compile failure is a result, not a crash
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        variants.append(row)
        del model, x
    base = next((v for v in variants if v["variant"] == "eager" and v["batch"] == cfg.batch_size
                 and "images_per_s" in v), None)
    doc = {"status": "passed" if base else "failed", "device": name, "bf16_peak_flops": peak,
           "model": f"FA-CNN N={cfg.depth}, K={cfg.channels}, 32x32, {cfg.dataset}",
           "variants": variants, "maps": _bench_maps(cfg, dev, dry, t_end)}
    if base:
        doc["paper_fa"] = {"images_per_s": base["images_per_s"], "gflops_per_image": gflops,
                           "batch": base["batch"], "variant": "bf16 channels_last eager" if bf16
                           else "fp32 channels_last eager",
                           "fraction_of_bf16_peak": base["fraction_of_bf16_peak"]}
    return _write(args, "bench", doc)


def _bench_maps(cfg, dev, dry: bool, t_end: float) -> dict:
    """Class maps of all C classes: facnn.attribution.class_maps against pytorch-grad-cam."""
    import torch
    from facnn import attribution as A
    from facnn.models import model_from_config
    if not have("pytorch_grad_cam"):
        return {"skipped": "pytorch-grad-cam missing (pip install grad-cam)"}
    if dry and not os.environ.get("FACNN_GPU_CHECK_GRADCAM"):
        return {"skipped": "dry-run: importing pytorch-grad-cam costs ~10 CPU-seconds "
                           "(FACNN_GPU_CHECK_GRADCAM=1 runs it)"}
    if time.perf_counter() > t_end - 15:
        return {"skipped": "no time left"}
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    model = model_from_config(cfg).to(dev).eval()
    x = torch.randn(4 if dry else 32, 3, 32, 32, device=dev)
    c = cfg.num_classes

    def ours():
        A.class_maps(model, x)

    def theirs():
        with GradCAM(model, [model.layers[-1]]) as cam:
            for k in range(c):
                cam(x, [ClassifierOutputTarget(k)] * len(x))

    out = {"images": len(x), "classes": c}
    for key, fn in (("class_maps_s", ours), ("pytorch_grad_cam_s", theirs)):
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out[key] = sorted(times)[1]
    out["speedup"] = out["pytorch_grad_cam_s"] / out["class_maps_s"]
    return out


def _train_cfg(args, epochs: int):
    from facnn import preset
    common = dict(out_dir=str(args.out / "runs"), progress=True, save_every_s=1e9, epochs=epochs)
    data = args.out / "data"
    if args.dry_run:
        if (data / "cifar10.npz").exists():
            return preset("smoke", "cifar10", "fa-pool", data_root=str(data), **common)
        return preset("smoke", "shapes", "fa-pool", shapes_train=200, shapes_test=100, **common)
    return preset("paper", "cifar10", "fa-pool", data_root=str(data), **common)


def part_train(args) -> int:
    """Paper-size FA-CNN on CIFAR-10, epochs chosen so that training fits the box."""
    import torch
    from facnn import plan as P
    from facnn.train import run_dir, train
    t0 = time.perf_counter()
    budget = (args.budget or BOX_S["train"]) - (5 if args.dry_run else TRAIN_MARGIN_S)
    probe = _train_cfg(args, 1)
    if args.dry_run:
        epochs = 1
    else:
        ips = _read(args.out / "bench.json").get("paper_fa", {}).get("images_per_s") or \
            P.measure_images_per_s(probe, steps=5)
        n_train, n_test = P.train_images(probe), P.test_images(probe)
        epoch_s = 1.15 * (n_train / ips + n_test / (3 * ips))    # + 15 % for data and logging
        epochs = int(max(1, min(300, budget // epoch_s)))
    cfg = _train_cfg(args, epochs)
    (args.out / "train_run.json").write_text(json.dumps({"run_dir": str(run_dir(cfg)), "epochs": epochs}))
    s = train(cfg)
    hist = [json.loads(line) for line in (run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    return _write(args, "train", {
        "status": "passed", "dataset": cfg.dataset, "model": f"fa-pool N={cfg.depth}, K={cfg.channels}",
        "device": s["device"], "precision": s["precision"], "epochs": s["epochs"],
        "test_accuracy": s["accuracy"], "best_accuracy": s["best_accuracy"],
        "test_images": _test_count(cfg),
        "images_per_s": s["images_per_s"], "train_wall_s": s["wall_s"],
        "part_s": round(time.perf_counter() - t0, 1), "config_hash": cfg.hash(),
        "history": [{k: r.get(k) for k in ("epoch", "train_loss", "train_accuracy", "test_accuracy",
                                             "seconds")} for r in hist]})


def _test_count(cfg) -> int:
    """Images in the test split the run evaluates on (all of them, every epoch)."""
    if cfg.dataset == "shapes":
        return cfg.shapes_test
    import numpy as np
    with np.load(Path(cfg.data_root) / f"{cfg.dataset}.npz") as z:
        return int(len(z["y_test"]))


def _train_progress(out: Path) -> dict:
    """What a killed train part finished: the epochs in its metrics.jsonl."""
    plan = _read(out / "train_run.json")
    path = Path(plan.get("run_dir", "")) / "metrics.jsonl"
    try:
        hist = [json.loads(line) for line in path.read_text().splitlines()]
    except (OSError, ValueError):
        return {"epochs_planned": plan.get("epochs"), "epochs": 0}
    return {"epochs_planned": plan.get("epochs"), "epochs": len(hist),
            "test_accuracy": hist[-1]["test_accuracy"] if hist else None,
            "history": [{k: r.get(k) for k in ("epoch", "train_loss", "test_accuracy", "seconds")}
                        for r in hist]}


PART_FNS = {"data": part_data, "bench": part_bench, "train": part_train,
            "cuda_tests": lambda args: 2}


if __name__ == "__main__":
    sys.exit(main())
