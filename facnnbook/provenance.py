"""Where a book result came from, and what stands in for one that is not here.

:class:`Provenance` stamps every figure and table (profile, config hash, commit, date).
:class:`MissingResult` is raised wherever a chapter needs something this profile lacks (a
training run, a dataset); the book's build catches it at one boundary
(:func:`facnnbook.pipeline.execute_chapter`) and renders the chapter with a "missing, run
this" box instead of its outputs. It crosses from the chapter's kernel to the build as data:
in a kernel the build starts (``FACNN_MISSING_FILE`` set), a MissingResult that ends a cell
is written to that file as JSON (:meth:`MissingResult.to_dict`), never parsed out of the
error's text.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]   # the checkout (facnn is installed editable)


def resolve(path: str | Path) -> Path:
    """A path relative to the checkout (so notebooks find results from any cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def relative(path: str | Path) -> str:
    """``path`` relative to the checkout when it lies inside it, so no machine path is shown."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)


def git_commit() -> str:
    """The checkout's short commit, with "+dirty" when tracked code differs from it
    (changes under results/ do not count: runs write there)."""
    from facnn.fileio import git_commit as head
    commit = head()
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               capture_output=True, text=True, cwd=ROOT, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return commit + ("+dirty" if dirty and commit != "unknown" else "")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")


@dataclass
class Provenance:
    """Where a figure or table came from."""

    profile: str
    config_hash: str
    commit: str
    date: str

    def line(self) -> str:
        return (f"profile {self.profile} · config {self.config_hash} · commit {self.commit}"
                f" · {self.date}")

    def __str__(self) -> str:
        return self.line()

    @classmethod
    def of(cls, items: Sequence["Provenance"]) -> "Provenance":
        """One provenance for a figure built from several results: distinct values joined."""
        items = [p for p in items if isinstance(p, Provenance)]
        if not items:
            return cls("?", "?", "?", "?")

        def join(name: str) -> str:
            return ",".join(dict.fromkeys(getattr(p, name) for p in items))
        return cls(join("profile"), join("config_hash"), join("commit"),
                   max(p.date for p in items))


class MissingResult(Exception):
    """A result that is not here, and the commands that would make it."""

    def __init__(self, what: str, commands: Sequence[str] = (), why: str = ""):
        self.what, self.commands, self.why = what, list(commands), why
        super().__init__(str(self))

    def __str__(self) -> str:
        cmd = "; ".join(self.commands)
        return f"missing: {self.what}" + (f" ({self.why})" if self.why else "") + \
            (f". Run: {cmd}" if cmd else "")

    def to_dict(self) -> dict:
        return {"what": self.what, "commands": list(self.commands), "why": self.why}

    @classmethod
    def from_dict(cls, d: dict) -> "MissingResult":
        return cls(d["what"], d.get("commands", ()), d.get("why", ""))

    def html(self) -> str:
        """The "missing, run this" box a chapter shows in place of its results."""
        cmds = "".join(f"<pre><code>{escape(c)}</code></pre>" for c in self.commands)
        why = f" ({escape(self.why)})" if self.why else ""
        return (f'<div class="admonition warning facnn-missing"><p class="admonition-title">'
                f'Result not available at this profile</p><p><b>missing:</b> '
                f'{escape(self.what)}{why}.' + (" Produce it with:</p>" + cmds if cmds else "</p>")
                + "</div>")


MISSING_FILE = "FACNN_MISSING_FILE"   # the environment variable the build sets for its kernels


def report_missing_to_the_build() -> None:
    """In a Jupyter kernel started by the book's build (``$FACNN_MISSING_FILE`` names a
    file), write a MissingResult that ends a cell to that file as JSON after the cell; the
    build reads it back (:func:`facnnbook.pipeline.execute_chapter`). Elsewhere nothing."""
    path = os.environ.get(MISSING_FILE)
    if not path:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or getattr(ip, "_facnn_reports_missing", False):
        return

    def report(result) -> None:
        e = getattr(result, "error_in_exec", None)
        if isinstance(e, MissingResult):
            Path(path).write_text(json.dumps(e.to_dict()))
    ip.events.register("post_run_cell", report)
    ip._facnn_reports_missing = True


# every chapter that can raise a MissingResult imports this module first
report_missing_to_the_build()
