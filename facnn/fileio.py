"""Files: atomic writes, stale temp files, JSON that may be truncated, the git commit.

Every file a run writes goes through :func:`atomic_write_bytes`: a temp file beside the
target (``.<name>.tmp<PID>``), flushed, fsynced, then renamed over the target, so a kill
mid-write leaves the previous file intact. The temp file is removed when the write fails
or is interrupted; a process killed outright (SIGKILL, power cut) leaves it behind, and
:func:`sweep_stale_temps` removes such files of dead processes when a run starts again.

An OSError from the disk (full, read-only, no permission) becomes a :class:`StorageError`
whose one-line message names the path and what to do.
"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
_TEMP = re.compile(r"^\..+\.tmp(\d+)$")


class StorageError(OSError):
    """A file could not be written; the message names the path and the fix."""


def storage_error(path: Path | str, e: OSError) -> StorageError:
    """The one-line error for an OSError ``e`` met while writing ``path``."""
    if e.errno in _NO_SPACE:
        fix = "no space left on the device; free space there, or write elsewhere"
    elif e.errno in _NOT_WRITABLE:
        fix = f"the folder is not writable ({e.strerror or 'permission denied'}); choose a writable one"
    else:
        fix = f"{e.strerror or e}; check the folder, or write elsewhere"
    err = StorageError(f"cannot write {path}: {fix} with --set out_dir=DIR (out_dir=... in Python)")
    err.errno, err.path = e.errno, str(path)   # not .filename: str() would change form
    return err


def make_dir(path: Path | str) -> Path:
    """mkdir -p, with a StorageError naming the folder when it cannot be created."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except StorageError:
        raise
    except OSError as e:
        raise storage_error(path, e) from None
    return path


def atomic_write_bytes(path: Path | str, write: Callable[[Any], Any]) -> None:
    """Write through ``write(file)`` to a temp file beside ``path``, then rename: a kill
    mid-write leaves the previous file intact, and a failed or interrupted write leaves no
    temp file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    done = False
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    except StorageError:
        raise
    except OSError as e:
        raise storage_error(path, e) from None
    finally:
        if not done:
            try:
                tmp.unlink()
            except OSError:
                pass


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True     # exists but belongs to someone else (or we cannot tell): keep
    return True


def sweep_stale_temps(folder: Path | str) -> list[Path]:
    """Remove ``.<name>.tmp<PID>`` files in ``folder`` whose process is gone (left by a
    SIGKILL mid-write). Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def read_json(path: Path | str, fix: str | None = None) -> Any:
    """json.load, with a ValueError naming the file and the fix when it is truncated or
    not JSON (a FileNotFoundError stays one)."""
    path = Path(path)
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is truncated or not valid JSON ({e.msg} at line {e.lineno}); "
                         f"{fix or 'delete it and rerun the command that wrote it'}") from None


def read_jsonl(path: Path | str, fix: str | None = None) -> list[Any]:
    """One JSON value per line, with the same errors as :func:`read_json`."""
    path = Path(path)
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path} line {i} is truncated or not valid JSON ({e.msg}); "
                             f"{fix or 'delete it and rerun the command that wrote it'}") from None
    return rows


def git_commit() -> str:
    """The short commit of the facnn checkout, or "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
