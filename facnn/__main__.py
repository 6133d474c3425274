"""Command line: ``python -m facnn {train,eval,info,sweep} --dataset D --model M --profile P
[--recipe R] [--set key=value ...]``; ``python -m facnn data {get,pack,unpack} ...``. The runs
the book needs are planned by ``python -m facnnbook.plan``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .config import (MODELS, DATASETS, PROFILES, RECIPES, apply_overrides, cli_command,
                     parse_assignments, preset)


_OWN_FLAG = ("profile", "dataset", "model", "recipe")


def _overrides(args) -> dict:
    """The --set overrides, refusing the keys that have their own flag (the flag would be
    silently overridden, or preset() given the key twice)."""
    o = parse_assignments(args.set)
    for k in _OWN_FLAG:
        if k in o:
            raise ValueError(f"--set {k}={o[k]}: {k} has its own flag; use --{k} {o[k]} instead")
    return o


def _config(args):
    try:
        return preset(args.profile, args.dataset or "cifar10", args.model, args.recipe, **_overrides(args))
    except TypeError as e:   # facnn.checks' type errors speak to Python callers; same one line here
        raise ValueError(str(e)) from None


def cmd_train(args) -> None:
    from .train import run_dir, train
    cfg = _config(args)
    print(f"run {run_dir(cfg)}  (profile {cfg.profile}, config {cfg.hash()})")
    s = train(cfg)
    print(f"accuracy {s['accuracy']:.4f} after {s['epochs']} epochs, "
          f"{s['images_per_s'] or 0:.0f} train images/s, {s['wall_s']:.0f} s")


def cmd_sweep(args) -> None:
    from .config import cli_command, lr_sweep, run_dir
    from .experiments import HELDOUT_SWEEP, SWEEP
    from .fileio import read_json
    from .train import train
    dataset = SWEEP[args.profile]["dataset"]
    heldout = HELDOUT_SWEEP.get(args.profile, {})
    if args.dataset not in (None, dataset, *heldout) or args.recipe not in (None, "minimal"):
        raise ValueError(f"the sweeps at profile {args.profile} are the minimal recipe's on "
                         f"{', '.join(dict.fromkeys([dataset, *heldout]))}; choose one of those "
                         f"with --dataset, drop --recipe (train one cell with python -m facnn train)")
    overrides = _overrides(args)
    if "lr" in overrides:
        raise ValueError(f"sweep --set lr={overrides['lr']}: the sweep sets lr itself, one run per "
                         f"rate of its grid; train one rate with python -m facnn train --set "
                         f"lr={overrides['lr']}")
    which = args.dataset if args.dataset in heldout else None
    cfgs = [apply_overrides(c, overrides).validate() for c in lr_sweep(args.profile, args.model, which)]
    for cfg in cfgs:
        # a sweep needs each rate's accuracy, not its weights: a finished run is read, never
        # retrained (a clone keeps only the summaries of sweep runs)
        done = run_dir(cfg) / "summary.json"
        s = read_json(done, f"delete it and rerun {cli_command(cfg)}") if done.exists() else train(cfg)
        print(f"lr {cfg.lr:g}: accuracy {s['accuracy']:.4f} ({cfg.run_name()})", flush=True)


def cmd_eval(args) -> None:
    from .checkpoint import is_finished, load_trained
    from .train import evaluate, make_loaders, resolve_device
    cfg = _config(args)
    device = resolve_device(cfg.device)
    model = load_trained(cfg, device)
    stats = evaluate(model, make_loaders(cfg, device)[1], device)
    finished = is_finished(cfg)
    if not finished:
        print(f"note: {cfg.run_name()} is unfinished (no summary.json): this is the accuracy of its "
              f"last checkpoint; finish it with: {cli_command(cfg)}", file=sys.stderr)
    print(json.dumps({"run": cfg.run_name(), "finished": finished, **stats}))


def cmd_info(args) -> None:
    import torch
    from .info import check_memory, describe
    cfg = _config(args)
    check_memory(cfg, torch.device("cpu"))   # describe() builds the model
    print(describe(cfg))


def cmd_data(args) -> None:
    from . import pack
    if args.action == "get":
        from .download import get
        print(f"wrote {get(args.target, args.out or 'data')}")
        return
    if args.out is None:
        raise SystemExit(f"error: data {args.action} needs --out")
    if args.action == "pack":
        m = pack.pack(args.target, args.out, max_mb=args.max_mb, source=args.source)
        loss = m["train"]["loss"]
        print(f"wrote {args.out}: {m['size_bytes'] / 1e6:.1f} MB, train WebP quality "
              f"{m['train']['quality']} (PSNR {loss['psnr_db']:.2f} dB, mean abs error "
              f"{loss['mean_abs_error']:.3f}), test lossless")
    else:
        path = pack.unpack(args.target, args.out)
        print(f"wrote {path}")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="fetch a dataset from its public source, pack one into an "
                                    "offline WebP pack, or unpack one")
    p.add_argument("action", choices=("get", "pack", "unpack"))
    p.add_argument("target", help="get: cifar10, cifar100 or imagenet20; pack: the dataset "
                                  "(cifar10, cifar100); unpack: the pack folder")
    p.add_argument("--out", default=None, help="get: the data folder (default data); pack: the "
                                               "pack folder; unpack: the data folder")
    p.add_argument("--max-mb", type=float, default=50.0, help="pack: size budget in MB (10^6 bytes)")
    p.add_argument("--source", default=None, help="pack: the .npz to read (default data/<dataset>.npz)")
    p.set_defaults(fn=cmd_data)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m facnn", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, fn, text in (("train", cmd_train, "train or resume a run"),
                           ("eval", cmd_eval, "evaluate a trained run on the test split"),
                           ("info", cmd_info, "layers, channels, parameters and FLOPs per image"),
                           ("sweep", cmd_sweep, "the minimal recipe's learning-rate sweep (--set applies to every run)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dataset", default=None if name == "sweep" else "cifar10", choices=DATASETS)
        p.add_argument("--model", default="fa-pool", choices=MODELS)
        p.add_argument("--profile", default="cpu", choices=PROFILES)
        p.add_argument("--recipe", default=None, choices=RECIPES)
        p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                       help="config overrides, e.g. --set epochs=3 lr=0.05 (repeatable)")
        p.set_defaults(fn=fn)
    _add_data(sub)
    args = ap.parse_args(argv)
    run_command(lambda: args.fn(args))


def run_command(command: Callable[[], None]) -> None:
    """Run a command line's work as every facnn command reports: a known error as its one
    line (exit 1), Ctrl-C as exit 130 (``python -m facnnbook.plan`` runs through here too)."""
    try:
        from .fileio import RunLocked, StorageError
        from .checkpoint import CheckpointError
        try:
            command()
        except (ValueError, FileNotFoundError, CheckpointError, StorageError, FloatingPointError,
                RunLocked) as e:
            sys.exit(f"error: {e}")   # bad input, a damaged file, a full disk, a NaN loss: one line
    except KeyboardInterrupt as e:   # Ctrl-C: train() saved what it could and says how to resume
        print(str(e) or "stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:   # while the imports ran (torch takes a second or two)
        print("stopped", file=sys.stderr)
        sys.exit(130)
