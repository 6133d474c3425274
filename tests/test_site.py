"""The site as its readers get it: `make book` on a bare clone of the repository (no datasets,
no ../shared beside it, no network) builds every page complete from the committed results,
leaves every tracked file as it was, and weighs at most 20 MB; where Chromium is installed,
no page logs an uncaught error or a failed load, served over HTTP as GitHub Pages serves it.

The clone is of the last commit (HEAD), as CI and GitHub Pages see it."""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SITE_MAX = 20e6
PAGE_MAX = 1e6              # the landing page's HTML
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# what a console line must not say (the theme's own info lines are fine)
CONSOLE_ERROR = re.compile(r'"(Uncaught|Failed to load resource|[A-Za-z]*Error\b)')


def _offline(cmd: list[str]) -> list[str]:
    """``cmd`` in a new network namespace with only loopback up (the kernels talk over it),
    where unprivileged namespaces are allowed; else ``cmd`` as it is (the caller also points
    every proxy at a closed port)."""
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True) \
        if shutil.which("unshare") and shutil.which("ip") else None
    if probe is None or probe.returncode != 0:
        return cmd
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """(clone, completed make book) for a clone with nothing beside it."""
    if not (ROOT / ".git").exists() or shutil.which("make") is None:
        pytest.skip("needs a git checkout and make")
    clone = tmp_path_factory.mktemp("bare") / "facnn"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    venv = Path(sys.prefix)
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "PYTHONPATH": str(clone), "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
           "http_proxy": closed, "https_proxy": closed, "NO_PROXY": "", "no_proxy": "",
           "PIP_NO_INDEX": "1", "FRESH": ""}
    env.pop("CI", None)
    # this interpreter's environment stands in for the clone's .venv (-o: never reinstall it)
    cmd = _offline(["make", "-o", str(venv / ".installed-facnn"), "book", f"VENV={venv}"])
    proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    return clone, proc


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f + ".html" for f in files]


def test_bare_clone_builds_every_page(bare):
    clone, proc = bare
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "MISSING" not in out and "missing at profile" not in out, out[-4000:]
    html = clone / "_build" / "html"
    for page in _pages():
        assert (html / page).is_file(), page
        assert "facnn-missing" not in (html / page).read_text(), f"{page} shows a missing result"


def test_build_edits_no_tracked_file(bare):
    clone, _ = bare
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=clone,
                             capture_output=True, text=True).stdout
    assert changed == "", changed


def test_site_is_light(bare):
    html = bare[0] / "_build" / "html"
    total = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    assert total <= SITE_MAX, f"the site weighs {total / 1e6:.1f} MB"
    assert (html / "book" / "intro.html").stat().st_size < PAGE_MAX
    assert not (html / "_sources").exists() and not list(html.rglob("*.map"))


def console_errors(url: str, user_data: Path) -> list[str]:
    """The console lines of ``url`` in headless Chromium that report an error."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={user_data}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return [line for line in proc.stderr.splitlines()
            if ":CONSOLE" in line and CONSOLE_ERROR.search(line)]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_no_page_logs_an_error(bare, tmp_path):
    html = bare[0] / "_build" / "html"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        found = {page: console_errors(f"http://127.0.0.1:{server.server_port}/{page}", tmp_path / "ud")
                 for page in _pages()}
    finally:
        server.shutdown()
    assert not any(found.values()), {p: e[:3] for p, e in found.items() if e}
