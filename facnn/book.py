"""The book pipeline, and the few helpers the notebooks use to publish into it.

``python -m facnn.book --profile P`` (what ``make book`` runs):

1. executes each numbered notebook ``notebooks/NN_*.ipynb`` with papermill into an executed
   copy ``executed/NN_*.ipynb`` (the sources stay output-free), passing ``profile`` and
   ``fresh`` (``FRESH=1`` recomputes cached chapter results);
2. builds the Jupyter Book (``_config.yml``, ``_toc.yml``, ``book/*.md`` and the executed
   notebooks) with execution off, warnings as errors, into ``_build/html``;
3. prints what is missing at this profile and the commands that produce it.

Every figure and table is glued (myst-nb) from an executed notebook, stamped with its
provenance (profile, config hash, commit, date); the claim pages in ``book/`` paste them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html import escape
from pathlib import Path
from typing import Any, Callable, Mapping

from .results import ROOT, Provenance, is_missing

NOTEBOOKS = ROOT / "notebooks"
BOOK_FILES = ("_config.yml", "_toc.yml", "book")
KERNEL = "python3"


# -- inside a notebook ------------------------------------------------------------------------

_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=(?!=)", re.M)


def declared_parameters(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell's source."""
    return list(dict.fromkeys(_ASSIGN.findall(source)))


def check_parameters() -> None:
    """Raise ValueError when papermill injected a parameter this notebook does not declare.

    papermill only warns about an unknown parameter and runs on with the default, so a typo
    (``dpeth=8``) would silently change nothing. The injected cell (source starting with
    papermill's "# Parameters") runs right after the notebook's parameters cell; both are in
    IPython's input history ``In``.
    """
    try:
        ip = get_ipython()  # noqa: F821 (defined inside IPython)
    except NameError:
        return
    cells = [c for c in ip.user_ns.get("In", []) if c]
    for i, src in enumerate(cells):
        if src.startswith("# Parameters\n") and i > 0:
            declared = set(declared_parameters(cells[i - 1]))
            unknown = [n for n in declared_parameters(src) if n not in declared]
            if unknown:
                raise ValueError(f"unknown parameter(s) {', '.join(unknown)}: this notebook "
                                 f"takes {', '.join(sorted(declared))}")


class Note:
    """A short HTML note glued in place of a figure (e.g. a result this profile lacks)."""

    def __init__(self, html: str, kind: str = "note"):
        self.html, self.kind = html, kind

    def _repr_html_(self) -> str:
        return f'<div class="admonition {self.kind} facnn-note"><p>{self.html}</p></div>'

    def __repr__(self) -> str:
        return re.sub(r"<[^>]+>", "", self.html)


def _glue(key: str, obj: Any, display: bool = True) -> None:
    from myst_nb import glue
    glue(key, obj, display=display)


def _png(fig, dpi: int = 130):
    from IPython.display import Image
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue(), format="png")


def unpack(result) -> tuple[Any, Provenance | None]:
    """(values, provenance) from what Study.cached returns; (MissingResult, None) as is."""
    if is_missing(result) or isinstance(result, Note):
        return result, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Provenance):
        return result
    return result, None


def publish_figure(key: str, result, draw: Callable[..., Any], *args, provenance=None,
                   **kwargs) -> None:
    """Glue ``draw(values, *args, **kwargs)`` as a PNG stamped with its provenance, or the
    MissingResult / Note in its place. ``result`` is what Study.cached returns (or values
    with ``provenance`` given)."""
    from .plots import stamp
    values, prov = unpack(result)
    prov = provenance or prov
    if is_missing(values) or isinstance(values, Note):
        _glue(key, values)
        return
    fig = draw(values, *args, **kwargs)
    if prov is not None:
        stamp(fig, prov.line())
    _glue(key, _png(fig))


def table_html(df, caption: str = "", provenance: Provenance | None = None,
               floatfmt: str = "{:.4g}") -> str:
    """A DataFrame as an HTML table with its caption and provenance line."""
    body = df.to_html(index=False, border=0, classes="facnn-table table",
                      float_format=lambda v: floatfmt.format(v), na_rep="—", escape=True)
    cap = f'<p class="facnn-caption">{escape(caption)}</p>' if caption else ""
    prov = (f'<p class="facnn-provenance"><small>{escape(provenance.line())}</small></p>'
            if provenance else "")
    return f'<div class="facnn-table-wrap">{cap}{body}{prov}</div>'


def publish_table(key: str, result, caption: str = "", provenance: Provenance | None = None,
                  floatfmt: str = "{:.4g}") -> None:
    """Glue a DataFrame as HTML with caption and provenance (or the missing note)."""
    from IPython.display import HTML
    values, prov = unpack(result)
    if is_missing(values) or isinstance(values, Note):
        _glue(key, values)
        return
    _glue(key, HTML(table_html(values, caption, provenance or prov, floatfmt)))


def publish_text(key: str, value: Any, fmt: str = "{}") -> None:
    """Glue a number or short text for ``{glue:text}`/doc.ipynb::key:s`` (a missing result
    reads "missing"). Not displayed: the notebook shows its own tables."""
    if is_missing(value) or value is None:
        text = "missing"
    else:
        text = fmt.format(value)
    _glue(key, str(text), display=False)


def publish_note(key: str, html: str, kind: str = "note") -> None:
    """Glue an HTML note (a verdict, a caveat) for a claim page."""
    _glue(key, Note(html, kind))


def missing_list(items: Mapping[str, Any], lead: str = "Not available at this profile") -> str:
    """HTML: what is missing, one line each, with the first command that makes it; or
    "" when nothing is."""
    rows = [f"<li>{escape(name)}: <code>{escape(m.commands[0])}</code></li>" if m.commands
            else f"<li>{escape(name)}: {escape(m.what)}</li>"
            for name, m in items.items() if is_missing(m)]
    return f"{lead}:<ul>{''.join(rows)}</ul>" if rows else ""


def provenance_text(prov: Provenance | None) -> str:
    return prov.line() if prov else "missing"


# -- the pipeline ----------------------------------------------------------------------------

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


def execute(src: Path, dst: Path, parameters: Mapping[str, Any], timeout: int | None = None,
            log: bool = False) -> float:
    """Run one notebook with papermill into ``dst``; refuse unknown parameters up front.
    Returns the seconds it took."""
    import papermill as pm
    known = notebook_parameters(src)
    unknown = [k for k in parameters if k not in known]
    if unknown:
        raise ValueError(f"{src.name}: unknown parameter(s) {', '.join(unknown)}; it takes "
                         f"{', '.join(known)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(dst), parameters=dict(parameters), kernel_name=KERNEL,
                        cwd=str(src.parent), progress_bar=False, log_output=log,
                        execution_timeout=timeout)
    return time.perf_counter() - t0


def stage(root: Path) -> None:
    """Copy the book's sources into ``root`` (a separate build folder, e.g. for tests)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        src, dst = ROOT / name, root / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)


def build(root: Path, strict: bool = True) -> Path:
    """``jupyter-book build`` of ``root`` (a full build, so every warning shows); returns the
    HTML folder. Execution is off in _config.yml: the notebooks ran already."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--all"]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-8000:] + proc.stderr[-8000:])
        raise SystemExit(f"error: jupyter-book build failed (exit {proc.returncode}); the "
                         f"warnings above name the page")
    return root / "_build" / "html"


def missing_report(executed: list[Path]) -> list[str]:
    """The 'missing: ...' notes the executed notebooks show, each once."""
    found: dict[str, None] = {}
    for path in executed:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                html = "".join(out.get("data", {}).get("text/html", ""))
                if "facnn-missing" in html:
                    text = re.sub(r"<[^>]+>", " ", html.replace("</pre>", " |"))
                    text = re.sub(r"\s+", " ", text).replace("Result not available", "").strip()
                    found[text.rstrip(" |")] = None
    return list(found)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m facnn.book", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"),
                    choices=("smoke", "cpu", "paper"))
    ap.add_argument("--fresh", action="store_true", default=os.environ.get("FRESH", "") == "1",
                    help="recompute cached chapter results (also FRESH=1)")
    ap.add_argument("--only", nargs="*", help="run only these notebooks (e.g. 01 04)")
    ap.add_argument("--root", default=str(ROOT), help="book folder (default: the checkout)")
    ap.add_argument("--results", default=None, help="results folder (default: results/)")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="notebook parameters (JSON values), e.g. allow_training=true")
    ap.add_argument("--no-execute", action="store_true", help="build from executed/ as it is")
    ap.add_argument("--no-build", action="store_true", help="execute only")
    ap.add_argument("--no-strict", action="store_true", help="do not treat warnings as errors")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per notebook cell")
    ap.add_argument("--log", action="store_true", help="stream the notebooks' output")
    args = ap.parse_args(argv)

    root = Path(args.root).resolve()
    if root != ROOT:
        stage(root)
    executed_dir = root / "executed"
    extra = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    t_all = time.perf_counter()
    if not args.no_execute:
        ensure_kernel()
        os.environ["FACNN_PROFILE"] = args.profile
        sources = notebook_list(args.only)
        declared = {k for src in sources for k in notebook_parameters(src)}
        unknown = sorted(set(extra) - declared)
        if unknown:
            raise SystemExit(f"error: unknown parameter(s) {', '.join(unknown)}; the notebooks "
                             f"take {', '.join(sorted(declared))}")
        for src in sources:
            known = notebook_parameters(src)
            params = {"profile": args.profile, "fresh": args.fresh, "live_widgets": False}
            if args.results:
                params["results_dir"] = str(Path(args.results).resolve())
            params.update(extra)
            params = {k: v for k, v in params.items() if k in known}
            print(f"[book] {src.name} (profile {args.profile}) ...", flush=True)
            try:
                secs = execute(src, executed_dir / src.name, params, args.timeout, args.log)
            except Exception as e:  # papermill's error names the cell; keep it short
                raise SystemExit(f"error: {src.name} failed: {str(e)[-3000:]}\n"
                                 f"the executed copy with the traceback: {executed_dir / src.name}")
            print(f"[book] {src.name} done in {secs:.0f} s", flush=True)
    missing = missing_report(sorted(executed_dir.glob("[0-9][0-9]_*.ipynb")))
    if not args.no_build:
        html = build(root, strict=not args.no_strict)
        print(f"[book] built {html / 'index.html'} in {time.perf_counter() - t_all:.0f} s total")
    if missing:
        print(f"[book] missing at profile {args.profile} (the book says so where they belong):")
        for m in missing:
            print(f"  - {m}")


if __name__ == "__main__":
    main()
