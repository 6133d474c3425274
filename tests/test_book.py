"""The book's machinery (facnnbook): the run store, the analysis cache, the verdict file,
the notebooks through papermill and nbval, and the built book as its reader sees it."""
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

from facnnbook import cache as Cc, claims as C, pipeline as P, table1 as T1
from facnnbook.provenance import MissingResult
from facnnbook.runs import Runs
from facnn import config as F

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTERS = ["01_training", "02_theorem1_gradcam", "03_bounded_increment", "04_pixel_removal",
            "05_qualitative", "06_imagenet", "07_imagenet_removal"]
# figures each chapter shows at the smoke profile
FIGURES = {"01_training": 3, "02_theorem1_gradcam": 3, "03_bounded_increment": 1,
           "04_pixel_removal": 3, "05_qualitative": 3, "06_imagenet": 5,
           "07_imagenet_removal": 2}
TINY = {"epochs": 1, "shapes_train": 200, "shapes_test": 100}
# the smoke models of the nbval and book tests: the smoke profile with a fraction of its
# training (the pipeline is what is tested; `make book PROFILE=smoke` trains them in full)
FAST = {"epochs": 2, "shapes_train": 600, "shapes_test": 200}


# -- fast: the pieces -------------------------------------------------------------------------

def test_notebook_sources_are_output_free_with_one_parameters_cell_and_a_title():
    assert [p.stem for p in NOTEBOOKS][:len(CHAPTERS)] == CHAPTERS
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
        for c in cells:
            if c["cell_type"] == "code":
                assert not c["outputs"] and c["execution_count"] is None, path.name
                src = "".join(c["source"])
                assert "is_missing" not in src and not re.search(r"isinstance\([^)]*(Missing|dict\))", src), \
                    f"{path.name}: chapters do not branch on missing results"
        names = set(P.notebook_parameters(path))
        assert "profile" in names, f"{path.name}: {names}"


def test_library_imports_without_the_book_stack():
    """facnn proper imports with pandas, papermill, nbformat and myst_nb blocked, and never
    imports facnnbook."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('pandas', 'papermill', 'nbformat', 'myst_nb', 'plotly'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import facnn, facnn.config, facnn.layers, facnn.models, facnn.data, facnn.train, "
            "facnn.attribution, facnn.theory, facnn.removal, facnn.plots, facnn.info, facnn.checks\n"
            "assert not any(m.startswith('facnnbook') for m in sys.modules), "
            "[m for m in sys.modules if m.startswith('facnnbook')]\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("side,ci,mean,need,expected", [
    (1, (0.5, 2.0), 1.2, None, "holds"),
    (1, (-2.0, -0.1), -1.0, None, "fails"),
    (-1, (-2.0, -0.1), -1.0, None, "holds"),
    (1, (-0.5, 2.0), 0.7, None, "inconclusive"),
    (1, None, 3.0, 1.0, "holds"),        # one seed, beyond 3 x the spread
    (1, None, -3.0, 1.0, "fails"),
    (1, None, 0.5, 1.0, "inconclusive"),
    (1, None, 3.0, None, "inconclusive"),  # no spread measured: cannot decide
    (1, None, None, None, "not run"),
])
def test_verdict_rule(side, ci, mean, need, expected):
    assert C.verdict(side, ci, mean, need) == expected


def test_t_interval_matches_a_hand_computation():
    m, (lo, hi) = C.t_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / 3 ** 0.5            # t(0.975, 2) * sd / sqrt(n)
    assert m == 2.0 and abs(lo - (2 - half)) < 1e-9 and abs(hi - (2 + half)) < 1e-9
    assert C.t_interval([4.0]) == (4.0, None)


def _runs(accs):
    """{(d, m, r): {seed: summary}} from {(d, m, r): [acc per seed]}."""
    return {k: {s: {"accuracy": a} for s, a in enumerate(v)} for k, v in accs.items()}


def _br(**labels):
    """by_rate from label=(ours, lo, hi, n)."""
    return {k.replace("lr_0_8", "lr 0.8"): {"ours": v[0], "ci95": None if v[1] is None else [v[1], v[2]], "n_seeds": v[3]}
            for k, v in labels.items()}


FLAT = {"own": {"a": 0.2, "b": 0.5}, "lr 0.8": {"a": 0.0, "b": -0.3}}


@pytest.mark.parametrize("by_rate, threshold, rises, verdict, reason", [
    # decided: the interval excludes the threshold at every rate, and both models plateaued
    (_br(own=(3, 2, 4, 3), lr_0_8=(2, 1, 3, 3)), 0, FLAT, "holds", "excludes +0 at every rate"),
    (_br(own=(-3, -4, -2, 3), lr_0_8=(-2, -3, -1, 3)), 0, FLAT, "fails", "excludes +0 at every rate"),
    (_br(own=(-0.5, -0.9, -0.1, 3), lr_0_8=(-0.5, -0.8, -0.2, 3)), -1, FLAT, "holds", "excludes -1"),
    # our choices would flip it: the learning rate, or a model still improving
    (_br(own=(3, 2, 4, 3), lr_0_8=(-3, -4, -2, 3)), 0, FLAT, "inconclusive",
     "flips with the learning rate (holds at own, fails at lr 0.8)"),
    (_br(own=(3, 2, 4, 3), lr_0_8=(2, 1, 3, 3)), 0, {"own": {"a": 1.5, "b": 0.0}, "lr 0.8": {"a": 0.5, "b": 0.5}},
     "inconclusive", "under-trained: a +1.5 points over the last fifth of epochs at own"),
    (_br(own=(3, 2, 4, 3), lr_0_8=(2, -1, 5, 3)), 0, FLAT, "inconclusive", "interval spans +0 at lr 0.8"),
    (_br(own=(3, None, None, 1), lr_0_8=(2, 1, 3, 3)), 0, FLAT, "inconclusive", "one seed at own"),
    (_br(own=(3, 2, 4, 3), lr_0_8=(None, None, None, 0)), 0, FLAT, "inconclusive", "not run at lr 0.8"),
    (_br(own=(None, None, None, 0), lr_0_8=(None, None, None, 0)), 0, FLAT, "not run", "budget"),
])
def test_a_table1_verdict_is_decided_only_where_no_choice_of_ours_flips_it(by_rate, threshold, rises, verdict, reason):
    got, why = T1.decide(by_rate, threshold, rises)
    assert got == verdict and reason in why


@pytest.mark.parametrize("curve, rise", [([0.1, 0.2, 0.3, 0.4, 0.5], 10.0), ([0.5] * 10, 0.0),
                                         ([0.1, 0.3, 0.5, 0.52, 0.6, 0.61, 0.62, 0.63, 0.64, 0.65], 2.0),
                                         ([0.4], None)])
def test_rise_is_the_gain_over_the_last_fifth_of_epochs(curve, rise):
    assert T1.rise(curve) == (None if rise is None else pytest.approx(rise))


def _curves(runs, per_epoch):
    return {k: {s: (None if v is None else [v["accuracy"] - per_epoch, v["accuracy"]]) for s, v in seeds.items()}
            for k, seeds in runs.items()}


def test_table1_claims_are_the_papers_sentences_with_differences_never_offsets(tmp_path):
    runs = _runs({("cifar10", "fa-pool", "minimal"): [0.70, 0.71, 0.72],
                  ("cifar10", "fa-linear", "minimal"): [0.65, 0.655, 0.67],
                  ("cifar10", "vanilla", "minimal"): [0.60, 0.61, 0.61],
                  ("cifar10", "resnet18", "minimal"): [0.72, 0.70, 0.73],
                  ("cifar10", "resnet18", "standard"): [0.75, 0.76, 0.74],
                  ("imagenet20", "fa-pool", "minimal"): [0.26],
                  ("imagenet20", "vanilla", "minimal"): [0.33]})
    shared = {**runs, ("cifar10", "vanilla", "minimal"): {s: {"accuracy": 0.75} for s in range(3)}}
    q = T1.table1_claims({"own rates": runs, "lr 0.8": shared},
                         {"own rates": _curves(runs, 0.001), "lr 0.8": _curves(shared, 0.001)},
                         ["cifar10", "imagenet20"], {"cifar10": "rates from test images"}).set_index("id")
    pv = q.loc["table1.cifar10.pool_vs_vanilla"]
    assert pv["paper"] == pytest.approx(93.13 - 92.97) and pv["ours"] == pytest.approx(10.33, abs=0.01)
    assert pv["by_rate"]["lr 0.8"]["ours"] == pytest.approx(-4.0, abs=0.01)   # Vanilla better at 0.8
    assert pv["verdict"] == "inconclusive" and "flips with the learning rate" in pv["reason"]
    assert pv["reason"].endswith("rates from test images") and pv["models"] == ["fa-pool", "vanilla"]
    lin = q.loc["table1.cifar10.linear_vs_resnet18"]       # "matching": at most 1 point below (ours)
    assert lin["threshold"] == -1 and "tolerance is ours" in lin["statement"] and lin["verdict"] == "fails"
    assert q.loc["table1.cifar10.linear_vs_resnet50", "verdict"] == "not run"
    std = q.loc["table1.cifar10.pool_vs_best_standard"]
    assert std["models"] == ["fa-pool", "resnet18-standard"] and std["paper"] == pytest.approx(93.13 - 94.89)
    inet = q.loc["table1.imagenet20.pool_vs_vanilla"]        # the paper's ImageNet-100 column
    assert inet["paper"] == pytest.approx(81.78 - 76.98) and inet["verdict"] == "inconclusive"
    assert "one seed" in inet["reason"] and "ImageNet-100" in inet["metric"]
    assert "table1.cifar100.pool_vs_resnet18" not in q.index and "table1.imagenet20.linear_vs_resnet18" not in q.index
    entries = [C.entry(i, "Table 1", r["quote"], r["statement"], r["dataset_id"], r["metric"], r["paper"],
                       r["ours"], r["verdict"], "01_training", r["ci95"], r["seeds"], r["reason"],
                       models=r["models"], by_rate=r["by_rate"]) for i, r in q.iterrows()]
    assert all(e["quote"] and e["where"].startswith("Section") for e in entries)
    C.record(tmp_path, "cpu", "01_training", entries)
    C.record(tmp_path, "cpu", "02_theorem1_gradcam",
             [C.entry("theorem1.score_target", "Theorem 1", "theorem1", "maps = Grad-CAM", "cifar10", "r",
                      1.0, 1.0, "holds", "02_theorem1_gradcam", reason="r = 1 on every image")])
    doc = C.merge(tmp_path, "cpu", "abc1234")
    saved = json.loads((tmp_path / "cpu" / "claims.json").read_text())
    assert saved == {k: v for k, v in doc.items() if k != "commit"} and doc["commit"] == "abc1234"
    before = (tmp_path / "cpu" / "claims.json").read_bytes()   # a rebuild at another commit
    C.merge(tmp_path, "cpu", "def5678")
    assert (tmp_path / "cpu" / "claims.json").read_bytes() == before
    assert set(C.FIELDS) <= set(doc["claims"][0])
    view = T1.claims_view(q.reset_index())
    assert list(view.columns) == ["dataset", "claim (a - b > threshold)", "paper", "ours, own rates",
                                  "ours, lr 0.8", "verdict", "reason"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(verdict="maybe"), "verdict"),
    (dict(verdict="inconclusive", reason=None), "without a reason"),
    (dict(verdict="not run", reason=""), "without a reason"),
    (dict(quote="no-such-sentence"), "no paper quote"),
])
def test_a_claim_needs_a_known_verdict_a_reason_and_a_quote(kwargs, match):
    args = dict(id="x", source="s", quote="theorem1", statement="t", dataset=None, metric="m", paper=None,
                ours=None, verdict="holds", page="p", reason="r")
    with pytest.raises((ValueError, KeyError), match=match):
        C.entry(**{**args, **kwargs})


def test_every_quote_is_the_papers_own_sentence():
    from facnnbook import paper
    text = paper.paper_text()
    if text is None:
        pytest.skip("../shared/paper is not beside this checkout")
    assert paper.missing_quotes(text) == []
    assert paper.missing_quotes("nothing of the paper") == list(paper.QUOTES)


@pytest.mark.parametrize("profile, model, extra, lr", [
    ("cpu", "vanilla", {}, 0.8), ("cpu", "vanilla", {"seed": 0}, 0.05), ("cpu", "fa-linear", {}, 0.8),
    ("cpu", "fa-linear", {"seed": 1}, 3.2), ("cpu", "fa-pool", {}, 0.8), ("paper", "vanilla", {}, 0.05)])
def test_the_chapters_models_keep_their_seed0_runs_and_table1_uses_each_models_rate(tmp_path, profile, model, extra, lr):
    assert Runs(profile, results_dir=tmp_path).config(model, **extra).lr == lr


def test_seed_changes_name_the_preset_and_who_uses_it(monkeypatch):
    from facnnbook import runs as R
    assert R.seed_changes("cpu").startswith("CIFAR-10 seeds 1, 2, 3: precision=fp32 (the preset: precision=bf16)")
    monkeypatch.setitem(R.SEEDS, "cpu", {**R.SEEDS["cpu"], "cifar10": (0, 1, 2, 3)})
    assert R.seed_changes("cpu").startswith("CIFAR-10 seeds 1, 2, 3: precision=fp32 (the preset: "
                                            "precision=bf16, used by seed 0)")
    assert R.seed_changes("smoke") == ""


def test_by_seed_reads_each_seeds_summary_at_a_shared_rate(tmp_path):
    runs = Runs("cpu", results_dir=tmp_path)
    assert runs.by_seed([("cifar10", "vanilla", "minimal")], lr=0.8) == {("cifar10", "vanilla", "minimal"):
                                                                        {1: None, 2: None, 3: None}}
    folder = runs.run_dir(runs.config("vanilla", seed=2, lr=0.8))
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"accuracy": 0.5}))
    assert runs.by_seed([("cifar10", "vanilla", "minimal")], lr=0.8)[("cifar10", "vanilla", "minimal")][2] == {"accuracy": 0.5}
    assert runs.by_seed([("cifar10", "vanilla", "minimal")])[("cifar10", "vanilla", "minimal")][2] is None


@pytest.mark.parametrize("first, second, kept", [("not run", "holds", "holds"), ("fails", "not run", "fails"),
                                                  ("not run", "not run", "not run"), ("holds", "fails", None)])
def test_a_decided_claim_replaces_another_chapters_not_run(tmp_path, first, second, kept):
    for chapter, verdict in (("04_a", first), ("07_b", second)):
        C.record(tmp_path, "cpu", chapter, [C.entry("figure4.imagenet20.lerf.1", "Figure 4", "fig4_random", "s",
                                                    "imagenet20", "m", None, None, verdict, chapter,
                                                    reason="r")])
    if kept is None:
        with pytest.raises(ValueError, match="recorded twice"):
            C.merge(tmp_path, "cpu", "abc1234")
    else:
        [claim] = C.merge(tmp_path, "cpu", "abc1234")["claims"]
        assert claim["verdict"] == kept


@pytest.fixture
def clean_commit(monkeypatch):
    """Entries stamped with a clean commit (the suite may run on uncommitted code)."""
    monkeypatch.setattr(Cc, "git_commit", lambda: "abc1234")


def test_cache_round_trip_checksums_and_fingerprints(tmp_path, clean_commit):
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.02)
        return {"maps": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3, "names": ["a", "b"],
                "table": pd.DataFrame({"layer": pd.array([4, None], dtype="Int64"), "acc": [.5, .25]})}

    cache = Cc.Cache("smoke", tmp_path)
    code = ["facnn.layers"]
    values, prov = cache.get("demo", {"n": 3}, compute, {"m": "abc"}, code)
    again, prov2 = Cc.Cache("smoke", tmp_path).get("demo", {"n": 3}, compute, {"m": "abc"}, code)
    assert len(calls) == 1 and prov2 == prov and np.array_equal(again["maps"], values["maps"])
    assert again["table"]["layer"].dtype == "Int64" and again["names"] == ["a", "b"]
    folder = next((tmp_path / "smoke" / "analysis").glob("demo-*"))
    assert Cc.stale_entries(tmp_path / "smoke" / "analysis") == []
    # values altered behind the cache's back: named and recomputed
    np.savez_compressed(folder / "arrays.npz", maps=np.zeros((2, 3), np.float32))
    with pytest.warns(UserWarning, match="arrays.npz.*checksum"):
        fixed, _ = Cc.Cache("smoke", tmp_path).get("demo", {"n": 3}, compute, {"m": "abc"}, code)
    assert len(calls) == 2 and fixed["maps"].sum() == 15
    (folder / "meta.json").write_text("{trunc")            # a damaged meta.json
    with pytest.warns(UserWarning, match="meta.json is unreadable"):
        Cc.Cache("smoke", tmp_path).get("demo", {"n": 3}, compute, {"m": "abc"}, code)
    assert len(calls) == 3
    assert not list(folder.parent.glob(".*")), "no temporary folder is left behind"


def test_a_result_of_uncommitted_code_is_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(Cc, "git_commit", lambda: "abc1234+dirty")
    Cc.Cache("smoke", tmp_path).get("d", {}, lambda: {"x": 1}, {}, ["facnn.layers"])
    assert [w for _, w in Cc.stale_entries(tmp_path / "smoke" / "analysis")] == \
        ["it was computed on uncommitted code (+dirty)"]
    monkeypatch.setattr(Cc, "git_commit", lambda: "abc1234")
    again = Cc.Cache("smoke", tmp_path, fresh="1")
    again.get("d", {}, lambda: {"x": 1}, {}, ["facnn.layers"])
    assert Cc.stale_entries(tmp_path / "smoke" / "analysis") == []


def test_a_changed_chapter_computation_marks_its_result_stale(tmp_path, monkeypatch, clean_commit):
    mod = tmp_path / "chapter_mod.py"
    mod.write_text("def study(n):\n    '''doc'''\n    return {'x': n}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import chapter_mod
    cache = Cc.Cache("smoke", tmp_path / "results")
    cache.get("s", {"n": 1}, lambda: chapter_mod.study(1), {}, [chapter_mod.study])
    root = tmp_path / "results" / "smoke" / "analysis"
    assert Cc.stale_entries(root) == []
    # a docstring or comment is not a change of what the code computes
    mod.write_text("def study(n):\n    '''another doc'''\n    # why\n    return {'x': n}\n")
    sys.modules.pop("chapter_mod")
    assert Cc.stale_entries(root) == []
    mod.write_text("def study(n):\n    return {'x': n + 1}\n")
    sys.modules.pop("chapter_mod")
    assert [why for _, why in Cc.stale_entries(root)] == ["the code that computed it has changed"]
    again = Cc.Cache("smoke", tmp_path / "results", fresh="1")
    import chapter_mod as fresh_mod
    values, _ = again.get("s", {"n": 1}, lambda: fresh_mod.study(1), {}, [fresh_mod.study])
    assert values["x"] == 2 and Cc.stale_entries(root) == []


_CHAPTER = '''TOL = 0.05
BANDS = (0.1, 0.2)


def _helper(x):
    return x > TOL


def unused(x):
    return -x


def study(n):
    """doc"""
    return {"x": _helper(n), "b": BANDS}
'''


# (an edit of the chapter module above, whether the study's fingerprint changes)
@pytest.mark.parametrize("old,new,changes", [
    ("TOL = 0.05", "TOL = 0.06", True),                   # a constant it reaches through a helper
    ("return x > TOL", "return x >= TOL", True),          # a helper it calls
    ("BANDS = (0.1, 0.2)", "BANDS = (0.1, 0.3)", True),   # a constant it names
    ("return -x", "return x", False),                     # a function it never reaches
    ('"""doc"""', '"""another doc"""', False),            # a docstring
    ('return {"x"', '# why\n    return {"x"', False),     # a comment
])
def test_a_functions_fingerprint_covers_the_helpers_and_constants_it_reaches(tmp_path, monkeypatch,
                                                                           old, new, changes):
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = tmp_path / "chapter_fp.py"
    mod.write_text(_CHAPTER)
    sys.modules.pop("chapter_fp", None)
    import chapter_fp
    before = Cc.fingerprint([chapter_fp.study])
    assert old in _CHAPTER
    mod.write_text(_CHAPTER.replace(old, new))
    sys.modules.pop("chapter_fp")
    import chapter_fp as edited
    assert (Cc.fingerprint([edited.study]) != before) == changes
    assert Cc.fingerprint(["chapter_fp.study"]) == Cc.fingerprint([edited.study])
    sys.modules.pop("chapter_fp")


@pytest.mark.parametrize("value,error", [("maybe", "fresh='maybe'"), (2, "fresh=2")])
def test_fresh_takes_only_known_values(value, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        Cc.fresh_mode(value)


def test_a_missing_run_raises_with_the_command(tmp_path):
    runs = Runs("cpu", results_dir=tmp_path)
    assert not runs.allow_training and runs.dataset == "cifar10"
    with pytest.raises(MissingResult) as m:
        runs.model("fa-pool")
    assert "python -m facnn train --dataset cifar10 --model fa-pool --profile cpu" in m.value.commands[0]
    assert runs.summary_of(runs.config("fa-pool")) is None
    with pytest.raises(ValueError, match="unknown config key"):
        Runs("smoke", overrides={"dpeth": 8}, results_dir=tmp_path)


@pytest.mark.parametrize("dataset, seed, precision", [("cifar10", 0, "bf16"), ("cifar10", 1, "fp32"),
                                                      ("cifar10", 3, "fp32"), ("cifar100", 0, "bf16"),
                                                      ("cifar100", 1, "bf16"), ("imagenet20", 1, "fp32")])
def test_a_seeds_config_changes_reach_its_run_and_command(tmp_path, dataset, seed, precision):
    runs = Runs("cpu", results_dir=tmp_path)
    cfg = runs.config("fa-pool", dataset=dataset, seed=seed)
    assert cfg.precision == precision
    assert runs.by_seed([(dataset, "fa-pool", "minimal")])[(dataset, "fa-pool", "minimal")].keys() == set(runs.seeds(dataset))
    with pytest.raises(MissingResult) as m:
        runs.summary("fa-pool", dataset=dataset, seed=seed)
    # the command the page prints trains exactly this run (same hash)
    sets = m.value.commands[0].partition("--set ")[2].split()
    assert F.preset("cpu", dataset, "fa-pool", **dict(a.split("=", 1) for a in sets)).hash() == cfg.hash()
    assert Runs("cpu", results_dir=tmp_path, overrides={"precision": "fp32"}).config(
        "fa-pool", seed=0).precision == "fp32"   # a reader's override beats the seed's


def test_missing_notebook_keeps_code_and_glues_every_key():
    error_cell = {"cell_type": "markdown", "source": '<span style="color:red">An Exception was encountered',
                  "metadata": {"tags": ["papermill-error-cell-tag"]}}
    nb = {"cells": [error_cell,
                    {"cell_type": "markdown", "source": "# T\n{glue:text}`a:s` and {glue:md}`b`"},
                    {"cell_type": "code", "source": "x = 1", "outputs": [{"x": 1}], "execution_count": 3},
                    error_cell,
                    {"cell_type": "markdown", "source": "```{glue:figure} fig\n:name: f\n```"}],
          "metadata": {}}
    missing = MissingResult("the weights", ["python -m facnn train x"], "not committed")
    out = P.missing_notebook(nb, missing)
    box = out["cells"][1]
    names = [o["metadata"].get("scrapbook", {}).get("name") for o in box["outputs"]]
    assert all(P.GLUE_PREFIX + "text/markdown" in o["data"] for o in box["outputs"][1:])   # {glue:md} too
    assert names[1:] == ["a", "b", "fig"] and box["outputs"][0]["data"]["text/html"] == missing.html()
    assert out["cells"][2]["outputs"] == [] and out["cells"][2]["source"] == "x = 1"
    assert out["cells"][0]["source"].startswith("# T") and "Exception" not in json.dumps(out)
    assert out["metadata"]["facnn"]["missing"] == missing.to_dict()


def test_a_missing_result_reaches_the_build_as_data(tmp_path):
    """A chapter's MissingResult crosses papermill as JSON, whatever its text holds (a
    command with "; " or ". Run:" in it), into the box and the notebook's metadata."""
    commands = ["python -m facnn train --set a=1; echo done", "python -m facnn eval. Run: x"]
    cells = [nbformat_cell("markdown", "# T\n{glue:text}`k:s`"),
             nbformat_cell("code", "profile = 'smoke'", ["parameters"]),
             nbformat_cell("code", "from facnnbook.provenance import MissingResult\n"
                                   f"raise MissingResult('the weights', {commands!r}, 'why (x)')")]
    src, dst = tmp_path / "01_t.ipynb", tmp_path / "out" / "01_t.ipynb"
    src.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {
        "name": P.KERNEL, "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    P.ensure_kernel()
    _, missing = P.execute_chapter(src, dst, {"profile": "smoke"})
    assert missing.to_dict() == {"what": "the weights", "commands": commands, "why": "why (x)"}
    nb = json.loads(dst.read_text())
    assert nb["metadata"]["facnn"] == {"missing": missing.to_dict(), "profile": "smoke"}
    assert nb["cells"][1]["outputs"][0]["data"]["text/html"] == missing.html()
    assert P.MISSING_FILE not in os.environ
    # any other error stays an error
    cells[2] = nbformat_cell("code", "raise ValueError('a bug')")
    src.write_text(json.dumps({"cells": cells, "metadata": json.loads(src.read_text())["metadata"],
                               "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(Exception, match="a bug"):
        P.execute_chapter(src, dst, {"profile": "smoke"})


def nbformat_cell(kind: str, source: str, tags: tuple | list = ()) -> dict:
    cell = {"cell_type": kind, "id": f"c{abs(hash((kind, source))):x}"[:12], "source": source,
            "metadata": {"tags": list(tags)}}
    return cell | ({"outputs": [], "execution_count": None} if kind == "code" else {})


@pytest.mark.parametrize("name,value,message", [
    ("n_images", -5, "n_images=-5 must be >= 1"),
    ("n_images", 0, "n_images=0 must be >= 1"),
    ("n_images", "1000", "is a string"),
    ("n_images", 2.5, "must be an int"),
])
def test_notebook_sizes_are_checked(tmp_path, name, value, message):
    from facnnbook.chapter import Chapter
    ch = Chapter("x", "smoke", results_dir=str(tmp_path))
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        ch.size(name, value)


def test_book_config_excludes_hidden_folders_and_loads_mathjax_locally():
    text = (ROOT / "_config.yml").read_text()
    line = next(l for l in text.splitlines() if l.startswith("exclude_patterns"))
    assert '".*"' in line and '"**/.*"' in line
    assert 'execute_notebooks: "off"' in text and "mathjax_path: mathjax/MathJax.js" in text


def test_precision_check_pairs_bf16_with_fp32(tmp_path):
    t, configs = T1.precision_check(Runs("cpu", results_dir=tmp_path), 0.8)
    assert [c.precision for c in configs] == ["bf16", "fp32"]
    assert list(t["precision"]) == ["bf16", "fp32"] and (t["status"] == "missing").all()
    assert "precision=fp32" in t["command"].iloc[1] and t["config"].nunique() == 2
    assert T1.precision_check(Runs("smoke", results_dir=tmp_path), 0.8) is None


# -- slow: notebooks through papermill and nbval, and the built book -------------------------------

def _papermill(path: Path, out: Path, **params):
    import papermill as pm
    P.ensure_kernel()
    return pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=P.KERNEL,
                               cwd=str(path.parent), progress_bar=False)


@pytest.mark.slow
@pytest.mark.parametrize("params, message", [
    ({"dpeth": 2}, "unknown parameter(s) dpeth"),
    ({"overrides": {"dpeth": 2}}, "unknown config key(s) dpeth"),
    ({"n_images": -5}, "n_images=-5 must be >= 1"),
    ({"fresh": "maybe"}, "fresh='maybe'"),
])
def test_bad_notebook_parameters_are_refused(tmp_path, params, message):
    from papermill.exceptions import PapermillExecutionError
    with pytest.raises(PapermillExecutionError) as err:
        _papermill(NOTEBOOKS[1], tmp_path / "02.ipynb", profile="smoke",
                   results_dir=str(tmp_path / "results"), **params)
    assert message in str(err.value)


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke-results")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [p.name for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(smoke_results, notebook):
    # the performance page reads the committed benchmark results; the chapters use fresh ones
    results = ROOT / "results" if notebook.startswith("09") else smoke_results
    env = {**os.environ, "FACNN_PROFILE": "smoke", "FACNN_RESULTS": str(results),
           "FACNN_OVERRIDES": json.dumps(FAST)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-cell-timeout=900", "-o", "addopts=", notebook],
        cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def smoke_book(smoke_results, tmp_path_factory) -> Path:
    """A full smoke build of the book (executed notebooks + jupyter-book -W --all)."""
    root = tmp_path_factory.mktemp("book")
    proc = subprocess.run([sys.executable, "-m", "facnnbook", "--profile", "smoke", "--root",
                           str(root), "--results", str(smoke_results),
                           "--set", f"overrides={json.dumps(FAST)}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    return root / "_build" / "html"


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


@pytest.mark.slow
@pytest.mark.parametrize("page", CHAPTERS)
def test_claim_pages_number_and_caption_every_figure(smoke_book, page):
    html = (smoke_book / "notebooks" / f"{page}.html").read_text()
    figures = re.findall(r"<figure[^>]*>(.*?)</figure>", html, re.S)
    assert len(figures) >= FIGURES[page], f"{page}: {len(figures)} figures"
    for f in figures:
        assert "<figcaption" in f, f[:300]
        assert "<img" not in f or re.search(r'alt="[^"]{10,}"', f), f"{page}: an image without alt text"
    for bad in ("missing glue", "unknown glue", "not found in doc", "facnn-missing",
                "No allowed mime type", "<IPython.core.display", "Traceback"):
        assert bad not in html, f"{page} shows {bad!r}"


@pytest.mark.slow
def test_built_book_is_clean_offline_and_answers_on_its_landing_page(smoke_book):
    pages = _pages(smoke_book)
    checkout = str(ROOT)
    for p in pages:
        text = p.read_text()
        assert checkout not in text and "/tmp/" not in text, f"{p.name}: a machine path"
        assert not re.search(r"commit [0-9a-f]{7,}\+dirty", text), f"{p.name}: results of uncommitted code"
        for src in re.findall(r'<script[^>]+src="([^"]+)"', text):
            assert not src.startswith(("http:", "https:", "//")), f"{p.name} loads {src}"
    intro = (smoke_book / "book" / "intro.html").read_text()
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/MathJax\.js', intro)
    assert (smoke_book / "_static" / "mathjax" / "MathJax.js").exists()
    assert "Do the paper" in intro and "verdict" in intro and re.search(r"(holds|fails|inconclusive|not run)", intro)
    assert "layers N" in intro and "arxiv.org/abs/2603.25798" in intro and "@article" in intro
    # the sidebar's table of contents: one entry per page, each title once
    nav = re.findall(r'<li class="toctree-l1[^"]*"><a class="reference internal" href="[^"]+">([^<]+)</a>', intro)
    assert nav and len(nav) == len(set(nav)), f"duplicate titles in the navigation: {nav}"


def test_a_build_never_mixes_profiles(tmp_path):
    src = [tmp_path / "src" / f"0{i}_x.ipynb" for i in (1, 2, 3)]
    out = tmp_path / "executed"
    out.mkdir()
    for s, profile in zip(src, ("cpu", "paper", None)):
        if profile:
            (out / s.name).write_text(json.dumps({"cells": [], "metadata": {}}))
            P.stamp_profile(out / s.name, profile)
    assert [p.name for p in P.other_profiles(out, src, "cpu")] == ["02_x.ipynb", "03_x.ipynb"]


def test_two_writers_never_mix_an_entry(tmp_path):
    import threading
    folder = tmp_path / "analysis" / "demo-abc"
    folder.parent.mkdir(parents=True)

    def write(v):
        for _ in range(20):
            Cc.save_entry(folder, {"a": np.full(1000, v), "b": np.full(10, v)}, {"provenance": {}})
    threads = [threading.Thread(target=write, args=(v,)) for v in (1.0, 2.0)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    values, _ = Cc.load_entry(folder)                    # checksums agree: one writer's files
    assert values["a"][0] == values["b"][0] and len(set(values["a"])) == 1
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_an_expensive_result_is_never_computed_by_a_plain_build(tmp_path, clean_commit):
    calls = []
    compute = lambda: calls.append(1) or {"x": 1}              # noqa: E731
    with pytest.raises(MissingResult) as m:
        Cc.Cache("cpu", tmp_path).get("removal", {}, compute, {}, ["facnn.layers"], expensive=True)
    assert not calls and m.value.commands == ["make book PROFILE=cpu FRESH=1"]
    Cc.Cache("cpu", tmp_path, fresh="1").get("removal", {}, compute, {}, ["facnn.layers"], expensive=True)
    values, _ = Cc.Cache("cpu", tmp_path).get("removal", {}, compute, {}, ["facnn.layers"], expensive=True)
    assert calls == [1] and values == {"x": 1}
    Cc.Cache("smoke", tmp_path).get("removal", {}, compute, {}, ["facnn.layers"], expensive=True)
    assert calls == [1, 1]                                        # smoke computes what it lacks


def test_the_landing_page_counts_finished_seeds(tmp_path):
    runs = Runs("cpu", results_dir=tmp_path)
    assert P.seeds_line(runs).startswith("Seeds: CIFAR-10 seeds 1, 2, 3 for each of 6 models, 0 of 18 runs finished; "
                                         "CIFAR-100 seed 0 for each of 5 models, 0 of 5 runs finished")
    folder = runs.run_dir(runs.config("fa-pool", seed=1))
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"accuracy": 0.5}))
    assert "CIFAR-10 seeds 1, 2, 3 for each of 6 models, 1 of 18 runs finished" in P.seeds_line(runs)
    seed0 = runs.run_dir(runs.config("vanilla", seed=0))     # outside SEEDS: not counted
    seed0.mkdir(parents=True)
    (seed0 / "summary.json").write_text(json.dumps({"accuracy": 0.5}))
    assert "1 of 18 runs finished" in P.seeds_line(runs)


@pytest.mark.parametrize("call,key,mime,expected", [
    (lambda pub: pub.commands("c", ["python -m facnn train --set a=<1>", ""]), "c", "_repr_html_",
     '<pre class="facnn-commands">python -m facnn train --set a=&lt;1&gt;</pre>'),
    (lambda pub: pub.commands("c", ["", ""], "none: every run is here"), "c", "_repr_html_",
     "<p>none: every run is here</p>"),
    (lambda pub: pub.prose("p", "run `make test`"), "p", "_repr_markdown_", "run `make test`"),
    (lambda pub: pub.text("t", None), "t", None, "—"),
    (lambda pub: pub.text("t", 0.5, "{:.2f}"), "t", None, "0.50"),
])
def test_publish_glues_what_the_page_pastes(monkeypatch, call, key, mime, expected):
    from facnnbook import publish as pub
    glued = {}
    monkeypatch.setattr(pub, "_glue", lambda k, obj: glued.__setitem__(k, obj))
    call(pub)
    obj = glued[key]
    assert (getattr(obj, mime)() if mime else obj) == expected


def test_a_stale_result_says_so_on_its_page(tmp_path, monkeypatch, clean_commit, capsys):
    from facnnbook.chapter import Chapter
    mod = tmp_path / "chapter_page.py"
    mod.write_text("def study(n):\n    return {'x': n}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("chapter_page", None)
    import chapter_page
    ch = Chapter("x", "smoke", results_dir=str(tmp_path / "results"))
    ch.computed("s", {"n": 1}, lambda: chapter_page.study(1), models=(), code=[chapter_page.study])
    assert "older code" not in capsys.readouterr().out          # fresh: nothing to say
    mod.write_text("def study(n):\n    return {'x': n + 1}\n")
    sys.modules.pop("chapter_page")
    import chapter_page as edited
    again = Chapter("x", "smoke", results_dir=str(tmp_path / "results"))
    values, prov = again.computed("s", {"n": 1}, lambda: edited.study(1), models=(), code=[edited.study])
    out = capsys.readouterr().out
    assert values["x"] == 1 and "**Computed by older code.**" in out and "FRESH=1" in out
    assert f"commit {prov.commit}" in out
    sys.modules.pop("chapter_page")


def test_launch_cells_use_the_one_repository_url():
    """Colab opens a chapter from the repository: its first code cell (hidden on the page)
    clones and installs facnn from the URL in _config.yml, the launch buttons' URL."""
    from facnnbook.pipeline import repository_url
    url = repository_url()
    for path in sorted((ROOT / "notebooks").glob("0[1-8]_*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        first = cells[0]
        assert first.get("id") == "launch-install" and "remove-cell" in first["metadata"]["tags"], path.name
        assert f'REPO = "{url}"' in "".join(first["source"]), path.name


def test_reliability_page_shows_every_category():
    """A category the registry gains without a section on the page would vanish from it."""
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    import reliability
    page = "".join("".join(c["source"]) for c in json.loads(
        (ROOT / "notebooks" / "10_reliability.ipynb").read_text())["cells"] if c["cell_type"] == "markdown")
    for cat in {c["category"] for c in reliability.CASES}:
        assert f"```{{glue}} rel_{cat.lower()}\n" in page and f"`rel_n_{cat.lower()}`" in page, cat


# Committed cache entries known to be stale, each with what replaces it. The list may only
# shrink: the test fails when an entry on it is fresh again (remove it) or gone.
KNOWN_STALE: set[str] = set()


def test_no_committed_cached_result_is_stale_against_the_code():
    from facnnbook.provenance import ROOT
    stale = {}
    for analysis in sorted((ROOT / "results").glob("*/analysis")):
        stale.update({f"{analysis.parent.name}/{name}": why for name, why in Cc.stale_entries(analysis)})
    unexpected = {k: v for k, v in stale.items() if k.split("/", 1)[1] not in KNOWN_STALE}
    assert unexpected == {}, "stale cached results: recompute them (make book FRESH=1) and commit them"
    fresh_again = KNOWN_STALE - {k.split("/", 1)[1] for k in stale}
    assert fresh_again == set(), "no longer stale (or gone): remove them from KNOWN_STALE"


def _claim(id, source, dataset, verdict, reason="r", counted=True):
    return C.entry(id, source, "theorem1", "s", dataset, "m", None, None, verdict, "p", reason=reason,
                   counted=counted)


def test_the_landing_synthesis_says_what_holds_fails_and_why_the_rest_is_undecided():
    doc = {"profile": "cpu", "claims": [
        _claim("a", "Theorem 1", "cifar10", "holds"),
        _claim("b", "Table 1", "cifar10", "inconclusive", "under-trained: fa-pool +2.1 points"),
        _claim("c", "Table 1", "cifar10", "inconclusive", "flips with the learning rate (holds at own)"),
        _claim("d", "Table 1", "cifar10", "fails"),
        _claim("e", "Figure 4", "imagenet20", "not run", "budget"),
        _claim("f", "Figure 4", "imagenet20", "holds", counted=False)]}   # an extension: not counted
    md = C.synthesis_md(doc, {"cifar10": "CIFAR-10"}, ["CIFAR-10 68.75 % (93.13 %)"])
    assert md.startswith("**Of the 5 claims of the paper this build checks at profile `cpu`, 1 holds, 1 fails, "
                         "2 cannot be decided at this scale and 1 is not run yet.**")
    assert "- **Holds:** Theorem 1 on CIFAR-10." in md and "- **Fails:** Table 1 on CIFAR-10 (1 of 3)." in md
    assert ("- **Undecided:** Table 1 on CIFAR-10 (2 of 3); because of models still improving when training "
            "stopped, answers that flip with the learning rate.") in md
    assert "CIFAR-10 68.75 % (93.13 %)" in md and "Figure 4 on imagenet20" not in md.split("Holds")[1].split("\n")[0]
    table = C.verdict_table_md(doc)
    assert table.startswith("**5 claims counted at profile `cpu`:**") and "| r |" in table
    assert 'title="The paper: Grad-CAM saliency maps' in table           # the quote on hover
    ext = C.verdict_table_md(doc, extensions=True)
    assert ext.startswith("**1 extensions of ours (not counted) at profile `cpu`:** 1 holds")


def test_the_chapter_model_note_ranks_it_among_the_runs_of_its_kind(tmp_path):
    runs = Runs("cpu", results_dir=tmp_path)
    with pytest.raises(MissingResult):
        runs.model_note()
    for cfg, acc in ((runs.config("fa-pool"), 0.70), (runs.config("fa-pool", seed=1), 0.72),
                     (runs.config("fa-pool", seed=2), 0.60), (runs.config("fa-pool", subset="1000x100"), 0.99)):
        folder = runs.run_dir(cfg)
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"accuracy": acc, "config": cfg.to_dict()}))
    note = runs.model_note()
    assert "**70.00 %** test accuracy; 1 of the 3 finished runs of its kind here do better (up to 72.00 %)" in note
    assert runs.config("fa-pool").run_name() in note       # the sweep's subset run is not of its kind


def test_curves_read_each_seeds_test_accuracy_per_epoch(tmp_path):
    runs = Runs("cpu", results_dir=tmp_path)
    cfg = runs.config("vanilla", seed=2)
    folder = runs.run_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"accuracy": 0.5}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "test_accuracy": a}) + "\n"
                                                  for e, a in ((1, 0.3), (2, 0.5))))
    got = runs.curves([("cifar10", "vanilla", "minimal")])
    assert got == {("cifar10", "vanilla", "minimal"): {1: None, 2: [0.3, 0.5], 3: None}}


def test_the_library_never_imports_the_book():
    """facnn is the thin library; the book's machinery (facnnbook) lives apart (STYLE.md)."""
    import ast
    root = Path(__file__).resolve().parents[1] / "facnn"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "facnnbook"
                      or (isinstance(node, ast.ImportFrom) and node.level and n.startswith("book"))]
    assert not found, found
