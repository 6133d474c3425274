"""The analysis cache: a chapter's expensive results, stored so the book rebuilds in a minute.

    results/<profile>/analysis/<name>-<key>/
        meta.json     provenance, parameters, the runs it used, scalars, the code fingerprint,
                      and the sha256 of every other file of the entry
        arrays.npz    the few arrays its figures need
        <table>.json  tables (pandas, orient="table", dtypes kept)

``key`` hashes *what* was computed (the parameters and the identity of the training runs).
The fingerprint records *how*: a hash of the source of the code that computed it (modules
and functions, docstrings and comments stripped). An entry whose fingerprint differs from
the current code's is **stale**, and so is one whose code reads a module constant of
facnn that has changed since (facnnbook.constants: ``facnn.data.STATS`` through
``D.normalise``): it is still shown (it is what the book was built from) but
``make book`` lists it, and ``FRESH=1`` recomputes just the stale and the damaged entries
(``FRESH=all`` everything). An entry computed on uncommitted code (provenance "+dirty") is
stale too: the book never shows a result no commit can reproduce. A damaged entry (unreadable file, checksum mismatch) is named and
recomputed; so is an entry whose meta.json was edited after it was written (its own
sha256 is stored in it). Each writer builds its entry in a private temporary folder and publishes it by
rename, so two writers never mix files.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import io
import json
import os
import shutil
import textwrap
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .constants import _defs, changed_since, constants_hashes
from .provenance import ROOT, MissingResult, Provenance, git_commit, now, relative

Code = str | Callable[..., Any]   # a module name ("facnn.theory") or a function


# -- fingerprints ------------------------------------------------------------------------------

def _strip(tree: ast.AST) -> ast.AST:
    """Remove docstrings: a reworded docstring does not change what code computes."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _resolve(name: str) -> Any:
    """A module ("facnn.theory") or an attribute of one ("facnnbook.chapters.theorem1_study")."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        module, _, attr = name.rpartition(".")
        if not module:
            raise
        return getattr(_resolve(module), attr)


def source_of(item: Code) -> str:
    """The normalised source of a module or function, or of one named by a dotted string
    (comments and docstrings gone)."""
    obj = _resolve(item) if isinstance(item, str) else item
    src = textwrap.dedent(inspect.getsource(obj))
    return ast.dump(_strip(ast.parse(src)), include_attributes=False)


def code_name(item: Code) -> str:
    return item if isinstance(item, str) else f"{item.__module__}.{item.__qualname__}"


def _top_level(module: Any) -> dict[str, ast.AST]:
    """name -> the normalised top-level statement that defines it (def, class, assignment)."""
    return _defs(_strip(ast.parse(inspect.getsource(module))))


def sources_of(item: Code) -> list[tuple[str, str]]:
    """(name, normalised source) of what ``item`` computes with: a module's whole source; for
    a top-level function, its own source and, transitively, that of every function, class
    and constant of its module that it names (a chapter's helpers and thresholds count)."""
    obj = _resolve(item) if isinstance(item, str) else item
    module = inspect.getmodule(obj)
    name = getattr(obj, "__name__", "")
    if inspect.ismodule(obj) or module is None or getattr(module, name, None) is not obj:
        return [(code_name(item), source_of(obj))]
    defs, seen, todo = _top_level(module), set(), [name]
    while todo:
        n = todo.pop()
        if n in seen or n not in defs:
            continue
        seen.add(n)
        todo += [x.id for x in ast.walk(defs[n]) if isinstance(x, ast.Name)]
    return [(f"{module.__name__}.{n}", ast.dump(defs[n], include_attributes=False)) for n in sorted(seen)]


def fingerprint(code: Iterable[Code]) -> str:
    """A short hash of the normalised source of ``code`` (order-independent; a function
    with the helpers and constants it reaches, see sources_of)."""
    h = hashlib.sha256()
    for name, src in sorted({pair for c in code for pair in sources_of(c)}):
        h.update(name.encode() + b"\0" + src.encode() + b"\0")
    return h.hexdigest()[:12]


def key_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- one entry on disk -------------------------------------------------------------------------

class DamagedEntry(Exception):
    """An entry whose files cannot be read or do not match their checksums."""


def save_entry(folder: Path, values: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write arrays to arrays.npz, DataFrames to <key>.json, the rest into meta.json, with
    checksums, in a private temporary folder published by rename."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    try:
        arrays, scalars, tables = {}, {}, []
        for k, v in values.items():
            if isinstance(v, pd.DataFrame):
                (tmp / f"{k}.json").write_text(v.to_json(orient="table", index=False, indent=0))
                tables.append(k)
            elif isinstance(v, np.ndarray) or _is_tensor(v):
                arrays[k] = np.asarray(v.detach().cpu() if _is_tensor(v) else v)
            else:
                scalars[k] = plain(v)
        if arrays:
            with open(tmp / "arrays.npz", "wb") as f:
                np.savez_compressed(f, **arrays)
        files = sorted(p.name for p in tmp.iterdir())
        full = {**meta, "values": scalars, "tables": tables, "arrays": sorted(arrays),
                "sha256": {n: _sha(tmp / n) for n in files}}
        (tmp / "meta.json").write_text(json.dumps({**full, "meta_sha256": meta_checksum(full)}, indent=1))
        _publish(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, folder: Path, tries: int = 100) -> None:
    """Rename ``tmp`` to ``folder``, moving an existing ``folder`` aside first. Another
    writer may do the same at the same moment: whoever renames last wins, and the entry is
    always one writer's complete set of files."""
    for _ in range(tries):
        try:
            tmp.rename(folder)
            return
        except OSError:                       # folder exists (and is not empty)
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}")
            try:
                folder.rename(old)
            except FileNotFoundError:         # another writer moved it first: try again
                continue
            shutil.rmtree(old, ignore_errors=True)
    raise OSError(f"could not publish {relative(folder)}: another process keeps writing it")


def meta_checksum(meta: Mapping[str, Any]) -> str:
    """The sha256 of meta.json's content without its own checksum field."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def read_meta(folder: Path) -> dict[str, Any]:
    """meta.json, refused (DamagedEntry) when it is unreadable or was edited after it was
    written: its checksum differs, or, for an entry written before meta.json had one, it
    differs from its committed version."""
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DamagedEntry(f"{relative(path)} is unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise DamagedEntry(f"{relative(path)} is not a JSON object")
    if "meta_sha256" in meta:
        if meta["meta_sha256"] != meta_checksum(meta):
            raise DamagedEntry(f"{relative(path)} was edited after it was written (its checksum "
                               f"differs)")
    elif _edited_since_commit(path):
        raise DamagedEntry(f"{relative(path)} differs from its committed version and has no "
                           f"checksum: it was edited by hand")
    return meta


def _edited_since_commit(path: Path) -> bool:
    """Whether git tracks ``path`` and it differs from HEAD's copy (False when git cannot say)."""
    import subprocess
    try:
        rel = path.resolve().relative_to(ROOT)
        r = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", str(rel)], capture_output=True,
                           cwd=ROOT, timeout=10)
    except (ValueError, OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 1


def load_entry(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, meta) of an entry; DamagedEntry names the file that is unreadable or does
    not match its checksum."""
    meta = read_meta(folder)
    for name, digest in meta.get("sha256", {}).items():
        path = folder / name
        if not path.exists() or _sha(path) != digest:
            raise DamagedEntry(f"{relative(path)} is missing or does not match the checksum "
                               f"stored when it was computed")
    values = dict(meta.get("values", {}))
    try:
        for k in meta.get("tables", []):
            values[k] = pd.read_json(io.StringIO((folder / f"{k}.json").read_text()), orient="table")
        if meta.get("arrays"):
            with np.load(folder / "arrays.npz", allow_pickle=False) as z:
                values.update({k: z[k] for k in z.files})
    except Exception as e:  # a truncated npz or json: name it, never load pickles
        raise DamagedEntry(f"{relative(folder)} cannot be read ({type(e).__name__}: {e})") from None
    return values, meta


def _is_tensor(v: Any) -> bool:
    return type(v).__module__.startswith("torch") and hasattr(v, "detach")


def plain(v: Any) -> Any:
    """JSON-able form of a value (numpy scalars, tuples, nested dicts, tensors)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if _is_tensor(v):
        return v.tolist()
    return v


# -- the cache of a profile --------------------------------------------------------------------

def fresh_mode(value: Any) -> str:
    """FRESH / the notebooks' ``fresh`` parameter: "" (reuse everything), "stale" (recompute
    stale and damaged entries; also "1"/True) or "all"."""
    if value in (None, False, "", "0", 0):
        return ""
    if value in (True, "1", 1, "stale"):
        return "stale"
    if value == "all":
        return "all"
    raise ValueError(f"fresh={value!r}: use 0 (reuse cached results), 1 (recompute the stale "
                     f"ones) or all")


class Cache:
    """The analysis cache of one profile under ``results_dir/<profile>/analysis``."""

    def __init__(self, profile: str, results_dir: Path, fresh: Any = ""):
        self.profile, self.root = profile, Path(results_dir) / profile / "analysis"
        self.fresh = fresh_mode(fresh)
        self.compute_s: dict[str, float | None] = {}
        self.notes: list[str] = []   # what was stale or damaged, for the reader

    def folder(self, name: str, params: Mapping[str, Any], runs: Mapping[str, str]) -> Path:
        return self.root / f"{name}-{key_hash({'params': plain(dict(params)), 'runs': dict(runs)})}"

    def get(self, name: str, params: Mapping[str, Any], compute: Callable[[], Mapping[str, Any]],
            runs: Mapping[str, str], code: Sequence[Code], expensive: bool = False
            ) -> tuple[dict[str, Any], Provenance]:
        """``compute()``'s values and their provenance, from the cache when present.

        ``runs`` maps a label to the identity of each training run used (config hash and
        finish time); ``code`` lists the modules and functions whose source the result
        depends on. Raises MissingResult when compute() does (nothing is stored), and for an
        ``expensive`` result that is not cached at profile cpu or paper unless ``fresh`` asks
        for it: like training, ``make book`` never starts an hour of work on its own."""
        folder, fp = self.folder(name, params, runs), fingerprint(code)
        if (folder / "meta.json").exists() and self.fresh != "all":
            try:
                values, meta = load_entry(folder)
            except DamagedEntry as e:
                self.notes.append(f"recomputed {folder.name}: {e}")
                warnings.warn(f"{e}; recomputing it", stacklevel=2)
            else:
                dirty = str(meta.get("provenance", {}).get("commit", "")).endswith("+dirty")
                moved = constants_changed(meta, code)
                stale = meta.get("fingerprint") != fp or dirty or bool(moved)
                if not (stale and self.fresh == "stale"):
                    if stale:
                        self.notes.append(f"{folder.name} is stale: " + (
                            "it was computed on uncommitted code" if dirty else
                            f"a constant it reads has changed ({', '.join(moved)})" if moved else
                            "the code that computed it has changed") + " (FRESH=1 recomputes it)")
                    self.compute_s[folder.name] = meta.get("compute_s")
                    return values, Provenance(**meta["provenance"])
        if expensive and not self.fresh and self.profile != "smoke":
            raise MissingResult(f"the cached result '{name}' at profile {self.profile}",
                                [f"make book PROFILE={self.profile} FRESH=1"],
                                "it is not in results/, and computing it takes long")
        t0 = time.perf_counter()
        values = dict(compute())
        seconds = self.compute_s[folder.name] = time.perf_counter() - t0
        hashes = ",".join(dict.fromkeys(i.split("@")[0] for i in runs.values())) or "-"
        prov = Provenance(self.profile, hashes, git_commit(), now())
        save_entry(folder, values, {"name": name, "params": plain(dict(params)), "runs": dict(runs),
                                    "code": [code_name(c) for c in code], "fingerprint": fp,
                                    "constants": constants_hashes(code),
                                    "provenance": asdict(prov), "compute_s": seconds})
        return values, prov

    def compute_minutes(self) -> float | None:
        """Minutes this chapter's results took to compute (on the machine that computed
        them); None when none was timed."""
        known = [s for s in self.compute_s.values() if s is not None]
        return sum(known) / 60 if known else None


def constants_changed(meta: Mapping[str, Any], code: Sequence[Code]) -> list[str]:
    """The module constants read by an entry's code that changed since it was computed: by
    the hashes it stores, or, for an entry older than those, against the source at its
    commit (none when that commit cannot be read)."""
    if "constants" in meta:
        then, now_ = meta["constants"], constants_hashes(code)
        return sorted(k for k in set(then) | set(now_) if then.get(k) != now_.get(k))
    commit = str(meta.get("provenance", {}).get("commit", ""))
    return (changed_since(code, commit) or []) if commit and commit != "unknown" else []


def stale_entries(root: Path) -> list[tuple[str, str]]:
    """(entry, why) for every entry under ``root`` (an analysis folder) that is damaged or
    whose code fingerprint no longer matches the current code."""
    out = []
    for folder in sorted(p for p in Path(root).glob("*") if p.is_dir() and not p.name.startswith(".")):
        try:
            meta = read_meta(folder)
            code = meta.get("code")
            if not code:
                out.append((folder.name, "computed before code fingerprints were kept"))
            elif meta.get("fingerprint") != fingerprint(code):
                out.append((folder.name, "the code that computed it has changed"))
            elif moved := constants_changed(meta, code):
                out.append((folder.name, f"a constant it reads has changed ({', '.join(moved)})"))
            elif str(meta.get("provenance", {}).get("commit", "")).endswith("+dirty"):
                out.append((folder.name, "it was computed on uncommitted code (+dirty)"))
        except DamagedEntry as e:
            out.append((folder.name, str(e)))
        except (ImportError, AttributeError, OSError, TypeError) as e:
            out.append((folder.name, f"its code is gone ({e})"))
    return out
