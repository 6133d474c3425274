"""Command line: ``python -m facnn {train,eval,info,sweep} --dataset D --model M --profile P
[--recipe R] [--set key=value ...]``."""
from __future__ import annotations

import argparse
import json
import sys

from .config import MODELS, DATASETS, PROFILES, RECIPES, apply_overrides, parse_assignments, preset


def _config(args):
    return preset(args.profile, args.dataset, args.model, args.recipe, **parse_assignments(args.set))


def cmd_train(args) -> None:
    from .train import run_dir, train
    cfg = _config(args)
    print(f"run {run_dir(cfg)}  (profile {cfg.profile}, config {cfg.hash()})")
    s = train(cfg)
    print(f"accuracy {s['accuracy']:.4f} after {s['epochs']} epochs, "
          f"{s['images_per_s'] or 0:.0f} train images/s, {s['wall_s']:.0f} s")


def cmd_sweep(args) -> None:
    from .config import lr_sweep
    from .train import train
    for cfg in lr_sweep(args.profile, args.model):
        if args.set:
            cfg = apply_overrides(cfg, parse_assignments(args.set)).validate()
        s = train(cfg)
        print(f"lr {cfg.lr:g}: accuracy {s['accuracy']:.4f} ({cfg.run_name()})", flush=True)


def cmd_eval(args) -> None:
    from .train import evaluate, load_trained, make_loaders, resolve_device
    cfg = _config(args)
    device = resolve_device(cfg.device)
    model = load_trained(cfg, device)
    stats = evaluate(model, make_loaders(cfg, device)[1], device)
    print(json.dumps({"run": cfg.run_name(), **stats}))


def cmd_info(args) -> None:
    from .info import describe
    print(describe(_config(args)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m facnn", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn, text in (("train", cmd_train, "train or resume a run"),
                           ("eval", cmd_eval, "evaluate a trained run on the test split"),
                           ("info", cmd_info, "layers, channels, parameters and FLOPs per image"),
                           ("sweep", cmd_sweep, "the minimal recipe's learning-rate sweep (--set applies to every run)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dataset", default="cifar10", choices=DATASETS)
        p.add_argument("--model", default="fa-pool", choices=MODELS)
        p.add_argument("--profile", default="cpu", choices=PROFILES)
        p.add_argument("--recipe", default=None, choices=RECIPES)
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                       help="config overrides, e.g. --set epochs=3 lr=0.05")
        p.set_defaults(fn=fn)
    args = ap.parse_args(argv)
    from .train import CheckpointError
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, CheckpointError) as e:  # bad input: one line
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
