"""Files: atomic writes, stale temp files, run locks, JSON that may be truncated, the git commit.

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
import hashlib
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
_TEMP = re.compile(r"^\..+\.tmp(\d+)$")
OUT_DIR_HINT = "--set out_dir=DIR (out_dir=... in Python)"
_REWRITE = "delete it and rerun the command that wrote it"


class StorageError(OSError):
    """A file could not be written; the message names the path and the fix."""


class RunLocked(RuntimeError):
    """Another process holds the lock of a run folder; the message names it."""


def storage_error(path: Path | str, e: OSError, hint: str = OUT_DIR_HINT) -> StorageError:
    """The one-line error for an OSError ``e`` met while writing ``path``; ``hint`` says how
    to write elsewhere."""
    if e.errno in _NO_SPACE:
        fix = "no space left on the device; free space there, or write elsewhere"
    elif e.errno in _NOT_WRITABLE:
        fix = f"the folder is not writable ({e.strerror or 'permission denied'}); choose a writable one"
    else:
        fix = f"{e.strerror or e}; check the folder, or write elsewhere"
    err = StorageError(f"cannot write {path}: {fix} with {hint}")
    err.errno, err.path = e.errno, str(path)   # not .filename: str() would change form
    return err


def make_dir(path: Path | str, hint: str = OUT_DIR_HINT) -> Path:
    """mkdir -p, with a StorageError naming the folder when it cannot be created."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(path, e, hint) from None
    return path


class _Recorded:
    """A file whose write errors are remembered: torch.save turns an OSError of the file
    into a RuntimeError ("enforce fail at inline_container.cc") that no longer says why."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def atomic_write_bytes(path: Path | str, write: Callable[[Any], Any], hint: str = OUT_DIR_HINT) -> None:
    """Write through ``write(file)`` to a temp file beside ``path``, then rename: a kill
    mid-write leaves the previous file intact, and a failed or interrupted write leaves no
    temp file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as raw:
            f = _Recorded(raw)
            try:
                write(f)
            except RuntimeError:
                if f.error is None:
                    raise
                raise f.error from None
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:     # Ctrl-C included: no temp file stays behind
        with suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, StorageError):
            raise storage_error(path, e, hint) from None
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


@contextmanager
def run_lock(folder: Path | str, what: str = "trained"):
    """Hold ``folder``/.lock (flock) while the block runs, so two processes never train one
    run at once; the second gets a RunLocked naming the first's PID. The file is removed on
    release; a lock file left by a killed process is free (flock dies with its owner)."""
    import fcntl
    path = Path(folder) / ".lock"
    while True:
        try:
            f = open(path, "a+")
        except OSError as e:
            if e.errno in _NOT_WRITABLE:   # a finished run in a read-only clone answers all the same;
                yield                      # nothing can train there, so no second trainer either
                return
            raise storage_error(path, e) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunLocked(f"{folder} is being {what} by {holder}; wait for it to finish (or stop "
                            f"that process) and rerun") from None
        try:   # the holder before us may have removed the file we locked: lock the new one
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    try:
        # who holds it, for the message of the next one; the lock works without it
        with suppress(OSError):
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()} (since {time.strftime('%H:%M:%S')})")
            f.flush()
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        f.close()


def sweep_stale_temps(folder: Path | str) -> list[Path]:
    """Remove ``.<name>.tmp<PID>`` files in ``folder`` whose process is gone (left by a
    SIGKILL mid-write). Returns the removed paths."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass    # exists but belongs to someone else (or we cannot tell): keep
    return True


def read_json(path: Path | str, fix: str | None = None) -> Any:
    """json.load, with a ValueError naming the file and the fix when it is truncated or
    not JSON (a FileNotFoundError stays one)."""
    path = Path(path)
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is truncated or not valid JSON ({e.msg} at line {e.lineno}); "
                         f"{fix or _REWRITE}") from None


def read_jsonl(path: Path | str, fix: str | None = None) -> list[Any]:
    """One JSON value per line, with the same errors as :func:`read_json`."""
    path, rows = Path(path), []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise ValueError(f"{path} line {i} is truncated or not valid JSON ({e.msg}); "
                             f"{fix or _REWRITE}") from None
    return rows


def git_commit() -> str:
    """The short commit of the facnn checkout, or "unknown"."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()
