"""1D thermoelasticity (case ``thermo``): temperature T drives displacement u, one way.

    pde_T = -kappa T''          - f_T,   f_T = kappa pi^2 sin(pi x)
    pde_u = -E u''  + gamma T'  - f_u,   f_u = 4 E pi^2 sin(2 pi x) + gamma pi cos(pi x)

with the exact solution T = sin(pi x) + 1, u = sin(2 pi x) as Dirichlet data at both ends
(:class:`reference.cases.Thermoelastic`). The coupling gamma T' puts gamma dT'/dtheta_T
into the u-rows of the Jacobian, which is what makes the NTK grow as gamma^2.

Loss terms, in order: pde_T, pde_u, bc_T, bc_u.
"""

from __future__ import annotations

import math

import torch

from reference import exact

from .base import IntervalProblem

__all__ = ["ThermoelasticProblem"]


class ThermoelasticProblem(IntervalProblem):
    """Residuals of the thermoelastic case on 200 equispaced points of [0.01, 0.99] L."""

    cases = ("thermo",)
    orders = {"T": 2, "u": 2}

    def setup(self) -> None:
        super().setup()
        case = self.case
        x = self.interior[:, 0].to(torch.float64)
        self.f_T = self.tensor(case.kappa * math.pi**2 * torch.sin(math.pi * x))
        self.f_u = self.tensor(
            4 * case.E * math.pi**2 * torch.sin(2 * math.pi * x)
            + case.gamma * math.pi * torch.cos(math.pi * x)
        )

    def boundary_values(self):
        (lo, hi), = self.case.domain
        ends = exact.thermoelastic_solution(self.case, [lo, hi])
        return {name: tuple(ends[name]) for name in self.fields}

    def pde_residuals(self, fields):
        case, T, u = self.case, fields["T"], fields["u"]
        return {
            "pde_T": -case.kappa * T.dxx - self.f_T,
            "pde_u": -case.E * u.dxx + case.gamma * T.dx - self.f_u,
        }

    def exact_reference(self, points):
        return exact.thermoelastic_solution(self.case, points[:, 0])
