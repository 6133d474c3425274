"""The book's build: ``python -m facnnbook --profile P`` (what ``make book`` runs).

1. executes each numbered notebook ``notebooks/NN_*.ipynb`` with papermill into
   ``_build/src/notebooks/NN_*.ipynb`` (the sources stay output-free), passing ``profile`` and
   ``fresh``. A chapter that raises :class:`MissingResult` (a run or dataset this profile
   lacks) is caught here, the one boundary: the kernel hands it over as JSON (see
   :mod:`.provenance`), and the executed copy keeps the chapter's code and text, shows a
   "missing, run this" box where its results would be and records it in its metadata
   (``metadata.facnn.missing``);
2. merges the chapters' verdicts into ``results/<profile>/claims.json`` and writes the
   landing page's verdict table and scale box (``book/_generated/``);
3. builds the Jupyter Book with execution off and warnings as errors into ``_build/html``,
   with MathJax and plotly.js copied into the build (the book reads offline);
4. prints what is missing at this profile and which cached results are stale against the
   current code (``FRESH=1`` recomputes those).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from .interactive import plotly_js
from .provenance import MISSING_FILE, MissingResult, ROOT, git_commit, relative
from .publish import GLUE_PREFIX, declared_parameters

NOTEBOOKS = ROOT / "notebooks"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
KERNEL = "python3"
GENERATED = Path("book") / "_generated"


def ensure_kernel(name: str = KERNEL) -> None:
    """Make the Jupyter kernel ``name`` run this Python (the venv's), whatever else is
    installed: put this environment's kernels first on JUPYTER_PATH, installing the
    kernelspec there when it is absent."""
    share = Path(sys.prefix) / "share" / "jupyter"
    spec = share / "kernels" / name / "kernel.json"
    ok = False
    if spec.exists():
        argv0 = json.loads(spec.read_text()).get("argv", [""])[0]
        # jupyter_client replaces a bare "python" with the running interpreter
        ok = argv0 in ("python", "python3") or Path(argv0).resolve() == Path(sys.executable).resolve()
    if not ok:
        from ipykernel.kernelspec import install
        install(kernel_name=name, prefix=sys.prefix)
    paths = os.environ.get("JUPYTER_PATH", "")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(share), paths) if p)


def notebook_list(only: list[str] | None = None) -> list[Path]:
    nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(p.stem.startswith(o) or p.stem == o for o in only)]
        if not nbs:
            raise SystemExit(f"error: no notebook matches {only}; have "
                             f"{', '.join(p.stem for p in sorted(NOTEBOOKS.glob('[0-9][0-9]_*.ipynb')))}")
    return nbs


def notebook_parameters(path: Path) -> list[str]:
    """Names declared in the notebook's cell tagged ``parameters``."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return declared_parameters("".join(cell["source"]))
    return []


# -- the one boundary: a chapter that lacks a result ---------------------------------------

_GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`|```\{glue(?::\w+)?\}\s+(\S+)")


def glue_keys(nb: dict) -> list[str]:
    """The glue keys a notebook's markdown refers to (``{glue:text}`key:s```,
    ``{glue:md}`key``` and ```{glue:figure} key```), each once."""
    keys: dict[str, None] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for a, b in _GLUE_REF.findall("".join(cell["source"])):
                keys[(a or b).split(":")[0].strip()] = None
    return list(keys)


def _placeholder(key: str, html: str) -> dict:
    return {"output_type": "display_data", "metadata": {"scrapbook": {"name": key, "mime_prefix": GLUE_PREFIX}},
            "data": {GLUE_PREFIX + "text/plain": "'missing'", GLUE_PREFIX + "text/html": html,
                     GLUE_PREFIX + "text/markdown": "missing"}}     # {glue:md} reads only this


def missing_notebook(executed: dict, missing: MissingResult) -> dict:
    """The executed notebook of a chapter that raised ``missing``: its code without
    outputs, a box at the top saying what is missing and the commands that make it,
    "missing" glued for every key its text refers to (so the page still builds), and the
    MissingResult as data in ``metadata.facnn.missing``."""
    nb = json.loads(json.dumps(executed))
    # papermill's red "an exception was encountered" cells: the box below says it better
    nb["cells"] = [c for c in nb["cells"]
                   if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.setdefault("metadata", {}).setdefault("facnn", {})["missing"] = missing.to_dict()
    small = '<span class="facnn-missing-value">missing</span>'
    outputs = [{"output_type": "display_data", "metadata": {},
                "data": {"text/html": missing.html(), "text/plain": str(missing)}}]
    outputs += [_placeholder(k, small) for k in glue_keys(nb)]
    cell = {"cell_type": "code", "execution_count": None, "id": "facnn-missing",
            "metadata": {"tags": ["remove-input"]}, "outputs": outputs,
            "source": "# this chapter's results are missing at this profile"}
    first = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"), -1)
    nb["cells"].insert(first + 1, cell)
    return nb


def execute_chapter(src: Path, dst: Path, parameters: Mapping[str, Any], timeout: int | None = None,
                    log: bool = False) -> tuple[float, MissingResult | None]:
    """Run one notebook with papermill into ``dst``; refuse unknown parameters up front.
    Returns (seconds, None) or, when the chapter raised MissingResult, (seconds, that
    MissingResult) after writing the chapter's "missing" version. The kernel writes the
    MissingResult to the JSON file ``$FACNN_MISSING_FILE`` names
    (:func:`facnnbook.provenance.report_missing_to_the_build`)."""
    import papermill as pm
    known = notebook_parameters(src)
    unknown = [k for k in parameters if k not in known]
    if unknown:
        raise ValueError(f"{src.name}: unknown parameter(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(known)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    missing = None
    with tempfile.TemporaryDirectory(prefix="facnn-missing-") as tmp:
        report = Path(tmp) / "missing.json"
        before = os.environ.get(MISSING_FILE)
        os.environ[MISSING_FILE] = str(report)     # the kernel papermill starts inherits it
        try:
            pm.execute_notebook(str(src), str(dst), parameters=dict(parameters),
                                kernel_name=KERNEL, cwd=str(src.parent), progress_bar=False,
                                log_output=log, execution_timeout=timeout)
        except pm.PapermillExecutionError:
            if not report.exists():                # an error, not a missing result
                raise
            missing = MissingResult.from_dict(json.loads(report.read_text()))
            dst.write_text(json.dumps(missing_notebook(json.loads(dst.read_text()), missing),
                                      indent=1))
        finally:
            if before is None:
                os.environ.pop(MISSING_FILE, None)
            else:
                os.environ[MISSING_FILE] = before
    stamp_profile(dst, parameters.get("profile", "?"))
    return time.perf_counter() - t0, missing


def stamp_profile(path: Path, profile: str) -> None:
    """Record in the executed notebook which profile it was executed at, and hide the cell
    papermill injects (the reader sees the notebook's own parameters cell)."""
    nb = json.loads(path.read_text())
    nb.setdefault("metadata", {}).setdefault("facnn", {})["profile"] = profile
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
    path.write_text(json.dumps(nb, indent=1))


def other_profiles(executed_dir: Path, sources: list[Path], profile: str) -> list[Path]:
    """The chapters among ``sources`` whose executed copy is missing or was executed at
    another profile than ``profile`` (a book shows one profile: they must run again)."""
    return [s for s in sources if executed_profile(executed_dir / s.name) != profile]


def executed_profile(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("facnn", {}).get("profile")
    except (OSError, ValueError):
        return None


# -- the landing page ------------------------------------------------------------------------

def landing(root: Path, profile: str, results_dir: Path, doc: dict | None) -> None:
    """Write book/_generated/{synthesis,verdicts,extensions,scale,seeds,build}.md and
    forest.png for the landing page."""
    from . import claims
    from .runs import DATASET_NAMES, Runs
    out = root / GENERATED
    out.mkdir(parents=True, exist_ok=True)
    runs = Runs(profile, results_dir=results_dir)
    forest = out / "forest.png"
    if doc and doc["claims"]:
        synthesis = claims.synthesis_md(doc, DATASET_NAMES, accuracies_here(runs))
        table = claims.verdict_table_md(doc, link_prefix="../notebooks/", names=DATASET_NAMES)
        extensions = claims.verdict_table_md(doc, "../notebooks/", DATASET_NAMES, extensions=True)
        _forest(claims.counted(doc), forest)
    else:
        synthesis = table = extensions = (f"No verdicts yet at profile `{profile}`: the chapters "
                                          f"record them when they run (`make book PROFILE={profile}`).")
        _forest([], forest)
    for name, text in (("synthesis", synthesis), ("verdicts", table), ("extensions", extensions)):
        (out / f"{name}.md").write_text(text + "\n")
    rows = runs.scale()
    lines = ["| dataset | layers N | maps per class R (K = C·R) | epochs | ResNet width |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['layers']} (paper {r['paper_layers']}) | "
                     f"{r['maps_per_class']} (K={r['channels']}; paper {r['paper_maps_per_class']},"
                     f" K={r['paper_channels']}) | {r['epochs']} (paper {r['paper_epochs']}) | "
                     f"{r['resnet_width']} (paper {r['paper_resnet_width']}) |")
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    (out / "seeds.md").write_text(seeds_line(runs) + "\n")
    (out / "build.md").write_text(
        f"Built at profile `{profile}` from commit `{git_commit()}` on "
        f"{time.strftime('%Y-%m-%d')}.\n")


def _forest(counted: list, path: Path) -> None:
    """The forest plot of the counted claims as a PNG (a one-line placeholder when none)."""
    import matplotlib.pyplot as plt
    from facnn import plots
    from .publish import style
    from .claims import GROUPS
    from .runs import DATASET_NAMES
    style()
    if counted:
        fig = plots.claims_forest(counted, GROUPS, DATASET_NAMES)
    else:
        fig, ax = plt.subplots(figsize=(6, 0.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "no verdicts yet", ha="center", va="center")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def accuracies_here(runs) -> list[str]:
    """"CIFAR-10 71.23 % (93.13 %)" per dataset: the pooling-head FA-CNN's mean test
    accuracy over its finished Table 1 seeds beside the paper's Table 1 value (for a
    stand-in dataset, the paper's dataset named)."""
    from .runs import DATASET_NAMES
    from .table1 import PAPER_STAND_IN, paper_value
    out = []
    for d in runs.datasets():
        seeds = runs.by_seed([(d, "fa-pool", "minimal")])[(d, "fa-pool", "minimal")]
        accs = [100 * s["accuracy"] for s in seeds.values() if s is not None]
        paper = paper_value(d, "fa-pool")
        theirs = ("" if paper is None else f" ({paper:.2f} %" + (
            f" on {DATASET_NAMES[PAPER_STAND_IN[d]]})" if d in PAPER_STAND_IN else ")"))
        here = f"{sum(accs) / len(accs):.2f} %" if accs else "not trained yet"
        out.append(f"{DATASET_NAMES.get(d, d)} {here}{theirs}")
    return out


def seeds_line(runs) -> str:
    """What the seeds of Table 1 are at this profile and how many of those runs finished,
    per dataset (the landing page's scale box)."""
    from facnn.experiments import PLAN
    from .runs import DATASET_NAMES
    parts = []
    for d in runs.datasets():
        by_seed = runs.by_seed([r for r in PLAN[runs.profile] if r[0] == d])
        done = sum(s is not None for v in by_seed.values() for s in v.values())
        total = sum(len(v) for v in by_seed.values())
        seeds = runs.seeds(d)
        parts.append(f"{DATASET_NAMES.get(d, d)} seed{'s' if len(seeds) > 1 else ''} "
                     f"{', '.join(map(str, seeds))} for each of {len(by_seed)} models, "
                     f"{done} of {total} runs finished")
    return "Seeds: " + "; ".join(parts) + "."


PLACEHOLDER_URL = "https://github.com/facnn-project/facnn"


def repository_url() -> str:
    """The one repository URL (``_config.yml``, repository.url): launch buttons and the
    notebooks' Colab/Binder install cells use it (a test holds them equal)."""
    import yaml
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def mathjax(root: Path) -> None:
    """Copy MathJax (from the jupyter-server-mathjax package) into book/_static/mathjax so
    the built book renders equations with no network."""
    import importlib.util
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: MathJax for the offline book is missing; install it with "
                         "`pip install jupyter-server-mathjax` (make venv does)")
    src = Path(list(spec.submodule_search_locations)[0]) / "static"
    dst = root / "book" / "_static" / "mathjax"
    marker = dst / ".facnn-subset-1"
    if not marker.exists():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, ignore=_mathjax_unused)
        marker.write_text("MathJax without the SVG output, a11y and other languages\n")


def _mathjax_unused(folder: str, names: list[str]) -> list[str]:
    """What the pages never load (8.7 of MathJax's 12 MB): the SVG renderer and the
    accessibility extensions (reachable only from MathJax's menu, which _config.yml turns
    off) and every language but English."""
    here = Path(folder)
    if here.name == "localization":
        return [n for n in names if n != "en"]
    if (here.name == "output" and here.parent.name == "jax") or here.name == "extensions":
        return [n for n in names if n in ("SVG", "a11y")]
    return []


def stage(root: Path) -> None:
    """Copy the book's sources into ``root``, the folder the book is built from; the
    executed notebooks go to ``root/notebooks`` (the paths the table of contents and the
    launch buttons use)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        src, dst = ROOT / name, root / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_generated", "mathjax"))
        else:
            shutil.copy2(src, dst)


def build(root: Path, out: Path, strict: bool = True) -> Path:
    """``jupyter-book build`` of ``root`` into ``out/_build/html`` (a full build, so every
    warning shows); returns the HTML folder. Execution is off in _config.yml: the notebooks
    ran already."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--all",
           "--path-output", str(out)]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-8000:] + proc.stderr[-8000:])
        raise SystemExit(f"error: jupyter-book build failed (exit {proc.returncode}); the "
                         f"warnings above name the page")
    html = out / "_build" / "html"
    for source_map in (html / "_static").rglob("*.map"):   # the theme's, 2 MB; browsers never fetch them
        source_map.unlink()
    return html


OWN_FLAG = {"profile": "--profile", "fresh": "--fresh", "results_dir": "--results"}


def chapter_error(e: Exception) -> str:
    """One line for a chapter that raised: the exception's own message (a bad parameter says
    what to change), not papermill's traceback around it."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    text = f"{ename}: {evalue}" if ename else f"{type(e).__name__}: {e}"
    return " ".join(text.split())[:600]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m facnnbook", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"),
                    choices=("smoke", "cpu", "paper"))
    ap.add_argument("--fresh", default=os.environ.get("FRESH", ""),
                    help="1: recompute stale cached results; all: recompute every one (also FRESH=)")
    ap.add_argument("--only", nargs="*", help="run only these notebooks (e.g. 01 04)")
    ap.add_argument("--root", default=None, help="build folder (default: _build/ of the checkout)")
    ap.add_argument("--results", default=None, help="results folder (default: results/)")
    ap.add_argument("--set", nargs="*", action="extend", default=[], metavar="NAME=VALUE",
                    help="notebook parameters (JSON values), e.g. allow_training=true")
    ap.add_argument("--no-execute", action="store_true", help="build from executed/ as it is")
    ap.add_argument("--no-build", action="store_true", help="execute only")
    ap.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per notebook cell")
    ap.add_argument("--log", action="store_true", help="stream the notebooks' output")
    args = ap.parse_args(argv)
    from .cache import fresh_mode, stale_entries
    try:
        fresh = fresh_mode(args.fresh)
    except ValueError as e:
        raise SystemExit(f"error: {e}")

    extra = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    for k, flag in OWN_FLAG.items():   # a chapter must run at the profile the book is labelled with
        if k in extra:
            raise SystemExit(f"error: --set {k}={extra[k]}: {k} has its own option; use {flag} "
                             f"{extra[k]} instead")

    out = Path(args.root).resolve() if args.root else ROOT
    root = out / "_build" / "src"
    try:
        stage(root)
    except OSError as e:
        raise SystemExit(f"error: cannot write the book into {root}: {e.strerror or e}; choose a "
                         f"writable --root")
    results_dir = Path(args.results).resolve() if args.results else ROOT / "results"
    executed_dir = root / "notebooks"
    t_all = time.perf_counter()
    all_sources = notebook_list()
    sources = notebook_list(args.only) if not args.no_execute else []
    # one book, one profile: chapters executed at another profile run again
    others = ([] if args.no_build else   # a book is built from one profile; executing alone is fine
              other_profiles(executed_dir, [s for s in all_sources if s not in sources], args.profile))
    if others and not args.no_execute:
        print(f"[book] re-executing {', '.join(s.stem for s in others)}: executed/ holds them at "
              f"another profile (or not at all); a book shows one profile", flush=True)
        sources = sorted(set(sources) | set(others))
    elif others:
        raise SystemExit(f"error: executed/ holds {', '.join(s.stem for s in others)} at another "
                         f"profile than {args.profile} (or not at all); run without --no-execute")
    missing: list[str] = []
    if sources:
        ensure_kernel()
        os.environ["FACNN_PROFILE"] = args.profile
        declared = {k for src in sources for k in notebook_parameters(src)}
        unknown = sorted(set(extra) - declared)
        if unknown:
            raise SystemExit(f"error: unknown parameter(s) {', '.join(unknown)}; the notebooks "
                             f"take {', '.join(sorted(declared))}")
        for src in sources:
            known = notebook_parameters(src)
            params = {"profile": args.profile, "fresh": fresh, "live_widgets": False, "progress": False}
            if args.results:
                params["results_dir"] = str(results_dir)
            params.update(extra)
            params = {k: v for k, v in params.items() if k in known}
            print(f"[book] {src.name} (profile {args.profile}) ...", flush=True)
            try:
                secs, lack = execute_chapter(src, executed_dir / src.name, params, args.timeout,
                                             args.log)
            except Exception as e:  # papermill's error names the cell; keep it short
                raise SystemExit(f"error: {src.name} failed: {chapter_error(e)} (the executed copy "
                                 f"with the traceback: {relative(executed_dir / src.name)})")
            if lack:
                missing.append(f"{src.stem}: {lack}")
            print(f"[book] {src.name} {'MISSING' if lack else 'done'} in {secs:.0f} s", flush=True)
    from . import claims
    doc = claims.merge(results_dir, args.profile, git_commit(), [s.stem for s in all_sources])
    landing(root, args.profile, results_dir, doc)
    if repository_url() == PLACEHOLDER_URL:
        print(f"[book] warning: _config.yml's repository.url is still the placeholder "
              f"{PLACEHOLDER_URL}: the launch buttons (Colab, Binder) and the notebooks' install "
              f"cells point nowhere until it names the real repository", flush=True)
    if not args.no_build:
        mathjax(root)
        plotly_js(root / "book" / "_static")
        html = build(root, out, strict=not args.no_strict)
        print(f"[book] built {relative(html / 'index.html')} in {time.perf_counter() - t_all:.0f} s total")
    if missing:
        print(f"[book] missing at profile {args.profile} (the chapters say so, with the commands):")
        for m in missing:
            print(f"  - {m}")
    stale = stale_entries(results_dir / args.profile / "analysis")
    if stale:
        print(f"[book] {len(stale)} cached result(s) at profile {args.profile} are stale or "
              f"damaged; the book shows them as computed. `make book FRESH=1` recomputes them:")
        for name, why in stale:
            print(f"  - {name}: {why}")


if __name__ == "__main__":
    main()
