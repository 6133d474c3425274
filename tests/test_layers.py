"""The layer and head equations (SPEC 1-2), checked element-wise against hand computation."""
import math

import pytest
import torch

from facnn import build_model
from facnn import layers as L


@pytest.mark.parametrize("layer", [1, 2, 5, 24])
@pytest.mark.parametrize("skip", ["dampened", "residual"])
def test_skip_layer_matches_hand_computation(layer, skip):
    torch.manual_seed(layer)
    c_in = 3 if layer == 1 else 6
    mod = L.SkipLayer(c_in, 6, layer, skip).eval()
    with torch.no_grad():
        for p in mod.parameters():
            p.normal_()
        mod.f[1].running_mean.normal_()
        mod.f[1].running_var.uniform_(0.5, 2)
        x = torch.randn(2, c_in, 5, 5).abs() if layer > 1 else torch.randn(2, c_in, 5, 5)
        out, f = mod(x), mod.f(x)
    b = 1.0 / layer
    for idx in [(0, 0, 0, 0), (1, 5, 4, 4), (0, 3, 2, 1), (1, 2, 0, 3)]:
        fv = float(f[idx])
        if skip == "dampened":
            xv = float(x[idx]) if c_in == 6 else 0.0
            want = max(0.0, (1 - b) * xv + b * math.tanh(fv))
        else:
            xv = float(x[idx]) if c_in == 6 else 0.0
            want = max(0.0, xv + fv)
        assert float(out[idx]) == pytest.approx(want, abs=1e-6)


def test_first_dampened_layer_is_relu_tanh_and_in_unit_interval():
    mod = L.SkipLayer(3, 8, 1).eval()
    x = torch.randn(4, 3, 6, 6) * 100
    with torch.no_grad():
        out = mod(x)
        assert torch.equal(out, torch.relu(torch.tanh(mod.f(x))))
    assert out.min() >= 0 and out.max() <= 1


def test_dampened_skip_needs_previous_map_after_layer_one():
    with pytest.raises(ValueError, match="only layer 1"):
        L.dampened_skip(None, torch.zeros(1, 2, 2, 2), 3)


@pytest.mark.parametrize("C,R", [(10, 1), (10, 3), (4, 5)])
def test_head_is_mean_of_each_class_channels(C, R):
    x = torch.rand(3, C * R, 4, 5)
    y = L.class_pool(x, C)
    for c in range(C):
        want = x[:, c * R:(c + 1) * R].mean(dim=(1, 2, 3))
        torch.testing.assert_close(y[:, c], want)
    maps = L.class_average(x, C)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), y)


def test_l1_normalisation_and_loss():
    y = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    p = L.l1_normalise(y, eps=0.0 + 1e-6)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    torch.testing.assert_close(p[0], torch.tensor([0.25, 0.75, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(p[1], torch.full((3,), 1 / 3))
    t = torch.tensor([1, 2])
    loss = L.l1_nll_loss(y, t, eps=1e-6)
    want = (-math.log((3 + 1e-6) / (4 + 3e-6)) + math.log(3)) / 2
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_pool_loss_finite_when_all_prelogits_zero():
    model = build_model("fa-pool", 10, maps_per_class=2, depth=2, pool_every=2)
    scores = torch.zeros(5, 10, requires_grad=True)
    loss = model.loss(scores, torch.arange(5))
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(math.log(10), rel=1e-5)
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("depth,pool_every,R,C,size", [
    (4, 2, 2, 10, 16), (6, 3, 1, 5, 20), (8, 4, 3, 4, 32), (6, 6, 2, 3, 9), (9, 3, 1, 10, 12),
])
def test_bounded_increment_on_random_fa_cnn(depth, pool_every, R, C, size):
    """Theorem 2 guard: S_L = (L/N) Pool(X_L, T) moves by at most 1/N per layer and stays in
    [0, L/N], for any weights. Checked at every target layer T."""
    torch.manual_seed(depth * 100 + size)
    model = build_model("fa-pool", C, maps_per_class=R, depth=depth, pool_every=pool_every)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 2)
        feats = model.eval().forward_features(torch.randn(3, 3, size, size) * 5)
    n, delta = depth, 1.0 / depth
    for t in range(1, n + 1):
        size_t = feats[t - 1].shape[-2:]
        prev = torch.zeros_like(feats[t - 1])
        for ell in range(1, t + 1):
            s = ell / n * L.max_pool_to(feats[ell - 1], size_t)
            assert (s - prev).abs().max() <= delta + 1e-6
            assert s.min() >= 0 and s.max() <= ell * delta + 1e-6
            prev = s


def test_residual_skip_breaks_the_bound():
    torch.manual_seed(0)
    model = build_model("vanilla", 4, maps_per_class=2, depth=6, pool_every=3)
    with torch.no_grad():
        feats = model.eval().forward_features(torch.randn(2, 3, 16, 16) * 5)
        s_prev = 0
        worst = 0.0
        for ell, x in enumerate(feats[:3], 1):
            s = ell / 6 * x
            worst = max(worst, float((s - s_prev).abs().max()))
            s_prev = s
    assert worst > 1 / 6
