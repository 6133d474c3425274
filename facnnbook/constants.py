"""The module-level constants a cached result reads, across facnn's modules.

A code fingerprint (facnnbook.cache.fingerprint) covers the source of the functions and
modules a chapter names, and the helpers and constants of their own module; a constant of
another module that they read (the normalisation statistics ``facnn.data.STATS``, read
through ``D.normalise``) is not in it. :func:`constants_read` follows names and
``module.attr`` references through functions into the modules of facnn and facnnbook (not those that only
configure, store or publish runs and results) and collects the constants reached.

An entry stores a hash of each; an entry written before constants were tracked is checked
against the constants' source at the commit it was computed on (``git show``), so no
committed result turns stale unless a constant it read really changed.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .provenance import ROOT


# how runs are configured, trained and stored (a result's cache key holds the identity of
# the runs it used; their validation constants change no result), and how the book stores
# and publishes results
_NOT_FOLLOWED = {"facnn.config", "facnn.experiments", "facnn.checks", "facnn.fileio", "facnn.train",
                 "facnn.checkpoint", "facnn.interrupt", "facnn.info", "facnn.pack", "facnnbook.plan",
                 "facnnbook.cache", "facnnbook.constants", "facnnbook.provenance",
                 "facnnbook.pipeline", "facnnbook.publish"}
_OURS = ("facnn", "facnnbook")   # the library and the book's machinery


def _followed(module: str) -> bool:
    return module.split(".")[0] in _OURS and module not in _NOT_FOLLOWED


@lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _defs(tree: ast.Module) -> dict[str, ast.AST]:
    """name -> the top-level statement that defines it (def, class, assignment)."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out[n.id] = node
    return out


def _imports(tree: ast.Module, package: str) -> dict[str, str]:
    """name -> what it stands for: a facnn module ("facnn.data") or a module's attribute
    ("facnn.data:STATS"), from the imports anywhere in the module."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in _OURS:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = (importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                    if node.level else node.module or "")
            if base.split(".")[0] not in _OURS:
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                out[a.asname or a.name] = full if _is_module(full) else f"{base}:{a.name}"
    return out


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


@lru_cache(maxsize=None)
def _parsed(module: str) -> tuple[dict[str, ast.AST], dict[str, str]]:
    m = importlib.import_module(module)
    tree = ast.parse(inspect.getsource(m))
    return _defs(tree), _imports(tree, m.__package__ or module)


def _start(item: Any) -> list[tuple[str, str | None]]:
    from .cache import _resolve
    obj = _resolve(item) if isinstance(item, str) else item
    if inspect.ismodule(obj):
        return [(obj.__name__, None)]
    module = inspect.getmodule(obj)
    return [(module.__name__, getattr(obj, "__name__", None))] if module else []


def constants_read(code: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """"module.NAME" -> (module, NAME) for every module-level constant of a facnn library
    module that ``code`` (modules, functions, or their dotted names) reads, transitively."""
    todo = [s for item in code for s in _start(item)]
    seen: set[tuple[str, str | None]] = set()
    found: dict[str, tuple[str, str]] = {}
    while todo:
        module, name = todo.pop()
        if (module, name) in seen:
            continue
        seen.add((module, name))
        defs, imports = _parsed(module)
        if name is None:
            todo += [(module, n) for n in defs]
            continue
        node = defs.get(name)
        if node is None:
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _followed(module):
            found[f"{module}.{name}"] = (module, name)
        for x in ast.walk(node):
            if isinstance(x, ast.Name):
                if x.id in defs:
                    todo.append((module, x.id))
                elif ":" in imports.get(x.id, ""):
                    m, _, a = imports[x.id].partition(":")
                    if _followed(m):
                        todo.append((m, a))
            elif isinstance(x, ast.Attribute):
                dotted = _dotted(x.value)
                if not dotted:
                    continue
                head, _, rest = dotted.partition(".")
                target = imports.get(head, "")
                full = target + (f".{rest}" if rest else "")
                if target and ":" not in target and _followed(full) and _is_module(full):
                    todo.append((full, x.attr))
    return found


def _dump(node: ast.AST | None) -> str:
    return ast.dump(node, include_attributes=False) if node is not None else "<absent>"


def constants_hashes(code: Iterable[Any]) -> dict[str, str]:
    """"module.NAME" -> a short hash of its source, for every constant ``code`` reads."""
    return {key: hashlib.sha256(_dump(_parsed(module)[0].get(name)).encode()).hexdigest()[:12]
            for key, (module, name) in sorted(constants_read(code).items())}


@lru_cache(maxsize=None)
def _defs_at(commit: str, module: str) -> dict[str, ast.AST] | None:
    path = importlib.util.find_spec(module).origin
    try:
        rel = str(Path(path).resolve().relative_to(ROOT))
        src = subprocess.run(["git", "show", f"{commit}:{rel}"], capture_output=True, text=True,
                             cwd=ROOT, timeout=10)
    except (ValueError, OSError, subprocess.SubprocessError):
        return None
    if src.returncode != 0:
        return None
    try:
        return _defs(ast.parse(src.stdout))
    except SyntaxError:
        return None


def changed_since(code: Iterable[Any], commit: str) -> list[str] | None:
    """The constants ``code`` reads whose source differs now from ``commit``'s; None when
    that commit's files cannot be read (no git, a shallow clone)."""
    changed = []
    for key, (module, name) in sorted(constants_read(code).items()):
        then = _defs_at(commit.split("+")[0], module)
        if then is None:
            return None
        # a constant the commit lacked was not read by that commit's code (its code
        # fingerprint answers for the code that reads it now)
        if name in then and _dump(then[name]) != _dump(_parsed(module)[0].get(name)):
            changed.append(key)
    return changed
