"""FA-CNN's speed against the saliency libraries people use, as ratios measured in one
process (``make bench``; ``--quick`` for a one-minute version).

Sections (each can be chosen with --sections):
  maps          class_maps vs our grad_cam vs pytorch-grad-cam vs Captum, all C classes
  perturbation  our rise vs reference loops; rise at N = 4000; k_occlusion vs Captum
  removal       our removal curve vs Quantus PixelFlipping at an equal protocol
  training      FA-CNN vs a bare conv+BN stack: eager, channels_last, torch.compile

Writes results/benchmarks/<host kind>.json (facnnbook.bench describes it). The machine it ran
on is recorded inside; the ratios, not the absolute times, are the result. A CPU run uses
one torch thread unless told otherwise (--threads): on a machine shared with other work it
keeps the ratios steady. On CUDA it runs unchanged, with larger batches, and fills the GPU
columns (bf16 autocast, paper-size images/s, fraction of the bf16 peak).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # `python benchmarks/run.py` from anywhere

import torch  # noqa: E402

from benchmarks import cases, maps, perturbation, removal, training  # noqa: E402
from benchmarks.harness import Report  # noqa: E402
from facnnbook import bench  # noqa: E402

SECTIONS = {"maps": maps.run, "perturbation": perturbation.run, "removal": removal.run,
            "training": training.run}


def sizes_for(mode: str, device: torch.device) -> dict:
    s = dict(cases.SIZES[mode])
    if device.type == "cuda" and mode != "tiny":
        # a GPU is wasted on 8-image batches: larger batches, paper-size training at a real
        # batch size (bf16 autocast, channels_last, torch.compile: benchmarks/training.py)
        s.update(maps_cases=((10, 64), (100, 16)), occ_images=8, removal_images=256,
                 train_batch=256, train_steps=5, paper_batch=128, paper_steps=5,
                 paper_rounds=5, compile=True)
    return s


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a ~1-minute version (fewer rounds, "
                                                        "smaller batches, no torch.compile)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes for the test suite")
    ap.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--out", default=None, help="JSON path (default: "
                                                "results/benchmarks/<host kind>.json)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of a CPU run (default 1; 0 = torch's default, one "
                         "per core). On a shared machine two threads that wait for each "
                         "other at every op make the times swing 2-10x between rounds; one "
                         "thread keeps the ratios steady (interquartile ranges of a few %%)")
    args = ap.parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    if args.threads > 0 and device.type == "cpu":
        torch.set_num_threads(args.threads)
    sizes = sizes_for(mode, device)
    out = Path(args.out) if args.out else ROOT / bench.BENCH_DIR / f"{bench.host_kind()}.json"
    report = Report()
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    load_start = load_average()
    if load_start and load_start[0] > bench.cpu_count():
        report.note(f"the machine was busy: load average {load_start[0]} on {bench.cpu_count()} "
                    f"CPUs at the start, so the times are noisy; the ratios (same process, "
                    f"interleaved rounds) are what to read")
    section_s, failed = {}, []
    for name in args.sections:
        print(f"[bench] {name} ...", flush=True)
        ts = time.perf_counter()
        try:
            SECTIONS[name](report, sizes, device)
        except Exception:
            failed.append(name)
            report.note(f"{name}: FAILED\n{traceback.format_exc()[-2000:]}")
            traceback.print_exc()
        section_s[name] = round(time.perf_counter() - ts, 1)
        print(f"[bench] {name} done in {section_s[name]:.0f} s", flush=True)

    from facnnbook.provenance import git_commit
    cuda = device.type == "cuda"
    doc = {"schema": bench.SCHEMA, "mode": mode, "machine": bench.machine(), "device": str(device),
           "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "wall_s": round(time.perf_counter() - t0, 1), "section_s": section_s,
           "load_average": {"start": load_start, "end": load_average()},
           "commit": git_commit(), "sizes": sizes, "sections": args.sections, "failed": failed,
           "gpu_columns": {"filled": cuda, "why": "" if cuda else
                           "no CUDA device in this run: bf16 autocast, paper-size GPU images/s "
                           "and the fraction of the bf16 peak are left empty"},
           "comparisons": report.comparisons, "measurements": report.measurements,
           "checks": report.checks, "notes": report.notes}
    problems = bench.validate(doc)
    if problems:
        raise SystemExit("error: the benchmark JSON is malformed: " + "; ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    _summary(doc, out)
    if failed or not all(c["passed"] for c in report.checks):
        bad = sum(not c["passed"] for c in report.checks)
        raise SystemExit(f"error: {len(failed)} section(s) failed, {bad} check(s) failed; "
                         f"see {out}")
    return doc


def _summary(doc: dict, out: Path) -> None:
    print(f"\n[bench] {doc['mode']} run on {bench.describe(doc['machine'])}")
    print(f"[bench] load average {doc['load_average']}, wall {doc['wall_s']:.0f} s")
    for c in doc["comparisons"]:
        r, goal = c["ratio"], bench._goal_text(c)
        met = "" if c["goal_met"] is None else ("  met" if c["goal_met"] else "  MISSED")
        print(f"  {c['case']:<30} {c['fast']:>23} vs {c['slow']:<22} x{r['median']:<8.3g} "
              f"[{r['q25']:.3g}, {r['q75']:.3g}]  {goal}{met}")
    for c in doc["checks"]:
        print(f"  check {'ok  ' if c['passed'] else 'FAIL'} {c['name']} "
              f"(max |diff| {c.get('max_abs_diff', float('nan')):.2g})")
    for n in doc["notes"]:
        print(f"  note: {n.splitlines()[0]}")
    met, total = bench.goals_met(doc)
    print(f"[bench] goals met: {met}/{total}; wrote {out}")


if __name__ == "__main__":
    main()
