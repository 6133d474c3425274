"""What a chapter notebook calls to put its results into the book: glued numbers, figures
and tables (myst-nb glue), each with its provenance, and the chapter's verdicts.

The chapter's markdown cells place them: ``{glue:text}`key:s``` for a number,
``{glue:md}`key``` for a sentence,
```{glue:figure} key``` with a caption for a figure, ```{glue} key``` for a table.
"""
from __future__ import annotations

import io
import re
from html import escape
from typing import Any

from .provenance import Provenance

_ASSIGN = re.compile(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=(?!=)", re.M)
GLUE_PREFIX = "application/papermill.record/"


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


def _glue(key: str, obj: Any) -> None:
    from myst_nb import glue
    glue(key, obj, display=False)


class HTML:
    """Raw HTML glued into a page."""

    def __init__(self, html: str):
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return re.sub(r"<[^>]+>", "", self.html)


def style() -> None:
    """Matplotlib defaults legible at the book's column width (~750 px for a 7.5 in figure):
    11 pt text, 10 pt ticks."""
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                         "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
                         "figure.titlesize": 13, "figure.dpi": 100})


def figure(key: str, fig, dpi: int = 110) -> None:
    """Glue a matplotlib figure as a PNG; the chapter's ``{glue:figure}`` gives it a number,
    a caption and alt text. Closes the figure."""
    from IPython.display import Image
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    _glue(key, Image(data=buf.getvalue(), format="png"))


def html_figure(key: str, html: str) -> None:
    """Glue an interactive HTML figure (plotly with its JavaScript inlined)."""
    _glue(key, HTML(html))


def table_html(df, provenance: Provenance | None = None, floatfmt: str = "{:.4g}") -> str:
    """A DataFrame as an HTML table with its provenance line under it."""
    body = df.to_html(index=False, border=0, classes="facnn-table table",
                      float_format=lambda v: floatfmt.format(v), na_rep="—", escape=True)
    prov = (f'<p class="facnn-provenance">{escape(provenance.line())}</p>' if provenance else "")
    return f'<div class="facnn-table-wrap">{body}{prov}</div>'


def table(key: str, df, provenance: Provenance | None = None, floatfmt: str = "{:.4g}") -> None:
    """Glue a DataFrame as an HTML table (no index) with its provenance."""
    _glue(key, HTML(table_html(df, provenance, floatfmt)))


def commands(key: str, lines, none: str = "none") -> None:
    """Glue shell commands as one block for ```{glue} key```, one per line, wrapped
    rather than scrolled; ``none`` as text when there are none."""
    lines = [c for c in lines if c]
    body = "\n".join(escape(c) for c in lines)
    _glue(key, HTML(f'<pre class="facnn-commands">{body}</pre>' if lines else f"<p>{escape(none)}</p>"))


def text(key: str, value: Any, fmt: str = "{}") -> None:
    """Glue a number or short text for ``{glue:text}`key:s```."""
    _glue(key, "—" if value is None else fmt.format(value))


def prose(key: str, markdown: str) -> None:
    """Glue a sentence or more of Markdown for ``{glue:md}`key```: set as ordinary text
    (``{glue:text}`` sets a glued number in bold), with its `code` and **emphasis**."""
    from IPython.display import Markdown
    _glue(key, Markdown(markdown))


def texts(values: dict[str, Any], prefix: str = "", fmt: str = "{}") -> None:
    """Glue several numbers at once: ``prefix + key`` for each item."""
    for k, v in values.items():
        text(prefix + k, v, fmt)


def provenance(key: str, prov: Provenance) -> None:
    """Glue a provenance line (for a figure caption)."""
    text(key, prov.line())
