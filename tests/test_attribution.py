"""facnn.attribution, checked against independent implementations: pytorch-grad-cam's
GradCAM, Captum's LayerGradCam and Occlusion, a plain RISE loop, and a model whose answer
depends on one quadrant only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F_
from torch import nn

from facnn import attribution as A
from facnn import build_model
from facnn.models import Classifier, randomise_batchnorm

SMALL = dict(maps_per_class=2, depth=4, pool_every=2)


_seeded = randomise_batchnorm


MODELS = {
    "fa-pool": lambda: _seeded(build_model("fa-pool", 3, **SMALL)),
    "fa-linear": lambda: _seeded(build_model("fa-linear", 3, **SMALL)),
    "vanilla": lambda: _seeded(build_model("vanilla", 3, **SMALL)),
    "cifar-resnet18": lambda: _seeded(build_model("resnet18", 3, width=8)),
    "tv-resnet18": lambda: _seeded(build_model("resnet18", 5, form="torchvision")),
}
SIZE = {"tv-resnet18": 64}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: make() for name, make in MODELS.items()}


def _images(name: str, b: int = 3, seed: int = 1) -> torch.Tensor:
    s = SIZE.get(name, 16)
    return torch.randn(b, 3, s, s, generator=torch.Generator().manual_seed(seed))


def _module(model: nn.Module, layer) -> nn.Module:
    return model.layers[layer - 1] if isinstance(layer, int) else model.get_submodule(layer)


# -- Grad-CAM against pytorch-grad-cam and Captum -------------------------------------------

GRADCAM_CASES = [("fa-pool", 4), ("fa-pool", 2), ("vanilla", 3), ("fa-linear", 4),
                 ("cifar-resnet18", "layer4"), ("cifar-resnet18", "layer2"),
                 ("tv-resnet18", "net.layer4"), ("tv-resnet18", "net.layer3")]


@pytest.mark.parametrize("name,layer", GRADCAM_CASES)
def test_grad_cam_equals_pytorch_grad_cam(models, name, layer):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model, x = models[name], _images(name)
    ours = A.grad_cam(model, x, layer=layer, relu=False)          # raw, (B, C, h, w)
    with GradCAM(model, [_module(model, layer)]) as cam:
        for c in range(ours.shape[1]):
            theirs = cam(x, [ClassifierOutputTarget(c)] * len(x))    # (B, H, W) in [0, 1]
            # their pipeline on our raw map: ReLU, min-max, resize; min-max again (aggregate)
            mine = scale_cam_image(scale_cam_image(np.maximum(ours[:, c].numpy(), 0),
                                                   tuple(x.shape[-2:])[::-1]))
            np.testing.assert_allclose(mine, theirs, atol=2e-5)


CAPTUM_CASES = [("fa-pool", 4, "score"), ("fa-pool", 3, "probability"), ("fa-pool", 1, "score"),
                ("vanilla", 2, "probability"), ("fa-linear", 4, "score"),
                ("cifar-resnet18", "layer3", "score"), ("tv-resnet18", "net.layer4", "probability")]


@pytest.mark.parametrize("name,layer,target", CAPTUM_CASES)
def test_grad_cam_equals_captum_layer_grad_cam(models, name, layer, target):
    from captum.attr import LayerGradCam
    model, x = models[name], _images(name)
    ours = A.grad_cam(model, x, layer=layer, target=target, relu=False)
    forward = model if target == "score" else model.probabilities
    lgc = LayerGradCam(forward, _module(model, layer))
    for c in range(ours.shape[1]):
        theirs = lgc.attribute(x, target=c, relu_attributions=False)[:, 0]
        scale = theirs.abs().max().item()
        torch.testing.assert_close(ours[:, c], theirs.detach(), atol=1e-5 * scale + 1e-8, rtol=1e-4)
    # the ReLU variant is the raw map clipped at 0
    torch.testing.assert_close(A.grad_cam(model, x, layer=layer, target=target), ours.clamp_min(0))


def test_grad_cam_batched_classes_equal_one_by_one(models):
    """The batched backward (is_grads_batched) gives each class's own gradient."""
    model, x = models["fa-pool"], _images("fa-pool", b=5)
    together = A.grad_cam(model, x, layer=2, class_chunk=3, batch_size=2, relu=False)
    alone = torch.cat([A.grad_cam(model, x, layer=2, classes=[c], relu=False) for c in range(3)], 1)
    torch.testing.assert_close(together, alone)
    per_image = A.grad_cam(model, x, layer=2, classes=torch.tensor([2, 0, 1, 1, 0]), relu=False)
    torch.testing.assert_close(per_image[:, 0], together[torch.arange(5), [2, 0, 1, 1, 0]])


def test_grad_cam_several_layers_share_one_pass(models):
    model, x = models["vanilla"], _images("vanilla")
    both = A.grad_cam_layers(model, x, [1, 3])
    torch.testing.assert_close(both[0], A.grad_cam(model, x, layer=1))
    torch.testing.assert_close(both[1], A.grad_cam(model, x, layer=3))


def test_upsample_equals_cv2_bilinear():
    import cv2
    maps = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    ours = A.upsample(maps, (16, 20))
    theirs = np.stack([[cv2.resize(m.numpy(), (20, 16)) for m in row] for row in maps])
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_minmax_per_map():
    maps = torch.tensor([[[[1., 3.], [2., 5.]], [[7., 7.], [7., 7.]]]])
    out = A.minmax(maps)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0., .5], [.25, 1.]]))
    assert torch.equal(out[0, 1], torch.zeros(2, 2))           # constant map -> 0, not NaN


# -- class maps --------------------------------------------------------------------------

def test_class_maps_pixel_mean_is_the_score(models):
    """Y^c is the pixel mean of L_c at layer N: the maps and the head agree."""
    model, x = models["fa-pool"], _images("fa-pool")
    maps = A.class_maps(model, x)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), model(x).detach())


def _count_forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.layers[0].register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("fn", [A.class_maps, A.grad_cam])
def test_one_forward_for_all_classes(fn):
    model = build_model("fa-pool", 7, **SMALL).eval()
    calls = _count_forwards(model)
    out = fn(model, _images("fa-pool"), layer=3)
    assert out.shape[1] == 7 and calls[0] == 1


def test_class_maps_at_each_layer_resolution(models):
    model, x = models["fa-pool"], _images("fa-pool")
    shapes = [tuple(A.class_maps(model, x, layer=l).shape) for l in range(1, 5)]
    assert shapes == [(3, 3, 16, 16), (3, 3, 16, 16), (3, 3, 8, 8), (3, 3, 8, 8)]


# -- perturbation methods ---------------------------------------------------------------

OCCLUSION_CASES = [(4, 2, 0.0), (5, 3, 0.5), (3, 3, -1.0), ((4, 2), (2, 1), 0.0), (16, 1, 0.0)]


@pytest.mark.parametrize("window,stride,fill", OCCLUSION_CASES)
def test_k_occlusion_equals_captum_occlusion(models, window, stride, fill):
    from captum.attr import Occlusion
    model, x = models["fa-pool"], _images("fa-pool", b=2)
    ours = A.k_occlusion(model, x, window=window, stride=stride, fill=fill, batch_size=50)
    win, st = A._pair(window, "w"), A._pair(stride, "s")
    occ = Occlusion(model)
    for c in range(ours.shape[1]):
        theirs = occ.attribute(x, sliding_window_shapes=(3, *win), strides=(3, *st),
                               baselines=fill, target=c, perturbations_per_eval=64)
        torch.testing.assert_close(ours[:, c], theirs[:, 0], atol=1e-5, rtol=1e-4)


def test_k_occlusion_per_image_classes_and_probability(models):
    model, x = models["vanilla"], _images("vanilla", b=2)
    full = A.k_occlusion(model, x, window=4, stride=4, target="probability")
    picked = A.k_occlusion(model, x, classes=torch.tensor([1, 2]), window=4, stride=4,
                           target="probability")
    torch.testing.assert_close(picked[:, 0], full[[0, 1], [1, 2]])


def _rise_reference(model, x, c, n, cell, p, seed):
    """RISE as a plain loop over masks and images."""
    masks = next(A.rise_masks(n, tuple(x.shape[-2:]), cell, p, seed, chunk=n))
    sal = torch.zeros(len(x), *x.shape[-2:])
    with torch.no_grad():
        for m in masks:
            for b in range(len(x)):
                sal[b] += model.probabilities((x[b] * m)[None])[0, c] * m
    return sal / (n * p)


@pytest.mark.parametrize("cell,p,batch_size", [(3, 0.5, 7), (4, 0.3, 2), (5, 1.0, 100)])
def test_rise_equals_reference_loop(models, cell, p, batch_size):
    model, x = models["fa-pool"], _images("fa-pool", b=2)
    ours = A.rise(model, x, n_masks=24, cell=cell, p=p, batch_size=batch_size, seed=3)
    for c in range(ours.shape[1]):
        torch.testing.assert_close(ours[:, c], _rise_reference(model, x, c, 24, cell, p, 3),
                                   atol=1e-6, rtol=1e-5)


def test_rise_masks_are_seeded_smooth_and_independent_of_chunking():
    whole = next(A.rise_masks(300, (12, 20), cell=4, p=0.3, seed=5, chunk=300))
    pieces = torch.cat(list(A.rise_masks(300, (12, 20), cell=4, p=0.3, seed=5, chunk=7)))
    assert torch.equal(whole, pieces) and whole.shape == (300, 12, 20)
    assert not torch.equal(whole, next(A.rise_masks(300, (12, 20), 4, 0.3, seed=6, chunk=300)))
    assert whole.min() >= 0 and whole.max() <= 1
    assert abs(whole.mean().item() - 0.3) < 0.03          # E[M] = p
    assert ((whole > 0.01) & (whole < 0.99)).any()         # bilinear, not binary


class QuadrantModel(Classifier):
    """Class 0's logit grows with the top-left quadrant's red channel; class 1 is fixed.
    Nothing outside the quadrant can matter."""

    head = "linear"
    num_classes = 2

    def forward(self, x):
        h, w = x.shape[-2:]
        q = x[:, 0, : h // 2, : w // 2].mean(dim=(1, 2))
        return torch.stack([10 * (q - 0.5), torch.zeros_like(q)], dim=1)


@pytest.mark.parametrize("method,kw", [("rise", dict(n_masks=1000, cell=8, batch_size=500)),
                                       ("k-occ", dict(window=4, stride=2))])
def test_perturbation_mass_lies_in_the_quadrant(method, kw):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.5
    sal = A.attribute(method, QuadrantModel(), x, classes=[0], **kw)[:, 0]   # (B, H, W)
    # the quadrant's area in top pixels; a map blind to position would put 1/4 there
    top = sal.flatten(1).topk(16 * 16).indices
    inside = ((top // 32 < 16) & (top % 32 < 16)).float().mean(dim=1)
    assert (inside > 0.8).all(), inside


# -- registry, shapes, classes -----------------------------------------------------------

FAST = {"fa-cnn": {}, "grad-cam": {}, "rise": dict(n_masks=8, cell=4), "k-occ": dict(window=8),
        "random": {}}
CLASS_SPECS = [(None, 3), ([2, 0], 2), (1, 1), (torch.tensor([0, 2, 1]), 1)]


@pytest.mark.parametrize("method", list(A.METHODS))
@pytest.mark.parametrize("classes,n", CLASS_SPECS)
def test_every_method_shape_dtype_and_selection(models, method, classes, n):
    model, x = models["fa-pool"], _images("fa-pool")
    maps = A.attribute(method, model, x, classes=classes, layer=2, **FAST[method])
    assert maps.shape == (3, n, 16, 16) and maps.dtype == torch.float32   # layer 2 is 16x16
    assert torch.isfinite(maps).all()
    if classes is not None and method != "random":
        full = A.attribute(method, model, x, layer=2, **FAST[method])
        sel = A.class_selection(classes, 3, 3)
        torch.testing.assert_close(maps, full.gather(1, sel[:, :, None, None].expand_as(maps)))


def test_registry_and_layer_dispatch(models):
    model, x = models["fa-pool"], _images("fa-pool")
    assert set(A.METHODS) == {"fa-cnn", "grad-cam", "rise", "k-occ", "random"}
    assert A.LAYERED == {"fa-cnn", "grad-cam"}
    torch.testing.assert_close(A.attribute("fa-cnn", model, x, layer=3), A.class_maps(model, x, 3))
    # perturbation methods ignore the layer
    torch.testing.assert_close(A.attribute("k-occ", model, x, layer=3, window=8),
                               A.k_occlusion(model, x, window=8))


def test_random_maps_are_seeded(models):
    model, x = models["fa-pool"], _images("fa-pool")
    a, b = A.random_maps(model, x, seed=1), A.random_maps(model, x, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, A.random_maps(model, x, seed=2))


def test_model_mode_is_restored(models):
    model = build_model("fa-pool", 3, **SMALL).train()
    A.grad_cam(model, _images("fa-pool"))
    assert model.training


# -- bad input -------------------------------------------------------------------------

BAD = [
    (A.class_maps, dict(layer=0), "outside 1..4"),
    (A.class_maps, dict(layer=5), "outside 1..4"),
    (A.grad_cam, dict(layer=9), "outside 1..4"),
    (A.grad_cam, dict(classes=[3]), "class 3 is outside 0..2"),
    (A.class_maps, dict(classes=[-1]), "class -1 is outside 0..2"),
    (A.grad_cam, dict(classes=torch.tensor([0, 1])), r"expected shape \(3,\)"),
    (A.grad_cam, dict(target="logit"), "unknown target"),
    (A.grad_cam, dict(layer="head.nothing"), "has no module"),
    (A.rise, dict(n_masks=0), "n_masks=0 must be >= 1"),
    (A.rise, dict(p=0.0), "must be in"),
    (A.k_occlusion, dict(window=17), "larger than the image"),
    (A.k_occlusion, dict(window=4, stride=5), "never occluded"),
    (A.k_occlusion, dict(classes=[5]), "class 5 is outside"),
]


@pytest.mark.parametrize("fn,kw,match", BAD)
def test_bad_input_raises_a_clear_error(models, fn, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(models["fa-pool"], _images("fa-pool"), **kw)


def test_class_maps_needs_forward_features(models):
    with pytest.raises(ValueError, match="needs a model with forward_features"):
        A.class_maps(models["cifar-resnet18"], _images("cifar-resnet18"))
    with pytest.raises(ValueError, match="unknown attribution method"):
        A.attribute("lime", models["fa-pool"], _images("fa-pool"))
