"""Theorems 1 and 2 (SPEC 3 and 4) on random, trained and adversarial weights and inputs.
Grad-CAM itself is checked against pytorch-grad-cam and Captum in test_attribution.py, so
Theorem 1 here compares two independently verified computations."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from facnn import build_model
from facnn import layers as L
from facnn import theory as T


def _randomise(model: nn.Module, seed: int = 0, weight_scale: float = 1.0) -> nn.Module:
    """Random conv weights (scaled) and random BatchNorm statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.mul_(weight_scale)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g) * 2)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def _images(b, size, seed=0, scale=1.0):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * scale


def test_pearson_known_values():
    a = torch.arange(12.).reshape(1, 3, 4)
    r = T.pearson(torch.stack([a, a, a])[:, 0], torch.stack([2 * a + 1, -a, torch.ones_like(a)])[:, 0])
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0) and math.isnan(r[2])


# -- Theorem 1 ------------------------------------------------------------------------------

THEOREM1_MODELS = [
    dict(num_classes=3, maps_per_class=2, depth=4, pool_every=2),
    dict(num_classes=5, maps_per_class=3, depth=6, pool_every=3),
    dict(num_classes=2, maps_per_class=4, depth=3, pool_every=3, block="double"),
    dict(num_classes=4, maps_per_class=1, depth=2, pool_every=2, stem="imagenet"),
]


@pytest.mark.parametrize("kw", THEOREM1_MODELS)
def test_theorem1_exact_at_last_layer_random_init(kw):
    torch.manual_seed(0)
    model = _randomise(build_model("fa-pool", **kw))
    r = T.theorem1(model, _images(3, 32), target="score")
    assert r["layer"] == kw["depth"] and r["corr"].shape == (3, kw["num_classes"])
    assert r["n_undefined"] < r["corr"].numel() / 2    # a dead (constant) map has no correlation
    assert r["min_corr"] >= 0.99999 and r["max_diff"] <= 1e-5


def test_theorem1_exact_on_trained_model(trained_smoke, shapes_data):
    cfg, model = trained_smoke
    x = shapes_data[1].normalised(slice(0, 32))
    r = T.theorem1(model, x, target="score")
    assert r["min_corr"] >= 0.99999 and r["max_diff"] <= 1e-5
    assert r["n_undefined"] < r["corr"].numel()       # most maps are not constant
    p = T.theorem1(model, x, target="probability")
    assert p["max_diff"] > 0.05                       # the L1-normalised target mixes classes


@pytest.mark.parametrize("name,layer,target", [
    ("fa-pool", None, "probability"),   # the output's gradient has cross-class terms
    ("fa-pool", 1, "score"),            # not the last layer
    ("fa-linear", None, "score"),       # a_k^c = w_ck / Z differ within a class
    ("vanilla", None, "score"),
])
def test_theorem1_is_not_exact_elsewhere(name, layer, target):
    """The check can fail: outside the theorem's conditions the maps differ."""
    torch.manual_seed(1)
    model = _randomise(build_model(name, 3, maps_per_class=3, depth=4, pool_every=2))
    r = T.theorem1(model, _images(3, 16), layer=layer, target=target)
    assert r["min_corr"] < 0.999 and r["max_diff"] > 0.05


def test_layer_correlations_rise_to_one_at_the_last_layer():
    torch.manual_seed(2)
    model = _randomise(build_model("fa-pool", 4, maps_per_class=3, depth=6, pool_every=3))
    x, y = _images(4, 16), torch.tensor([0, 1, 2, 3])
    rows = T.layer_correlations(model, x, classes=y)
    assert [r["layer"] for r in rows] == list(range(1, 7))
    assert rows[-1]["min_corr"] >= 0.99999
    assert rows[0]["mean_corr"] < 0.99 and all(r["corr"].shape == (4, 1) for r in rows)
    # each row equals theorem1 at that layer
    r3 = T.theorem1(model, x, layer=3, classes=y)
    torch.testing.assert_close(rows[2]["corr"], r3["corr"], equal_nan=True)


# -- Theorem 2 ------------------------------------------------------------------------------

def test_rescaled_features_definition():
    torch.manual_seed(3)
    model = _randomise(build_model("fa-pool", 2, maps_per_class=2, depth=6, pool_every=2))
    x = _images(2, 16)
    s = T.rescaled_features(model, x, target_layer=5)
    feats = model.forward_features(x)
    assert len(s) == 6 and not s[0].any()
    assert all(t.shape == (2, 4, 4, 4) for t in s)                # layer 5 is at 4x4
    torch.testing.assert_close(s[5], (5 / 6) * feats[4].double())
    # sides divide here, so the step-by-step pool is one max-pool with kernel = ratio
    torch.testing.assert_close(s[1], (1 / 6) * L.max_pool_to(feats[0], (4, 4)).double())


@pytest.mark.parametrize("size", [5, 6, 7, 9])
def test_theorem2_holds_when_pools_floor_odd_sides(size):
    """Pool(X_L, T) follows the network's pools: 6 -> 3 -> 1 keeps rows 0-1 of the 3."""
    model = _randomise(build_model("fa-pool", 1, maps_per_class=1, depth=9, pool_every=3),
                       weight_scale=10.0)
    for t in (3, 4, 7, 9):
        _check_theorem2(model, _images(2, size), t)


def _check_theorem2(model, x, target_layer=None):
    r = T.bounded_increment(model, x, target_layer)
    assert r["holds"], [row for row in r["rows"] if not row["holds"]]
    assert r["delta"] == pytest.approx(1 / model.depth)
    assert len(r["rows"]) == r["target_layer"] and r["worst_margin"] >= -1e-6
    return r


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_every=st.integers(1, 3), blocks=st.integers(1, 3), r=st.integers(1, 3),
       c=st.integers(1, 4), extra=st.integers(0, 6), block=st.sampled_from(["single", "double"]),
       head=st.sampled_from(["fa-pool", "fa-linear"]), log_w=st.floats(-2, 2),
       log_x=st.floats(-3, 6), seed=st.integers(0, 10_000), data=st.data())
def test_theorem2_holds_for_random_shapes_and_weights(pool_every, blocks, r, c, extra, block,
                                                      head, log_w, log_x, seed, data):
    torch.manual_seed(seed)
    depth = pool_every * blocks
    model = _randomise(build_model(head, c, maps_per_class=r, depth=depth, pool_every=pool_every,
                                   block=block), seed, weight_scale=10 ** log_w)
    size = model.min_size + extra       # odd sides included: pools floor them
    target = data.draw(st.integers(1, depth))
    _check_theorem2(model, _images(2, size, seed, scale=10 ** log_x), target)


EXTREME = {
    "zeros": lambda: torch.zeros(2, 3, 16, 16),
    "huge": lambda: torch.full((2, 3, 16, 16), 1e6),
    "huge negative": lambda: torch.full((2, 3, 16, 16), -1e6),
    "checkerboard 1e8": lambda: (torch.arange(16)[:, None] + torch.arange(16)).remainder(2)
    .float().mul(2e8).sub(1e8).expand(2, 3, 16, 16).contiguous(),
    "tiny": lambda: _images(2, 16, scale=1e-30),
    "wide": lambda: _images(2, 16, scale=1e4),
}


@pytest.mark.parametrize("inputs", list(EXTREME))
@pytest.mark.parametrize("weight_scale", [1.0, 1e3])
def test_theorem2_holds_for_extreme_inputs(inputs, weight_scale):
    torch.manual_seed(4)
    model = _randomise(build_model("fa-pool", 3, maps_per_class=2, depth=4, pool_every=2),
                       weight_scale=weight_scale)
    r = _check_theorem2(model, EXTREME[inputs]())
    if inputs == "huge" and weight_scale > 1:
        # tanh saturates: the increments reach delta, so the check is tight, not loose
        assert max(row["max_increment"] for row in r["rows"]) >= r["delta"] - 1e-6


def test_theorem2_holds_for_trained_weights(trained_smoke, shapes_data):
    cfg, model = trained_smoke
    x = shapes_data[1].normalised(slice(0, 64))
    for t in range(1, model.depth + 1):
        _check_theorem2(model, x, t)


@pytest.mark.parametrize("kw", [dict(depth=4, pool_every=2), dict(depth=6, pool_every=3)])
def test_vanilla_breaks_the_bound(kw):
    """Same backbone, residual skips: the same report shows the bound broken."""
    torch.manual_seed(5)
    model = build_model("vanilla", 3, maps_per_class=2, **kw).eval()
    r = T.bounded_increment(model, _images(2, 16))
    assert not r["holds"] and r["worst_margin"] < -0.01
    assert any(row["max_S"] > row["bound_S"] for row in r["rows"])


@pytest.mark.parametrize("fn,kw,match", [
    (T.bounded_increment, dict(target_layer=0), "outside 1..4"),
    (T.rescaled_features, dict(target_layer=5), "outside 1..4"),
    (T.theorem1, dict(layer=7), "outside 1..4"),
    (T.bounded_increment, dict(target_layer="layers.1"), "layer number"),
])
def test_theory_bad_layer(fn, kw, match):
    model = build_model("fa-pool", 3, maps_per_class=2, depth=4, pool_every=2).eval()
    with pytest.raises(ValueError, match=match):
        fn(model, _images(1, 16), **kw)


def test_theory_needs_forward_features():
    model = build_model("resnet18", 3, width=8).eval()
    with pytest.raises(ValueError, match="forward_features"):
        T.theorem1(model, _images(1, 16))
