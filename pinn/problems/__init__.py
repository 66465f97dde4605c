"""PINN problems: the residuals, loss terms and scores of each benchmark case.

``get_problem(case, **options)`` returns the problem of a case (or of a case name, with its
default parameters); the options are those of :class:`~pinn.problems.base.Problem`.
Each case family has its own module; a new case is one module plus one line in
``PROBLEMS``.
"""

from __future__ import annotations

from reference.cases import get_case

from .base import Field, Problem, field_derivatives
from .electroosmotic import ElectroosmoticProblem
from .npp import NPPProblem
from .reaction_diffusion import ReactionDiffusionProblem
from .thermoelastic import ThermoelasticProblem

__all__ = ["PROBLEMS", "get_problem", "Problem", "Field", "field_derivatives",
           "ThermoelasticProblem", "ReactionDiffusionProblem", "NPPProblem",
           "ElectroosmoticProblem"]

PROBLEMS: dict[str, type[Problem]] = {
    name: cls
    for cls in (ThermoelasticProblem, ReactionDiffusionProblem, NPPProblem,
                ElectroosmoticProblem)
    for name in cls.cases
}


def get_problem(case, **options) -> Problem:
    """The problem of ``case`` (a case object or a case name)."""
    if isinstance(case, str):
        case = get_case(case)
    name = getattr(case, "name", None)
    if name not in PROBLEMS:
        raise ValueError(f"no problem for case {name!r}; valid cases: {sorted(PROBLEMS)}")
    return PROBLEMS[name](case, **options)
