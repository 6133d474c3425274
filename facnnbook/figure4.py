"""Figure 4 as the paper states it (Section 5.2): which removal order reproduces its curves,
and each of its sentences read strictly on our curves, decided by a bootstrap over images.

Everything here reads the per-image outcomes that ``chapters.removal_study`` stores in the
analysis cache (``correct``, (curves, F, n): was image i still right at fraction f) and runs
in seconds, outside the cache: a new reading never makes the hours-long benchmark stale.

The paper says the *most* salient pixels are removed (MoRF), but the behaviour it describes,
accuracy *rising* when a few pixels go and curves that stay high ("robustness"), is what
removing the *least* salient ones (LeRF) shows. ``removal_order`` decides per dataset which
order our curves reproduce; only that order's statements count as the paper's claims, the
other order's are recorded as our extension.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from facnn import attribution as A
from .chapters import CAN_BE_NEGATIVE, statement_verdict

ORDERS = ("lerf", "morf")
PAPER_ORDER = "morf"       # what Section 5.2's text says: "the most salient pixels" go first
OURS, PERTURBATION = ("fa-cnn", "grad-cam"), ("rise", "k-occ")
LOW, MID, HIGH = (0.1, 0.2), (0.4, 0.6), (0.6, 0.9)   # 0-20 %, 40-60 %, 60 %+ (100 %: a blank image for all)
SIMILAR = 0.10             # ours: "similar" = within 10 % of the dataset's clean accuracy
STAYS_HIGH = 0.5           # ours: "stays high" = above half the clean accuracy at 40-60 %
ORDER_NAMES = {"lerf": "LeRF", "morf": "MoRF"}
NAMES = {"fa-cnn": "FA-CNN", "grad-cam": "Grad-CAM", "rise": "RISE", "k-occ": "K-OCC",
         "random": "RAND"}


class NotRun(Exception):
    """A statement our benchmark cannot decide (a method, layer or order it did not run)."""


# -- curves -----------------------------------------------------------------------------------

def curve_dict(curve_keys: pd.DataFrame, acc: np.ndarray) -> dict[tuple, np.ndarray]:
    """(method, layer or None, order) -> accuracy per fraction (F,), from per-curve
    accuracies (curves, F) in the rows of ``curve_keys``; RAND's seeds averaged."""
    groups: dict[tuple, list[np.ndarray]] = {}
    for (m, layer, o, _), a in zip(curve_keys.itertuples(index=False), acc):
        groups.setdefault((m, None if pd.isna(layer) else int(layer), o), []).append(a)
    return {k: np.mean(v, 0) for k, v in groups.items()}


@dataclass
class View:
    """The curves of one removal order, as a statement reads them."""
    curves: dict[tuple, np.ndarray]
    fractions: np.ndarray
    order: str

    @property
    def layers(self) -> list[int]:
        return sorted({k[1] for k in self.curves if k[1] is not None}, reverse=True)

    @property
    def sign(self) -> int:
        """+1: higher accuracy is better (LeRF keeps the evidence); -1 (MoRF removes it)."""
        return 1 if self.order == "lerf" else -1

    def curve(self, method: str, layer: str = "last") -> np.ndarray:
        at = None
        if method in A.LAYERED:
            if layer == "mid" and len(self.layers) < 2:
                raise NotRun("no intermediate layer was run")
            at = self.layers[0] if layer == "last" else self.layers[1]
        key = (method, at, self.order)
        if key not in self.curves:
            raise NotRun(f"{method} was not run in {ORDER_NAMES[self.order]}"
                         + (f" at layer {at}" if at else ""))
        return self.curves[key]

    @property
    def clean(self) -> float:
        if self.fractions[0] != 0:
            raise NotRun("no clean images (fraction 0)")
        return float(next(iter(self.curves.values()))[0])

    def band(self, method: str, band: tuple[float, float], layer: str = "last") -> float:
        """Mean accuracy over the fractions in ``band`` (ends included)."""
        lo, hi = band
        sel = (self.fractions > lo - 1e-9) & (self.fractions < hi + 1e-9)
        return float(self.curve(method, layer)[sel].mean())

    def gain(self, method: str) -> float:
        """The largest accuracy gain over the clean images at 10-20 % removed."""
        sel = (self.fractions > LOW[0] - 1e-9) & (self.fractions < LOW[1] + 1e-9)
        return float(self.curve(method)[sel].max()) - self.clean

    def auc(self, method: str, layer: str = "last") -> float:
        return float(np.trapezoid(self.curve(method, layer), self.fractions))

    def better(self, a: float, b: float) -> bool:
        return self.sign * (a - b) > 0


# -- which order the paper's curves are -------------------------------------------------------

def _rises(v: View) -> tuple[float, bool]:
    g = max(v.gain(m) for m in OURS + PERTURBATION)
    return 100 * g, g > 0


def _above_random(v: View) -> tuple[float, bool]:
    r = v.auc("random")
    n = sum(v.auc(m) > r for m in OURS + PERTURBATION)
    return n, n == len(OURS + PERTURBATION)


def _stays_high(v: View) -> tuple[float, bool]:
    share = np.mean([v.band(m, MID) for m in OURS + PERTURBATION]) / v.clean
    return 100 * share, share > STAYS_HIGH


# (what the paper describes, the measure on our curves, how it is shown, the check)
ORDER_CHECKS: list[tuple[str, str, str, Callable[[View], tuple[float, bool]]]] = [
    ("accuracy rises when a few pixels are removed (RISE, K-OCC)",
     "largest gain over clean at 10-20 % removed, any method (points)", "{:+.1f}", _rises),
    ("the curves show robustness and every method is skillful relative to random: "
     "higher curves are better", "methods (of 4) whose area under the curve is above RAND's",
     "{:.0f}", _above_random),
    ("robustness in the moderate removal range (40-60 %)",
     f"mean accuracy of the 4 methods at 40-60 % removed, % of clean (shown: above "
     f"{100 * STAYS_HIGH:.0f} %, our threshold)", "{:.0f} %", _stays_high),
]


def removal_order(curves: dict[tuple, np.ndarray], fractions: np.ndarray
                  ) -> tuple[str, pd.DataFrame]:
    """The order whose curves show more of the paper's descriptions of Figure 4 (a tie:
    the order its text names, MoRF), and the evidence: per description and order, the
    measure and whether the curves show it."""
    rows, shown = [], dict.fromkeys(ORDERS, 0)
    for what, measure, fmt, check in ORDER_CHECKS:
        row = {"the paper describes": what, "measured on our curves": measure}
        for o in ORDERS:
            try:
                value, ok = check(View(curves, np.asarray(fractions, float), o))
            except NotRun:
                row[ORDER_NAMES[o]] = "not run"
                continue
            shown[o] += bool(ok)
            row[ORDER_NAMES[o]] = fmt.format(value) + (" (shown)" if ok else " (not shown)")
        rows.append(row)
    best = max(ORDERS, key=lambda o: shown[o])
    order = best if shown[best] > min(shown.values()) else PAPER_ORDER
    return order, pd.DataFrame(rows)


def order_sentence(order: str, evidence: pd.DataFrame) -> str:
    """One sentence for the page: which order we count, and why."""
    n = {o: int(evidence[ORDER_NAMES[o]].str.endswith("(shown)").sum()) for o in ORDERS}
    k = len(evidence)
    if order == "lerf" and n["lerf"] > n["morf"]:
        return (f"Our LeRF curves show {n['lerf']} of these {k} descriptions, our MoRF curves "
                f"{n['morf']}: the paper's Figure 4 reads as **LeRF** curves, whatever its text "
                f"says about the order. We count the LeRF statements as the paper's claims; the "
                f"MoRF ones are our extension, below, not counted.")
    if n["morf"] > n["lerf"]:
        return (f"Our MoRF curves show {n['morf']} of these {k} descriptions, our LeRF curves "
                f"{n['lerf']}: the curves agree with the text's order, **MoRF**. We count the "
                f"MoRF statements; the LeRF ones are our extension, below, not counted.")
    return (f"Both orders show {n['lerf']} of these {k} descriptions: the curves do not tell "
            f"the orders apart, so we count the order the text names, **MoRF**; the LeRF "
            f"statements are our extension, below, not counted.")


# -- the paper's sentences, read strictly ----------------------------------------------------

def _word(v: View) -> str:
    return "higher" if v.sign > 0 else "lower"


def _layers(v: View):
    a = {m: (v.auc(m), v.auc(m, "mid")) for m in OURS}
    return (", ".join(f"{NAMES[m]} {x:.3f} (last) vs {y:.3f} (intermediate)" for m, (x, y) in a.items()),
            all(v.better(x, y) for x, y in a.values()))


def _random(v: View):
    r, a = v.auc("random"), {m: v.auc(m) for m in OURS + PERTURBATION}
    return (", ".join(f"{NAMES[m]} {x:.3f}" for m, x in a.items()) + f"; RAND {r:.3f}",
            all(v.better(x, r) for x in a.values()))


def _low(v: View):
    p, o = {m: v.band(m, LOW) for m in PERTURBATION}, {m: v.band(m, LOW) for m in OURS}
    return (", ".join(f"{NAMES[m]} {x:.3f}" for m, x in {**p, **o}.items()),
            all(v.better(a, b) for a in p.values() for b in o.values()))


def _raise(v: View):
    g = {m: v.gain(m) for m in PERTURBATION}
    return ", ".join(f"{NAMES[m]} {100 * x:+.1f} points" for m, x in g.items()), all(x > 0 for x in g.values())


def _no_raise(v: View):
    g = {m: v.gain(m) for m in OURS}
    return ", ".join(f"{NAMES[m]} {100 * x:+.1f} points" for m, x in g.items()), all(x <= 0 for x in g.values())


def _mid(v: View):
    tol = SIMILAR * v.clean
    o, p = {m: v.band(m, MID) for m in OURS}, {m: v.band(m, MID) for m in PERTURBATION}
    gap = max(abs(a - b) for a in o.values() for b in p.values())
    return (", ".join(f"{NAMES[m]} {x:.3f}" for m, x in {**o, **p}.items())
            + f"; largest gap {gap:.3f}, tolerance {tol:.3f}", gap <= tol)


def _high(v: View):
    o, k = {m: v.band(m, HIGH) for m in OURS}, v.band("k-occ", HIGH)
    return (", ".join(f"{NAMES[m]} {x:.3f}" for m, x in o.items()) + f"; K-OCC {k:.3f}",
            all(v.better(x, k) for x in o.values()))


def signed_methods() -> list[str]:
    """The perturbation methods whose maps can be negative (chapters.CAN_BE_NEGATIVE): only
    these can test the paper's negative-attribution explanation."""
    return [m for m in PERTURBATION if CAN_BE_NEGATIVE[m]]


def _negative(v: View):
    signed = signed_methods()
    if not signed:
        raise NotRun("no method here has maps that can be negative")
    g = {m: (v.gain(m), v.gain(m + "+clip")) for m in signed}
    return (", ".join(f"{NAMES[m]} {100 * a:+.1f} -> clipped {100 * b:+.1f} points" for m, (a, b) in g.items()),
            all(a > 0 and b <= 0 for a, b in g.values()))


def _unsigned() -> str:
    names = [NAMES[m] for m in PERTURBATION if not CAN_BE_NEGATIVE[m]]
    return (f"; {' and '.join(names)} not tested: its maps cannot be negative here (RISE is a "
            f"probability-weighted mean of masks in [0, 1])" if names else "")


# (n, quote key of facnnbook.paper.QUOTES, our reading as a function of the view, the test)
STATEMENTS: list[tuple[int, str, Callable[[View], str], Callable[[View], tuple[str, bool]]]] = [
    (1, "fig4_layers", lambda v: f"FA-CNN and Grad-CAM each have a {_word(v)} area under the "
     f"{ORDER_NAMES[v.order]} curve at the last layer than at the intermediate one", _layers),
    (2, "fig4_random", lambda v: f"Each of FA-CNN, Grad-CAM (last layer), RISE and K-OCC has a "
     f"{_word(v)} area under the {ORDER_NAMES[v.order]} curve than random removal (RAND, 3 seeds)",
     _random),
    (3, "fig4_low", lambda v: f"At 10-20 % of pixels removed ({ORDER_NAMES[v.order]}, mean accuracy), "
     f"each of RISE and K-OCC has {_word(v)} accuracy than each of FA-CNN and Grad-CAM (last "
     f"layer)", _low),
    (4, "fig4_raise", lambda v: f"Each of RISE and K-OCC has accuracy above the clean accuracy at "
     f"10 % or 20 % removed ({ORDER_NAMES[v.order]})", _raise),
    (5, "fig4_no_raise", lambda v: f"Neither FA-CNN nor Grad-CAM (last layer) has accuracy above "
     f"the clean accuracy at 10 % or 20 % removed ({ORDER_NAMES[v.order]})", _no_raise),
    (6, "fig4_mid", lambda v: f"At 40-60 % removed ({ORDER_NAMES[v.order]}, mean accuracy), each of "
     f"FA-CNN and Grad-CAM (last layer) is within {100 * SIMILAR:.0f} % of the clean accuracy "
     f"of each of RISE and K-OCC ('similar' as we read it: our tolerance, {100 * SIMILAR:.0f} % "
     f"of the dataset's clean accuracy)", _mid),
    (7, "fig4_high", lambda v: f"At 60-90 % removed ({ORDER_NAMES[v.order]}, mean accuracy; at 100 % "
     f"every method leaves the same blank image), each of FA-CNN and Grad-CAM (last layer) is "
     f"{_word(v)} in accuracy than K-OCC", _high),
    (8, "fig4_negative", lambda v: f"Tested on the maps that can be negative, "
     f"{' and '.join(NAMES[m] for m in signed_methods()) or 'none'}: its accuracy gain over clean "
     f"at 10-20 % removed (LeRF) is positive, and none is left with its negative values clipped "
     f"at 0" + _unsigned(), _negative),
]


LERF_ONLY = {"fig4_negative"}   # the clipped maps are run in LeRF only: no MoRF form


def reading(curves: dict[tuple, np.ndarray], fractions: np.ndarray) -> pd.DataFrame:
    """Every statement in every order on one set of curves: order, n, quote key, our reading,
    our numbers, holds (True/False; None where not run, and why)."""
    rows = []
    for o in ORDERS:
        v = View(curves, np.asarray(fractions, float), o)
        for n, quote, statement, test in STATEMENTS:
            if quote in LERF_ONLY and o != "lerf":
                continue
            try:
                text, (ours, holds), why = statement(v), test(v), None
            except NotRun as e:
                text, ours, holds, why = f"statement {n} ({ORDER_NAMES[o]})", "n/a", None, str(e)
            rows.append(dict(order=o, n=n, quote=quote, statement=text, ours=ours, holds=holds,
                             why=why))
    return pd.DataFrame(rows)


def bootstrap_support(curve_keys: pd.DataFrame, correct: np.ndarray, fractions: np.ndarray,
                      n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """The share of ``n_boot`` resamples of the images (with replacement, the same images
    for every curve: paired; a new draw each round) in which each row of ``reading`` holds.
    The draws are those of chapters.bootstrap_auc with the same seed."""
    rng = np.random.default_rng(seed)
    n = correct.shape[2]
    hits = []
    for _ in range(n_boot):
        acc = correct[:, :, rng.integers(0, n, n)].mean(2)
        hits.append(reading(curve_dict(curve_keys, acc), fractions)["holds"].eq(True).to_numpy(float))
    return np.mean(hits, 0)


def figure4_statements(values: dict[str, Any], n_boot: int, seed: int = 0) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """From a cached removal_study result: the order that counts, its evidence, and every
    statement with our numbers, its bootstrap support, verdict, reason and whether it counts."""
    keys, correct = values["curve_keys"], np.asarray(values["correct"], bool)
    fr = np.asarray(values["meta"]["fractions"], float)
    curves = curve_dict(keys, correct.mean(2))
    order, evidence = removal_order(curves, fr)
    t = reading(curves, fr)
    t["support"] = bootstrap_support(keys, correct, fr, n_boot, seed)
    t["verdict"] = [statement_verdict("n/a" if h is None else "yes", s)
                    for h, s in zip(t["holds"], t["support"])]
    t["counted"] = t["order"] == order
    t["reason"] = [_reason(r, n_boot, order) for r in t.itertuples()]
    return order, evidence, t


def _reason(r, n_boot: int, order: str) -> str:
    if r.verdict == "not run":
        why = r.why
    else:
        why = (f"holds in {100 * r.support:.1f} % of {n_boot} resamples of the images"
               + (" (between 2.5 and 97.5 %)" if r.verdict == "inconclusive" else "") + f": {r.ours}")
    if not r.counted:
        why += (f"; our extension: {ORDER_NAMES[r.order]} is not the order whose curves reproduce "
                f"the paper's ({ORDER_NAMES[order]} is)")
    return why


def record_claims(ch, table: pd.DataFrame, dataset: str, n_boot: int | None,
                  placeholder: str | None = None) -> dict[str, int]:
    """Record each statement as claim ``figure4.<dataset>.<order>.<n>`` of chapter ``ch``
    (``placeholder``: a reason; every claim "not run", e.g. a dataset another chapter
    decides). Returns the verdict counts of the counted and the other order."""
    counts: dict[str, int] = {}
    for r in table.itertuples():
        v = "not run" if placeholder else r.verdict
        ch.claim(f"figure4.{dataset}.{r.order}.{r.n}", r.quote, r.statement,
                 f"share of {n_boot} bootstrap resamples of the images in which it holds"
                 if not placeholder else "bootstrap support", None,
                 None if v == "not run" else r.support, v, "Figure 4", dataset=dataset,
                 n_seeds=0 if v == "not run" else 1, reason=placeholder or r.reason,
                 counted=bool(r.counted))
        side = "counted" if r.counted else "other"
        counts[f"{side}_{v.replace(' ', '_')}"] = counts.get(f"{side}_{v.replace(' ', '_')}", 0) + 1
        counts[f"{side}_total"] = counts.get(f"{side}_total", 0) + 1
    for side in ("counted", "other"):
        for v in ("holds", "fails", "inconclusive", "not_run", "total"):
            counts.setdefault(f"{side}_{v}", 0)
    return counts


def statements_view(table: pd.DataFrame, counted: bool) -> pd.DataFrame:
    """The statements table a page shows (the counted order's, or the other's)."""
    from .paper import QUOTES
    t = table[table["counted"] == counted]
    return pd.DataFrame({"#": t["n"], "the paper says": [QUOTES[q][1] for q in t["quote"]],
                         "our reading": t["statement"], "ours": t["ours"],
                         "support": t["support"], "verdict": t["verdict"]})
