"""Two fixes to the HTML that jupyter-book 1.x writes for this book.

- sphinx-thebe 0.3.1 and sphinx-togglebutton add their inline settings scripts again on a
  second read phase, so every page declared ``const THEBE_JS_URL`` twice: an uncaught
  SyntaxError in every browser console. The copies reach the page with other priorities,
  past what Sphinx deduplicates, so the written pages keep the first of identical inline
  scripts.
- The book does not copy its sources into the site (``html_copy_source: false`` keeps it
  light: the notebooks with outputs weighed 11 MB), so the theme offers no download links
  to them.
"""
from __future__ import annotations

import re
from pathlib import Path

_INLINE = re.compile(r"[ \t]*<script>(.*?)</script>\n?", re.S)


def first_inline_scripts(html: str) -> str:
    """``html`` with every inline script that repeats an earlier one removed."""
    seen: set[str] = set()

    def keep(m: re.Match) -> str:
        if m.group(1) in seen:
            return ""
        seen.add(m.group(1))
        return m.group(0)

    head, sep, body = html.partition("</head>")
    return _INLINE.sub(keep, head) + sep + body


def dedup_pages(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = first_inline_scripts(text)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def no_source_downloads(app) -> None:
    for options in (getattr(app.builder, "theme_options", None), app.config.html_theme_options):
        if isinstance(options, dict):
            options["use_download_button"] = False


def setup(app):
    app.connect("builder-inited", no_source_downloads)
    app.connect("build-finished", dedup_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
