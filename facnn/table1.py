"""Table 1: our top-1 accuracy at a profile beside the paper's, and the three questions it
answers (does the pooling head cost accuracy, does the dampened skip beat Vanilla, where
FA-CNN stands against ResNet-18), asked of the paper's numbers and of ours."""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from .results import DATASET_NAMES, is_missing

# Table 1 rows in the paper's order: (model, recipe, the paper's label)
TABLE1_ROWS = [("fa-pool", "minimal", "FA-CNN (Pooling head)"),
               ("fa-linear", "minimal", "FA-CNN (Linear head)"),
               ("vanilla", "minimal", "Vanilla-CNN"),
               ("resnet18", "minimal", "ResNet-18 (minimal)"),
               ("resnet50", "minimal", "ResNet-50 (minimal)"),
               ("resnet18", "standard", "ResNet-18 (standard)"),
               ("resnet50", "standard", "ResNet-50 (standard)")]

# SPEC 6: the paper's Table 1, top-1 validation accuracy (%). Shown only as the paper's.
PAPER_TABLE1 = {
    "cifar10": [93.13, 93.80, 92.97, 93.57, 91.50, 94.89, 94.49],
    "cifar100": [77.03, 75.32, 75.07, 73.96, 72.45, 77.31, 78.10],
    "imagenet100": [81.78, 77.50, 76.98, 77.74, 76.76, 83.44, 82.96],
}

_ALL = [(m, r) for m, r, _ in TABLE1_ROWS]


def table1_vs_paper(runs: Mapping[tuple[str, str, str], Any], profile: str) -> pd.DataFrame:
    """Table 1: our top-1 accuracy (%) per dataset run at this profile, beside the paper's.

    ``runs`` maps (dataset, model, recipe) to a summary dict or a MissingResult. Cells of
    runs not in the profile's plan read "not run"; planned runs without results "missing".
    """
    datasets = list(dict.fromkeys(d for d, _, _ in runs))
    rows = []
    for model, recipe, label in TABLE1_ROWS:
        row = {"Method": label}
        for d in datasets:
            s = runs.get((d, model, recipe))
            col = f"ours: {DATASET_NAMES.get(d, d)} ({profile})"
            if s is None:
                row[col] = "not run"
            elif is_missing(s):
                row[col] = "missing"
            else:
                row[col] = f"{100 * s['accuracy']:.2f}"
        for d, values in PAPER_TABLE1.items():
            row[f"paper: {DATASET_NAMES[d]}"] = f"{values[_ALL.index((model, recipe))]:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


# The three questions Table 1 answers: (question, run a, run b, the answer "yes" given 100 (a - b))
QUESTIONS = [
    ("Does the pooling head cost accuracy against the linear head?",
     ("fa-pool", "minimal"), ("fa-linear", "minimal"), lambda d: d < 0),
    ("Does the dampened skip (FA-CNN, linear head) beat Vanilla-CNN?",
     ("fa-linear", "minimal"), ("vanilla", "minimal"), lambda d: d > 0),
    ("Is FA-CNN (pooling head) within 1 point of ResNet-18 (minimal recipe), or above it?",
     ("fa-pool", "minimal"), ("resnet18", "minimal"), lambda d: d >= -1),
]

# Why each answer of a reduced profile may not hold at the paper's scale (setup, not results)
AT_SCALE = [
    "the two heads learn at different speeds, and a few epochs measure speed more than the "
    "accuracy they converge to",
    "a plain stack degrades with depth, so the dampened skip should matter more at the "
    "paper's 24 layers than at a reduced depth",
    "the reduced ResNet-18 is narrower than the paper's (first stage 64 channels) and both "
    "are far from converged",
]
SMALL_MARGIN = 2.0   # accuracy points; differences this small can flip with the seed


def table1_answers(runs: Mapping[tuple[str, str, str], Any], profile: str) -> pd.DataFrame:
    """The three questions per dataset: the paper's answer, ours, and whether they agree.
    Differences are accuracy points (run a minus run b)."""
    rows = []
    for d in dict.fromkeys(d for d, _, _ in runs):
        for (q, a, b, yes), why in zip(QUESTIONS, AT_SCALE):
            paper = _paper_diff(d, a, b)
            ours_a, ours_b = runs.get((d, *a)), runs.get((d, *b))
            scale = "n/a" if profile == "paper" else f"may change: {why}"
            if ours_a is None or ours_b is None:
                ours, agree = "not run at this profile", "n/a"
            elif is_missing(ours_a) or is_missing(ours_b):
                ours, agree = "missing", "n/a"
            else:
                diff = 100 * (ours_a["accuracy"] - ours_b["accuracy"])
                ours = f"{_yes(yes(diff))} ({diff:+.2f} points)"
                agree = "n/a" if paper is None else ("yes" if yes(diff) == yes(paper) else "no")
                if profile != "paper" and abs(diff) < SMALL_MARGIN:
                    scale = (f"likely to change: the margin is under {SMALL_MARGIN:g} points, "
                             f"and {why}")
            rows.append({"dataset": DATASET_NAMES.get(d, d), "question": q,
                         "paper": "n/a" if paper is None else f"{_yes(yes(paper))} ({paper:+.2f} points)",
                         f"ours ({profile})": ours, "same answer": agree,
                         "at the paper's scale": scale})
    return pd.DataFrame(rows)


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _paper_diff(dataset: str, a: tuple[str, str], b: tuple[str, str]) -> float | None:
    if dataset not in PAPER_TABLE1:
        return None
    v = PAPER_TABLE1[dataset]
    return round(v[_ALL.index(a)] - v[_ALL.index(b)], 2)


# -- the learning-rate sweep ---------------------------------------------------------------

def _run_row(cfg, s, **first: Any) -> dict[str, Any]:
    """A table row for the run ``cfg`` with summary ``s`` (or MissingResult): ``first``,
    then the final test accuracy (%), test images, config hash, status and, for a missing
    run, the command that makes it."""
    from .results import train_command
    done = not is_missing(s)
    return {**first, "test accuracy (%)": round(100 * s["accuracy"], 2) if done else None,
            "test images": test_size(cfg), "config": cfg.hash(),
            "status": "done" if done else "missing", "command": "" if done else train_command(cfg)}


def sweep_table(sweep: Mapping[float, Any], configs: Mapping[float, Any]) -> pd.DataFrame:
    """One row per learning rate of the sweep: final and best test accuracy (%), test
    images, epochs, wall time, config hash; a missing run shows its command."""
    rows = []
    for lr, s in sorted(sweep.items()):
        done = not is_missing(s)
        rows.append({**_run_row(configs[lr], s, lr=lr),
                     "best epoch (%)": round(100 * s["best_accuracy"], 2) if done else None,
                     "epochs": configs[lr].epochs,
                     "wall time (min)": round(s["wall_s"] / 60, 1) if done else None})
    cols = ["lr", "test accuracy (%)", "best epoch (%)", "test images", "epochs",
            "wall time (min)", "config", "status", "command"]
    return pd.DataFrame(rows, columns=cols)


def _standard_error(table: pd.DataFrame) -> tuple[pd.Series, float]:
    """The row of the highest final accuracy and its binomial standard error in points,
    100 sqrt(p (1 - p) / n) for accuracy p on n test images."""
    top = table.loc[table["test accuracy (%)"].idxmax()]
    p = top["test accuracy (%)"] / 100
    return top, 100 * math.sqrt(p * (1 - p) / top["test images"])


def sweep_best(table: pd.DataFrame) -> float | None:
    """The one-standard-error rule: the smallest learning rate whose final test accuracy is
    within one binomial standard error, 100 sqrt(p (1 - p) / n) points for the best
    accuracy p on n test images, of the best. Small test sets cannot tell close rates
    apart, and the smaller rate is the safer default for the models the sweep did not
    try. None until every run of the sweep has finished."""
    if table.empty or (table["status"] != "done").any():
        return None
    top, se = _standard_error(table)
    acc = table["test accuracy (%)"]
    return float(table.loc[acc >= top["test accuracy (%)"] - se, "lr"].min())


def sweep_verdict(table: pd.DataFrame, default: float) -> tuple[str, str]:
    """(HTML, kind) saying whether the default learning rate is the sweep's choice
    (sweep_best's one-standard-error rule), with the numbers behind the choice."""
    best = sweep_best(table)
    if best is None:
        return "The sweep is incomplete; the table lists the missing runs.", "warning"
    top, se = _standard_error(table)
    why = (f"the smallest rate within one standard error ({se:.1f} points on "
           f"{top['test images']} test images) of the highest accuracy "
           f"({top['test accuracy (%)']:g} % at lr {top['lr']:g})")
    if abs(best - default) < 1e-12:
        return f"The default learning rate {default:g} is the sweep's choice at this profile: {why}.", "note"
    return (f"The sweep's choice at this profile is {best:g} ({why}), but the default is "
            f"{default:g}: the default (facnn.config.MINIMAL_LR) was chosen at another profile.",
            "warning")


def test_size(cfg) -> int:
    """Test images of a run: the subset's per-class count times C, shapes_test, or the
    full CIFAR test split (10,000)."""
    if cfg.dataset == "shapes":
        return cfg.shapes_test
    if cfg.subset:
        return int(cfg.subset.split("x")[1]) * cfg.num_classes
    return {"imagenet100": 5000}.get(cfg.dataset, 10000)


def precision_check(study, lr: float) -> tuple[pd.DataFrame, list] | str:
    """The sweep's run at ``lr`` trained in bf16 beside the same run in fp32 (the table and
    the two configs): the evidence that a profile with precision="bf16" loses no accuracy
    to it (speed is measured in benchmarks/training.py, not here: these runs shared the
    machine). A string says why
    there is nothing to compare (the profile trains in its default precision)."""
    from .config import apply_overrides
    ref = next((c for c in study.sweep_configs() if abs(c.lr - lr) < 1e-12), None)
    if ref is None or ref.precision != "bf16":
        return "This profile trains in its default precision (fp32 on CPU, bf16 on CUDA)."
    configs = [ref, apply_overrides(ref, {"precision": "fp32"})]
    rows = [_run_row(c, study.summary_of(c), precision=c.precision, lr=c.lr) for c in configs]
    return pd.DataFrame(rows), configs
