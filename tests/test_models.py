"""Model API, presets and the errors bad input gets."""
import pytest
import torch
import torch.nn.functional as F

from facnn import build_model, preset
from facnn.config import apply_overrides, parse_assignments
from facnn.models import model_from_config


@pytest.mark.parametrize("name,head", [("fa-pool", "pool"), ("fa-linear", "linear"), ("vanilla", "linear")])
def test_fa_api(name, head):
    m = build_model(name, 5, maps_per_class=3, depth=6, pool_every=3).eval()
    assert (m.depth, m.maps_per_class, m.num_classes, m.head) == (6, 3, 5, head)
    x = torch.randn(2, 3, 16, 16)
    feats = m.forward_features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 15, 16, 16)] * 3 + [(2, 15, 8, 8)] * 3
    assert all(f.min() >= 0 for f in feats)  # taken after the ReLU
    scores = m(x)
    assert scores.shape == (2, 5)
    p = m.probabilities(x)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    if head == "pool":
        assert scores.min() >= 0
    # the pool acts on X_3 before it enters layer 4
    with torch.no_grad():
        torch.testing.assert_close(m.layers[3](F.max_pool2d(feats[2], 2)), feats[3])


@pytest.mark.parametrize("name,form,size", [("resnet18", "cifar", 32), ("resnet50", "cifar", 32),
                                             ("resnet18", "torchvision", 64)])
def test_resnets(name, form, size):
    m = build_model(name, 7, form=form, width=8) if form == "cifar" else build_model(name, 7, form=form)
    out = m.eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    torch.testing.assert_close(m.probabilities(torch.randn(1, 3, size, size)).sum(), torch.tensor(1.0))


# (name, width): torchvision's own net at 64; narrower stages at the reduced profiles' widths
@pytest.mark.parametrize("name,width", [("resnet18", 64), ("resnet18", 16), ("resnet18", 8),
                                        ("resnet50", 64), ("resnet50", 16)])
def test_torchvision_resnet_honours_width(name, width):
    import torchvision
    m = build_model(name, 7, form="torchvision", width=width).eval()
    ref = getattr(torchvision.models, name)(weights=None, num_classes=7)
    ours, theirs = m.net.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)          # same modules, same names (net.layer4 ...)
    scale = width / 64
    for k, v in theirs.items():                # every channel count scaled by width / 64
        want = tuple(d if (k.startswith("fc.") and i == 0) or (k == "conv1.weight" and i == 1)
                     or v.dim() == 0 or (v.dim() == 4 and i >= 2) else int(d * scale)
                     for i, d in enumerate(v.shape))
        assert tuple(ours[k].shape) == want, k
    assert m(torch.randn(2, 3, 84, 84)).shape == (2, 7)
    if width == 64:                            # torchvision's own model, untouched
        assert type(m.net) is type(ref)


def test_config_width_reaches_the_imagenet_resnet():
    """The cpu preset's resnet_width=16 once built a width-64 net: the field was dropped."""
    cfg = preset("cpu", "imagenet20", "resnet18")
    m = model_from_config(cfg)
    assert (cfg.resnet_width, m.net.conv1.out_channels, m.net.fc.in_features) == (16, 16, 128)
    assert sum(p.numel() for p in m.parameters()) < 0.8e6


def test_build_model_refuses_a_config():
    with pytest.raises(TypeError, match="model_from_config"):
        build_model(preset("cpu", "cifar10", "fa-pool"), 10)


def test_paper_presets_match_spec():
    c10 = preset("paper", "cifar10", "fa-pool")
    assert (c10.depth, c10.pool_every, c10.channels, c10.maps_per_class, c10.epochs) == (24, 8, 200, 20, 300)
    c100 = preset("paper", "cifar100", "fa-pool")
    assert (c100.channels, c100.maps_per_class) == (600, 6)
    inet = preset("paper", "imagenet100", "fa-pool")
    assert (inet.channels, inet.epochs, inet.stem) == (600, 100, "imagenet")
    assert (c10.momentum, c10.weight_decay, c10.batch_size) == (0.0, 0.0, 100)
    std = preset("paper", "cifar10", "resnet18", "standard")
    assert (std.momentum, std.weight_decay, std.milestones, std.gamma) == (0.9, 5e-4, (100, 150), 0.1)
    std_in = preset("paper", "imagenet100", "resnet50", "standard")
    assert (std_in.weight_decay, std_in.schedule, std_in.step_size) == (1e-4, "step", 30)
    m = model_from_config(c10)
    assert sum(p.numel() for p in m.parameters()) > 8e6 and len(m.layers) == 24


def test_reduced_epochs_keep_recipe_fractions():
    cfg = preset("cpu", "cifar10", "resnet18", "standard", epochs=30)
    assert cfg.milestones == (10, 15)


@pytest.mark.parametrize("profile,dataset,milestones", [
    ("paper", "cifar10", (100, 150)), ("smoke", "shapes", (2, 3)),
    ("cpu", "cifar10", (2, 3)),     # 5 epochs: round() alone gives (2, 2), one drop of 100x
    ("cpu", "cifar100", (1, 1)),    # 2 epochs leave no room for two
])
def test_standard_recipe_milestones_are_distinct_where_possible(profile, dataset, milestones):
    cfg = preset(profile, dataset, "resnet18", "standard")
    assert cfg.milestones == milestones and cfg.lr == 0.1


def test_hash_covers_every_field_but_where_and_how_a_run_executes():
    from facnn.config import Config
    import hashlib
    import json as js
    cfg = preset("smoke", "shapes", "fa-pool")
    d = {k: v for k, v in cfg.to_dict().items() if k not in
         {"device", "data_root", "out_dir", "download", "progress", "num_workers", "save_every_s",
          "compile"}}
    assert cfg.hash() == hashlib.sha256(js.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
    for field, value in (("precision", "bf16"), ("loader", "tensor"), ("holdout", 100)):
        assert cfg.hash() != apply_overrides(cfg, {field: value}).hash(), field
    assert cfg.hash() == apply_overrides(cfg, {"device": "cuda", "data_root": "/elsewhere"}).hash()
    assert preset("cpu", "cifar10", "fa-pool").precision == "bf16"
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_lr_sweep_differs_only_in_lr():
    from facnn.config import lr_sweep
    from facnn.experiments import MINIMAL_LR
    runs = lr_sweep("cpu")
    assert len(runs) >= 3 and MINIMAL_LR in [c.lr for c in runs]
    dicts = [{k: v for k, v in c.to_dict().items() if k != "lr"} for c in runs]
    assert all(d == dicts[0] for d in dicts) and runs[0].subset and runs[0].recipe == "minimal"
    assert preset("cpu", "cifar10", "fa-pool").lr == MINIMAL_LR


@pytest.mark.parametrize("profile,model,precision", [
    ("cpu", "fa-pool", "bf16"), ("cpu", "fa-linear", "fp32"), ("cpu", "vanilla", "fp32"),
    ("cpu", "resnet18", "fp32"), ("paper", "vanilla", "auto")])
def test_each_sweep_keeps_one_precision_and_names_it(profile, model, precision):
    from facnn.config import lr_sweep
    assert {c.precision for c in lr_sweep(profile, model)} == {precision}


@pytest.mark.parametrize("chosen,model,lr", [({}, "vanilla", 0.8), ({"vanilla": 0.4}, "vanilla", 0.4),
                                             ({"vanilla": 0.4}, "fa-pool", 0.8)])
def test_a_models_own_sweep_choice_sets_its_table1_rate_only(monkeypatch, chosen, model, lr):
    from facnn import config as F, experiments as E
    monkeypatch.setattr(E, "MINIMAL_LR_OF", chosen)
    assert preset("cpu", "cifar10", model).lr == preset("paper", "imagenet100", model).lr == lr
    assert preset("cpu", "cifar10", model, "standard").lr == 0.1    # the standard recipe keeps its own
    assert [c.lr for c in F.lr_sweep("cpu", model)][:len(E.SWEEP["cpu"]["lrs"])] == list(E.SWEEP["cpu"]["lrs"])


@pytest.mark.parametrize("model,extended", [("fa-linear", True), ("fa-pool", False), ("vanilla", False)])
def test_a_sweep_is_extended_only_by_doubling_beyond_the_grid(model, extended):
    from facnn import config as F, experiments as E
    grid, lrs = E.SWEEP["cpu"]["lrs"], [c.lr for c in F.lr_sweep("cpu", model)]
    assert lrs[:len(grid)] == list(grid) and (len(lrs) > len(grid)) == extended
    assert all(b == pytest.approx(2 * a) for a, b in zip(lrs[len(grid) - 1:], lrs[len(grid):]))


def test_sweeps_view_shows_precision_choice_and_training_rate():
    import pandas as pd
    from facnnbook.table1 import sweeps_view
    t = pd.DataFrame({"lr": [0.4, 0.8], "test accuracy (%)": [40.0, 41.0], "precision": "fp32"})
    v = sweeps_view({"vanilla": t}, {"vanilla": 0.4}, {"vanilla": 0.8})
    assert v.iloc[0].to_dict() == {"model": "vanilla", "precision": "fp32", "lr 0.4": 40.0, "lr 0.8": 41.0,
                                   "rule's choice": "0.4", "trained with": "0.8",
                                   "note": "best at the grid's largest rate: the optimum may lie above 0.8"}
    longer = pd.DataFrame({"lr": [0.4, 0.8, 1.6], "test accuracy (%)": [40.0, 42.0, 41.0], "precision": "fp32"})
    v = sweeps_view({"vanilla": t, "fa-linear": longer}, {}, {"vanilla": 0.8, "fa-linear": 0.8})
    assert list(v.columns) == ["model", "precision", "lr 0.4", "lr 0.8", "lr 1.6", "rule's choice",
                               "trained with", "note"]      # an extended sweep's rates among the rates
    assert v["lr 1.6"].isna().tolist() == [True, False] and v["note"].tolist()[1] == ""


@pytest.mark.parametrize("accs,note", [([40.0, 41.0, 39.0], ""), ([42.0, 41.0, 39.0], "below 0.1"),
                                       ([40.0, 41.0, 43.0], "above 0.4"), ([40.0, None, 43.0], "")])
def test_a_sweep_whose_best_rate_is_on_the_grids_edge_says_so(accs, note):
    import pandas as pd
    from facnnbook.table1 import sweeps_view
    t = pd.DataFrame({"lr": [0.1, 0.2, 0.4], "test accuracy (%)": accs, "precision": "fp32"})
    got = sweeps_view({"m": t}, {"m": None}, {"m": 0.8}).iloc[0]["note"]
    assert (note in got) and (bool(note) == bool(got))


@pytest.mark.parametrize("runs,note", [
    ([], "best at the grid's largest rate: the optimum may lie above 0.4"),
    ([(0.4, "fp32", 0.46), (0.8, "fp32", 0.37)],
     "best at the grid's largest rate, 0.4, but the fp32 runs beside the sweep fall from 46.0 % at lr 0.4 "
     "to 37.0 % at lr 0.8: the optimum is not above the grid"),
    ([(0.4, "fp32", 0.46), (0.8, "fp32", 0.47)],
     "may lie above 0.4; fp32 runs beside the sweep: 46.0 % at lr 0.4, 47.0 % at lr 0.8"),
    ([(0.4, "fp32", 0.46), (0.8, "fp32", None)],
     "may lie above 0.4; fp32 runs beside the sweep: 46.0 % at lr 0.4, missing at lr 0.8"),
    ([(0.8, "fp32", 0.37)], "may lie above 0.4; fp32 runs beside the sweep: 37.0 % at lr 0.8"),
])
def test_runs_beside_a_sweep_settle_its_top_edge_only_when_accuracy_falls(runs, note):
    import pandas as pd
    from facnnbook.table1 import sweeps_view
    t = pd.DataFrame({"lr": [0.1, 0.2, 0.4], "test accuracy (%)": [40.0, 41.0, 43.0], "precision": "bf16"})
    probes = [(preset("cpu", "cifar10", "fa-pool", lr=lr, precision=p), None if a is None else {"accuracy": a})
              for lr, p, a in runs]
    got = sweeps_view({"m": t}, {"m": 0.2}, {"m": 0.2}, {"m": probes}).iloc[0]["note"]
    assert got.endswith(note)


@pytest.mark.parametrize("accs,n,status,best", [
    ([30.0, 40.0, 35.0], 10000, ["done"] * 3, 0.2),
    ([40.0, 40.0, 35.0], 10000, ["done"] * 3, 0.1),     # a tie goes to the smaller rate
    ([39.0, 40.0, 35.0], 1000, ["done"] * 3, 0.1),      # 1 point < one SE (1.55) at n=1000
    ([39.0, 40.0, 35.0], 10000, ["done"] * 3, 0.2),     # ... but > one SE (0.49) at n=10000
    ([30.0, None, 35.0], 1000, ["done", "missing", "done"], None),
])
def test_sweep_best_one_standard_error(accs, n, status, best):
    import pandas as pd
    from facnnbook.table1 import sweep_best
    t = pd.DataFrame({"lr": [0.1, 0.2, 0.4], "test accuracy (%)": accs, "test images": n,
                      "status": status})
    assert sweep_best(t) == best


@pytest.mark.parametrize("overrides,field,value", [
    ({"epochs": "3"}, "epochs", 3), ({"lr": "0.05"}, "lr", 0.05), ({"width": "none"}, "width", None),
    ({"download": "true"}, "download", True), ({"milestones": "4,6"}, "milestones", (4, 6)),
    ({"milestones": "(2, 5)"}, "milestones", (2, 5)), ({"epochs": "1e1"}, "epochs", 10),
    ({"width": "40"}, "width", 40), ({"subset": "null"}, "subset", None),
    ({"data_root": "elsewhere"}, "data_root", "elsewhere"), ({"download": "off"}, "download", False),
    ({"eps": "1e-4"}, "eps", 1e-4), ({"progress": 0}, "progress", False),
])
def test_overrides_are_coerced(overrides, field, value):
    got = getattr(preset("smoke", "shapes", "fa-pool", **overrides), field)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("overrides,message", [
    ({"epochs": "three"}, r"bad value 'three' for epochs \(int\)"),
    ({"epochs": "2.5"}, r"for epochs \(int\): expected an integer"),
    ({"width": "1.5"}, r"for width \(int \| None\)"),
    ({"download": "maybe"}, r"for download \(bool\): expected true or false"),
    ({"milestones": "a,b"}, r"for milestones \(tuple\[int, \.\.\.\]\)"),
    ({"epochs": None}, r"for epochs \(int\): None is not allowed"),
])
def test_bad_overrides_name_the_field_and_its_type(overrides, message):
    with pytest.raises(ValueError, match=message):
        preset("smoke", "shapes", "fa-pool", **overrides)


def test_hash_ignores_where_but_not_what():
    a = preset("cpu", "cifar10", "fa-pool")
    assert a.hash() == apply_overrides(a, {"device": "cuda", "out_dir": "x"}).hash()
    assert a.hash() != apply_overrides(a, {"depth": 6}).hash()


BAD = [
    (lambda: build_model("fa-pool", 10, maps_per_class=2, width=30), "C\\*R"),
    (lambda: preset("smoke", "shapes", "fa-pool", width=7), "C\\*R"),
    (lambda: build_model("fa-pool", 10, depth=10, pool_every=4), "multiple of pool_every"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=24, pool_every=8)(torch.randn(1, 3, 3, 3)), "too small"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=2, pool_every=2)(torch.randn(1, 1, 8, 8)), "RGB"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=2, pool_every=2)(torch.randn(3, 8, 8)), "batch"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=2, pool_every=2)(
        torch.tensor(float("nan")).expand(1, 3, 8, 8)), "NaN or inf"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=2, pool_every=2)(
        torch.full((1, 3, 8, 8), float("inf"))), "NaN or inf"),
    (lambda: build_model("fa-pool", 2, maps_per_class=1, depth=2, pool_every=2)(
        torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), "normalise"),
    (lambda: build_model("alexnet", 10), "unknown model"),
    (lambda: build_model("resnet18", 10, depth=3), "does not take"),
    (lambda: preset("cpu", "mnist", "fa-pool"), "unknown dataset"),
    (lambda: preset("cpu", "cifar10", "fa-pool", epochz=3), "unknown config key"),
    (lambda: preset("cpu", "cifar10", "fa-pool", epochs="three"), "bad value"),
    (lambda: parse_assignments(["epochs"]), "key=value"),
    (lambda: preset("smoke", "shapes", "fa-pool", precision="fp16"), "unknown precision"),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_input_is_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("profile,dataset,model", [("cpu", "cifar10", "fa-pool"),
                                                   ("paper", "imagenet100", "resnet50")])
def test_config_round_trips_through_its_json(profile, dataset, model):
    import json
    from facnn import Config
    cfg = preset(profile, dataset, model)
    again = Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hash() == cfg.hash()


@pytest.mark.parametrize("runs,note", [
    ([], ""),
    ([(3.2, "fp32", 0.466), (6.4, "fp32", None)], "fp32 runs beside the sweep: 46.6 % at lr 3.2, missing at lr 6.4"),
    ([(3.2, "fp32", 0.466), (3.2, "bf16", 0.482)],
     "fp32 runs beside the sweep: 46.6 % at lr 3.2; bf16 runs beside the sweep: 48.2 % at lr 3.2"),
])
def test_probe_note_names_each_run_beside_a_sweep(runs, note):
    from facnnbook.table1 import probe_note
    probes = [(preset("cpu", "cifar10", "fa-pool", lr=lr, precision=p), None if a is None else {"accuracy": a})
              for lr, p, a in runs]
    assert probe_note(probes) == note


def test_sweep_probes_keep_the_sweeps_subset_and_stay_out_of_its_rule():
    from facnn import config as F
    sweep, probes = F.lr_sweep("cpu", "fa-pool"), F.sweep_probes("cpu", "fa-pool")
    assert probes and {c.hash() for c in probes}.isdisjoint(c.hash() for c in sweep)
    ignore = ("lr", "precision")
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k not in ignore}
    assert all(strip(c) == strip(sweep[0]) for c in probes)
    assert F.sweep_probes("cpu", "vanilla") == [] and F.sweep_probes("paper", "fa-pool") == []
