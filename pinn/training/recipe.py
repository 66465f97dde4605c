"""The published training recipe per case, defined once (docs/paper.md, "The published
recipe").

What differs between the systems: the steps and the constant learning rate, the network
size (one network per field, tanh) and the interior collocation points. Everything else
of the recipe is the same for all of them and is a :class:`pinn.training.config.TrainConfig`
default (float32, GN every 1000 steps, SOAP's hyper-parameters, Adam's defaults).

Read by :class:`~pinn.training.config.TrainConfig` (``steps``, ``lr`` not given), by
:func:`pinn.training.networks.build_model` (``width``, ``depth`` None), by the problems
(``n_points`` None) and by the suite's ``paper`` profile; tests/test_recipe.py checks the
sweep specs that state the published budget against it.

>>> recipe("npp").steps, recipe("npp").lr
(30000, 0.0003)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Recipe", "PUBLISHED", "recipe"]


@dataclass(frozen=True)
class Recipe:
    steps: int        # optimizer steps
    lr: float         # constant learning rate
    width: int        # hidden width of each network
    depth: int        # hidden layers of each network
    n_points: int     # interior collocation points (2D: plus edge points, see the problem)


_LINEAR_1D = Recipe(steps=60_000, lr=1e-3, width=64, depth=4, n_points=200)
_FLOW_2D = Recipe(steps=50_000, lr=3e-4, width=128, depth=5, n_points=3000)

PUBLISHED: dict[str, Recipe] = {
    "thermo": _LINEAR_1D,
    "rd-symmetric": _LINEAR_1D,
    "rd-asymmetric": _LINEAR_1D,
    "npp": Recipe(steps=30_000, lr=3e-4, width=64, depth=4, n_points=300),
    "eof-straight": _FLOW_2D,
    "eof-patch": _FLOW_2D,   # this project's case: the straight channel's recipe
}


def recipe(case) -> Recipe:
    """The published recipe of ``case`` (a case or its name)."""
    name = case if isinstance(case, str) else case.name
    if name not in PUBLISHED:
        raise ValueError(f"no published recipe for case {name!r}; cases with one: "
                         f"{sorted(PUBLISHED)}")
    return PUBLISHED[name]
