"""Plots of a training history: loss per term, relative L2 per field, balancing weights.

The history is the trainer's list of flat rows (``step``, ``loss_<term>``,
``weight_<term>``, ``l2_<field>``, ``l2_avg``, ...). Figures are drawn with matplotlib's
non-interactive Agg backend (no display needed) and saved as PNG, atomically
(:func:`save_figure`, which every plot of the package uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from reference.store import atomic_write  # noqa: E402

__all__ = ["plot_history", "save_figure", "PLOTS"]

# file name -> (column prefix, y label, log scale)
PLOTS = {
    "losses.png": ("loss_", "unweighted loss term", True),
    "l2.png": ("l2_", "relative L2 error", True),
    "weights.png": ("weight_", "balancing weight lambda_i", True),
}


def _series(history: Sequence[dict], prefix: str) -> dict[str, tuple[list, list]]:
    names = [key for key in history[0] if key.startswith(prefix)] if history else []
    series = {}
    for key in names:
        steps, values = [], []
        for row in history:
            value = row.get(key)
            if value is not None and value == value and value > 0:  # skip NaN / non-positive
                steps.append(row["step"])
                values.append(value)
        series[key[len(prefix):]] = (steps, values)
    return series


def save_figure(fig, path, **kwargs) -> Path:
    """Save ``fig`` to ``path`` (format from its suffix; ``kwargs`` to ``savefig``) and close
    it. Written atomically (:func:`reference.store.atomic_write`): a full disk or a kill
    leaves the previous file, never half an image."""
    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:] or None,
                                                          **kwargs))
    finally:
        plt.close(fig)


def plot_history(history: Sequence[dict], folder, title: str = "") -> list[Path]:
    """Write :data:`PLOTS` for ``history`` into ``folder``; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, (prefix, ylabel, log) in PLOTS.items():
        series = _series(history, prefix)
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (steps, values) in series.items():
            style = dict(color="black", linewidth=2) if name == "avg" else {}
            ax.plot(steps, values, label=name, **style)
        if log and any(values for _, values in series.values()):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if series:
            ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        written.append(save_figure(fig, folder / filename, dpi=100))
    return written
