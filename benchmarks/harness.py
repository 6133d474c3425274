"""Timing in one process: interleaved rounds, ratios per round, median and spread.

These machines are shared and noisy, so absolute times mean little. Every comparison times
its candidates in rounds; each round calls every candidate once (the order rotates from
round to round), so a change of load during the run hits all of them alike, and the ratio
of two candidates within a round is what we report: its median over the rounds with the
quartiles and the extremes. Every raw time goes into the JSON as well.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def synchronise() -> None:
    """Wait for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _once(fn: Callable[[], Any], inner: int) -> float:
    synchronise()
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    synchronise()
    return (time.perf_counter() - t0) / inner


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes of a sample (quartiles by linear interpolation)."""
    v = sorted(values)
    if len(v) == 1:
        q25 = q75 = v[0]
    else:
        q = statistics.quantiles(v, n=4, method="inclusive")
        q25, q75 = q[0], q[2]
    return {"median": statistics.median(v), "q25": q25, "q75": q75, "min": v[0], "max": v[-1],
            "n": len(v)}


@dataclass
class Timing:
    """Seconds per call of each candidate, one entry per round."""

    seconds: dict[str, list[float]]
    inner: dict[str, int]          # calls per timed entry (a fast candidate's are averaged)
    warmup_s: dict[str, float]     # the first call, with its one-off costs (compilation, caches)

    def ratio(self, slow: str, fast: str) -> dict[str, float]:
        """How many times faster ``fast`` is than ``slow``: time(slow) / time(fast), per round."""
        return spread([s / f for s, f in zip(self.seconds[slow], self.seconds[fast])])

    def rate(self, name: str, units: float) -> dict[str, float]:
        """``units`` per second (e.g. maps/s), per round."""
        return spread([units / s for s in self.seconds[name]])


def measure(fns: dict[str, Callable[[], Any]], rounds: int, min_seconds: float = 0.05,
            warmup: int = 1, slow_s: float = 2.0) -> Timing:
    """Time every function in ``fns`` for ``rounds`` interleaved rounds.

    Each function is first called ``warmup`` times (the first call's time is kept apart as
    ``warmup_s``); a function faster than ``min_seconds`` is called several times per timed
    entry, so the timer's resolution and Python's overhead do not dominate. A function
    slower than ``slow_s`` is not warmed up further: its one-off costs are small beside
    one call, so its first call counts as its first round (saving minutes on the libraries'
    per-class loops).
    """
    names = list(fns)
    inner, first, seconds = {}, {}, {n: [] for n in names}
    for n in names:
        first[n] = t = _once(fns[n], 1)
        if t >= slow_s and warmup <= 1:
            inner[n] = 1
            seconds[n].append(t)
            continue
        for _ in range(warmup):
            t = _once(fns[n], 1)
        inner[n] = max(1, math.ceil(min_seconds / max(t, 1e-9))) if t < min_seconds else 1
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            if len(seconds[n]) < rounds:
                seconds[n].append(_once(fns[n], inner[n]))
    return Timing(seconds, inner, first)


@dataclass
class Report:
    """What a benchmark run collects: measurements (rates), comparisons (ratios against
    goals), identity checks, and notes. ``to_json`` gives the lists the JSON holds."""

    measurements: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_timing(self, section: str, case: str, timing: Timing, units: dict[str, float],
                   unit: str, **info: Any) -> None:
        """One measurement row per candidate: raw seconds, and ``units``/s (maps, images)."""
        for name, secs in timing.seconds.items():
            self.measurements.append({
                "section": section, "case": case, "method": name, "unit": unit,
                "units_per_call": units[name], "seconds": secs, "inner": timing.inner[name],
                "first_call_s": timing.warmup_s[name], "seconds_stats": spread(secs),
                "rate": timing.rate(name, units[name]), **info})

    def compare(self, section: str, case: str, timing: Timing, fast: str, slow: str,
                goal: float | None = None, goal_text: str = "", at_most: bool = False,
                per_unit: dict[str, float] | None = None, **info: Any) -> dict:
        """Record how many times faster ``fast`` is than ``slow``: time(slow) / time(fast)
        per round, or per unit of work with ``per_unit`` (e.g. per map, when the two make
        different numbers of maps). The goal is met when the median ratio is >= ``goal``
        (<= with ``at_most``, for an overhead)."""
        if per_unit:
            s = [a / per_unit[slow] for a in timing.seconds[slow]]
            f = [a / per_unit[fast] for a in timing.seconds[fast]]
            ratio = spread([x / y for x, y in zip(s, f)])
        else:
            ratio = timing.ratio(slow, fast)
        row = {"section": section, "case": case, "fast": fast, "slow": slow, "ratio": ratio,
               "goal": goal, "goal_kind": "at_most" if at_most else "at_least",
               "goal_text": goal_text, "goal_met": None if goal is None else
               bool(ratio["median"] <= goal if at_most else ratio["median"] >= goal), **info}
        self.comparisons.append(row)
        return row

    def check(self, name: str, passed: bool, **info: Any) -> None:
        self.checks.append({"name": name, "passed": bool(passed), **info})

    def note(self, text: str) -> None:
        self.notes.append(text)


def max_abs_diff(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max()) if a.numel() else 0.0
