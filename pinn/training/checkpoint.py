"""Checkpoints of a training run: written atomically, loadable with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, bools,
None and plain lists/tuples/dicts of them, so that :func:`load` can use
``torch.load(weights_only=True)`` (no arbitrary code runs when a checkpoint is read).
Writing goes to a temporary file in the same folder, flushed to disk, then
``os.replace``-d over the target: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reference.store import atomic_write

__all__ = ["save", "load", "CheckpointError"]


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
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


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
