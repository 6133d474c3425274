"""The verdict file: one entry per claim of the paper the book checks, with the paper's
number, ours, an interval where seeds allow one, and a verdict.

Each chapter records its entries (``record``) under ``results/<profile>/claims/<chapter>.json``;
the book's build merges them into ``results/<profile>/claims.json`` (``merge``), which the
landing page's verdict table and the chapters read::

    {"profile": "cpu", "claims": [
        {"id": "table1.cifar10.pool_vs_linear", "source": "Table 1",
         "statement": "<the paper's claim, one line>", "dataset": "cifar10",
         "metric": "...", "paper": 0.67, "ours": -1.2, "ci95": [-3.1, 0.7], "n_seeds": 3,
         "verdict": "holds" | "fails" | "inconclusive" | "not run", "page": "01_training"}]}

The interval of a Table 1 question is the paired t-interval of the per-seed differences
(run a minus run b trained with the same seed): seeds pair naturally (same data order and
initialisation scheme), pairing removes what the two runs share, and with a handful of
seeds the t distribution (not the normal) gives honest 95 % coverage.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

VERDICTS = ("holds", "fails", "inconclusive", "not run")
FIELDS = ("id", "source", "quote", "where", "statement", "dataset", "metric", "paper", "ours",
          "ci95", "n_seeds", "verdict", "reason", "counted", "page")

# two-sided 95 % quantiles of Student's t with n-1 degrees of freedom, n = 2..10
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262}


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return m, sd


def t_interval(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """Mean and 95 % t-interval of ``values`` (None for fewer than two values)."""
    if not values:
        raise ValueError("no values: an interval needs at least one seed")
    m, sd = mean_sd(values)
    if sd is None:
        return m, None
    half = _T975[min(len(values) - 1, 9)] * sd / math.sqrt(len(values))
    return m, (m - half, m + half)


def verdict(paper_side: int, ci: tuple[float, float] | None, mean: float | None = None,
            margin_needed: float | None = None) -> str:
    """holds / fails / inconclusive for a signed effect the paper says has sign
    ``paper_side`` (+1 or -1).

    With an interval: holds when it excludes zero on the paper's side, fails when it
    excludes zero on the other, inconclusive when it contains zero. Without one (a single
    seed): decided only when ``|mean|`` exceeds ``margin_needed`` (e.g. three times the seed
    spread measured elsewhere), else inconclusive."""
    if paper_side not in (1, -1):
        raise ValueError(f"paper_side must be +1 or -1, got {paper_side}")
    if ci is not None:
        lo, hi = ci
        if lo > 0 or hi < 0:
            return "holds" if (lo > 0) == (paper_side > 0) else "fails"
        return "inconclusive"
    if mean is None:
        return "not run"
    if margin_needed is None or abs(mean) <= margin_needed:
        return "inconclusive"
    return "holds" if (mean > 0) == (paper_side > 0) else "fails"


def entry(id: str, source: str, quote: str, statement: str, dataset: str | None, metric: str,
          paper: float | None, ours: float | None, verdict: str, page: str,
          ci95: Sequence[float] | None = None, n_seeds: int = 0, reason: str | None = None,
          counted: bool = True, **extra: Any) -> dict[str, Any]:
    """One claim, checked. ``quote`` is a key of facnnbook.paper.QUOTES: the entry carries
    the paper's sentence and where it stands. ``statement`` is our operational reading (any
    tolerance of ours said in words); ``reason`` says why, and is required for
    "inconclusive" and "not run"; ``counted`` is false for our own extensions (another
    removal order, extra tests), which the landing page does not count. ``extra`` adds
    fields such as ``models`` and ``by_rate`` (Table 1)."""
    from .paper import quote as paper_quote
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}; choose one of {', '.join(VERDICTS)}")
    if verdict in ("inconclusive", "not run") and not reason:
        raise ValueError(f"claim {id!r} is {verdict!r} without a reason; say why (interval spans "
                         f"the threshold, flips with the learning rate, under-trained, one seed, "
                         f"budget, ...)")
    where, sentence = paper_quote(quote)

    def r(v):
        return None if v is None or v != v else round(float(v), 6)   # NaN (not run) -> null
    return dict(id=id, source=source, quote=sentence, where=where, statement=statement,
                dataset=dataset, metric=metric, paper=r(paper), ours=r(ours),
                ci95=None if ci95 is None else [r(v) for v in ci95], n_seeds=int(n_seeds),
                verdict=verdict, reason=reason, counted=bool(counted), page=page, **extra)


def record(results_dir: str | Path, profile: str, chapter: str,
           entries: Sequence[dict[str, Any]]) -> Path:
    """Write one chapter's entries (replacing what it wrote before)."""
    from facnn.fileio import atomic_write_text
    for e in entries:
        missing = [f for f in FIELDS if f not in e]
        if missing:
            raise ValueError(f"claim {e.get('id')!r} lacks {', '.join(missing)}; build it with "
                             f"facnnbook.claims.entry(...)")
    path = Path(results_dir) / profile / "claims" / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(list(entries), indent=1))
    return path


def merge(results_dir: str | Path, profile: str, commit: str,
          chapters: Sequence[str] | None = None) -> dict[str, Any]:
    """Merge the chapters' entries into ``results/<profile>/claims.json`` (in chapter
    order) and return it with the build's ``commit`` added (the file itself holds no build
    stamp). ``chapters`` limits it to those executed in this build."""
    from facnn.fileio import atomic_write_text
    folder = Path(results_dir) / profile / "claims"
    files = sorted(folder.glob("*.json")) if folder.exists() else []
    if chapters is not None:
        files = [f for f in files if f.stem in chapters]
    claims: dict[str, dict[str, Any]] = {}
    for f in files:
        for e in json.loads(f.read_text()):
            old = claims.get(e["id"])
            # a chapter may stand in "not run" for a claim another chapter decides (Figure 4
            # on ImageNet before its benchmark has run); two real verdicts of one claim clash
            if old is not None and "not run" not in (old["verdict"], e["verdict"]):
                raise ValueError(f"claim id {e['id']!r} recorded twice ({f.name})")
            if old is None or old["verdict"] == "not run":
                claims[e["id"]] = e
    # no build stamp in the file: a rebuild with the same verdicts leaves the tracked file as it is
    doc = {"profile": profile, "claims": list(claims.values())}
    atomic_write_text(Path(results_dir) / profile / "claims.json", json.dumps(doc, indent=1))
    return {**doc, "commit": commit}


def load(results_dir: str | Path, profile: str) -> dict[str, Any] | None:
    path = Path(results_dir) / profile / "claims.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


GROUPS = {"Theorem 1": "theory", "Theorem 2": "theory", "Table 1": "accuracy",
          "Figure 4": "attribution", "Figures 1/5": "attribution"}
# what an "inconclusive" reason says, in the landing page's words
_WHY = {"under-trained": "models still improving when training stopped",
        "flips with the learning rate": "answers that flip with the learning rate",
        "one seed": "single seeds", "spans": "intervals that span the threshold",
        "support": "bootstrap support between the bounds", "threshold": "a threshold of ours",
        "budget": "runs not yet trained"}


def counted(doc: Mapping[str, Any], yes: bool = True) -> list[dict[str, Any]]:
    """The claims the landing page counts (``yes``), or our extensions (not ``yes``)."""
    return [c for c in doc["claims"] if bool(c.get("counted", True)) == yes]


def synthesis_md(doc: Mapping[str, Any], names: Mapping[str, str] | None = None,
                 accuracies: Sequence[str] = ()) -> str:
    """The landing page's opening: what holds, what fails, what this scale cannot decide
    and why, and the accuracies reached here beside the paper's (``accuracies``: phrases)."""
    names = names or {}
    claims = counted(doc)
    if not claims:
        return f"No verdicts yet at profile `{doc['profile']}`."
    totals: dict[tuple, int] = {}
    for c in claims:
        key = (c["source"], c["dataset"])
        totals[key] = totals.get(key, 0) + 1

    def groups(verdict: str) -> str:
        got: dict[tuple, int] = {}
        for c in claims:
            if c["verdict"] == verdict:
                key = (c["source"], c["dataset"])
                got[key] = got.get(key, 0) + 1
        parts = []
        for (source, dataset), n in got.items():
            where = f" on {names.get(dataset, dataset)}" if dataset else ""
            parts.append(f"{source}{where}" + (f" ({n} of {totals[(source, dataset)]})"
                                               if totals[(source, dataset)] > 1 else ""))
        return "; ".join(parts) or "none"
    n = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    why: dict[str, int] = {}
    for c in claims:
        if c["verdict"] == "inconclusive":
            for key, words in _WHY.items():
                if key in (c.get("reason") or ""):
                    why[words] = why.get(words, 0) + 1
    because = ", ".join(w for w, _ in sorted(why.items(), key=lambda kv: -kv[1])) or "see each reason"
    def verb(k: int, one: str, many: str) -> str:
        return f"{k} {one if k == 1 else many}"

    lines = [f"**Of the {len(claims)} claims of the paper this build checks at profile "
             f"`{doc['profile']}`, {verb(n['holds'], 'holds', 'hold')}, {verb(n['fails'], 'fails', 'fail')}, "
             f"{n['inconclusive']} cannot be decided at this scale and "
             f"{verb(n['not run'], 'is not run yet', 'are not run yet')}.**",
             f"**Holds:** {groups('holds')}.", f"**Fails:** {groups('fails')}.",
             f"**Undecided:** {groups('inconclusive')}; because of {because}."]
    if accuracies:
        lines.append("**Accuracy reached here** by FA-CNN with the pooling head (mean over "
                     "seeds; the paper's at full scale in brackets): " + "; ".join(accuracies) + ".")
    return "\n".join(f"- {line}" if i else line + "\n" for i, line in enumerate(lines))


def verdict_table_md(doc: dict[str, Any], link_prefix: str = "", names: Mapping[str, str] | None = None,
                     extensions: bool = False) -> str:
    """The landing page's verdict table (markdown) of the counted claims, or with
    ``extensions`` of our own extensions: claim (the paper's sentence on hover), dataset
    (by its name in ``names``), paper, ours (with interval and seeds), verdict, reason, link
    to the chapter."""
    icon = {v: f'<span class="facnn-verdict facnn-{v.replace(" ", "-")}">{v}</span>' for v in VERDICTS}
    rows = counted(doc, not extensions)
    counts = {v: sum(c["verdict"] == v for c in rows) for v in VERDICTS}
    kind = "extensions of ours (not counted)" if extensions else "claims counted"
    lines = [f"**{len(rows)} {kind} at profile `{doc['profile']}`:** "
             + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".", "",
             "| claim | dataset | paper | ours | 95 % interval (seeds) | verdict | reason | page |",
             "|---|---|---|---|---|---|---|---|"]
    for c in rows:
        ci = (f"[{fmt(c['ci95'][0])}, {fmt(c['ci95'][1])}] ({c['n_seeds']})" if c["ci95"]
              else (f"— ({c['n_seeds']})" if c["n_seeds"] else "—"))
        page = f"[{c['source']}]({link_prefix}{c['page']}.ipynb)"
        quote = (c.get("quote") or "").replace('"', "&quot;")
        statement = f'<span title="The paper: {quote}">{c["statement"]}</span>'.replace("|", "/")
        # a stand-in dataset's claim compares with the paper's number on another dataset
        other = re.search(r"paper: its (.+?) (effect|value)", c.get("metric") or "")
        paper = fmt(c["paper"]) + (f" ({other.group(1)})" if other and c["paper"] is not None else "")
        dataset = (names or {}).get(c["dataset"], c["dataset"]) or "—"
        reason = (c.get("reason") or "").replace("|", "/")
        lines.append(f"| {statement} | {dataset} | {paper} | "
                     f"{fmt(c['ours'])} | {ci} | {icon[c['verdict']]} | {reason} | {page} |")
    return "\n".join(lines)
