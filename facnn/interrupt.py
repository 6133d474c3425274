"""Ctrl-C during training: the first press stops after the current batch, where a checkpoint
is consistent; a second stops at once. The message says where a rerun resumes.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import Config


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint was brought up to date where that was
    safe; the message says where a rerun resumes."""


@contextmanager
def deferred(state):
    """Within the block, the first Ctrl-C (SIGINT) only sets ``state.stop`` (``state``: the
    run's facnn.train.Progress): the loop stops at the end of the current batch, where a
    checkpoint is consistent. A second one raises KeyboardInterrupt at once. Only in the main
    thread (signals are delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        state.stop = True
        # the second press stops at once: a process started with SIGINT ignored (a
        # background job) or at its default has no Python handler to hand back to
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
        print("\nstopping after this batch (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def interrupted(cfg: Config, ckpt_path: Path, state, steps: int) -> TrainingInterrupted:
    """The message of a Ctrl-C: where the rerun resumes, read from disk when the interrupt
    hit a checkpoint write."""
    saved = state.saved
    if state.saving and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            saved = (ckpt["epoch"], ckpt["batch"])
        except Exception:
            saved = None
    if saved is None:
        return TrainingInterrupted("stopped before the first checkpoint; rerun the same command "
                                   "to start again")
    if saved[0] >= cfg.epochs:
        return TrainingInterrupted("stopped after the last epoch; rerun the same command to write "
                                   "the summary")
    return TrainingInterrupted(f"stopped; rerun the same command to resume from epoch {saved[0] + 1} batch "
                               f"{saved[1]} (of {cfg.epochs} epochs, {steps} batches each; {ckpt_path})")
