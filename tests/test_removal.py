"""Pixel-removal benchmark (SPEC 7, PAPER 5.2): facnn.removal and its Figure 4 plot."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facnn import data as D
from facnn import maps as M, removal as R


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_test(trained_smoke):
    """The smoke model's own test split (500 images, with ground-truth masks)."""
    cfg, _ = trained_smoke
    return D.make_shapes(cfg.shapes_test, seed=cfg.seed + 1)


class Constant(torch.nn.Module):
    """A stand-in classifier for input checks: no weights, 10 classes."""
    num_classes = 10

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None].expand(-1, 10).clone()


# -- bad input ----------------------------------------------------------------------------

B = 4
GOOD = dict(images=torch.randn(B, 3, 8, 8), labels=torch.arange(B), maps=torch.rand(B, 1, 4, 4),
            fractions=[0, 0.5, 1], order="lerf", fill="mean")
BAD = [  # (what changes, message the error must contain)
    (dict(fractions=[-0.1, 0.5]), "must lie in"),
    (dict(fractions=[0, 1.2]), "must lie in"),
    (dict(fractions=[0.5, 0.2]), "strictly increasing"),
    (dict(fractions=[0, 0.5, 0.5]), "strictly increasing"),
    (dict(fractions=[]), "empty"),
    (dict(fractions=[0, float("nan")]), "must lie in"),
    (dict(maps=torch.rand(B + 1, 1, 4, 4)), "maps are for 5 images"),
    (dict(maps=torch.rand(B - 1, 10, 4, 4)), "maps are for 3 images"),
    (dict(maps=torch.rand(B, 3, 4, 4)), "3 class channels but the model has 10"),
    (dict(maps=torch.rand(B, 4, 4)[None]), "maps are for 1 images"),
    (dict(maps=torch.rand(B, 1, 1, 4, 4)), "maps must have shape"),
    (dict(maps=torch.full((B, 1, 4, 4), float("nan"))), "NaN"),
    (dict(labels=torch.arange(B + 1)), "labels must be"),
    (dict(order="most"), "unknown order 'most'"),
    (dict(order="LeRF"), "unknown order"),
    (dict(fill="noise"), "unknown fill 'noise'"),
    (dict(fill="zero"), "needs `dataset`"),
    (dict(tie_break="sideways"), "unknown tie_break 'sideways'"),
    (dict(blur_sigma=0.0), "blur_sigma=0"),
]
SPEC = {f.name for f in dataclasses.fields(R.Removal)}   # what goes into the Removal


def _curve(**change):
    """removal_curve on GOOD with ``change``: fractions, order, fill, ... make its Removal."""
    kw = {**GOOD, **change}
    spec = R.Removal(**{k: kw.pop(k) for k in SPEC & set(kw)})
    return R.removal_curve(Constant(), kw.pop("images"), kw.pop("labels"), kw.pop("maps"), spec, **kw)


@pytest.mark.parametrize("change,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        _curve(**change)


def test_good_input_passes_and_per_class_maps_pick_the_label():
    """The baseline of the table above is valid, and (B, C, h, w) maps use map `label`."""
    curve = _curve()
    assert curve.accuracy.shape == (3,) and curve.correct.shape == (3, B)
    maps = torch.rand(B, 10, 4, 4)
    one = maps[torch.arange(B), GOOD["labels"]][:, None]
    a = R.remove_pixels(GOOD["images"], maps, R.Removal([0.3], "morf"), classes=GOOD["labels"])
    b = R.remove_pixels(GOOD["images"], one, R.Removal([0.3], "morf"))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="must be a facnn.removal.Removal"):
        R.removal_curve(Constant(), GOOD["images"], GOOD["labels"], GOOD["maps"], [0, 0.5, 1])


@pytest.mark.parametrize("kw,message", [
    (dict(methods=["lime"]), "unknown method"),
    (dict(target="guess"), "unknown target"),
    (dict(orders=["lerf", "backwards"]), "unknown order"),
])
def test_run_benchmark_rejects_bad_settings(kw, message, shapes_data):
    with pytest.raises(ValueError, match=message):
        R.run_benchmark(Constant(), shapes_data[1], **{"n_images": 4, "progress": False, **kw})


# -- which pixels go ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 9), w=st.integers(2, 9), levels=st.integers(1, 6),
       order=st.sampled_from(R.ORDERS), tie=st.sampled_from(R.TIE_BREAKS),
       seed=st.integers(0, 10_000),
       fractions=st.lists(st.floats(0, 1), min_size=1, max_size=6, unique=True).map(sorted))
def test_removes_exactly_the_ranked_pixels(h, w, levels, order, tie, seed, fractions):
    """At fraction p exactly floor(p*P + 1/2) pixels are gone, all channels of each; the
    removed sets are nested; under LeRF every removed pixel ranks at or below every kept one
    (MoRF: at or above). Maps with few levels make many ties."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, h, w, generator=g) + 1                 # never equal to the fill 0
    maps = torch.randint(0, levels, (2, 1, h, w), generator=g).float()
    out = R.remove_pixels(images, maps, R.Removal(fractions, order, tie_break=tie))   # (F, 2, 3, h, w)
    gone = out == 0
    assert (gone.all(2) == gone.any(2)).all(), "a pixel lost only some of its channels"
    gone = gone.all(2).flatten(2)                                     # (F, 2, P)
    want = [math.floor(p * h * w + 0.5) for p in fractions]
    assert gone.sum(2).tolist() == [[n, n] for n in want]
    assert (gone[:-1] <= gone[1:]).all(), "removed sets are not nested"
    v = maps.flatten(1)
    for f in range(len(fractions)):
        for b in range(2):
            rem, kept = v[b][gone[f, b]], v[b][~gone[f, b]]
            if len(rem) and len(kept):
                if order == "lerf":
                    assert rem.max() <= kept.min()
                else:
                    assert rem.min() >= kept.max()


def test_ties_are_deterministic_and_spread_out():
    """A flat map: 'random' ties are the same for every image and every call, and do not
    sweep the image top to bottom; 'raster' ties do exactly that."""
    maps = torch.zeros(3, 1, 16, 16)
    a = R.removal_ranks(maps, (16, 16), "lerf")
    assert torch.equal(a, R.removal_ranks(maps, (16, 16), "morf"))
    assert torch.equal(a, R.removal_ranks(maps.clone(), (16, 16), "lerf"))
    assert (a == a[0]).all()
    top_half = (a[0] < 128).view(16, 16)[:8].float().mean()
    assert 0.3 < top_half < 0.7
    r = R.removal_ranks(maps, (16, 16), "lerf", tie_break="raster")
    assert torch.equal(r[0], torch.arange(256))


@pytest.mark.parametrize("n,corner", [(4, 6), (9, 5), (16, 4)])
def test_maps_are_upsampled_bilinearly_to_the_image(n, corner):
    """A 2x2 map with one hot cell, on an 8x8 image. Bilinear (half-pixel centres) gives
    pixel (i, j) the value w(i) w(j), w = 0, 0, .125, .375, .625, .875, 1, 1: under MoRF the
    first 4, 9, 16 pixels removed are the corner squares of side 2, 3, 4 (nearest
    upsampling would tie all 16 pixels of the quadrant)."""
    maps = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    gone = (R.remove_pixels(torch.ones(1, 3, 8, 8), maps, R.Removal([n / 64], "morf"))[0, 0, 0] == 0)
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[corner:, corner:] = True
    assert torch.equal(gone, want)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 3.5])
def test_blur_matches_torchvision(sigma):
    from torchvision.transforms.functional import gaussian_blur
    x = torch.randn(2, 3, 32, 32)
    k = 2 * math.ceil(3 * sigma) + 1
    assert torch.allclose(R.gaussian_blur(x, sigma), gaussian_blur(x, [k, k], [sigma, sigma]), atol=1e-5)


@pytest.mark.parametrize("dataset", ["cifar10", "shapes", "imagenet100"])
def test_zero_fill_is_black_in_image_space(dataset):
    fill = R.fill_values(torch.zeros(1, 3, 4, 4), "zero", dataset)
    mean, std = (torch.tensor(v)[:, None, None] for v in D.STATS[dataset])
    assert torch.allclose(fill[0] * std + mean, torch.zeros(3, 1, 1), atol=1e-6)


@pytest.mark.parametrize("depth,layer", [(24, 18), (9, 7), (4, 3), (12, 9), (2, 2), (1, 1)])
def test_intermediate_layer_keeps_the_relative_depth_of_layer_18_of_24(depth, layer):
    assert R.intermediate_layer(depth) == layer


@pytest.mark.parametrize("fractions,accuracy,auc", [
    ([0, 1], [0.7, 0.7], 0.7),
    ([0, 0.5, 1], [1, 0.5, 0], 0.5),
    ([0, 0.25, 1], [1, 1, 0], 0.625),
])
def test_auc_is_the_trapezoid_area(fractions, accuracy, auc):
    assert R.trapezoid_auc(fractions, accuracy) == pytest.approx(auc)


# -- with a trained model ---------------------------------------------------------------

def _filled(x: torch.Tensor, fill: str) -> torch.Tensor:
    """Fully filled images, built independently of facnn.removal."""
    if fill == "mean":
        return torch.zeros_like(x)
    if fill == "zero":
        return D.normalise(torch.zeros_like(x, dtype=torch.uint8), "shapes")
    from torchvision.transforms.functional import gaussian_blur
    return gaussian_blur(x, [13, 13], [2.0, 2.0])         # sigma = 32/16, kernel 2*ceil(6)+1


@pytest.mark.parametrize("fill", R.FILLS)
@pytest.mark.parametrize("order", R.ORDERS)
def test_end_points_are_clean_and_fully_filled_accuracy(trained_smoke, shapes_test, order, fill):
    _, model = trained_smoke
    x, y = shapes_test.normalised(slice(0, 150)), shapes_test.labels[:150]
    maps = torch.rand(150, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    curve = R.removal_curve(model, x, y, maps, R.Removal([0, 0.3, 1], order, fill), batch_size=64,
                            dataset="shapes")
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        filled = model(_filled(x, fill)).argmax(1) == y
    assert torch.equal(curve.correct[0], clean)
    assert curve.accuracy[0] == pytest.approx(clean.double().mean().item())
    assert torch.equal(curve.correct[-1], filled)
    assert curve.accuracy[-1] == pytest.approx(filled.double().mean().item())
    assert clean.double().mean() > 0.5, "the smoke model did not learn shapes"


def test_chunking_and_the_end_point_cache_do_not_change_the_curve(trained_smoke, shapes_test):
    _, model = trained_smoke
    x, y = shapes_test.normalised(slice(0, 20)), shapes_test.labels[:20]
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(2, 20, 1, 32, 32, generator=g)
    fractions = [0, 0.2, 0.5, 0.7, 1]
    a, b = (R.removal_curve(model, x, y, maps[0], R.Removal(fractions, "morf"), batch_size=n)
            for n in (13, 1000))
    assert torch.equal(a.correct, b.correct)
    assert torch.allclose(a.scores, b.scores, atol=1e-5)
    cache = {}
    for m, order in [(maps[1], "lerf"), (maps[0], "morf")]:     # the second reads the cache
        c = R.removal_curve(model, x, y, m, R.Removal(fractions, order), batch_size=13, cache=cache)
    assert sorted(cache) == [0, 1024]
    assert torch.equal(c.correct, a.correct) and torch.allclose(c.scores, a.scores, atol=1e-5)


INTERIOR = [round(0.1 * i, 1) for i in range(1, 10)]                    # 0.1 .. 0.9


def _random_curves(model, x, y, order, fill, seeds=(0, 1)):
    from facnn.attribution import attribute
    curves = []
    for s in seeds:
        maps = attribute("random", model, x, classes=y, seed=s)
        curves.append(R.removal_curve(model, x, y, maps, R.Removal(INTERIOR, order, fill),
                                      dataset="shapes").accuracy)
    return torch.stack(curves)                                       # (seeds, F)


@pytest.mark.parametrize("order,sign", [("lerf", 1), ("morf", -1)])
def test_ground_truth_masks_beat_random_removal(trained_smoke, shapes_test, order, sign):
    """The object masks of `shapes` as the saliency: removing background first (LeRF)
    keeps accuracy above RAND, removing the object first (MoRF) drops it below.

    Fill "zero" (black): the smoke model learnt dark textured backgrounds and calls almost
    every image on a flat mid-grey canvas the same class, so with the "mean" fill both the
    ground truth and RAND fall to chance by 40 % removed and there is nothing to compare.
    """
    _, model = trained_smoke
    x, y = shapes_test.normalised(slice(0, 200)), shapes_test.labels[:200]
    masks = shapes_test.masks[:200, None].float()                    # (200, 1, 32, 32)
    truth = R.removal_curve(model, x, y, masks, R.Removal(INTERIOR, order, "zero"),
                            dataset="shapes").accuracy
    rand = _random_curves(model, x, y, order, "zero")
    gap = sign * (truth - rand.mean(0))
    assert (gap >= -0.03).all(), f"{order}: ground truth minus RAND {gap.tolist()}"
    assert gap.mean() > 0.1, f"{order}: ground truth minus RAND {gap.tolist()}"
    auc_truth = R.trapezoid_auc(INTERIOR, truth.tolist())
    auc_rand = [R.trapezoid_auc(INTERIOR, r.tolist()) for r in rand]
    nearest = max(auc_rand) if sign > 0 else min(auc_rand)         # the closest RAND seed
    assert sign * (auc_truth - nearest) > 0.05, (auc_truth, auc_rand)


# -- cross-check with Quantus ----------------------------------------------------------------

@pytest.mark.parametrize("order", R.ORDERS)
def test_agrees_with_quantus_pixel_flipping(trained_smoke, shapes_test, order):
    """Quantus 0.6 ``PixelFlipping`` (Bach et al. 2015) set to our protocol.

    Where the protocols differ, and how the test bridges it:
    - Quantus ranks *features* (every channel of every pixel) by the attribution broadcast
      to the input's shape; a map (B, 1, H, W) with distinct values puts a pixel's three
      channels next to each other in its order, and ``features_in_step = 3 * m`` then
      removes m whole pixels per step, like us.
    - Quantus only removes most-relevant-first (argsort of -a); LeRF is Quantus on -a.
    - Quantus requires H*W to be a multiple of features_in_step and flips a fixed count
      per step; we remove fractions of P = H*W. 24x24 crops (P = 576 = 9 * 64) with m = 64
      make step k equal to our fraction k/9 exactly.
    - Quantus's "black" baseline is each image's minimum, not a constant; the constant 0.0
      is our "mean" fill (the dataset mean in normalised space).
    - Quantus records the model's output for the true class (softmax=False: the raw score
      Y^c of the pooling head), not top-1 accuracy, and has no fraction 0. We compare the
      perturbed images exactly and those scores at every matching fraction; accuracy is
      then the argmax of the same forward pass.
    """
    import quantus
    from quantus.functions.perturb_func import batch_baseline_replacement_by_indices

    _, model = trained_smoke
    n, m = 6, 64
    x = shapes_test.normalised(slice(0, n))[..., 4:28, 4:28].contiguous()   # (6, 3, 24, 24)
    y = shapes_test.labels[:n]
    g = torch.Generator().manual_seed(3)
    maps = torch.stack([torch.randperm(576, generator=g) for _ in range(n)]).view(n, 1, 24, 24).float()
    seen = []

    def recording(arr, indices, **kw):
        out = batch_baseline_replacement_by_indices(arr, indices, **kw)
        seen.append(out.copy())
        return out

    metric = quantus.PixelFlipping(features_in_step=3 * m, perturb_baseline=0.0, normalise=False,
                                   abs=False, perturb_func=recording, disable_warnings=True)
    a = (maps if order == "morf" else -maps).numpy()
    got = np.array(metric(model=model.eval(), x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a,
                          softmax=False, device="cpu", channel_first=True))    # (6, 9)
    fractions = [k / 9 for k in range(1, 10)]
    ours = R.remove_pixels(x, maps, R.Removal(fractions, order))        # (9, 6, 3, 24, 24)
    assert len(seen) == 9
    for k in range(9):
        assert np.array_equal(seen[k].reshape(n, 3, 24, 24), ours[k].numpy()), f"step {k + 1}"
    curve = R.removal_curve(model, x, y, maps, R.Removal(fractions, order))
    assert np.allclose(got, curve.scores.T.numpy(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        top1 = torch.stack([model(ours[k]).argmax(1) == y for k in range(9)])
    assert torch.equal(curve.correct, top1)


# -- the benchmark ---------------------------------------------------------------------------

CHEAP = {"rise": {"n_masks": 40}, "k-occ": {"window": 8, "stride": 8}}


@pytest.fixture(scope="module")
def small_benchmark(trained_smoke, shapes_test, monkeypatch_module):
    """run_benchmark on 24 images with every method of the real registry, counting how
    often each method's maps are computed."""
    import facnn.attribution as A
    calls = []
    real = A.attribute

    def counting(method, *args, **kw):
        calls.append((method, kw.get("layer"), kw.get("seed")))
        return real(method, *args, **kw)

    monkeypatch_module.setattr(A, "attribute", counting)
    _, model = trained_smoke
    res = R.run_benchmark(model, shapes_test, methods=R.METHODS, removal=R.Removal([0, 0.5, 1]),
                          n_images=24, seed=5, rand_seeds=(0, 1), method_kwargs=CHEAP,
                          map_batch=16, progress=False)
    return res, calls


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_benchmark_table_is_tidy_and_complete(small_benchmark, trained_smoke):
    res, _ = small_benchmark
    t = res.table
    assert list(t.columns[:6]) == ["method", "layer", "order", "fraction", "accuracy", "n"]
    depth = trained_smoke[1].depth                                   # smoke: N = 4, layer 3
    curves = {(m, None if pd.isna(layer) else int(layer), o)
              for m, layer, o in t[["method", "layer", "order"]].itertuples(index=False)}
    want = {(m, layer, o) for o in R.ORDERS for m, layer in
            [("fa-cnn", depth), ("fa-cnn", 3), ("grad-cam", depth), ("grad-cam", 3),
             ("rise", None), ("k-occ", None), ("random", None)]}
    assert curves == want
    assert len(t) == len(want) * 3 and (t["n"] == 24).all()
    clean = res.meta["clean_accuracy"]
    assert np.allclose(t[t["fraction"] == 0]["accuracy"], clean)     # fraction 0 = clean, for all
    assert (t[t["method"] == "random"]["n_seeds"] == 2).all()
    assert t[t["method"] != "random"]["accuracy_std"].isna().all()
    assert len(res.auc) == len(want) and res.auc["auc"].between(0, 1).all()
    assert list(res.timing["method"]) == list(R.METHODS)


def test_benchmark_computes_each_map_set_once(small_benchmark):
    """Maps once per (method, layer, seed), reused for both orders: 2 chunks of 16 images
    (RAND: one call for all 24, so its seeded draw does not repeat per chunk)."""
    _, calls = small_benchmark
    sets = pd.Series([str(c) for c in calls]).value_counts()
    want = {str(("fa-cnn", 4, None)): 2, str(("fa-cnn", 3, None)): 2, str(("grad-cam", 4, None)): 2,
            str(("grad-cam", 3, None)): 2, str(("rise", None, None)): 2, str(("k-occ", None, None)): 2,
            str(("random", None, 0)): 1, str(("random", None, 1)): 1}
    assert sets.to_dict() == want


# -- the maps store: RISE's and K-OCC's maps kept between runs ---------------------------------

def _store_inputs(trained_smoke, shapes_test, n=6):
    _, model = trained_smoke
    model.eval()
    return model, shapes_test.normalised(torch.arange(n)), shapes_test.labels[:n]


def test_stored_maps_are_reused_not_recomputed(trained_smoke, shapes_test, tmp_path, monkeypatch):
    import dataclasses
    import facnn.attribution as A
    model, x, y = _store_inputs(trained_smoke, shapes_test)
    first = M.compute_maps("rise", model, x, y, None, batch=4, store=tmp_path, n_masks=20)
    assert len(list((tmp_path / "rise").glob("*.pt"))) == 2          # one file per chunk

    def boom(*a, **k):
        raise AssertionError("recomputed a stored map")
    monkeypatch.setitem(A.METHODS, "rise", dataclasses.replace(A.METHODS["rise"], fn=boom))
    again = M.compute_maps("rise", model, x, y, None, batch=4, store=tmp_path, n_masks=20)
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="recomputed"):   # other masks: not the stored maps
        M.compute_maps("rise", model, x, y, None, batch=4, store=tmp_path, n_masks=21)


def test_cheap_methods_are_not_stored(trained_smoke, shapes_test, tmp_path):
    model, x, y = _store_inputs(trained_smoke, shapes_test)
    for method in ("fa-cnn", "grad-cam", "random"):
        M.compute_maps(method, model, x, y, None, batch=4, store=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_damaged_stored_chunk_is_recomputed(trained_smoke, shapes_test, tmp_path):
    model, x, y = _store_inputs(trained_smoke, shapes_test)
    first = M.compute_maps("k-occ", model, x, y, None, batch=6, store=tmp_path, window=8)
    (chunk,) = (tmp_path / "k-occ").glob("*.pt")
    chunk.write_bytes(b"half a file")
    assert torch.equal(M.compute_maps("k-occ", model, x, y, None, batch=6, store=tmp_path, window=8), first)
    assert torch.equal(torch.load(chunk, weights_only=True), first)   # and rewritten


# (what changes between two chunks) -> their keys differ
KEY_CHANGES = {
    "method": lambda k: dict(k, method="k-occ"),
    "weights": lambda k: dict(k, weights="0" * 64),
    "one pixel": lambda k: dict(k, x=k["x"].clone().index_put_((torch.tensor(0),) * 4, torch.tensor(9.0))),
    "a class": lambda k: dict(k, classes=k["classes"].flip(0)),
    "the layer": lambda k: dict(k, layer=3),
    "an argument": lambda k: dict(k, kw={"n_masks": 21}),
}


@pytest.mark.parametrize("change", KEY_CHANGES)
def test_a_stored_chunk_is_keyed_by_everything_it_depends_on(change):
    base = dict(method="rise", weights="f" * 64, x=torch.randn(2, 3, 8, 8), classes=torch.tensor([0, 1]),
                layer=None, kw={"n_masks": 20})
    assert M._map_key(**base) == M._map_key(**dict(base, x=base["x"].clone()))
    assert M._map_key(**KEY_CHANGES[change](base)) != M._map_key(**base)


def test_benchmark_with_a_maps_store_gives_the_same_curves(small_benchmark, trained_smoke, shapes_test,
                                                           tmp_path):
    res, _ = small_benchmark
    _, model = trained_smoke
    kw = dict(methods=("rise", "k-occ"), removal=R.Removal([0, 0.5, 1]), n_images=24, seed=5,
              method_kwargs=CHEAP, map_batch=16, progress=False, maps_dir=tmp_path)
    for _ in range(2):   # computed and stored, then loaded
        got = R.run_benchmark(model, shapes_test, **kw).table
        want = res.table[res.table["method"].isin(["rise", "k-occ"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


def test_benchmark_plots(small_benchmark, tmp_path):
    """The book stores a benchmark in its analysis cache (facnnbook.cache); the figure
    draws from the result and from its table read back from a file."""
    res, _ = small_benchmark
    assert res.meta["method_kwargs"] == CHEAP
    res.table.to_csv(tmp_path / "curves.csv", index=False)
    from facnn.plots import removal_curves
    fig = removal_curves(res)
    assert len(fig.axes) == 4                                        # 2 orders x 2 layers
    labels = {t.get_text() for t in fig.axes[1].get_legend().get_texts()}
    assert labels == {"FA-CNN", "Grad-CAM", "RISE", "K-OCC", "RAND"}
    assert "\nlayer 4" in fig.axes[0].get_title() and "\nlayer 3" in fig.axes[1].get_title()
    csv = pd.read_csv(tmp_path / "curves.csv")
    assert len(removal_curves(csv).axes) == 4
