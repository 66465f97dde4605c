"""1D thermoelasticity (case ``thermo``): temperature T drives displacement u, one way.

    pde_T = -kappa T''          - f_T
    pde_u = -E u''  + gamma T'  - f_u

with the manufactured solution T = sin(pi x) + 1, u = sin(2 pi x)
(:func:`reference.exact.thermoelastic_solution`), which is also the Dirichlet data at
both ends; the sources are the operators applied to it (:class:`~.base.ManufacturedProblem`):
f_T = kappa pi^2 sin(pi x), f_u = 4 E pi^2 sin(2 pi x) + gamma pi cos(pi x)
(:class:`reference.cases.Thermoelastic`). The coupling gamma T' puts gamma dT'/dtheta_T
into the u-rows of the Jacobian, which is what makes the NTK grow as gamma^2.

Loss terms, in order: pde_T, pde_u, bc_T, bc_u.
"""

from __future__ import annotations

from reference import exact

from .base import ManufacturedProblem

__all__ = ["ThermoelasticProblem"]


class ThermoelasticProblem(ManufacturedProblem):
    """Residuals of the thermoelastic case on 200 equispaced points of [0.01, 0.99] L."""

    cases = ("thermo",)
    orders = {"T": 2, "u": 2}

    def exact_solution(self, x):
        return exact.thermoelastic_solution(self.case, x)

    def pde_residuals(self, fields):
        case, T, u = self.case, fields["T"], fields["u"]
        return {
            "pde_T": -case.kappa * T.dxx - self.sources["pde_T"],
            "pde_u": -case.E * u.dxx + case.gamma * T.dx - self.sources["pde_u"],
        }
