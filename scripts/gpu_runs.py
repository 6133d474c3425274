#!/usr/bin/env python3
"""Train the plan's missing runs of one profile and dataset on the lent GPU, several at once,
and bring back what they wrote.

The lent H200 has 15 minutes a session; a 30-epoch ImageNet-20 run of profile cpu takes
25-45 min of one CPU thread here and about 2 min there (22 of them, 11 at once: 289 s).
Give the device tool's ``run`` (after ``echo /.gpu-data/ >> .git/info/exclude; mkdir -p
.gpu-data && tar -czf .gpu-data/imagenet20.tgz -C ../shared/data imagenet20``: one 43 MB
archive, since the tool counts 12,000 small files as more than their 51 MB):

    command:   tar -xzf .gpu-data/imagenet20.tgz -C .gpu-data && PYTHONPATH=. timeout 440 python3 scripts/gpu_runs.py --profile cpu --dataset imagenet20 --data-root .gpu-data --out "$OUT" --parallel 11 --threads 1 --deadline-s 360
    carry:     [".gpu-data"]

Each run is ``python -m facnn train`` with exactly the config the plan lists (same config
hash, so the same run folder as on a CPU), plus ``device=cuda``, ``data_root`` and
``progress=false``, none of which is hashed. TF32 is switched off in every run, so that a
config's "fp32" means fp32 on the GPU as on the CPU. The summary records the device.

At the deadline every training still running gets one SIGINT: it stops at the end of its
batch with a consistent checkpoint, which comes back, so the run resumes on any machine with
the same command. What comes back, flat under --out: gpu_runs.json (each run: command, run
folder, status, accuracy, seconds), gpu_runs.log (the last lines of each run's console) and
runs-<k>.tar (each run folder's config.json, metrics.jsonl, summary.json and weights.pt, or
checkpoint.pt for an unfinished run; at most 15 MiB a tar). Unpack here with
``for t in runs-*.tar; do tar -xf $t -C results/<profile>; done``.

``--device cpu --limit 1`` runs the same code on the CPU (the tests do, at profile smoke).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("table1", "shared lr")          # the plan's kinds this script trains
KEEP = ("config.json", "metrics.jsonl", "summary.json", "weights.pt")
TAR_BYTES = 15 * 2**20                    # the device tool returns files of at most 16 MiB
# Switch TF32 off, then run facnn's command line in this process.
WRAP = ("import runpy, sys, torch; torch.backends.cudnn.allow_tf32 = False; "
        "torch.backends.cuda.matmul.allow_tf32 = False; sys.argv = ['facnn', *sys.argv[1:]]; "
        "runpy.run_module('facnn', run_name='__main__', alter_sys=True)")


def missing_runs(profile: str, dataset: str, results: Path) -> list[tuple[str, object]]:
    """(kind, config) of the plan's table1 and shared-lr runs of ``dataset`` without a summary
    under ``results``, in plan order (own rates before the shared rate)."""
    from facnn.config import run_dir
    from facnnbook.plan import book_configs
    return [(kind, cfg) for kind, cfg in book_configs(profile, results, [dataset])
            if kind in KINDS and not (run_dir(cfg) / "summary.json").exists()]


def train_argv(cfg, device: str, data_root: str) -> list[str]:
    """The plan's command for ``cfg`` (facnn.config.cli_command) with the unhashed fields that
    say where it runs appended to its --set list."""
    from facnn.config import cli_command
    argv = shlex.split(cli_command(cfg))[3:]          # drop "python -m facnn"
    where = [f"device={device}", f"data_root={data_root}", "progress=false"]
    if cfg.out_dir != "results" and not any(a.startswith("out_dir=") for a in argv):
        where.append(f"out_dir={cfg.out_dir}")
    if "--set" in argv:
        i = argv.index("--set") + 1
        while i < len(argv) and not argv[i].startswith("--"):
            i += 1
        return argv[:i] + where + argv[i:]
    return argv + ["--set", *where]


def pack(folders: list[Path], out: Path) -> list[str]:
    """Tar each folder's KEEP files (checkpoint.pt when it has no summary) into runs-<k>.tar
    files of at most TAR_BYTES each; returns their names."""
    names, k, size, tar = [], 0, 0, None
    for folder in folders:
        keep = KEEP if (folder / "summary.json").exists() else KEEP[:2] + ("checkpoint.pt",)
        for f in [folder / n for n in keep if (folder / n).exists()]:
            n = f.stat().st_size
            if tar is None or size + n > TAR_BYTES:
                if tar is not None:
                    tar.close()
                k += 1
                names.append(f"runs-{k}.tar")
                tar, size = tarfile.open(out / names[-1], "w"), 0
            tar.add(f, arcname=f"{folder.name}/{f.name}")
            size += n + 1024
    if tar is not None:
        tar.close()
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--dataset", default="imagenet20")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="the runs' out_dir, relative to the checkout (as the plan's commands)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parallel", type=int, default=8, help="trainings at once")
    ap.add_argument("--threads", type=int, default=2, help="OMP threads of each training")
    ap.add_argument("--deadline-s", type=float, default=400, help="SIGINT to what still runs then")
    ap.add_argument("--limit", type=int, default=None, help="train only the first N missing runs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from facnn.config import run_dir

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"facnn-gpu-runs-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    # the runs and this script see paths from the checkout, so a relative out_dir (the
    # default) stays relative in every config.json and summary.json they write
    args.out = args.out.resolve()
    os.chdir(ROOT)
    todo = missing_runs(args.profile, args.dataset, args.results)[:args.limit]
    runs = [{"kind": kind, "command": "python -m facnn " + shlex.join(train_argv(cfg, args.device, args.data_root)),
             "run_dir": str(run_dir(cfg)), "status": "queued"} for kind, cfg in todo]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs: dict[int, tuple[subprocess.Popen, float]] = {}
    nxt, interrupted = 0, False

    def write() -> None:
        doc = {"profile": args.profile, "dataset": args.dataset, "device": args.device,
               "parallel": args.parallel, "deadline_s": args.deadline_s,
               "wall_s": round(time.time() - t0, 1), "runs": runs}
        (args.out / "gpu_runs.json").write_text(json.dumps(doc, indent=1))

    while nxt < len(runs) or procs:
        while nxt < len(runs) and len(procs) < args.parallel and not interrupted:
            argv_i = [sys.executable, "-c", WRAP, *train_argv(todo[nxt][1], args.device, args.data_root)]
            log = open(logs / f"{nxt}.log", "w")
            procs[nxt] = (subprocess.Popen(argv_i, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                          time.time())
            runs[nxt]["status"] = "running"
            nxt += 1
        time.sleep(1)
        if not interrupted and time.time() - t0 > args.deadline_s:
            interrupted = True
            for p, _ in procs.values():
                p.send_signal(signal.SIGINT)
            for r in runs[nxt:]:
                r["status"] = "not started (deadline)"
            nxt = len(runs)
        for i, (p, started) in list(procs.items()):
            if p.poll() is None:
                if interrupted and time.time() - t0 > args.deadline_s + 60:
                    p.kill()
                continue
            del procs[i]
            summary = Path(runs[i]["run_dir"]) / "summary.json"
            r = runs[i]
            r["seconds"] = round(time.time() - started, 1)
            if summary.exists():
                s = json.loads(summary.read_text())
                r.update(status="finished", accuracy=s["accuracy"], best_accuracy=s["best_accuracy"],
                         epochs=s["epochs"], device=s["device"], precision=s["precision"])
            else:
                r.update(status="interrupted" if interrupted else f"failed (exit {p.returncode})")
            write()
    tails = []
    for i, r in enumerate(runs):
        path = logs / f"{i}.log"
        text = path.read_text(errors="replace").splitlines()[-6:] if path.exists() else []
        tails += [f"== {r['command']}: {r['status']}", *text]
    (args.out / "gpu_runs.log").write_text("\n".join(tails) + "\n")
    folders = [Path(r["run_dir"]) for r in runs if Path(r["run_dir"]).is_dir()]
    write()
    print(json.dumps({"tars": pack(folders, args.out),
                      "status": {s: sum(r["status"] == s for r in runs) for s in {r["status"] for r in runs}},
                      "wall_s": round(time.time() - t0, 1)}))
    return 0 if all(r["status"] == "finished" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
