"""Benchmark results (``make bench``, benchmarks/run.py): the machine they ran on, their
JSON schema, and the tables the Performance chapter shows.

A run writes ``results/benchmarks/<host kind>.json``; the host kind is a short slug of the
machine ("cpu-2core-amd-epyc", "cuda-nvidia-h200") so runs on different machines sit side
by side and a rerun on the same kind of machine replaces its file. Inside, ``comparisons``
hold the ratios (how many times faster one candidate is than another, per timed round:
median, quartiles, extremes), ``measurements`` every raw time and rate, ``checks`` the
identical-map checks that make a comparison fair.
"""
from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA = "facnn-bench/1"
BENCH_DIR = Path("results") / "benchmarks"
RERUN = "make bench"
RERUN_QUICK = ".venv/bin/python benchmarks/run.py --quick"

from facnn.info import bf16_peak


# -- the machine ----------------------------------------------------------------------------

def _slug(text: str, words: int = 3) -> str:
    text = re.sub(r"\((R|TM|tm)\)|\bCPU\b|\bProcessor\b|@.*$|\b\d+-Core\b", " ", text)
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def host_kind() -> str:
    """"cuda-<gpu>" when a GPU is present, else "cpu-<n>core-<model>"."""
    import torch
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"cuda-{'' if n == 1 else f'{n}x-'}{_slug(torch.cuda.get_device_name(0))}"
    return f"cpu-{cpu_count()}core-{_slug(cpu_model())}"


def machine() -> dict[str, Any]:
    """What the JSON records about where it ran."""
    import torch
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {"name": p.name, "count": torch.cuda.device_count(),
               "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
               "bf16_peak_flops": bf16_peak(p.name), "cuda": torch.version.cuda}
    mem = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = round(kb / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {"host_kind": host_kind(), "cpu": cpu_model(), "cpus": cpu_count(),
            "torch_threads": torch.get_num_threads(), "memory_gib": mem, "gpu": gpu,
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": {k: ver(k) for k in ("torch", "captum", "grad-cam", "quantus", "numpy")},
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def describe(m: dict[str, Any]) -> str:
    """One line: '2 x AMD EPYC (2 torch threads, 23 GiB), no GPU; torch 2.14.1'."""
    gpu = (f"{m['gpu']['count']} x {m['gpu']['name']} ({m['gpu']['memory_gib']} GiB)"
           if m.get("gpu") else "no GPU")
    return (f"{m['cpus']} x {m['cpu']} ({m['torch_threads']} torch threads, "
            f"{m.get('memory_gib')} GiB), {gpu}; torch {m['versions'].get('torch')}, "
            f"{m['platform']}")


# -- the schema -------------------------------------------------------------------------------

_TOP = {"schema": str, "mode": str, "machine": dict, "started": str, "wall_s": (int, float),
        "sizes": dict, "comparisons": list, "measurements": list, "checks": list,
        "notes": list, "gpu_columns": dict, "commit": str}
_RATIO = ("median", "q25", "q75", "min", "max", "n")


def validate(doc: dict[str, Any]) -> list[str]:
    """The problems of a benchmark JSON (an empty list when it is well formed)."""
    bad = [f"{k}: missing or not {t}" for k, t in _TOP.items() if not isinstance(doc.get(k), t)]
    if bad:
        return bad
    if doc["schema"] != SCHEMA:
        bad.append(f"schema {doc['schema']!r} is not {SCHEMA!r}")
    for i, c in enumerate(doc["comparisons"]):
        for k in ("section", "case", "fast", "slow", "ratio", "goal", "goal_met"):
            if k not in c:
                bad.append(f"comparisons[{i}] lacks {k}")
        r = c.get("ratio", {})
        if any(not isinstance(r.get(k), (int, float)) for k in _RATIO):
            bad.append(f"comparisons[{i}].ratio lacks one of {_RATIO}")
        elif not r["q25"] <= r["median"] <= r["q75"]:
            bad.append(f"comparisons[{i}].ratio: quartiles out of order")
    for i, m in enumerate(doc["measurements"]):
        s = m.get("seconds")
        if not (isinstance(s, list) and s and all(isinstance(v, float) and v > 0 for v in s)):
            bad.append(f"measurements[{i}].seconds must be a non-empty list of positive floats")
    for i, c in enumerate(doc["checks"]):
        if not isinstance(c.get("passed"), bool) or "name" not in c:
            bad.append(f"checks[{i}] needs a name and passed (bool)")
    return bad


# -- reading and showing ------------------------------------------------------------------------

def result_files(folder: str | Path = BENCH_DIR) -> list[Path]:
    """The benchmark JSONs in ``folder`` (relative to the checkout), newest first."""
    from .provenance import resolve
    files = list(resolve(folder).glob("*.json"))
    return sorted(files, key=lambda p: (load(p).get("finished", ""), p.name), reverse=True)


def load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def latest(folder: str | Path = BENCH_DIR) -> dict[str, Any] | None:
    """The most recently finished benchmark JSON in ``folder``, or None when there is none."""
    files = result_files(folder)
    return load(files[0]) if files else None


def _ratio_text(r: dict) -> str:
    return f"{r['median']:.3g} [{r['q25']:.3g}, {r['q75']:.3g}]"


def _goal_text(c: dict) -> str:
    if c.get("goal") is None:
        return ""
    sign = "≤" if c.get("goal_kind") == "at_most" else "≥"
    return f"{sign} {c['goal']:g}"


def comparisons_table(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per comparison: ratio = time(slow) / time(fast) per round ("A vs B": how
    many times faster A is than B; "time A / B" for an overhead), median and interquartile
    range; the goal and whether the median meets it."""
    rows = []
    for c in doc["comparisons"]:
        met = c.get("goal_met")
        rows.append({"section": c["section"], "case": c["case"],
                     "comparison": (f"time {c['slow']} / {c['fast']}"
                                    if c.get("goal_kind") == "at_most" else
                                    f"{c['fast']} vs {c['slow']}"),
                     "ratio (median [IQR])": _ratio_text(c["ratio"]), "rounds": c["ratio"]["n"],
                     "goal": _goal_text(c), "met": "" if met is None else ("yes" if met else "NO")})
    return pd.DataFrame(rows)


def rates_table(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per candidate: its rate (maps/s, images/s, curves/s) median and IQR; for
    training, the achieved GFLOP/s and (GPU columns, empty without a GPU) the fraction of
    the chip's dense bf16 peak."""
    rows = []
    for m in doc["measurements"]:
        flops, frac = m.get("achieved_flops"), m.get("fraction_of_peak")
        rows.append({"section": m["section"], "case": m["case"], "method": m["method"],
                     "rate (median [IQR])": _ratio_text(m["rate"]), "unit": f"{m['unit']}/s",
                     "GFLOP/s": "" if flops is None else f"{flops / 1e9:.3g}",
                     "bf16 peak (GPU)": "" if frac is None else f"{frac:.1%}"})
    return pd.DataFrame(rows)


def checks_table(doc: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"check": c["name"], "passed": "yes" if c["passed"] else "NO",
                          "max |diff|": c.get("max_abs_diff"), "tolerance": c.get("tolerance")}
                         for c in doc["checks"]])


def goals_met(doc: dict[str, Any]) -> tuple[int, int]:
    """(goals met, goals) over the comparisons that carry a goal."""
    goals = [c for c in doc["comparisons"] if c.get("goal") is not None]
    return sum(bool(c["goal_met"]) for c in goals), len(goals)


# -- the Performance chapter ---------------------------------------------------------------------

def provenance_line(doc: dict[str, Any]) -> str:
    return (f"{doc['mode']} run · {doc['machine']['host_kind']} · commit {doc['commit']} · "
            f"{doc.get('finished', doc['started'])} · {doc['wall_s']:.0f} s")

