"""1D reaction-diffusion A <-> B <-> C (cases ``rd-symmetric``, ``rd-asymmetric``).

    pde_c_A = D1 cA'' - k1 cA + k2 cB                - f1
    pde_c_B = D2 cB'' + k1 cA - (k2 + k3) cB + k4 cC  - f2
    pde_c_C = D3 cC'' + k3 cB - k4 cC                - f3

The sources f_i are the left-hand sides applied to the manufactured solution
cA = sin(pi x) + 2, cB = cos(pi x) + 2, cC = sin(2 pi x) + 2
(:func:`reference.exact.reaction_diffusion_solution`; :class:`~.base.ManufacturedProblem`),
which is also the Dirichlet data at both ends (:class:`reference.cases.ReactionDiffusion`;
rates (k1, k2, k3, k4) = case.rates). The rates couple the three fields both ways.

Loss terms, in order: pde_c_A, pde_c_B, pde_c_C, bc_c_A, bc_c_B, bc_c_C.
"""

from __future__ import annotations

from reference import exact

from .base import ManufacturedProblem

__all__ = ["ReactionDiffusionProblem"]


class ReactionDiffusionProblem(ManufacturedProblem):
    """Residuals of the reaction-diffusion cases on 200 equispaced points of [0.01, 0.99] L."""

    cases = ("rd-symmetric", "rd-asymmetric")
    orders = {"c_A": 2, "c_B": 2, "c_C": 2}

    def exact_solution(self, x):
        return exact.reaction_diffusion_solution(self.case, x)

    def pde_residuals(self, fields):
        case = self.case
        k1, k2, k3, k4 = case.rates
        A, B, C = fields["c_A"], fields["c_B"], fields["c_C"]
        return {
            "pde_c_A": case.D1 * A.dxx - k1 * A.value + k2 * B.value - self.sources["pde_c_A"],
            "pde_c_B": (case.D2 * B.dxx + k1 * A.value - (k2 + k3) * B.value + k4 * C.value
                        - self.sources["pde_c_B"]),
            "pde_c_C": case.D3 * C.dxx + k3 * B.value - k4 * C.value - self.sources["pde_c_C"],
        }
