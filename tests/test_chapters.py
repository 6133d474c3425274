"""The chapters' helpers for ImageNet photos (Figures 1/5): which image, which classes, and
what the verdicts read off the numbers."""
import numpy as np
import pandas as pd
import pytest
import torch

from facnn import data as D
from facnnbook import chapters as X
from facnn.models import build_model


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    test = D.make_shapes(60, seed=1)
    model = build_model("fa-pool", test.num_classes, maps_per_class=2, depth=4, pool_every=2).eval()
    return model, test


def test_runner_up_image_is_the_first_class_image_with_most_second_class(setup):
    model, test = setup
    first, second = test.classes[0], test.classes[1]
    i = X.runner_up_image(model, test, first, second)
    assert int(test.labels[i]) == 0
    with torch.no_grad():
        p = model.probabilities(test.normalised(slice(None))).float()[:, 1]
    others = torch.nonzero(test.labels == 0)[:, 0]
    assert float(p[i]) == pytest.approx(float(p[others].max()))


def test_qualitative_classes_draws_one_row_pair_per_class(setup):
    model, test = setup
    v = X.qualitative_classes(model, test, 3, test.classes[:2], layers=[1, 4], rise_masks=8, kocc_window=8)
    assert v["fa"].shape[:2] == (2, 2) and v["classes"].tolist() == [0, 1]
    assert (v["images"][0] == v["images"][1]).all() and v["probs"].sum() == pytest.approx(1, abs=1e-5)
    agree = X.class_map_agreement(v)
    assert agree.shape == (2,) and np.all(np.abs(agree[~np.isnan(agree)]) <= 1 + 1e-9)
    same = dict(v, fa=np.stack([v["fa"][0], v["fa"][0]]))
    assert X.class_map_agreement(same)[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_of_class_draws_an_image_of_that_class(setup, seed):
    _, test = setup
    assert int(test.labels[X.first_of_class(test, test.classes[2], seed)]) == 2


@pytest.mark.parametrize("call", [lambda m, t: X.first_of_class(t, "stork"),
                                  lambda m, t: X.runner_up_image(m, t, t.classes[0], "stork"),
                                  lambda m, t: X.qualitative_classes(m, t, 0, ["stork"])])
def test_an_unknown_class_is_named_with_the_choices(setup, call):
    with pytest.raises(ValueError, match="'stork' is not a class of shapes; its classes:"):
        call(*setup)


@pytest.mark.parametrize("lo, hi, verdict", [(0.9995, 1.0, "holds"), (0.99, 0.998, "fails"),
                                             (0.998, 1.0, "inconclusive")])
def test_last_layer_verdict(lo, hi, verdict):
    assert X.last_layer_verdict(pd.Series({"ci_lo": lo, "ci_hi": hi})) == verdict


def _stats(medians, half=0.01):
    """A made-up per-layer table (layers 1..N) with a bootstrap interval of +-``half``."""
    n = len(medians)
    return pd.DataFrame([dict(dataset="made-up", layer=L, rel_depth=L / n, median=m, q25=m - 0.2,
                              q75=m + 0.1, ci_lo=m - half, ci_hi=m + half, n=100, n_undefined=0)
                         for L, m in enumerate(medians, 1)])


RISING = [0.1, 0.2, 0.3, 0.4, 0.8, 0.85, 0.9, 0.95, 1.0]   # layers 5..9 have L/9 >= 0.5


@pytest.mark.parametrize("medians, half, threshold, verdict", [
    (RISING, 0.01, 0.5, "holds"),          # every layer from 5/9 on sits above 0.5
    (RISING, 0.01, 0.7, "holds"),
    (RISING, 0.01, 0.9, "fails"),          # layer 5 (0.8) is below 0.9
    (RISING, 0.2, 0.9, "inconclusive"),    # ... but its interval [0.6, 1.0] spans 0.9
    ([0.9] * 4 + [0.2] + [0.9] * 4, 0.01, 0.5, "fails"),   # one low layer from 0.5 on is enough
    ([0.1] * 4 + [0.95] * 5, 0.01, 0.9, "holds"),           # layers before L/N = 0.5 do not count
])
def test_middle_layer_verdict_at_one_threshold(medians, half, threshold, verdict):
    assert X.middle_layer_verdict(_stats(medians, half), threshold) == verdict


@pytest.mark.parametrize("medians, half, verdict, reason", [
    # the verdict changes across 0.5 / 0.7 / 0.9: inconclusive, whatever it is at 0.7
    (RISING, 0.01, "inconclusive", "depends on our threshold (holds at 0.5, holds at 0.7, fails at 0.9)"),
    ([0.1, 0.2, 0.3, 0.5, 0.71, 0.85, 0.94, 0.99, 1.0], 0.013, "inconclusive",
     "depends on our threshold (holds at 0.5, inconclusive at 0.7, fails at 0.9)"),
    # the same verdict at all three: that verdict, counted at our 0.7
    ([0.1, 0.2, 0.3, 0.6, 0.95, 0.96, 0.97, 0.99, 1.0], 0.01, "holds",
     "the same verdict at all three of our thresholds"),
    ([0.1, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95, 1.0], 0.01, "fails",
     "the same verdict at all three of our thresholds"),
    ([0.1, 0.2, 0.3, 0.4, 0.7, 0.8, 0.9, 0.95, 1.0], 0.45, "inconclusive", "spans every threshold"),
])
def test_middle_layer_claim_counts_a_verdict_only_when_no_threshold_changes_it(medians, half,
                                                                               verdict, reason):
    table = X.middle_layer_table(_stats(medians, half))
    assert list(table["threshold"]) == [0.5, 0.7, 0.9]
    got, why = X.middle_layer_claim(table)
    assert got == verdict and reason in why


def test_middle_layer_table_names_the_weakest_layer_and_where_agreement_starts():
    table = X.middle_layer_table(_stats(RISING))
    assert set(table["weakest_layer"]) == {5} and table["median"].iloc[0] == pytest.approx(0.8)
    # median >= t from layer 5 (5/9) for 0.5 and 0.7, from layer 7 (7/9) for 0.9
    assert table["median_above_from"].tolist() == pytest.approx([5 / 9, 5 / 9, 7 / 9])


@pytest.mark.parametrize("medians, threshold, start", [
    ([0.1, 0.9, 0.2, 0.95], 0.5, 4 / 4),      # a dip resets where agreement starts
    ([0.6, 0.7, 0.8, 1.0], 0.5, 1 / 4),
    ([0.1, 0.2, 0.3, 0.4], 0.5, None),        # not even the last layer
])
def test_agrees_from(medians, threshold, start):
    got = X.agrees_from(_stats(medians), threshold)
    assert got == (None if start is None else pytest.approx(start))


def test_our_threshold_must_be_one_of_the_table():
    with pytest.raises(ValueError, match="our threshold 0.8 is not one of"):
        X.middle_layer_claim(X.middle_layer_table(_stats(RISING)), choice=0.8)


def test_layer_correlation_stats_median_quartiles_and_undefined():
    corr = np.array([[0.1, 1.0], [0.3, 1.0], [0.5, 1.0], [np.nan, 1.0]])
    st = X.layer_correlation_stats(dict(corr=corr, layers=np.array([1, 2]), depth=2, dataset="d"),
                                   n_boot=200)
    assert st["median"].tolist() == pytest.approx([0.3, 1.0])
    assert st["q25"].iloc[0] == pytest.approx(0.2) and st["q75"].iloc[0] == pytest.approx(0.4)
    assert st["n"].tolist() == [3, 4] and st["n_undefined"].tolist() == [1, 0]
    assert st["rel_depth"].tolist() == [0.5, 1.0]
    assert (st["ci_lo"] <= st["median"]).all() and (st["median"] <= st["ci_hi"]).all()


def test_layer_correlation_study_is_one_at_the_last_layer_in_batches(setup):
    model, test = setup
    v = X.layer_correlation_study(model, test, 1000, batch=7)        # all 60 images, 9 batches
    assert v["corr"].shape == (60, 4) and v["n_images"] == 60
    last = v["corr"][:, -1]
    assert np.nanmin(last) > 0.999
    st = X.layer_correlation_stats(v)
    assert X.last_layer_verdict(st.iloc[-1]) == "holds"


class _ClaimRecorder:
    def __init__(self, dataset):
        self.claims, self.runs = {}, type("R", (), {"dataset": dataset})()

    def claim(self, id, quote, statement, metric, paper, ours, verdict, source, reason=None,
              counted=True, **kw):
        from facnnbook.claims import entry
        self.claims[id] = entry(id, source, quote, statement, self.runs.dataset, metric, paper,
                                ours, verdict, "page", reason=reason, counted=counted, **kw)


def test_figures15_claims_count_the_last_layer_once_and_name_our_threshold():
    ch = _ClaimRecorder("cifar10")
    st = _stats(RISING[:-1] + [1.0], 0.0001)
    verdict, reason = X.figures15_claims(ch, st, X.middle_layer_table(st), "test")
    last, mid = ch.claims["figures15.cifar10.last_layer"], ch.claims["figures15.cifar10.middle_layers"]
    assert last["verdict"] == "holds" and last["counted"] is False and "Theorem 1" in last["reason"]
    assert mid["counted"] is True and (mid["verdict"], mid["reason"]) == (verdict, reason)
    assert verdict == "inconclusive" and "depends on our threshold" in reason
    assert "our threshold" in mid["statement"] and "L/N >= 0.5" in mid["statement"]
    assert mid["by_threshold"] == {"0.5": "holds", "0.7": "holds", "0.9": "fails"}
    assert "middle layers also show high correlation" in mid["quote"]


class _Recorder:
    """A chapter stand-in that builds each claim with claims.entry (so the schema is checked)."""
    def __init__(self):
        self.claims = {}

    def claim(self, id, quote, statement, metric, paper, ours, verdict, source, dataset=None,
              ci95=None, n_seeds=1, reason=None, counted=True, **extra):
        from facnnbook.claims import entry
        self.claims[id] = entry(id, source, quote, statement, dataset, metric, paper, ours,
                                verdict, "04_pixel_removal", ci95, n_seeds, reason, counted)


# -- Figure 4 as the paper states it (facnnbook.figure4), on made-up curves ----------------

_FR = np.round(np.linspace(0, 1, 11), 2)


def _c(clean, low, mid, high):
    """A curve over 0, 0.1, .., 1 removed: ``low`` at 10-20 %, ``mid`` at 30-60 %, ``high``
    at 70-90 %, a blank image (0.1) at 100 %."""
    return np.array([clean, low, low, mid, mid, mid, mid, high, high, high, 0.1])


def _curves(order="lerf", clean=0.7, **bands):
    """Made-up curves of one order: every method at (low, mid, high) = (clean, 0.6, 0.3)
    unless ``bands[method]`` says otherwise (``fa_cnn`` for fa-cnn; the layered methods at
    layers 9 and 6 alike); RAND falls fast."""
    default = {"random": (0.4, 0.2, 0.1)}
    out = {}
    for m in ("fa-cnn", "grad-cam", "rise", "k-occ", "random", "rise+clip", "k-occ+clip"):
        b = bands.get(m.replace("-", "_").replace("+", "_"), default.get(m, (clean, 0.6, 0.3)))
        for layer in ((9, 6) if m in ("fa-cnn", "grad-cam") else (None,)):
            out[(m, layer, order)] = _c(clean, *b)
    return out


def _view(order="lerf", **kw):
    from facnnbook import figure4 as F
    return F.View(_curves(order, **kw), _FR, order)


# (order, low-band accuracy of RISE, K-OCC, FA-CNN, Grad-CAM; does "RISE and K-OCC do best" hold?)
@pytest.mark.parametrize("order, rise, kocc, fa, gc, holds", [
    ("lerf", 0.80, 0.65, 0.70, 0.70, False),   # RISE beats FA-CNN, K-OCC does not: the best-of reading would hold
    ("lerf", 0.80, 0.75, 0.70, 0.70, True),
    ("lerf", 0.80, 0.75, 0.70, 0.78, False),   # Grad-CAM beats K-OCC
    ("morf", 0.20, 0.45, 0.40, 0.40, False),   # MoRF: lower is better; K-OCC is not lower
    ("morf", 0.20, 0.30, 0.40, 0.40, True),
])
def test_strict_low_removal_needs_each_perturbation_method_to_beat_each_of_ours(order, rise, kocc, fa, gc, holds):
    from facnnbook import figure4 as F
    v = _view(order, rise=(rise, .6, .3), k_occ=(kocc, .6, .3), fa_cnn=(fa, .6, .3), grad_cam=(gc, .6, .3))
    assert F._low(v)[1] is holds


# (clean accuracy, mid-band accuracy of FA-CNN/Grad-CAM and of RISE/K-OCC; "similar"?)
@pytest.mark.parametrize("clean, ours, theirs, holds", [
    (0.73, 0.20, 0.23, True),     # a gap of 0.03 is within 10 % of 0.73 ...
    (0.26, 0.20, 0.23, False),    # ... and not within 10 % of 0.26 (ImageNet-20's clean accuracy)
    (0.26, 0.20, 0.22, True),
    (0.73, 0.60, 0.68, False),    # 0.08 > 0.073
])
def test_similar_is_relative_to_the_clean_accuracy(clean, ours, theirs, holds):
    from facnnbook import figure4 as F
    v = _view(clean=clean, fa_cnn=(clean, ours, .1), grad_cam=(clean, ours, .1),
              rise=(clean, theirs, .1), k_occ=(clean, theirs, .1))
    assert F._mid(v)[1] is holds
    assert "10 % of the dataset's clean accuracy" in F.STATEMENTS[5][2](v)


# (gain at 10-20 % of RISE, RISE clipped, K-OCC, K-OCC clipped; does the explanation hold?)
@pytest.mark.parametrize("rise, rise_clip, kocc, kocc_clip, holds", [
    (0.05, 0.05, 0.10, 0.00, True),    # RISE's unchanged rise is not consulted: it cannot be negative
    (0.05, 0.05, 0.10, 0.05, False),   # K-OCC still rises when clipped
    (0.00, 0.00, 0.00, 0.00, False),   # no rise to explain
])
def test_negative_attribution_test_skips_maps_that_cannot_be_negative(rise, rise_clip, kocc, kocc_clip,
                                                                     holds, monkeypatch):
    from facnnbook import figure4 as F
    assert F.signed_methods() == ["k-occ"]
    bands = dict(rise=(0.7 + rise, .6, .3), rise_clip=(0.7 + rise_clip, .6, .3),
                 k_occ=(0.7 + kocc, .6, .3), k_occ_clip=(0.7 + kocc_clip, .6, .3))
    v = _view(**bands)
    ours, ok = F._negative(v)
    assert ok is holds and "K-OCC" in ours and "RISE" not in ours
    text = F.STATEMENTS[7][2](v)
    assert "maps that can be negative, K-OCC:" in text and "RISE not tested" in text
    # were RISE's maps signed, its unchanged rise would count against the explanation
    monkeypatch.setitem(F.CAN_BE_NEGATIVE, "rise", True)
    assert F._negative(_view(**bands))[1] is (holds and rise_clip <= 0)


_RISING = dict(fa_cnn=(0.70, 0.6, 0.3), grad_cam=(0.70, 0.6, 0.3), rise=(0.75, 0.6, 0.3),
               k_occ=(0.80, 0.6, 0.3))                      # LeRF-like: a rise, high curves
_FALLING = dict(fa_cnn=(0.30, 0.1, 0.1), grad_cam=(0.30, 0.1, 0.1), rise=(0.35, 0.1, 0.1),
                k_occ=(0.25, 0.1, 0.1))                     # MoRF-like: fast drops below RAND


@pytest.mark.parametrize("lerf, morf, decided", [
    (_RISING, _FALLING, "lerf"),      # as our curves are: the paper's descriptions are LeRF's
    (_FALLING, _RISING, "morf"),      # were MoRF the order that rises and stays high
    (_RISING, _RISING, "morf"),       # the curves cannot tell: the order the text names
])
def test_removal_order_is_decided_by_what_the_curves_show(lerf, morf, decided):
    from facnnbook import figure4 as F
    curves = {**_curves("lerf", **lerf), **_curves("morf", **morf)}
    order, evidence = F.removal_order(curves, _FR)
    assert order == decided
    assert list(evidence.columns) == ["the paper describes", "measured on our curves", "LeRF", "MoRF"]
    assert order.upper() in F.order_sentence(order, evidence).upper()


def _made_up_values(n: int = 120, seed: int = 0, n_boot: int = 40):
    """A removal_study-like result: per-image outcomes of every curve in both orders."""
    from facnnbook import figure4 as F
    rng = np.random.default_rng(seed)
    keys, rows = [], []
    for (m, layer, order), acc in {**_curves("lerf", **_RISING), **_curves("morf", **_FALLING)}.items():
        if order == "morf" and m.endswith("+clip"):
            continue
        keys.append(dict(method=m, layer=layer, order=order, seed=0 if m == "random" else None))
        rows.append(rng.random((len(_FR), n)) < acc[:, None])
    rows = np.stack(rows)
    rows[:, 0] = rows[0, 0]                      # the clean images are the same for every curve
    return dict(curve_keys=pd.DataFrame(keys), correct=rows, meta=dict(fractions=list(_FR))), F


def test_record_claims_counts_only_the_order_the_curves_reproduce():
    values, F = _made_up_values()
    order, _, table = F.figure4_statements(values, n_boot=40)
    ch = _Recorder()
    counts = F.record_claims(ch, table, "cifar10", 40)
    ids = sorted(ch.claims)
    assert order == "lerf" and len(ids) == 15 and "figure4.cifar10.morf.8" not in ids
    for id_, c in ch.claims.items():
        assert c["counted"] is (".lerf." in id_) and c["reason"]
        assert c["quote"] and c["statement"] != c["quote"]
    assert ch.claims["figure4.cifar10.lerf.3"]["quote"].startswith("In the low-removal range")
    assert "our extension" in ch.claims["figure4.cifar10.morf.4"]["reason"]
    assert counts["counted_total"] == 8 and counts["other_total"] == 7
    F.record_claims(ch, table, "imagenet20", None, placeholder="chapter 07 has not run")
    assert ch.claims["figure4.imagenet20.lerf.1"]["verdict"] == "not run"
    assert ch.claims["figure4.imagenet20.lerf.1"]["reason"] == "chapter 07 has not run"


def test_figure4_quotes_are_the_papers():
    from facnnbook import figure4 as F
    from facnnbook.paper import QUOTES, missing_quotes, paper_text
    assert {q for _, q, _, _ in F.STATEMENTS} | {"fig4_order"} <= set(QUOTES)
    text = paper_text()
    if text is None:
        pytest.skip("the paper's text is not beside the checkout")
    assert missing_quotes(text) == []


# (method, maps of a random model): may any value be negative? (chapters.CAN_BE_NEGATIVE)
@pytest.mark.parametrize("method", ["fa-cnn", "grad-cam", "rise", "k-occ"])
def test_which_attribution_maps_can_be_negative(method):
    from facnn import attribution as A, build_model
    from facnn.models import randomise_batchnorm
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("fa-pool", 3, maps_per_class=2, depth=4, pool_every=2))
    x = torch.randn(4, 3, 16, 16)
    kw = {"rise": dict(n_masks=50), "k-occ": dict(window=4)}.get(method, {})
    maps = A.attribute(method, model, x, classes=None, **kw)
    assert bool((maps < 0).any()) == X.CAN_BE_NEGATIVE[method]


def _lerf(method, accuracy, layer=None):
    return [dict(method=method, layer=layer, order="lerf", fraction=f, accuracy=a)
            for f, a in zip((0.0, 0.1, 0.2, 0.3), accuracy)]


# (gains of fa-cnn, grad-cam, rise at 10-20 %; expected phrase)
@pytest.mark.parametrize("rises,phrase", [
    ((0.04, 0.0, 0.03), "raise accuracy too (fa-cnn +4.0, rise +3.0 points)"),
    ((0.0, -0.02, 0.0), "no method whose maps cannot be negative raises accuracy"),
])
def test_negative_note_names_the_non_negative_maps_that_rise(rises, phrase):
    rows = []
    for m, g in zip(("fa-cnn", "grad-cam", "rise"), rises):
        rows += _lerf(m, (0.5, 0.5 + g, 0.5, 0.4), layer=9 if m != "rise" else None)
    rows += _lerf("k-occ", (0.5, 0.6, 0.55, 0.4)) + _lerf("k-occ+clip", (0.5, 0.52, 0.5, 0.4))
    t = pd.DataFrame(rows)
    t["layer"] = pd.array(t["layer"], dtype="Int64")
    note = X.negative_note(t)
    assert phrase in note
    assert "k-occ, whose maps can be negative, rises +10.0 points, and +2.0 with" in note


# -- the Figure 4 bootstrap on made-up per-image results whose answer is known ------------------

_FRACTIONS = np.round(np.linspace(0, 0.9, 10), 2)
_METHODS = ("fa-cnn", "grad-cam", "rise", "k-occ", "random")


def _made_up(n: int, better_on: float, seed: int = 0):
    """curve_keys and per-image outcomes (curves, F, n) for LeRF at layers 9 (last) and 6:
    every method is right exactly where `random` is, and also on a share ``better_on`` of
    the images `random` gets wrong (the same images at every fraction). ``better_on=None``:
    every method is an independent coin with random's accuracy (no method is better)."""
    rng = np.random.default_rng(seed)
    rand = rng.random(n) < 0.5
    keys, rows = [], []
    for m in _METHODS:
        for layer in ((9, 6) if m in ("fa-cnn", "grad-cam") else (None,)):
            if m == "random":
                right = rand
            elif better_on is None:
                right = rng.random(n) < 0.5
            else:
                right = rand | ((~rand) & (rng.random(n) < better_on))
            keys.append(dict(method=m, layer=layer, order="lerf", seed=0 if m == "random" else None))
            rows.append(np.repeat(right[None], len(_FRACTIONS), 0))
    return pd.DataFrame(keys), np.stack(rows)


def _support(keys, correct, n: int, n_boot: int = 200) -> float:
    """The bootstrap support of LeRF statement ``n`` of facnnbook.figure4."""
    from facnnbook import figure4 as F
    support = F.bootstrap_support(keys, correct, _FRACTIONS, n_boot=n_boot, seed=1)
    t = F.reading(F.curve_dict(keys, correct.mean(2)), _FRACTIONS)
    return float(support[int(np.flatnonzero((t["order"] == "lerf") & (t["n"] == n))[0])])


_RANDOM = 2   # "all methods do better than random removal"


def test_a_method_better_on_paired_images_has_full_support():
    """Each method beats random on a few images and ties on the rest: in every resample of
    images (paired across methods) it is ahead, so the support is 1.0. Resampling each
    method's images independently would drown a 3-point gap in noise (support near 0.7)."""
    keys, correct = _made_up(400, better_on=0.06)
    assert _support(keys, correct, _RANDOM) == 1.0


def test_a_borderline_statement_has_support_strictly_between():
    """No method is better than random: the statement holds in some resamples and not in
    others. One resample reused for every round would give exactly 0 or 1."""
    keys, correct = _made_up(400, better_on=None)
    s = _support(keys, correct, _RANDOM)
    assert 0.0 < s < 1.0 and X.statement_verdict("yes", s) == "inconclusive"


def test_bootstrap_support_does_not_depend_on_curve_order():
    keys, correct = _made_up(300, better_on=None, seed=3)
    flip = np.arange(len(keys))[::-1]
    a = _support(keys, correct, _RANDOM)
    b = _support(keys.iloc[flip].reset_index(drop=True), correct[flip], _RANDOM)
    assert a == b


def test_live_explorer_offers_images_of_every_class(setup):
    """Test sets come sorted by class: the image list must not be the first n (one class)."""
    pytest.importorskip("ipywidgets")
    from facnnbook.explorer import build
    model, test = setup
    order = torch.argsort(test.labels, stable=True)          # sorted by class, as CIFAR is here
    sorted_test = D.ArrayDataset(test.name, test.images[order], test.labels[order], test.classes)
    widget = build(model, sorted_test, n_images=10)
    pick = widget.children[0].children[0]
    shown = {int(sorted_test.labels[i]) for _, i in pick.options}
    assert len(pick.options) == 10 and len(shown) == 10
