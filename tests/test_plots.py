"""Figures legible at the book's column width, and the book's interactive explorer.

Every figure of facnn.plots is drawn from small made-up inputs and checked the way the
book shows it: saved with bbox_inches="tight" it is at most 7.5 in wide (so at dpi 110 in
a ~750 px column it is scaled by >= 0.9), and no text in it is below 9 pt. The explorer's
data and HTML are built from a tiny untrained FA-CNN."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from facnn import plots
from facnnbook.claims import GROUPS

SCRIPT = Path(__file__).resolve().parents[1] / "book" / "_static" / "facnn-interactive.js"

RNG = np.random.default_rng(0)
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "yellow triangle"]


def _images(n, size=32):
    return RNG.integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _maps(*shape):
    return RNG.random(shape).astype(np.float32)


def _removal_table():
    rows = []
    for method, layers in (("fa-cnn", [9, 3]), ("grad-cam", [9, 3]), ("rise", [None]),
                           ("random", [None])):
        for layer in layers:
            for order in ("lerf", "morf"):
                for f in np.linspace(0, 1, 11):
                    rows.append(dict(method=method, layer=layer, order=order, fraction=f,
                                     accuracy=1 - f * RNG.random(), accuracy_std=0.01))
    t = pd.DataFrame(rows)
    t["layer"] = pd.array(t["layer"].tolist(), dtype="Int64")
    return t


def _sweep(lrs=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2), missing=0):
    acc = [80 + 5 * RNG.random() for _ in lrs]
    status = ["done"] * (len(lrs) - missing) + ["missing"] * missing
    acc = [a if s == "done" else np.nan for a, s in zip(acc, status)]
    return pd.DataFrame({"lr": lrs, "test accuracy (%)": acc, "best epoch (%)": acc,
                         "test images": 1000, "status": status})


def _bounded():
    models = ["FA-CNN (pooling head)", "Vanilla-CNN"]
    rows = [dict(model=m, layer=L, delta=1 / 9, max_increment=(1 / 9 if "FA" in m else 3.0 * L))
            for m in models for L in range(1, 10)]
    v = dict(rows=pd.DataFrame(rows), models=models, class_name="cat")
    for m in models:
        v["morph_" + "".join(ch if ch.isalnum() else "_" for ch in m)] = _maps(10, 8, 8)
    return v


def _theorem1(n=3, k=2):
    return dict(images=_images(n), labels=np.arange(n), classes=np.stack([np.arange(n) + j
                                                                          for j in range(k)], 1),
                class_names=NAMES, fa=_maps(n, k, 8, 8), gc_score=_maps(n, k, 8, 8),
                gc_prob=_maps(n, k, 8, 8), corr_score=RNG.random(200), corr_prob=RNG.random(200))


def _qualitative(n=2, layers=(1, 2, 3, 4, 5, 6, 7, 8, 9)):
    L = len(layers)
    return dict(images=_images(n), classes=np.array([9, 1]), layers=np.array(layers),
                fa=_maps(n, L, 32, 32), gc=_maps(n, L, 32, 32), corr=RNG.random((n, L)),
                rise=_maps(n, 32, 32), kocc=_maps(n, 32, 32), pred=np.array([1, 9]))


def _explore():
    return dict(image=_images(1)[0], cls=9, layer=5, fraction=0.3, order="lerf",
                fa=_maps(32, 32), gc=_maps(32, 32), strip=_maps(9, 32, 32),
                removed=_images(1)[0], before=RNG.dirichlet(np.ones(10)),
                after=RNG.dirichlet(np.ones(10)))


def _effects():
    return pd.DataFrame({
        "dataset": ["CIFAR-10", "CIFAR-10", "CIFAR-100"],
        "question": ["Does the pooling head cost accuracy against the linear head?",
                     "Does the dampened skip beat Vanilla?", "FA-CNN against ResNet-18"],
        "short": ["pooling - linear head", "dampened - residual skip", None],
        "ours": [-0.4, 0.8, np.nan], "ci95": [(-1.0, 0.2), None, None],
        "paper": [-0.67, 0.16, 3.07]})


def _claims():
    row = dict(quote="q", where="w", metric="m", reason="r", counted=True, page="p", n_seeds=3)
    return [dict(row, id="theorem1", source="Theorem 1", statement="maps equal Grad-CAM", dataset="cifar10",
                 paper=1.0, ours=1.0, ci95=None, verdict="holds"),
            dict(row, id="t1.a", source="Table 1", statement="pooling head beats Vanilla", short="pool vs Vanilla",
                 dataset="cifar10", paper=0.16, ours=0.84, ci95=[-3.47, 5.14], threshold=0.0, verdict="inconclusive"),
            dict(row, id="t1.b", source="Table 1", statement="linear head beats ResNet-50", dataset="cifar10",
                 paper=2.3, ours=None, ci95=None, threshold=0.0, verdict="not run"),
            dict(row, id="f4", source="Figure 4", statement="All methods are skillful relative to random removal "
                 "and this statement is long enough to be cut", dataset="imagenet20", paper=None, ours=1.0,
                 ci95=None, verdict="holds"),
            dict(row, id="f15", source="Figures 1/5", statement="middle layers correlate", dataset="cifar10",
                 paper=None, ours=0.40, ci95=[0.39, 0.42], verdict="fails")]


def _layer_stats():
    return pd.DataFrame([dict(dataset=d, layer=L, rel_depth=L / 9, median=m, q25=m - 0.2,
                              q75=min(1, m + 0.1))
                         for d in ("CIFAR-10", "CIFAR-100") for L in range(1, 10)
                         for m in [L / 9 - 0.1]])


FIGURES = {   # name -> a call drawing it from made-up inputs
    "removal_curves": lambda: plots.removal_curves(_removal_table(), title="Figure 4"),
    "learning_curves": lambda: plots.learning_curves(
        {f"run {i}": pd.DataFrame({"epoch": range(1, 6), "test_accuracy": RNG.random(5),
                                   "train_loss": RNG.random(5) + 0.1}) for i in range(3)}),
    "lr_sweeps": lambda: plots.lr_sweeps(
        {"FA-CNN (pooling head)": _sweep(), "FA-CNN (linear head)": _sweep(missing=2),
         "Vanilla-CNN": _sweep((0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8)),   # an extended grid
         "ResNet-18 (minimal recipe)": _sweep(missing=7)},
        chosen={"FA-CNN (pooling head)": 0.8, "Vanilla-CNN": 0.4}),
    "theorem1_maps": lambda: plots.theorem1_maps(_theorem1()),
    "correlation_hist": lambda: plots.correlation_hist(_theorem1()),
    "layer_correlations": lambda: plots.layer_correlations(
        _layer_stats(), (0.5, 0.7, 0.9), [(0.5, "stork: 12 of 24"), (0.875, "crate: 21 of 24")]),
    "bounded_increment": lambda: plots.bounded_increment(_bounded()),
    "layer_maps": lambda: plots.layer_maps(_qualitative(), NAMES, images=[0]),
    "pairs": lambda: plots.pairs(_images(4), _maps(4, 8, 8), _maps(4, 8, 8), NAMES[6:],
                                 r=RNG.random(4)),
    "seed_effects": lambda: plots.seed_effects(_effects()),
    "claims_forest": lambda: plots.claims_forest(_claims(), GROUPS, {"cifar10": "CIFAR-10", "imagenet20": "ImageNet-20"}),
    "explorer_view": lambda: plots.explorer_view(_explore(), NAMES),
    "morph_strip": lambda: plots.morph_strip(_images(1)[0], list(_maps(9, 8, 8)), "class 'bird'"),
    "morph_strips": lambda: plots.morph_strips(_images(1)[0], {"crate": list(_maps(9, 8, 8)),
                                                                "cocktail shaker": list(_maps(9, 8, 8))}),
}

BOOK_STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
              "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
              "figure.titlesize": 13}


def _shown_width(fig) -> float:
    """The figure's width in inches as saved with bbox_inches="tight" (as the book does)."""
    fig.canvas.draw()
    return fig.get_tightbbox(fig.canvas.get_renderer()).width


@pytest.mark.parametrize("name", list(FIGURES))
def test_figures_are_legible_at_column_width(name):
    # the book's style: its larger text is the harder case for the width
    with matplotlib.rc_context(BOOK_STYLE):
        fig = FIGURES[name]()
        try:
            assert isinstance(fig, matplotlib.figure.Figure)
            assert fig.get_figwidth() <= plots.MAX_WIDTH + 1e-9
            assert _shown_width(fig) <= plots.MAX_WIDTH + 0.05, "text sticks out of the figure"
            small = {(t.get_text(), t.get_fontsize()) for t in fig.findobj(matplotlib.text.Text)
                     if t.get_text().strip() and t.get_visible() and t.get_fontsize() < 9}
            assert not small, f"text below 9 pt: {sorted(small)[:5]}"
        finally:
            plt.close(fig)


def test_no_figure_hard_codes_small_text():
    src = open(plots.__file__).read()
    sizes = [float(s) for s in re.findall(r"fontsize=(\d+(?:\.\d+)?)", src)]
    assert sizes and min(sizes) >= 9


def test_long_titles_are_wrapped_inside_the_figure():
    fig = plots.learning_curves({"run": pd.DataFrame({"epoch": [1, 2], "test_accuracy": [0.1, 0.2],
                                                      "train_loss": [2.0, 1.0]})},
                                title="test accuracy and training loss per epoch of the runs " * 4)
    try:
        assert "\n" in fig._suptitle.get_text()
        assert _shown_width(fig) <= plots.MAX_WIDTH + 0.05
    finally:
        plt.close(fig)


def _overlaps(box, points) -> bool:
    """Whether a display-space bbox contains any of the display-space points."""
    return any(box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 for x, y in points)


def test_learning_curves_legend_covers_no_curve():
    fig = FIGURES["learning_curves"]()
    try:
        fig.canvas.draw()
        box = fig.legends[0].get_window_extent()
        points = [p for ax in fig.axes for line in ax.lines
                  for p in ax.transData.transform(line.get_xydata())]
        assert not _overlaps(box, points)
    finally:
        plt.close(fig)


def test_seed_effects_not_run_labels_clear_the_paper_crosses():
    q = _effects().assign(paper=[-0.67, 0.16, 0.0])   # the unrun row's paper effect at 0
    fig = plots.seed_effects(q)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        crosses = [p for line in ax.lines if line.get_marker() == "x"
                   for p in ax.transData.transform(line.get_xydata())]
        labels = [t for t in ax.texts if t.get_text().strip() == "not run"]
        assert labels and not any(_overlaps(t.get_window_extent(), crosses) for t in labels)
    finally:
        plt.close(fig)


def test_lr_sweeps_tick_labels_and_legend_overlap_nothing():
    with matplotlib.rc_context(BOOK_STYLE):
        fig = FIGURES["lr_sweeps"]()
        try:
            fig.canvas.draw()
            r = fig.canvas.get_renderer()
            for ax in fig.axes:
                boxes = [t.get_window_extent(r) for t in ax.get_xticklabels() if t.get_text()]
                assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:])), "tick labels overlap"
            legend = fig.legends[0].get_window_extent(r)
            others = [ax.get_window_extent(r) for ax in fig.axes] + [fig._supxlabel.get_window_extent(r)]
            assert not any(legend.overlaps(b) for b in others), "the legend covers a panel or the x label"
        finally:
            plt.close(fig)


def test_lr_sweeps_checks_its_inputs():
    with pytest.raises(ValueError, match="1 to 4"):
        plots.lr_sweeps({str(i): _sweep() for i in range(5)})


def test_morph_strips_checks_its_inputs():
    with pytest.raises(ValueError, match="same number of maps"):
        plots.morph_strips(_images(1)[0], {"a": list(_maps(3, 8, 8)), "b": list(_maps(2, 8, 8))})
    with pytest.raises(ValueError, match="at least one class"):
        plots.morph_strips(_images(1)[0], {})


def test_pairs_checks_its_inputs():
    with pytest.raises(ValueError, match="one map a, map b and name per image"):
        plots.pairs(_images(3), _maps(3, 8, 8), _maps(2, 8, 8), NAMES[:3])


def test_pairs_accepts_tensors():
    fig = plots.pairs(torch.from_numpy(_images(2)), torch.rand(2, 8, 8), torch.rand(2, 8, 8),
                      NAMES[:2])
    try:
        assert len(fig.axes) == 6
    finally:
        plt.close(fig)


def test_bounded_increment_draws_delta_beneath_fa_cnn():
    fig = plots.bounded_increment(_bounded())
    try:
        ax = fig.axes[0]
        delta = [ln for ln in ax.lines if ln.get_label().startswith("$\\delta$")][0]
        fa = [ln for ln in ax.lines if ln.get_label().startswith("FA-CNN")]
        assert fa and all(ln.get_zorder() > delta.get_zorder() for ln in fa)
        assert delta.get_linestyle() != "-"
    finally:
        plt.close(fig)


# -- the static explorer (facnnbook.explore_data, facnnbook.interactive) ---------------------

def _tiny(depth=3, n=40):
    from facnn import build_model
    from facnn.data import ArrayDataset
    torch.manual_seed(0)
    model = build_model("fa-pool", num_classes=10, maps_per_class=2, depth=depth, pool_every=3)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    return model, ArrayDataset("cifar10", images, torch.arange(n) % 10, NAMES)


@pytest.fixture(scope="module")
def explored():
    from facnnbook.explore_data import explorer_data
    model, test = _tiny()
    return explorer_data(model, test, n_images=4, fractions=(0, 0.5, 0.9))


def test_explorer_data_has_the_documented_shapes(explored):
    d, (n, L, C, F) = explored, (4, 3, 10, 3)
    expected = {"images": ((n, 3, 32, 32), np.uint8), "labels": ((n,), np.int64),
                "pred": ((n,), np.int64), "prob": ((n,), np.float32),
                "probabilities": ((n, C), np.float32), "layers": ((L,), np.int64),
                "class_maps": ((n, L, C, 32, 32), np.float16),
                "grad_cam": ((n, C, 32, 32), np.float16), "fractions": ((F,), np.float64),
                "orders": ((2,), None), "removed": ((n, 2, F, 3, 32, 32), np.uint8),
                "removal_pred": ((n, 2, F), np.int64), "removal_prob": ((n, 2, F), np.float32),
                "class_names": ((C,), None)}
    for key, (shape, dtype) in expected.items():
        assert d[key].shape == shape, key
        if dtype is not None:
            assert d[key].dtype == dtype, key
    assert all(isinstance(v, np.ndarray) for v in d.values())
    assert len(set(d["labels"].tolist())) == n                 # distinct classes
    assert d["layers"].tolist() == [1, 2, 3]


def test_explorer_data_removal_starts_from_the_image(explored):
    d = explored
    # fraction 0 removes nothing: the image back (up to rounding) and its clean prediction
    diff = np.abs(d["removed"][:, :, 0].astype(int) - d["images"][:, None].astype(int))
    assert diff.max() <= 1
    assert (d["removal_pred"][:, :, 0] == d["pred"][:, None]).all()
    # 90 % removed in two orders: the kept pixels differ
    assert (d["removed"][:, 0, 2] != d["removed"][:, 1, 2]).any()


def test_explorer_data_checks_layers():
    from facnnbook.explore_data import explorer_data
    model, test = _tiny()
    with pytest.raises(ValueError, match="outside 1..3"):
        explorer_data(model, test, n_images=2, layers=[5])


def _local_only(html: str, src: str) -> None:
    assert json.dumps(src) in html
    assert not re.search(r"cdn\.|//cdn", html, re.I)      # (base64 data may spell "cdn")
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", html)
    assert "https://" not in html


def test_explorer_html_is_self_contained(explored, capsys):
    from facnnbook.interactive import explorer_html
    html = explorer_html(explored, plotly_src="_static/plotly.min.js")
    _local_only(html, "_static/plotly.min.js")
    assert "go.Image" not in html
    # the script is the static file's, inlined (Jupyter does not serve book/_static); the
    # figure reaches it as JSON
    assert SCRIPT.read_text().replace("</", "<\\/") in html
    spec = re.search(r'<script type="application/json" class="facnn-data">(.*?)</script>', html, re.S)
    spec = json.loads(spec.group(1))
    assert spec["view"] == "explorer" and spec["src"] == "_static/plotly.min.js"
    assert spec["data"]["labels"] == explored["labels"].tolist() and len(spec["fig"]["data"]) == 5
    assert explorer_html(explored) == explorer_html(explored)       # deterministic
    with capsys.disabled():
        print(f"\nexplorer_html, 4 images x 3 layers: {len(html) / 1e6:.2f} MB")


def test_explorer_html_fits_at_the_cpu_profile_sizes(capsys):
    # the size depends on the shapes only (maps travel as 8 bits each, base64), so made-up
    # arrays of the cpu profile's shapes measure it: 12 images, 9 layers, 10 classes, 32x32
    from facnnbook.interactive import explorer_html
    n, L, C, F, H = 12, 9, 10, 10, 32
    d = dict(images=_images(n), labels=np.arange(n) % C, pred=np.arange(n) % C,
             prob=RNG.random(n), layers=np.arange(1, L + 1),
             class_maps=_maps(n, L, C, H, H).astype(np.float16),
             grad_cam=_maps(n, C, H, H).astype(np.float16), fractions=np.arange(F) / 10,
             orders=np.array(["lerf", "morf"]),
             removed=RNG.integers(0, 256, (n, 2, F, 3, H, H), dtype=np.uint8),
             removal_pred=RNG.integers(0, C, (n, 2, F)), removal_prob=RNG.random((n, 2, F)),
             class_names=np.array(NAMES))
    mb = len(explorer_html(d)) / 1e6
    with capsys.disabled():
        print(f"\nexplorer_html, 12 images x 9 layers x 10 classes at 32x32: {mb:.2f} MB")
    assert mb < 6


def test_morph_html(explored):
    from facnnbook.interactive import morph_html
    d = explored
    maps = d["class_maps"][:, :, 0]                                       # (n, L, H, W)
    html = morph_html(d["images"], maps, d["layers"], ["a", "b", "c", "d"],
                      correlations=np.zeros((4, 3)), grad_cam=maps)
    _local_only(html, "../_static/plotly.min.js")
    with pytest.raises(ValueError, match="one image and name per map stack"):
        morph_html(d["images"][:3], maps, d["layers"], ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"correlations must be \(n, L\)"):
        morph_html(d["images"], maps, d["layers"], list("abcd"), correlations=np.zeros(4))


def test_interactive_script_is_a_static_file_with_a_drawing_per_figure():
    """No JavaScript in Python: facnnbook.interactive carries none; the static script
    draws every view the module writes."""
    from facnnbook import interactive
    src = Path(interactive.__file__).read_text()
    assert "function" not in src and "Plotly." not in src and "<script>\n__SCRIPT__" in src
    js = SCRIPT.read_text()
    for view in re.findall(r'_page\("(\w+)"', src):
        assert re.search(rf"^    {view}: {{", js, re.M), view
    assert "https://" not in js and "</script" not in js


def test_plotly_js_is_copied_once(tmp_path):
    from facnnbook.interactive import plotly_js
    dst = plotly_js(tmp_path / "_static")
    assert dst == tmp_path / "_static" / "plotly.min.js" and dst.stat().st_size > 1_000_000
    mtime = dst.stat().st_mtime_ns
    assert plotly_js(tmp_path / "_static") == dst and dst.stat().st_mtime_ns == mtime


def test_interactive_refuses_a_remote_plotly(explored):
    from facnnbook.interactive import explorer_html
    with pytest.raises(ValueError, match="not local"):
        explorer_html(explored, plotly_src="https://cdn.plot.ly/plotly-2.35.2.min.js")


def test_claims_forest_groups_claims_and_colours_by_verdict():
    fig = plots.claims_forest(_claims(), GROUPS)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["theory", "accuracy", "attribution"]
    accuracy = fig.axes[1]
    assert [t.get_text() for t in accuracy.get_yticklabels()] == ["cifar10: pool vs Vanilla",
                                                                  "cifar10: linear head beats ResNet-50"]
    assert any(t.get_text() == "not run" for t in accuracy.texts)      # no number, said so
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"holds", "inconclusive", "fails", "paper", "threshold"} <= labels
    cut = [t.get_text() for t in fig.axes[2].get_yticklabels()][0]
    assert cut.endswith("\u2026") and len(cut) < 60
    with pytest.raises(ValueError, match="at least one claim"):
        plots.claims_forest([], GROUPS)
    plt.close("all")
