"""Table 1: our top-1 accuracy at a profile beside the paper's, and the paper's own
sentences about it (Section 5.1) read as paired differences, decided only where neither
the learning rate nor an unfinished training can flip the answer."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from .plan import test_images as test_size   # notebook 01 reads it by this name
from . import claims as C
from .runs import DATASET_NAMES

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
# Our stand-ins for the paper's datasets: ImageNet-20 (84 px, 20 classes, CPU-sized) answers
# Table 1's questions against the paper's ImageNet-100 effects, labelled as such.
PAPER_STAND_IN = {"imagenet20": "imagenet100"}


def _acc(s: dict | None) -> float | None:
    return None if s is None else 100 * s["accuracy"]


def table1_vs_paper(runs: Mapping[tuple[str, str, str], Mapping[int, dict | None]],
                    profile: str) -> pd.DataFrame:
    """Table 1: our top-1 accuracy (%) per dataset run at this profile, beside the paper's.

    ``runs`` maps (dataset, model, recipe) to {seed: summary or None}. A cell shows the mean
    over the finished seeds, with its standard deviation and the seed count when there are
    several; "missing" when none has finished; "not run" for runs outside the profile's plan.
    """
    datasets = list(dict.fromkeys(d for d, _, _ in runs))
    rows = []
    for model, recipe, label in TABLE1_ROWS:
        row = {"Method": label}
        for d in datasets:
            seeds = runs.get((d, model, recipe))
            col = f"ours: {DATASET_NAMES.get(d, d)} ({profile})"
            accs = [_acc(s) for s in (seeds or {}).values() if s is not None]
            if seeds is None:
                row[col] = "not run"
            elif not accs:
                row[col] = "missing"
            elif len(accs) == 1:
                row[col] = f"{accs[0]:.2f}"
            else:
                m, sd = C.mean_sd(accs)
                row[col] = f"{m:.2f} ± {sd:.2f} ({len(accs)} seeds)"
        for d, values in PAPER_TABLE1.items():
            row[f"paper: {DATASET_NAMES[d]}"] = f"{values[_ALL.index((model, recipe))]:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


# -- the paper's Table 1 claims ----------------------------------------------------------------

# Model names in claims: a Table 1 row as "model" (minimal recipe) or "model-standard";
# "best-standard" is the better of the standard-recipe ResNets that have run.
def cell(name: str) -> tuple[str, str]:
    """"resnet18-standard" -> ("resnet18", "standard"); "fa-pool" -> ("fa-pool", "minimal")."""
    return (name[:-len("-standard")], "standard") if name.endswith("-standard") else (name, "minimal")


@dataclass(frozen=True)
class Comparison:
    """One sentence of the paper's Section 5.1 (or 6) read as "100 (acc a - acc b) >
    threshold" on each of ``datasets``. A threshold other than 0 is ours, and
    ``statement`` says so in words."""
    key: str
    quote: str
    a: str
    b: str
    threshold: float
    statement: str
    datasets: tuple[str, ...]
    short: str


# shapes: the smoke profile's stand-in, with no paper value
_ALL_DATASETS = ("cifar10", "cifar100", "imagenet20", "shapes")
COMPARISONS = [
    Comparison("pool_vs_vanilla", "vanilla", "fa-pool", "vanilla", 0.0,
               "FA-CNN with the pooling head is more accurate than Vanilla-CNN", _ALL_DATASETS,
               "pooling head vs Vanilla"),
    Comparison("linear_vs_vanilla", "vanilla", "fa-linear", "vanilla", 0.0,
               "FA-CNN with the linear head (the dampened skip alone) is more accurate than "
               "Vanilla-CNN", _ALL_DATASETS, "linear head vs Vanilla"),
    Comparison("linear_vs_resnet18", "cifar10_resnets", "fa-linear", "resnet18", -1.0,
               "FA-CNN with the linear head matches ResNet-18 (minimal recipe): at most 1 point "
               "below it (the 1-point tolerance is ours)", ("cifar10",), "linear head vs ResNet-18"),
    Comparison("linear_vs_resnet50", "cifar10_resnets", "fa-linear", "resnet50", 0.0,
               "FA-CNN with the linear head is more accurate than ResNet-50 (minimal recipe)",
               ("cifar10",), "linear head vs ResNet-50"),
    Comparison("pool_vs_resnet18", "cifar100_resnet18", "fa-pool", "resnet18", 0.0,
               "FA-CNN with the pooling head is more accurate than ResNet-18 (minimal recipe)",
               ("cifar100",), "pooling head vs ResNet-18"),
    Comparison("pool_vs_resnet50", "same_recipe", "fa-pool", "resnet50", 0.0,
               "FA-CNN with the pooling head is more accurate than ResNet-50 (minimal recipe)",
               ("cifar100",), "pooling head vs ResNet-50"),
    Comparison("pool_vs_resnet18", "imagenet_resnet18", "fa-pool", "resnet18", -1.0,
               "FA-CNN with the pooling head is comparable to ResNet-18 (minimal recipe): at "
               "most 1 point below it (the 1-point tolerance is ours)", ("imagenet20",),
               "pooling head vs ResNet-18"),
    Comparison("pool_vs_best_standard", "standard", "fa-pool", "best-standard", -2.0,
               "FA-CNN (pooling head, minimal recipe) is at most 2 points below the best "
               "standard-recipe ResNet (the paper: 1 to 2 points below)", _ALL_DATASETS,
               "pooling head vs best standard ResNet"),
]

# The plateau criterion: a run is trained far enough when its test accuracy rose by at most
# PLATEAU_POINTS over the last fifth of its epochs (ours; the paper trains 100-300 epochs).
PLATEAU_POINTS = 1.0


def paper_value(dataset: str, name: str) -> float | None:
    """The paper's Table 1 accuracy (%) of row ``name`` on ``dataset`` (a stand-in dataset
    reads the dataset it stands in for); "best-standard" is the better standard ResNet."""
    dataset = PAPER_STAND_IN.get(dataset, dataset)
    if dataset not in PAPER_TABLE1:
        return None
    v = PAPER_TABLE1[dataset]
    if name == "best-standard":
        return max(v[_ALL.index(("resnet18", "standard"))], v[_ALL.index(("resnet50", "standard"))])
    return v[_ALL.index(cell(name))]


def best_standard(runs, dataset: str) -> str | None:
    """The standard-recipe ResNet with the higher mean accuracy over its finished seeds on
    ``dataset`` (None when neither has run)."""
    means = {}
    for name in ("resnet18-standard", "resnet50-standard"):
        accs = [_acc(s) for s in (runs.get((dataset, *cell(name))) or {}).values() if s is not None]
        if accs:
            means[name] = sum(accs) / len(accs)
    return max(means, key=means.get) if means else None


def paired(runs, dataset: str, a: str, b: str) -> dict[int, float]:
    """seed -> 100 (acc a - acc b) over the seeds both runs finished."""
    sa, sb = runs.get((dataset, *cell(a))) or {}, runs.get((dataset, *cell(b))) or {}
    return {s: _acc(sa[s]) - _acc(sb[s]) for s in sorted(set(sa) & set(sb))
            if sa[s] is not None and sb[s] is not None}


def rise(curve: Sequence[float]) -> float | None:
    """Points of test accuracy gained over the last fifth of the epochs (at least one):
    100 (acc[E] - acc[E - ceil(E / 5)]); None for fewer than two epochs."""
    n = len(curve)
    if n < 2:
        return None
    back = max(1, math.ceil(n / 5))
    return 100 * (curve[-1] - curve[-1 - back])


def mean_rise(curves, dataset: str, name: str, seeds: Sequence[int]) -> float | None:
    """The mean rise over ``seeds`` of run ``name``'s test-accuracy curves."""
    per = (curves.get((dataset, *cell(name))) or {})
    values = [r for s in seeds if per.get(s) is not None and (r := rise(per[s])) is not None]
    return sum(values) / len(values) if values else None


def decide(by_rate: Mapping[str, Mapping[str, Any]], threshold: float,
           rises: Mapping[str, Mapping[str, float | None]]) -> tuple[str, str]:
    """(verdict, reason) of a Table 1 claim "effect > threshold" from its evidence at every
    learning-rate setting (``by_rate``: label -> {ours, ci95, n_seeds}) and each model's rise
    over its last fifth of epochs at each setting (``rises``: label -> {model: points}).

    "holds" / "fails" only when, at every setting, at least two seeds give an interval that
    excludes the threshold on the same side and no model rose more than PLATEAU_POINTS over
    its last fifth of epochs; otherwise "inconclusive" with every reason that applies, or
    "not run" when no setting has a paired seed."""
    if not any(r["n_seeds"] for r in by_rate.values()):
        return "not run", "budget: not trained at this profile (the runs table lists the commands)"
    reasons, sides = [], {}
    missing = [k for k, r in by_rate.items() if not r["n_seeds"]]
    if missing:
        reasons.append(f"not run at {', '.join(missing)}")
    single = [k for k, r in by_rate.items() if r["n_seeds"] == 1]
    if single:
        reasons.append(f"one seed at {', '.join(single)}")
    for k, r in by_rate.items():
        if r["ci95"] is not None:
            lo, hi = r["ci95"]
            sides[k] = "holds" if lo > threshold else "fails" if hi < threshold else "spans"
    spans = [k for k, v in sides.items() if v == "spans"]
    if spans:
        reasons.append(f"interval spans {threshold:+g} at {', '.join(spans)}")
    decided = {v for v in sides.values() if v != "spans"}
    if len(decided) == 2:
        reasons.append("flips with the learning rate (" + ", ".join(
            f"{v} at {k}" for k, v in sides.items() if v != "spans") + ")")
    under = []
    for k, per in rises.items():
        up = [f"{m} {p:+.1f}" for m, p in per.items() if p is not None and p > PLATEAU_POINTS]
        if up:
            under.append(f"{', '.join(up)} points over the last fifth of epochs at {k}")
    if under:
        reasons.append("under-trained: " + "; ".join(under))
    if reasons:
        return "inconclusive", "; ".join(reasons)
    verdict = decided.pop()
    return verdict, (f"the interval excludes {threshold:+g} at every rate ({', '.join(by_rate)}) and "
                     f"no model rose more than {PLATEAU_POINTS:g} point over its last fifth of epochs")


def table1_claims(rates: Mapping[str, Mapping], curves: Mapping[str, Mapping],
                  datasets: Sequence[str], notes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every Table 1 claim (COMPARISONS) on each of ``datasets``, decided by ``decide``.

    ``rates``: label -> runs ((dataset, model, recipe) -> {seed: summary or None}), one per
    learning-rate setting ("own rates", "lr 0.8"); the first label's numbers are the claim's
    ``ours`` and ``ci95``. ``curves``: label -> the same keys -> {seed: [test accuracy per
    epoch]}. ``notes``: dataset -> a sentence appended to every reason on it (e.g. how its
    rates were chosen)."""
    rows = []
    first = next(iter(rates))
    for d in datasets:
        for c in COMPARISONS:
            if d not in c.datasets:
                continue
            b = c.b
            if b == "best-standard":
                b = best_standard(rates[first], d) or "resnet18-standard"
            by_rate, rises = {}, {}
            for label, runs in rates.items():
                eff = paired(runs, d, c.a, b)
                mean, ci = C.t_interval(list(eff.values())) if eff else (None, None)
                by_rate[label] = {"ours": None if mean is None else round(mean, 2),
                                  "ci95": None if ci is None else [round(ci[0], 2), round(ci[1], 2)],
                                  "n_seeds": len(eff)}
                rises[label] = {m: mean_rise(curves.get(label, {}), d, m, list(eff)) for m in (c.a, b)}
            verdict, reason = decide(by_rate, c.threshold, rises)
            if notes and d in notes and verdict != "not run":
                reason = f"{reason}; {notes[d]}"
            pa, pb = paper_value(d, c.a), paper_value(d, b if c.b != "best-standard" else c.b)
            stand_in = PAPER_STAND_IN.get(d)
            rows.append({
                "id": f"table1.{d}.{c.key}", "dataset_id": d, "dataset": DATASET_NAMES.get(d, d),
                "short": c.short, "quote": c.quote, "statement": c.statement,
                "models": [c.a, b], "threshold": c.threshold,
                "metric": f"accuracy points, {c.a} - {b}, paired by seed; claim: > {c.threshold:+g}"
                          + (f"; paper: its {DATASET_NAMES[stand_in]} value" if stand_in else ""),
                "paper": None if pa is None or pb is None else round(pa - pb, 2),
                "ours": by_rate[first]["ours"], "ci95": by_rate[first]["ci95"],
                "seeds": by_rate[first]["n_seeds"], "by_rate": by_rate,
                "rises": {k: {m: None if v is None else round(v, 2) for m, v in per.items()}
                          for k, per in rises.items()},
                "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows)


def claims_view(q: pd.DataFrame) -> pd.DataFrame:
    """The Table 1 claims as the chapter shows them: the paper's difference, ours at each
    learning-rate setting (mean [95 % interval], seeds), the verdict and its reason."""
    if q.empty:
        return q
    labels = list(q["by_rate"].iloc[0])

    def cell_text(r: Mapping[str, Any]) -> str:
        if not r["n_seeds"]:
            return "not run"
        ci = "" if r["ci95"] is None else f" [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]"
        return f"{r['ours']:+.2f}{ci} ({r['n_seeds']})"
    out = pd.DataFrame({"dataset": q["dataset"], "claim (a - b > threshold)": [
        f"{s}: {m[0]} - {m[1]} > {t:+g}" for s, m, t in zip(q["short"], q["models"], q["threshold"])],
        "paper": [("—" if v is None else f"{v:+.2f}") for v in q["paper"]]})
    for label in labels:
        out[f"ours, {label}"] = [cell_text(br[label]) for br in q["by_rate"]]
    out["verdict"] = q["verdict"]
    out["reason"] = q["reason"]
    return out


# -- the learning-rate sweep ---------------------------------------------------------------

def _run_row(cfg, s, **first: Any) -> dict[str, Any]:
    """A table row for the run ``cfg`` with summary ``s`` (or MissingResult): ``first``,
    then the final test accuracy (%), test images, config hash, status and, for a missing
    run, the command that makes it."""
    from .runs import train_command
    done = s is not None
    return {**first, "test accuracy (%)": round(100 * s["accuracy"], 2) if done else None,
            "test images": test_size(cfg), "config": cfg.hash(),
            "status": "done" if done else "missing", "command": "" if done else train_command(cfg)}


def sweep_table(sweep: Mapping[float, Any], configs: Mapping[float, Any]) -> pd.DataFrame:
    """One row per learning rate of the sweep: final and best test accuracy (%), test
    images, epochs, wall time, config hash; a missing run shows its command."""
    rows = []
    for lr, s in sorted(sweep.items()):
        done = s is not None
        rows.append({**_run_row(configs[lr], s, lr=lr),
                     "best epoch (%)": round(100 * s["best_accuracy"], 2) if done else None,
                     "epochs": configs[lr].epochs, "precision": configs[lr].precision,
                     "wall time (min)": round(s["wall_s"] / 60, 1) if done else None})
    cols = ["lr", "test accuracy (%)", "best epoch (%)", "test images", "epochs", "precision",
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


def precision_check(runs, lr: float) -> tuple[pd.DataFrame, list] | None:
    """The sweep's run at ``lr`` trained in bf16 beside the same run in fp32 (the table and
    the two configs): the evidence that a profile with precision="bf16" loses no accuracy
    to it (speed is measured in benchmarks/training.py, not here: these runs shared the
    machine). None where there is nothing to compare (the profile trains in its default
    precision)."""
    from facnn.config import apply_overrides
    ref = next((c for c in runs.sweep_configs() if abs(c.lr - lr) < 1e-12), None)
    if ref is None or ref.precision != "bf16":
        return None
    configs = [ref, apply_overrides(ref, {"precision": "fp32"})]
    rows = [_run_row(c, runs.summary_of(c), precision=c.precision, lr=c.lr) for c in configs]
    return pd.DataFrame(rows), configs


def _sweep_note(t: pd.DataFrame, probes: Sequence[tuple[Any, Mapping[str, Any] | None]] = ()) -> str:
    """A finished sweep's note: where its best rate lies on the edge of its grid, which side
    the optimum may lie beyond, then the runs beside it (probe_note); "" when neither applies
    (an interior best brackets the optimum). Probes at the edge rate and above it settle the
    top edge: when every one above is worse than the one at the edge, the note says the
    optimum is not above the grid, and their accuracies are in that sentence."""
    acc = t["test accuracy (%)"]
    edge = ""
    if not acc.isna().any() and len(t) >= 2:
        best = t.loc[acc.idxmax(), "lr"]
        if best == t["lr"].max():
            falls = _falls_above(best, probes)
            if falls:
                return f"best at the grid's largest rate, {best:g}, but {falls}: the optimum is not above the grid"
            edge = f"best at the grid's largest rate: the optimum may lie above {best:g}"
        elif best == t["lr"].min():
            edge = f"best at the grid's smallest rate: the optimum may lie below {best:g}"
    return "; ".join(n for n in (edge, probe_note(probes)) if n)


def _falls_above(edge: float, probes: Sequence[tuple[Any, Mapping[str, Any] | None]]) -> str:
    """"the fp32 runs beside the sweep fall from 46.6 % at lr 3.2 to 36.6 % at lr 6.4" when,
    in one precision, a finished probe at ``edge`` beats every finished probe above it;
    "" otherwise."""
    by_precision: dict[str, dict[float, float]] = {}
    for cfg, s in probes:
        if s is not None:
            by_precision.setdefault(cfg.precision, {})[cfg.lr] = 100 * s["accuracy"]
    for precision, acc in by_precision.items():
        above = sorted(lr for lr in acc if lr > edge)
        if edge in acc and above and all(acc[lr] < acc[edge] for lr in above):
            steps = " to ".join(f"{acc[lr]:.1f} % at lr {lr:g}" for lr in above)
            return f"the {precision} runs beside the sweep fall from {acc[edge]:.1f} % at lr {edge:g} to {steps}"
    return ""


def probe_note(probes: Sequence[tuple[Any, Mapping[str, Any] | None]]) -> str:
    """The runs beside a sweep (Runs.probes) in one phrase: "fp32 runs beside the sweep:
    46.6 % at lr 3.2, ..."; "" when there are none."""
    by_precision: dict[str, list[str]] = {}
    for cfg, s in probes:
        acc = "missing" if s is None else f"{100 * s['accuracy']:.1f} %"
        by_precision.setdefault(cfg.precision, []).append(f"{acc} at lr {cfg.lr:g}")
    return "; ".join(f"{p} runs beside the sweep: {', '.join(v)}" for p, v in by_precision.items())


def sweeps_view(tables: Mapping[str, pd.DataFrame], chosen: Mapping[str, float | None],
                defaults: Mapping[str, float],
                probes: Mapping[str, Sequence[tuple[Any, Mapping[str, Any] | None]]] | None = None
                ) -> pd.DataFrame:
    """One row per model: its final test accuracy (%) at each learning rate of the sweep,
    the rule's choice (sweep_best), the rate Table 1 trains it with, and a note (the best
    rate on the grid's edge; the runs beside the sweep: _sweep_note)."""
    rows = []
    for m, t in tables.items():
        row: dict[str, Any] = {"model": m, "precision": ", ".join(dict.fromkeys(t["precision"]))}
        for lr, acc in zip(t["lr"], t["test accuracy (%)"]):
            row[f"lr {lr:g}"] = acc
        row["rule's choice"] = "incomplete" if chosen.get(m) is None else f"{chosen[m]:g}"
        row["trained with"] = f"{defaults[m]:g}"
        row["note"] = _sweep_note(t, (probes or {}).get(m, ()))
        rows.append(row)
    # every rate any sweep ran, in order, before the choice ("—" where a sweep did not run it)
    lrs = sorted({float(k[3:]) for r in rows for k in r if k.startswith("lr ")})
    cols = ["model", "precision", *(f"lr {lr:g}" for lr in lrs), "rule's choice", "trained with", "note"]
    return pd.DataFrame(rows, columns=cols)
