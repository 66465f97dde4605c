"""1D reaction-diffusion A <-> B <-> C (cases ``rd-symmetric``, ``rd-asymmetric``).

    pde_c_A = D1 cA'' - k1 cA + k2 cB                - f1
    pde_c_B = D2 cB'' + k1 cA - (k2 + k3) cB + k4 cC  - f2
    pde_c_C = D3 cC'' + k3 cB - k4 cC                - f3

The sources f_i are the left-hand sides applied to the exact solution
cA = sin(pi x) + 2, cB = cos(pi x) + 2, cC = sin(2 pi x) + 2, which is also the
Dirichlet data at both ends (:class:`reference.cases.ReactionDiffusion`; rates
(k1, k2, k3, k4) = case.rates). The rates couple the three fields both ways.

Loss terms, in order: pde_c_A, pde_c_B, pde_c_C, bc_c_A, bc_c_B, bc_c_C.
"""

from __future__ import annotations

import math

import torch

from reference import exact

from .base import IntervalProblem

__all__ = ["ReactionDiffusionProblem"]


def _exact_with_second(x: torch.Tensor):
    """The exact fields and their second derivatives at ``x`` (float64)."""
    pi = math.pi
    values = {"c_A": torch.sin(pi * x) + 2, "c_B": torch.cos(pi * x) + 2,
              "c_C": torch.sin(2 * pi * x) + 2}
    second = {"c_A": -pi**2 * torch.sin(pi * x), "c_B": -pi**2 * torch.cos(pi * x),
              "c_C": -4 * pi**2 * torch.sin(2 * pi * x)}
    return values, second


class ReactionDiffusionProblem(IntervalProblem):
    """Residuals of the reaction-diffusion cases on 200 equispaced points of [0.01, 0.99] L."""

    cases = ("rd-symmetric", "rd-asymmetric")
    orders = {"c_A": 2, "c_B": 2, "c_C": 2}

    def operator(self, c, c_xx):
        """The left-hand sides, from the fields ``c`` and their second derivatives ``c_xx``
        (dicts keyed by field)."""
        case = self.case
        k1, k2, k3, k4 = case.rates
        cA, cB, cC = c["c_A"], c["c_B"], c["c_C"]
        return {
            "c_A": case.D1 * c_xx["c_A"] - k1 * cA + k2 * cB,
            "c_B": case.D2 * c_xx["c_B"] + k1 * cA - (k2 + k3) * cB + k4 * cC,
            "c_C": case.D3 * c_xx["c_C"] + k3 * cB - k4 * cC,
        }

    def setup(self) -> None:
        super().setup()
        values, second = _exact_with_second(self.interior[:, 0].to(torch.float64))
        self.sources = {name: self.tensor(f) for name, f in self.operator(values, second).items()}

    def boundary_values(self):
        (lo, hi), = self.case.domain
        ends = exact.reaction_diffusion_solution(self.case, [lo, hi])
        return {name: tuple(ends[name]) for name in self.fields}

    def pde_residuals(self, fields):
        c = {name: fields[name].value for name in self.fields}
        c_xx = {name: fields[name].dxx for name in self.fields}
        lhs = self.operator(c, c_xx)
        return {f"pde_{name}": lhs[name] - self.sources[name] for name in self.fields}

    def exact_reference(self, points):
        return exact.reaction_diffusion_solution(self.case, points[:, 0])
