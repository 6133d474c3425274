"""The book: the results cache and Table 1 (fast), the notebooks under nbval, papermill
parameters reaching the code, the cpu profile without results, and a full smoke build of
the Jupyter Book with its HTML checked.

The slow tests share one smoke results folder per session: nbval trains the smoke models
once, the book build reuses them (as ``make book`` reuses results/).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facnn import book, results as R
from facnn.table1 import table1_answers, table1_vs_paper

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CLAIMS = ["table1", "theorem1", "theorem2", "figure4", "figures1_5"]
# images each page must show at the smoke profile (all glued figures; the stork is a note)
IMAGES = {"book/claims/table1": 1, "book/claims/theorem1": 2, "book/claims/theorem2": 1,
          "book/claims/figure4": 2, "book/claims/figures1_5": 1,
          "executed/01_training": 1, "executed/02_theorem1_gradcam": 2,
          "executed/03_bounded_increment": 1, "executed/04_pixel_removal": 2,
          "executed/05_qualitative": 1, "executed/06_explorer": 1}
# tiny runs for the parameter tests (seconds)
TINY = {"epochs": 1, "shapes_train": 200, "shapes_test": 100}
# the smoke models of the nbval and book tests: the smoke profile with a tenth of its
# training (the pipeline is what is tested; `make book PROFILE=smoke` trains them in full)
FAST = {"epochs": 2, "shapes_train": 600, "shapes_test": 200}


# -- fast: the library behind the notebooks -------------------------------------------------

def test_notebook_sources_are_output_free_with_parameters_and_title():
    chapters = ["01", "02", "03", "04", "05", "06"]
    assert [p.stem[:2] for p in NOTEBOOKS][:6] == chapters
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        cells = nb["cells"]
        assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# "), \
            f"{path.name}: the first cell must be a '# Title' markdown cell"
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
        assert cells.index(tagged[0]) == 1, f"{path.name}: the parameters cell comes first"
        for c in cells:
            if c["cell_type"] == "code":
                assert not c["outputs"] and c["execution_count"] is None, \
                    f"{path.name}: sources must be output-free (the book runs executed copies)"
        names = set(book.notebook_parameters(path))
        assert "results_dir" in names, f"{path.name}: {names}"
        if path.stem[:2] in chapters:
            assert {"profile", "overrides", "fresh", "allow_training"} <= names, names


def test_declared_parameters_reads_assignments_only():
    src = "import os\nprofile = os.environ.get('P', 'smoke')  # x\nn: int = 3\nx == 2\nfresh = a == b\n"
    assert book.declared_parameters(src) == ["profile", "n", "fresh"]


def test_pipeline_refuses_an_unknown_parameter_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown parameter.*dpeth"):
        book.execute(NOTEBOOKS[0], tmp_path / "out.ipynb", {"dpeth": 8})
    assert not (tmp_path / "out.ipynb").exists()


def test_table1_puts_ours_beside_the_papers_and_marks_missing():
    runs = {("cifar10", "fa-pool", "minimal"): {"accuracy": 0.8123},
            ("cifar10", "fa-linear", "minimal"): R.MissingResult("x", ["cmd"])}
    t = table1_vs_paper(runs, "cpu")
    assert list(t["Method"])[:3] == ["FA-CNN (Pooling head)", "FA-CNN (Linear head)", "Vanilla-CNN"]
    ours = t["ours: CIFAR-10 (cpu)"].tolist()
    assert ours[:3] == ["81.23", "missing", "not run"]
    assert t["paper: CIFAR-10"].iloc[0] == "93.13" and t["paper: ImageNet-100"].iloc[6] == "82.96"
    answers = table1_answers(runs, "cpu")
    assert answers["ours (cpu)"].iloc[0] == "missing" and answers["paper"].iloc[0].startswith("yes")


@pytest.mark.parametrize("pool,linear,profile,ours,scale", [
    (0.70, 0.75, "cpu", "yes (-5.00 points)", "may change"),
    (0.745, 0.75, "cpu", "yes (-0.50 points)", "likely to change"),   # under 2 points
    (0.80, 0.75, "cpu", "no (+5.00 points)", "may change"),
    (0.80, 0.75, "paper", "no (+5.00 points)", "n/a"),
])
def test_table1_answers_say_what_may_change_at_scale(pool, linear, profile, ours, scale):
    runs = {("cifar10", "fa-pool", "minimal"): {"accuracy": pool},
            ("cifar10", "fa-linear", "minimal"): {"accuracy": linear}}
    row = table1_answers(runs, profile).iloc[0]
    assert row[f"ours ({profile})"] == ours and row["at the paper's scale"].startswith(scale)
    assert row["same answer"] == ("yes" if ours.startswith("yes") else "no")  # paper: -0.67


def test_cache_round_trip_keeps_arrays_tables_and_scalars(tmp_path):
    study = R.Study("smoke", results_dir=tmp_path)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return {"maps": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3, "names": ["a", "b"],
                "table": pd.DataFrame({"layer": pd.array([4, None], dtype="Int64"), "acc": [.5, .25]})}

    values, prov = study.cached("demo", {"n": 3}, compute)
    again, prov2 = study.cached("demo", {"n": 3}, compute)
    assert len(calls) == 1 and prov2 == prov and prov.profile == "smoke"
    assert np.array_equal(again["maps"], values["maps"]) and again["names"] == ["a", "b"]
    assert again["table"]["layer"].dtype == "Int64" and again["n"] == 3
    later = R.Study("smoke", results_dir=tmp_path)        # the compute time travels with the entry
    assert later.compute_minutes() is None
    later.cached("demo", {"n": 3}, compute)
    assert len(calls) == 1 and later.compute_minutes() == study.compute_minutes() >= 0.05 / 60
    study.cached("demo", {"n": 4}, compute)                 # other parameters: another entry
    R.Study("smoke", results_dir=tmp_path, fresh=True).cached("demo", {"n": 3}, compute)
    assert len(calls) == 3


def test_cpu_study_without_results_reports_the_command(tmp_path):
    study = R.Study("cpu", results_dir=tmp_path)
    assert not study.allow_training and study.dataset == "cifar10"
    s = study.summary("fa-pool")
    assert R.is_missing(s)
    assert "python -m facnn train --dataset cifar10 --model fa-pool --profile cpu" in s.commands[0]
    with pytest.raises(R.MissingResult):
        study.model("fa-pool")
    out = study.cached("never", {}, lambda: study.model("fa-pool"))
    assert R.is_missing(out) and not (tmp_path / "cpu" / "analysis").exists()
    assert "facnn-missing" in out._repr_html_()


def test_study_rejects_unknown_override_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown config key"):
        R.Study("smoke", overrides={"dpeth": 8}, results_dir=tmp_path)


# -- slow: notebooks through papermill and nbval ----------------------------------------------

def _papermill(path: Path, out: Path, **params):
    import papermill as pm
    book.ensure_kernel()
    return pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=book.KERNEL,
                               cwd=str(path.parent), progress_bar=False)


def _text(nb) -> str:
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts += ["".join(v) for k, v in out.get("data", {}).items() if k.startswith(("text/", "application/papermill"))]
            parts.append(out.get("evalue", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_papermill_overrides_reach_the_model(tmp_path):
    nb = _papermill(NOTEBOOKS[0], tmp_path / "01.ipynb", profile="smoke", models=["fa-pool"],
                    results_dir=str(tmp_path / "results"),
                    overrides={**TINY, "depth": 2, "pool_every": 1})
    text = _text(nb)
    assert "N=2 layers" in text, "the depth override did not reach the model"
    runs = [json.loads(p.read_text()) for p in
            (tmp_path / "results" / "smoke").glob("shapes-fa-pool-*/config.json")]
    # the Table 1 run and the learning-rate sweep's runs, every one at the overridden depth
    assert len(runs) >= 2 and all(r["depth"] == 2 for r in runs)


@pytest.mark.slow
@pytest.mark.parametrize("params, message", [
    ({"dpeth": 2}, "unknown parameter(s) dpeth"),
    ({"overrides": {"dpeth": 2}}, "unknown config key(s) dpeth"),
])
def test_unknown_parameters_are_reported_not_ignored(tmp_path, params, message):
    from papermill.exceptions import PapermillExecutionError
    with pytest.raises(PapermillExecutionError) as err:
        _papermill(NOTEBOOKS[1], tmp_path / "02.ipynb", profile="smoke",
                   results_dir=str(tmp_path / "results"), **params)
    assert message in str(err.value)


@pytest.mark.slow
def test_cpu_book_without_results_says_what_is_missing(tmp_path):
    """A fresh clone has no cpu runs: `make book` must still build (warnings as errors),
    say on the pages which results are missing and give the commands, and train nothing."""
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "facnn.book", "--profile", "cpu", "--root",
                           str(tmp_path / "book"), "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "missing at profile cpu" in proc.stdout
    html = tmp_path / "book" / "_build" / "html"
    t1 = (html / "book" / "claims" / "table1.html").read_text()
    assert "missing" in t1 and "93.13" in t1
    command = "python -m facnn train --dataset cifar10 --model fa-pool --profile cpu"
    for page in CLAIMS:
        text = (html / "book" / "claims" / f"{page}.html").read_text()
        assert "missing" in text, f"{page} does not say what is missing"
        assert command in text, f"{page} lacks the command"
        assert "not found in doc" not in text and "unknown glue" not in text
    assert not list(results.rglob("checkpoint.pt")), "it trained"


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke-results")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(smoke_results, notebook):
    env = {**os.environ, "FACNN_PROFILE": "smoke", "FACNN_RESULTS": str(smoke_results),
           "FACNN_OVERRIDES": json.dumps(FAST)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout=600", "-o", "addopts=", notebook],
        cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def smoke_book(smoke_results, tmp_path_factory) -> Path:
    """A full smoke build of the book (executed notebooks + jupyter-book -W --all)."""
    root = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, "-m", "facnn.book", "--profile", "smoke", "--root",
                           str(root), "--results", str(smoke_results),
                           "--set", f"overrides={json.dumps(FAST)}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return root / "_build" / "html"


@pytest.mark.slow
@pytest.mark.parametrize("page, n_images", sorted(IMAGES.items()))
def test_book_page_shows_its_figures(smoke_book, page, n_images):
    html = (smoke_book / f"{page}.html").read_text()
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    figures = [s for s in srcs if "_images/" in s]
    assert len(figures) >= n_images, f"{page}: {len(figures)} figures, expected {n_images}"
    for src in figures:
        assert (smoke_book / page).parent.joinpath(src).resolve().exists(), src
    for bad in ("missing glue", "unknown glue", "not found in doc", "facnn-missing",
                "No allowed mime type", "<IPython.core.display"):
        assert bad not in html, f"{page} shows {bad!r}"


@pytest.mark.slow
def test_book_has_table1_with_provenance_on_every_claim_page(smoke_book):
    t1 = (smoke_book / "book" / "claims" / "table1.html").read_text()
    assert "FA-CNN (Pooling head)" in t1 and "93.13" in t1 and "ours: shapes (synthetic) (smoke)" in t1
    for page in CLAIMS:
        html = (smoke_book / "book" / "claims" / f"{page}.html").read_text()
        assert re.search(r"profile smoke · config [0-9a-f]{10}", html), f"{page}: no provenance"
        assert "pasted-text" in html or page == "table1"
    intro = (smoke_book / "book" / "intro.html").read_text()
    assert "smoke" in intro and (smoke_book / "index.html").exists()


def test_book_config_excludes_hidden_folders():
    """`make book` builds at the checkout's top level, where .venv, .pytest_cache and .git
    hold markdown files Sphinx would read (and -W would fail on)."""
    text = (ROOT / "_config.yml").read_text()
    line = next(l for l in text.splitlines() if l.startswith("exclude_patterns"))
    assert '".*"' in line and '"**/.*"' in line
    assert 'execute_notebooks: "off"' in text


def test_precision_check_pairs_bf16_with_fp32(tmp_path):
    from facnn.table1 import precision_check as check
    t, configs = check(R.Study("cpu", results_dir=tmp_path), 0.8)
    assert [c.precision for c in configs] == ["bf16", "fp32"]
    assert list(t["precision"]) == ["bf16", "fp32"] and (t["status"] == "missing").all()
    assert "precision=fp32" in t["command"].iloc[1] and t["config"].nunique() == 2
    assert isinstance(check(R.Study("smoke", results_dir=tmp_path), 0.8), str)


@pytest.mark.parametrize("score,undefined,phrase", [
    ([1.0, 1.0, 1.0, 1.0], 0, "over all 4 maps"),
    ([1.0, np.nan, 1.0, np.nan], 2, "over the 2 of 4 maps where a correlation is defined"),
])
def test_theorem1_summary_counts_maps_without_a_correlation(score, undefined, phrase):
    from facnn.experiments import theorem1_summary, theorem1_verdict
    v = {"corr_score": np.array(score), "corr_prob": np.array([0.5, np.nan, 0.9, 1.0]),
         "diff_score": np.zeros(4)}
    s = theorem1_summary(v)
    assert (s["score_undefined"], s["prob_undefined"], s["n_maps"]) == (undefined, 1, 4)
    assert s["score_min"] == 1.0 and phrase in theorem1_verdict(s)
