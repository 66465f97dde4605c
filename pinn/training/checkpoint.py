"""Checkpoints of a training run: written atomically, loadable with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, bools,
None and plain lists/tuples/dicts of them, so that :func:`load` can use
``torch.load(weights_only=True)`` (no arbitrary code runs when a checkpoint is read).
Writing goes to a temporary file in the same folder, flushed to disk, then
``os.replace``-d over the target: a crash mid-write leaves the previous checkpoint intact.

One writer per run folder: :func:`writer_lock` holds an exclusive ``fcntl.flock`` on
``<run folder>/.lock`` while a process trains the run. The kernel drops the lock when its
holder exits in any way (SIGKILL too), so a killed run never leaves its folder locked; a
second process that asks for a held folder gets :class:`RunDirBusy`, naming the holder's pid.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch

from reference.store import atomic_write

__all__ = ["save", "load", "CheckpointError", "RunDirBusy", "writer_lock", "LOCK"]

LOCK = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not from this trainer."""


_PLAIN = (torch.Tensor, int, float, bool, str, type(None), torch.dtype, torch.device, torch.Size)


def _check_plain(value, where: str) -> None:
    """Refuse what ``torch.load(weights_only=True)`` would not read back (e.g. a function in
    an optimizer's param_groups), naming where it is."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise CheckpointError(f"cannot checkpoint {where}: a {type(value).__name__}; a checkpoint "
                              "holds only tensors, numbers, strings and lists/dicts of them")


def save(state: dict, path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``); a state
    :func:`load` could not read back is refused before anything is written."""
    _check_plain(state, "state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: _torch_save(state, tmp))


def _torch_save(state: dict, path: Path) -> None:
    """torch.save through a Python file: a full disk is then an OSError (ENOSPC) that the
    command line reports; torch.save to a path reports it as an opaque RuntimeError."""
    with open(path, "wb") as handle:
        torch.save(state, handle)


def load(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (a write "
                              "was interrupted?); move it away and train the run again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling errors come in several types
        # the first line only: torch goes on to advise weights_only=False, which would run
        # whatever code the file holds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}; it is not a "
                              "checkpoint this trainer wrote, or it is damaged") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint")
    return state


class RunDirBusy(ValueError):
    """Another process holds a run folder's writer lock."""


# This process's locks: folder -> [its open lock file, times taken, whether taking it
# created the folder]. Taking a lock the process holds already only counts (a sweep holds
# its runs' locks, and train_batch takes them again).
_held: dict[Path, list] = {}


def _take(folder: Path) -> None:
    import fcntl

    if folder in _held:
        _held[folder][1] += 1
        return
    created = not folder.exists()
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirBusy(f"{folder} is in use: another process (pid {pid}) holds its lock "
                             "and writes there (one writer per run folder); wait until it "
                             "ends, or use another folder") from None
        try:  # the file we locked may be one its last holder removed (_release) meanwhile
            if os.path.samestat(os.fstat(handle.fileno()), (folder / LOCK).stat()):
                break
        except FileNotFoundError:
            pass
        handle.close()
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[folder] = [handle, 1, created]


def _release(folder: Path) -> None:
    entry = _held[folder]
    entry[1] -= 1
    if entry[1]:
        return
    del _held[folder]
    handle, _, created = entry
    if created and [p.name for p in folder.iterdir()] == [LOCK]:
        # a folder this lock created and nothing was written to (e.g. the run was refused):
        # removed, while still locked, so that no file of it outlives the refusal
        (folder / LOCK).unlink()
        try:
            folder.rmdir()
        except OSError:
            pass  # another process has made its own lock file there since
    handle.close()  # releases the lock


@contextmanager
def writer_lock(run_dirs):
    """Hold the writer lock of every folder in ``run_dirs`` (creating them) inside the
    block; :class:`RunDirBusy` when another process holds one (the ones taken are released).
    A folder the block created and left empty is removed again."""
    taken = []
    try:
        for run_dir in run_dirs:
            folder = Path(run_dir).resolve()
            _take(folder)
            taken.append(folder)
        yield
    finally:
        for folder in reversed(taken):
            _release(folder)
