"""benchmarks/run.py end to end on toy sizes (--tiny), the JSON it writes, and the pieces
that could make a ratio wrong: the timing harness, the goal logic, the identity checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facnn import attribution as A
from facnnbook import bench

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))           # the benchmarks package lives beside facnn

from benchmarks import cases, maps  # noqa: E402
from benchmarks.harness import Report, Timing, measure, spread  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny",
                           "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_tiny_run_writes_a_valid_json(tiny_run):
    doc, _ = tiny_run
    assert bench.validate(doc) == []
    assert doc["mode"] == "tiny" and doc["failed"] == []
    assert doc["machine"]["torch_threads"] == 1 and doc["machine"]["host_kind"] == bench.host_kind()
    assert doc["gpu_columns"]["filled"] == torch.cuda.is_available()


def test_every_identity_check_ran_and_passed(tiny_run):
    doc, _ = tiny_run
    names = [c["name"] for c in doc["checks"]]
    for want in ["Captum LayerGradCam", "pytorch-grad-cam", "Theorem 1", "plain loop",
                 "authors' form", "Captum Occlusion", "Quantus PixelFlipping"]:
        assert any(want in n for n in names), f"no check mentions {want!r}: {names}"
    assert all(c["passed"] for c in doc["checks"]), [c for c in doc["checks"] if not c["passed"]]


def test_every_section_and_goal_is_reported(tiny_run):
    doc, stdout = tiny_run
    pairs = {(c["section"], c["fast"], c["slow"]) for c in doc["comparisons"]}
    for want in [("maps", "class_maps", "pytorch-grad-cam"), ("maps", "grad_cam", "captum"),
                 ("perturbation", "rise", "rise-authors"), ("perturbation", "class_maps", "rise"),
                 ("perturbation", "k_occlusion", "captum-occlusion"),
                 ("removal", "removal_curve", "quantus-pixelflipping"),
                 ("training", "bare conv+bn", "fa-cnn")]:
        assert want in pairs, want
    goals = [c for c in doc["comparisons"] if c["goal"] is not None]
    assert len(goals) >= 8 and all(isinstance(c["goal_met"], bool) for c in goals)
    assert "goals met:" in stdout


def test_ratios_follow_from_the_raw_times(tiny_run):
    """Every reported ratio is the median of time(slow) / time(fast) over the same rounds
    (per map when the candidates make different numbers of maps)."""
    doc, _ = tiny_run
    raw = {(m["section"], m["case"], m["method"]): m for m in doc["measurements"]}
    for c in doc["comparisons"]:
        slow = raw[c["section"], c["case"], c["slow"]]
        fast = raw[c["section"], c["case"], c["fast"]]
        assert len(slow["seconds"]) == len(fast["seconds"]) == c["ratio"]["n"]
        per = [(s / slow["units_per_call"]) / (f / fast["units_per_call"])
               for s, f in zip(slow["seconds"], fast["seconds"])]
        plain = [s / f for s, f in zip(slow["seconds"], fast["seconds"])]
        assert c["ratio"]["median"] in (pytest.approx(spread(per)["median"]),
                                        pytest.approx(spread(plain)["median"]))


def test_the_notebook_tables_read_the_json(tiny_run):
    doc, _ = tiny_run
    t = bench.comparisons_table(doc)
    assert len(t) == len(doc["comparisons"]) and set(t["met"]) <= {"", "yes", "NO"}
    assert len(bench.rates_table(doc)) == len(doc["measurements"])
    assert bench.checks_table(doc)["passed"].eq("yes").all()
    assert "no GPU" in bench.describe(doc["machine"]) or torch.cuda.is_available()


# -- the harness and the schema on their own -----------------------------------------------------

def test_spread_and_ratio_by_hand():
    assert spread([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "q25": 1.75, "q75": 4.75, "min": 1.0,
                                             "max": 10.0, "n": 4}
    t = Timing({"slow": [4.0, 6.0, 9.0], "fast": [2.0, 2.0, 3.0]}, {"slow": 1, "fast": 1},
               {"slow": 4.0, "fast": 2.0})
    assert t.ratio("slow", "fast")["median"] == 3.0
    r = Report()
    assert r.compare("s", "c", t, "fast", "slow", goal=2.5)["goal_met"] is True
    assert r.compare("s", "c", t, "fast", "slow", goal=3.5)["goal_met"] is False
    assert r.compare("s", "c", t, "fast", "slow", goal=3.5, at_most=True)["goal_met"] is True
    # per map: the slow one made 1 map per call, the fast one 4
    per = r.compare("s", "c", t, "fast", "slow", per_unit={"slow": 1, "fast": 4})
    assert per["ratio"]["median"] == 12.0


def test_measure_interleaves_and_repeats_fast_calls():
    calls = []
    t = measure({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3,
                min_seconds=0.0)
    assert [len(v) for v in t.seconds.values()] == [3, 3]
    timed = calls[4:]                      # after two untimed calls each
    assert timed == ["a", "b", "b", "a", "a", "b"]


def test_validate_rejects_a_broken_json(tiny_run):
    doc, _ = tiny_run
    broken = json.loads(json.dumps(doc))
    broken["comparisons"][0]["ratio"]["q25"] = broken["comparisons"][0]["ratio"]["median"] + 1
    del broken["measurements"][0]["seconds"]
    problems = bench.validate(broken)
    assert any("quartiles" in p for p in problems) and any("seconds" in p for p in problems)
    assert bench.validate({"schema": "other"})


def test_a_wrong_map_fails_its_check(monkeypatch):
    """The identity checks can fail: a Grad-CAM with a little of its mirror image mixed in
    fails all three."""
    from captum.attr import LayerGradCam
    model = cases.facnn("smoke", 3)
    x = cases.images(2, 16)
    real = A.grad_cam
    def mirrored(*args, **kw):
        m = real(*args, **kw)
        return m + 0.05 * m.flip(-1)
    monkeypatch.setattr(A, "grad_cam", mirrored)
    report = Report()
    maps._checks(report, "C=3", model, x, LayerGradCam(model, model.layers[-1]), 3)
    assert [c["passed"] for c in report.checks] == [False, False, False]


def test_host_kind_is_a_short_slug():
    kind = bench.host_kind()
    assert kind.startswith("cuda-" if torch.cuda.is_available() else "cpu-")
    assert kind == kind.lower() and " " not in kind and len(kind) < 48
    assert bench.bf16_peak("NVIDIA H200") == 989e12 and bench.bf16_peak("NVIDIA A10G") == 70e12
    assert bench.bf16_peak("Quadro P1000") is None
