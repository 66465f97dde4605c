"""1D Nernst-Planck-Poisson equilibrium double layer (case ``npp``), nonlinear coupling.

    np_plus  = (c+' + c+ phi')' = c+'' + c+' phi' + c+ phi''
    np_minus = (c-' - c- phi')' = c-'' - c-' phi' - c- phi''
    poisson  = eps^2 phi'' + (c+ - c-)

x = x0: phi = zeta, c+ = exp(-zeta), c- = exp(zeta);  x = x1: phi = 0, c+ = c- = 1
(:class:`reference.cases.NernstPlanckPoisson`). The reference is the Poisson-Boltzmann
solution c+- = exp(-+phi), eps^2 phi'' = 2 sinh(phi) (:func:`reference.exact.npp_profile`).

Collocation (the recipe): half the points equispaced in [0.01, 0.99] L, half clustered in
the double layer at x = 0, x = w (1 - cos s) for s equispaced in [0, pi/2],
w = min(5 eps, L/2).

Loss terms, in order: np_plus, np_minus, poisson, bc_c_plus, bc_c_minus, bc_phi.
"""

from __future__ import annotations

import math

import torch

from reference import exact

from .base import IntervalProblem, uniform_interval

__all__ = ["NPPProblem", "layer_points"]


def layer_points(n: int, width: float) -> torch.Tensor:
    """n points x = width (1 - cos s), s equispaced in [0, pi/2]: dense near x = 0."""
    s = torch.linspace(0.0, math.pi / 2, n, dtype=torch.float64)
    return width * (1.0 - torch.cos(s))


class NPPProblem(IntervalProblem):
    """Residuals of the NPP case on 300 points (150 uniform + 150 in the double layer)."""

    cases = ("npp",)
    orders = {"c_plus": 2, "c_minus": 2, "phi": 2}

    @property
    def layer_width(self) -> float:
        """w = min(5 eps, L/2), the width of the clustered band."""
        (lo, hi), = self.case.domain
        return min(5.0 * self.case.eps, 0.5 * (hi - lo))

    def sample_interior(self, n, generator):
        (lo, hi), = self.case.domain
        uniform = uniform_interval(n // 2, lo, hi)[:, 0]
        layer = lo + layer_points(n - n // 2, self.layer_width)
        return torch.sort(torch.cat([uniform, layer])).values[:, None]

    def boundary_values(self):
        zeta = self.case.zeta
        return {"c_plus": (math.exp(-zeta), 1.0), "c_minus": (math.exp(zeta), 1.0),
                "phi": (zeta, 0.0)}

    def pde_residuals(self, fields):
        cp, cm, phi = fields["c_plus"], fields["c_minus"], fields["phi"]
        return {
            "np_plus": cp.dxx + cp.dx * phi.dx + cp.value * phi.dxx,
            "np_minus": cm.dxx - cm.dx * phi.dx - cm.value * phi.dxx,
            "poisson": self.case.eps**2 * phi.dxx + cp.value - cm.value,
        }

    def exact_reference(self, points):
        return exact.npp_profile(self.case, points[:, 0])
