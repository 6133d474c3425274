"""What every chapter notebook sets up first: its parameters checked, the profile's runs, its
analysis cache, and the verdicts it records. Two lines in a notebook::

    ch = Chapter("02_theorem1_gradcam", profile, fresh=fresh, results_dir=results_dir)
    n = ch.size("n_images", n_images)      # None -> the profile's default; else an int >= 1
"""
from __future__ import annotations

from typing import Any, Sequence

from facnn.checks import check_choice, check_int
from . import claims as C
from .cache import Cache, Code, fresh_mode
from .provenance import Provenance, relative
from .publish import check_parameters, style
from .runs import Runs


def show_markdown(text: str) -> None:
    """Markdown in the notebook's output (the book renders it), or plain text elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)


class Chapter:
    """One chapter's view of a profile: ``runs`` (the training runs), ``cache`` (its
    analysis results) and the verdicts it records into the claims file."""

    def __init__(self, name: str, profile: str, fresh: Any = "", results_dir: str = "results",
                 device: str = "cpu", dataset: str | None = None, allow_training: Any = None,
                 overrides: dict | None = None):
        check_parameters()
        check_choice("profile", profile, ("smoke", "cpu", "paper"))
        check_choice("device", device, ("cpu", "cuda", "mps"))
        if allow_training not in (None, True, False):
            raise TypeError(f"allow_training={allow_training!r}: give None, True or False")
        if overrides is not None and not isinstance(overrides, dict):
            raise TypeError(f"overrides={overrides!r} must be a dict of Config fields, e.g. "
                            f'{{"depth": 8}}')
        self.name, self.profile = name, profile
        self.runs = Runs(profile, dataset, overrides, results_dir, allow_training=allow_training,
                         device=device)
        self.cache = Cache(profile, self.runs.results_dir, fresh_mode(fresh))
        self.claims: list[dict[str, Any]] = []
        style()

    def __repr__(self) -> str:
        return (f"Chapter({self.name!r}, profile={self.profile!r}, results="
                f"{relative(self.runs.results_dir)!r})")

    def size(self, key: str, value: Any, name: str | None = None, default: int | None = None,
             lo: int = 1) -> int | None:
        """A size parameter ``name`` (default: ``key``): None means the profile's default
        (``facnnbook.runs.ANALYSIS[profile][key]``, else ``default``); otherwise an int
        >= ``lo`` (a string, a float with a fraction, zero or a negative number is refused)."""
        if value is None:
            value = self.runs.sizes.get(key, default)
            if value is None:
                return None
        return check_int(name or key, value, lo)

    def computed(self, name: str, params: dict[str, Any], compute, models: Sequence[str] = ("fa-pool",),
                 code: Sequence[Code] = (), trained: bool = True, expensive: bool = False
                 ) -> tuple[dict[str, Any], Provenance]:
        """``compute()``'s values from the cache (computed and stored when absent), keyed by
        ``params`` and the runs of ``models`` ("model" or "model/recipe"). An ``expensive``
        result is computed only at the smoke profile or with FRESH (see Cache.get)."""
        ids = {m: self.runs.run_id(*m.split("/"), trained=trained) for m in models}
        seen = len(self.cache.notes)
        values, prov = self.cache.get(name, params, compute, ids, code, expensive)
        for note in self.cache.notes[seen:]:   # a stale result is shown, and says so on the page
            show_markdown(f"**Computed by older code.** {note}; the numbers below are "
                          f"those of commit {prov.commit}.")
        return values, prov

    def test_images(self, indices: Sequence[int]):
        """Test images ``indices`` of the chapter's dataset as a small ArrayDataset, kept in
        the analysis cache: a clone without the dataset shows the same demo images."""
        import torch
        from facnn.data import ArrayDataset
        from .chapters import excerpt
        idx = [int(i) for i in indices]
        v, _ = self.computed("test_images", dict(dataset=self.runs.dataset, indices=idx),
                             lambda: excerpt(self.runs.test_set(), idx), models=(), code=[excerpt])
        return ArrayDataset(v["name"], torch.as_tensor(v["images"]), torch.as_tensor(v["labels"]),
                            list(v["classes"]))

    def claim(self, id: str, quote: str, statement: str, metric: str, paper, ours, verdict: str,
              source: str, dataset: str | None = None, ci95=None, n_seeds: int = 1,
              reason: str | None = None, counted: bool = True, **extra) -> dict:
        """Record one checked claim for the verdict file (and return it); ``quote`` is a key
        of facnnbook.paper.QUOTES (see facnnbook.claims.entry)."""
        e = C.entry(id, source, quote, statement, dataset or self.runs.dataset, metric, paper, ours,
                    verdict, self.name, ci95, n_seeds, reason, counted, **extra)
        self.claims = [c for c in self.claims if c["id"] != id] + [e]
        return e

    def save_claims(self) -> None:
        """Write this chapter's claims (the build merges every chapter's into claims.json)."""
        C.record(self.runs.results_dir, self.profile, self.name, self.claims)

    @property
    def maps_dir(self):
        """Where this profile's expensive saliency maps (RISE, K-OCC) are kept between runs
        (git-ignored: hundreds of MB at profile cpu), so FRESH=1 after a change to the
        curves' code recomputes curves, not maps."""
        from pathlib import Path
        return Path(self.runs.results_dir) / self.profile / "maps"

    def minutes(self) -> float | None:
        return self.cache.compute_minutes()
