#!/usr/bin/env python3
"""The prepared GPU check: one script, 8 minutes, results as a few flat JSON files.

The GPU machine is lent 15 minutes at a time, start-up included, and takes back only what
the command writes under its ``$OUT`` (at most 8 files). Give the device tool's ``run``
exactly this (COMMAND, CARRY and RUN_TIMEOUT_S below; README and the Performance page
quote them):

    command:   PYTHONPATH=. timeout 520 python3 scripts/gpu_check.py --pack data/gpu-pack/cifar10 --out "$OUT"
    carry:     ["data/gpu-pack"]
    timeout_s: 560

after making the pack (at most 40 MB, ignored by git, inside the tree so it can travel):

    python -m facnn data pack cifar10 --out data/gpu-pack/cifar10 --max-mb 40

Parts, each in its own process with a hard time box (killed when it runs over; the rest
goes on):

    data        unpack the pack into the scratch folder (--work, never under --out)
    cuda_tests  pytest -m cuda tests/test_cuda.py ("pytest missing" recorded if absent)
    bench       paper-size FA-CNN (N=24, K=200) training images/s in bf16 + channels_last,
                eager, then class maps against pytorch-grad-cam when it is installed, then
                torch.compile last (it may run long); bench.json is rewritten after each
    train       paper-size FA-CNN on CIFAR-10 from the pack, as many epochs as fit the box
                (cosine schedule over those epochs), evaluated on the full test set each epoch

What comes back, flat under --out (RETURNED): gpu_check.json (the summary, schema SCHEMA,
checked by :func:`validate`, rewritten after every part so a kill loses only the part
running), gpu_check.log (the console of every part), and data.json, cuda_tests.json,
bench.json, train.json. Data, checkpoints and junit files stay in --work.

``--dry-run`` runs the same parts on the CPU at tiny sizes in seconds (same schema): the
test suite runs the exact COMMAND that way, with tqdm and pytorch-grad-cam hidden. Missing
optional packages are recorded in "missing"; tqdm is replaced by scripts/shims/tqdm.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "facnn-gpu-check/2"
COMMAND = ('PYTHONPATH=. timeout 520 python3 scripts/gpu_check.py '
           '--pack data/gpu-pack/cifar10 --out "$OUT"')
CARRY = ("data/gpu-pack",)
RUN_TIMEOUT_S = 560
PACK_COMMAND = "python -m facnn data pack cifar10 --out data/gpu-pack/cifar10 --max-mb 40"
# The device tool's return limits: files flat or at most two folders deep under $OUT.
RETURN_LIMITS = {"files": 8, "file_bytes": 16 * 2**20, "total_bytes": 64 * 2**20, "depth": 3}
STATUSES = ("passed", "failed", "skipped", "timeout", "error", "pending")
PARTS = ("data", "cuda_tests", "bench", "train")
RETURNED = ("gpu_check.json", "gpu_check.log") + tuple(f"{p}.json" for p in PARTS)
OPTIONAL = ("pytest", "tqdm", "numpy", "PIL", "torchvision", "pytorch_grad_cam")
SHIMS = ROOT / "scripts" / "shims"
# Hard time boxes in seconds. The summary is final well inside the `timeout 520` of COMMAND.
TOTAL_S = 480
BOX_S = {"data": 45, "cuda_tests": 100, "bench": 100, "train": 240}
DRY_BOX_S = {"data": 60, "cuda_tests": 90, "bench": 60, "train": 60}
TRAIN_MARGIN_S = 45        # start-up, data loading and the last evaluation inside the train box


def bf16_peak(device_name: str) -> float | None:
    """facnn.info.bf16_peak, imported late: the script starts (and reports) without torch."""
    from facnn.info import bf16_peak as peak
    return peak(device_name)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def return_problems(out: Path) -> list[str]:
    """Why the device tool would not bring ``out`` back whole (empty when it would)."""
    files = [p for p in Path(out).rglob("*") if not p.is_dir()]
    lim, problems = RETURN_LIMITS, []
    if len(files) > lim["files"]:
        problems.append(f"{len(files)} files > {lim['files']}")
    for f in files:
        rel = f.relative_to(out)
        if f.is_symlink() or not f.is_file():
            problems.append(f"{rel}: not a plain file")
        elif f.stat().st_size > lim["file_bytes"]:
            problems.append(f"{rel}: {f.stat().st_size} bytes > {lim['file_bytes']}")
        if len(rel.parts) > lim["depth"]:
            problems.append(f"{rel}: deeper than $OUT/a/b/file")
    total = sum(f.stat().st_size for f in files if f.is_file())
    if total > lim["total_bytes"]:
        problems.append(f"{total} bytes in all > {lim['total_bytes']}")
    return problems


# -- the schema ------------------------------------------------------------------------------

_TOP = {"schema": str, "mode": str, "started": str, "finished": str, "complete": bool,
        "wall_s": (int, float), "machine": dict, "missing": list, "parts": dict, "notes": list}


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
        elif p["status"] == "pending" and doc["complete"]:
            errors.append(f"part {name}: pending in a complete document")
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


def _run_box(cmd: list[str], box: float, env: dict, log: Path) -> tuple[str, float, int | None]:
    """Run ``cmd`` in its own process group for at most ``box`` seconds (then kill the group),
    its output appended to ``log``. Returns ("done" | "timeout", seconds, return code)."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=max(box, 1))
            return "done", time.perf_counter() - t0, rc
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "timeout", time.perf_counter() - t0, None


def _tail(log: Path, start: int, n: int = 1500) -> str:
    """The last ``n`` characters ``log`` gained after byte ``start``."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def _atomic_json(path: Path, doc: dict) -> None:
    from facnn.fileio import atomic_write_text
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))


def _part_command(name: str, args, box: float) -> list[str]:
    if name == "cuda_tests":
        return [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                str(ROOT / "tests" / "test_cuda.py"), f"--junitxml={args.work / 'cuda_tests.xml'}"]
    return [sys.executable, str(Path(__file__).resolve()), "--part", name, "--out", str(args.out),
            "--work", str(args.work), "--budget", str(box)] + \
        (["--pack", str(args.pack)] if args.pack else []) + (["--dry-run"] if args.dry_run else [])


def _skip_reason(name: str, args, missing: list[str], left: float) -> str | None:
    if name == "data" and args.pack is None:
        return ("no --pack: the train part uses the synthetic shapes data" if args.dry_run
                else "no --pack given")
    if name == "cuda_tests" and "pytest" in missing:
        return "pytest missing"
    if left < 20:
        return "no time left"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder for the results (flat, small)")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for data and checkpoints (default: a new temporary folder)")
    ap.add_argument("--pack", type=Path, default=None, help="the CIFAR-10 pack (facnn data pack)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, seconds")
    ap.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)      # internal: one part
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="facnn-gpu-check-"))).resolve()
    if args.work == args.out or args.out in args.work.parents:
        ap.error(f"--work {args.work} lies inside --out: only small results may go under --out")
    if args.pack is not None and not args.pack.is_dir():
        ap.error(f"--pack {args.pack}: no such folder; make it with: {PACK_COMMAND}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part:
        return PART_FNS[args.part](args)

    t_start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    boxes = DRY_BOX_S if args.dry_run else BOX_S
    total = sum(DRY_BOX_S.values()) if args.dry_run else TOTAL_S
    log = args.out / "gpu_check.log"
    log.write_text("")

    def say(msg: str) -> None:
        print(msg, flush=True)
        with open(log, "a") as f:
            f.write(msg + "\n")

    m = machine()
    mode = "dry-run" if args.dry_run else "gpu"
    notes = []
    if mode == "gpu" and not m["gpu"]:
        notes.append("no CUDA device: the GPU parts fail; use --dry-run on a CPU")
    missing = [k for k in OPTIONAL if not have(k)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([str(SHIMS)] if "tqdm" in missing else []) +
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    if "tqdm" in missing:
        notes.append("tqdm missing: scripts/shims/tqdm stands in for it")
    if mode == "dry-run":
        env["CUDA_VISIBLE_DEVICES"] = ""
    parts = {name: {"status": "pending", "seconds": 0.0, "box_s": float(boxes[name])} for name in PARTS}
    doc = {"schema": SCHEMA, "mode": mode, "started": started, "finished": "", "complete": False,
           "wall_s": 0.0, "machine": m, "missing": missing, "parts": parts, "notes": notes,
           "commit": _commit(), "command": COMMAND, "work": str(args.work)}

    def write_summary(complete: bool) -> None:
        doc.update(complete=complete, wall_s=round(time.perf_counter() - t_start, 1),
                   finished=time.strftime("%Y-%m-%d %H:%M:%S") if complete else "")
        _atomic_json(args.out / "gpu_check.json", doc)

    write_summary(False)
    say(f"gpu check ({mode}) on {m.get('gpu') or 'no GPU'}, torch {m.get('torch')}; "
        f"scratch in {args.work}; missing: {', '.join(missing) or 'nothing'}")
    for name in PARTS:
        left = total - (time.perf_counter() - t_start)
        box = max(1.0, min(boxes[name], left - 5))
        result_file = args.out / f"{name}.json"
        result_file.unlink(missing_ok=True)
        why = _skip_reason(name, args, missing, left)
        if why:
            parts[name] = {"status": "skipped", "seconds": 0.0, "box_s": box, "why": why}
            _atomic_json(result_file, parts[name])
            write_summary(False)
            continue
        say(f"== {name} (box {box:.0f} s)")
        start = log.stat().st_size
        # plugins off: the check needs none, and some (hypothesis, nbval) cost seconds to load
        part_env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if name == "cuda_tests" else env
        how, secs, rc = _run_box(_part_command(name, args, box), box, part_env, log)
        res = _part_result(name, args, how, rc)
        res.update(seconds=round(secs, 1), box_s=round(box, 1), returncode=rc)
        if res["status"] in ("failed", "error", "timeout"):
            res["log_tail"] = _tail(log, start)
        parts[name] = res
        _atomic_json(result_file, res)
        write_summary(False)
        say(f"{name}: {res['status']} in {secs:.0f} s (box {box:.0f} s)")
    problems = validate({**doc, "complete": True, "finished": "now"})
    if problems:
        notes.append("schema problems: " + "; ".join(problems))
    write_summary(True)
    say(f"wrote {args.out / 'gpu_check.json'} ({doc['wall_s']:.0f} s)")
    returned = return_problems(args.out)
    if returned:
        notes.append("the device tool would not return --out whole: " + "; ".join(returned))
        write_summary(True)
    return 0


def _part_result(name: str, args, how: str, rc: int | None) -> dict:
    """A finished (or killed) part's result: its JSON, or the junit summary of the CUDA tests."""
    if name == "cuda_tests":
        res = _junit(args.work / "cuda_tests.xml")
        res["status"] = "timeout" if how == "timeout" else "passed" if rc == 0 else \
            "failed" if rc == 1 else "skipped" if rc == 5 else "error"
        return res
    res = _read(args.out / f"{name}.json")
    if how == "timeout":
        res["status"] = "timeout"
        if name == "train":
            res.update(_train_progress(args.work))
    elif rc != 0 or res.get("status") in (None, "pending"):
        res["status"] = "error"
    return res


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
    _atomic_json(args.out / f"{name}.json", doc)
    return 0


# -- the parts (each runs in its own process) ----------------------------------------------------

DRY_SUBSET = (30, 10)       # dry run: train and test images per class taken from the pack


def part_data(args) -> int:
    from facnn import pack
    t0 = time.perf_counter()
    arrays, report = pack.load(args.pack)
    m = pack.read_manifest(args.pack)
    path = pack.write_npz(arrays, args.work / "data", m["dataset"])
    if args.dry_run:    # the dry run trains on a few images per class (same loader, same code)
        _write_subset(arrays, args.work / "data", m["dataset"])
    return _write(args, "data", {"status": "passed", "path": str(path), "dataset": m["dataset"],
                                 "train_images": int(len(arrays["x_train"])),
                                 "test_images": int(len(arrays["x_test"])),
                                 "unpack_s": round(time.perf_counter() - t0, 1), **report})


def _write_subset(arrays: dict, folder: Path, dataset: str) -> Path:
    import numpy as np
    out = {"classes": arrays["classes"]}
    for split, per_class in zip(("train", "test"), DRY_SUBSET):
        y = arrays[f"y_{split}"]
        idx = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]))
        out[f"x_{split}"], out[f"y_{split}"] = arrays[f"x_{split}"][idx], y[idx]
    path = folder / f"{dataset}-{DRY_SUBSET[0]}x{DRY_SUBSET[1]}.npz"
    np.savez(path, **out)
    return path


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
    """Eager throughput, then the class-map comparison, then torch.compile (the one step that
    may run long): bench.json is rewritten after each, so a kill keeps what was measured."""
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
    doc = {"status": "pending", "device": name, "bf16_peak_flops": peak,
           "model": f"FA-CNN N={cfg.depth}, K={cfg.channels}, 32x32, {cfg.dataset}",
           "variants": [], "maps": {"skipped": "not reached"}}

    def measure(variant: str, compiled: bool, batch: int) -> dict:
        if dry and (batch != cfg.batch_size or compiled):
            return {"variant": variant, "batch": batch,
                    "skipped": "dry-run (torch.compile takes a minute on a CPU)"}
        if time.perf_counter() > t_end - (60 if compiled else 10):
            return {"variant": variant, "batch": batch, "skipped": "no time left"}
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
        return row

    for variant, compiled, batch in (("eager", False, cfg.batch_size), ("eager", False, 256)):
        doc["variants"].append(measure(variant, compiled, batch))
        if "paper_fa" not in doc and "images_per_s" in doc["variants"][0]:
            base = doc["variants"][0]
            doc["paper_fa"] = {"images_per_s": base["images_per_s"], "gflops_per_image": gflops,
                               "batch": base["batch"], "variant": "bf16 channels_last eager" if bf16
                               else "fp32 channels_last eager",
                               "fraction_of_bf16_peak": base["fraction_of_bf16_peak"]}
        _write(args, "bench", doc)
    doc["maps"] = _bench_maps(cfg, dev, dry, t_end)
    _write(args, "bench", doc)
    doc["variants"].append(measure("compile", True, cfg.batch_size))
    doc["status"] = "passed" if "paper_fa" in doc else "failed"
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
    common = dict(out_dir=str(args.work / "runs"), progress=True, save_every_s=1e9, epochs=epochs)
    data = args.work / "data"
    if args.dry_run:
        subset = f"{DRY_SUBSET[0]}x{DRY_SUBSET[1]}"
        if (data / f"cifar10-{subset}.npz").exists():
            return preset("smoke", "cifar10", "fa-pool", data_root=str(data), subset=subset, **common)
        return preset("smoke", "shapes", "fa-pool", shapes_train=200, shapes_test=100, **common)
    return preset("paper", "cifar10", "fa-pool", data_root=str(data), **common)


def part_train(args) -> int:
    """Paper-size FA-CNN on CIFAR-10, epochs chosen so that training fits the box."""
    import torch
    from facnnbook import plan as P
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
    (args.work / "train_run.json").write_text(json.dumps({"run_dir": str(run_dir(cfg)), "epochs": epochs}))
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
    name = f"{cfg.dataset}-{cfg.subset}" if cfg.subset else cfg.dataset
    with np.load(Path(cfg.data_root) / f"{name}.npz") as z:
        return int(len(z["y_test"]))


def _train_progress(work: Path) -> dict:
    """What a killed train part finished: the epochs in its metrics.jsonl."""
    plan = _read(work / "train_run.json")
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
