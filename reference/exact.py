"""Exact and boundary-value reference solutions of the 1D problems (numpy/scipy only).

The double layer in every case obeys the Poisson-Boltzmann equation

    eps^2 phi'' = 2 sinh(phi),    c+- = exp(-+phi),

which is what the Nernst-Planck-Poisson system reduces to at equilibrium (zero ion flux).
:func:`poisson_boltzmann` solves it on an interval with Dirichlet data; it gives

- the NPP 1D reference (phi(0) = zeta, phi(L) = 0), and
- the fully developed electroosmotic channel profile (phi = zeta at both walls), with
  u = (Ex eps^2 / mu)(phi - zeta), v = 0, p = 0.

Results are cached per parameter set, so repeated scoring costs nothing.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.integrate import solve_bvp
from scipy.interpolate import CubicHermiteSpline

__all__ = [
    "poisson_boltzmann",
    "gouy_chapman",
    "npp_profile",
    "channel_profile",
    "thermoelastic_solution",
    "reaction_diffusion_solution",
]


@functools.lru_cache(maxsize=64)
def poisson_boltzmann(eps: float, left: float, right: float, length: float = 1.0,
                      tol: float = 1e-11):
    """Solve eps^2 phi'' = 2 sinh(phi) on [0, length], phi(0) = left, phi(length) = right.

    Returns ``(phi, dphi)``: callables of x giving phi and phi' (a C1 Hermite interpolant
    of the collocation solution, accurate to about ``tol``). Raises RuntimeError when
    scipy's solver does not converge.
    """
    # Initial guess: a sum of decaying Debye layers from both ends (the linearised
    # solution), on a mesh graded towards the walls where the layers are.
    debye = eps / math.sqrt(2.0)
    s = np.linspace(0.0, 1.0, 401)
    x = length * 0.5 * (1.0 - np.cos(np.pi * s))
    guess = left * np.exp(-x / debye) + right * np.exp(-(length - x) / debye)
    dguess = -left / debye * np.exp(-x / debye) + right / debye * np.exp(-(length - x) / debye)

    def rhs(x, y):
        return np.vstack([y[1], 2.0 * np.sinh(y[0]) / eps**2])

    def bc(ya, yb):
        return np.array([ya[0] - left, yb[0] - right])

    sol = solve_bvp(rhs, bc, x, np.vstack([guess, dguess]), tol=tol, max_nodes=200_000)
    if not sol.success:
        raise RuntimeError(f"Poisson-Boltzmann solve failed (eps={eps}): {sol.message}")
    # Hermite interpolation with the exact derivative from the ODE keeps the
    # interpolant as accurate as the collocation solution between the nodes.
    phi = CubicHermiteSpline(sol.x, sol.y[0], sol.y[1])
    dphi = CubicHermiteSpline(sol.x, sol.y[1], 2.0 * np.sinh(sol.y[0]) / eps**2)
    return phi, dphi


def gouy_chapman(x, eps: float, zeta: float):
    """Single-wall Gouy-Chapman layer, phi = 2 ln[(1 + g e)/(1 - g e)], e = exp(-sqrt2 x/eps),
    g = tanh(zeta/4): the exact solution of eps^2 phi'' = 2 sinh(phi) on a half line."""
    g = math.tanh(zeta / 4.0)
    e = np.exp(-math.sqrt(2.0) * np.asarray(x) / eps)
    return 2.0 * np.log((1.0 + g * e) / (1.0 - g * e))


def npp_profile(case, x) -> dict[str, np.ndarray]:
    """Reference fields of the NPP 1D case at the points ``x``."""
    phi, _ = poisson_boltzmann(case.eps, case.zeta, 0.0, case.length)
    p = phi(np.asarray(x, dtype=float))
    return {"c_plus": np.exp(-p), "c_minus": np.exp(p), "phi": p}


def channel_profile(case, y) -> dict[str, np.ndarray]:
    """Fully developed electroosmotic profile across a straight channel at heights ``y``
    (fields phi, c_plus, c_minus, u, v, p; x-independent)."""
    phi, _ = poisson_boltzmann(case.eps, case.zeta, case.zeta, 1.0)
    p = phi(np.asarray(y, dtype=float))
    return {
        "phi": p,
        "c_plus": np.exp(-p),
        "c_minus": np.exp(p),
        "u": case.Ex * case.eps**2 / case.mu * (p - case.zeta),
        "v": np.zeros_like(p),
        "p": np.zeros_like(p),
    }


def _sin(x):
    """sin of a numpy array or a torch tensor (the manufactured solutions below serve both:
    numpy for scoring, torch for the PINN problems' sources, pinn.problems.base)."""
    return x.sin() if hasattr(x, "sin") else np.sin(x)


def _cos(x):
    return x.cos() if hasattr(x, "cos") else np.cos(x)


def thermoelastic_solution(case, x) -> dict:
    """T = sin(pi x) + 1, u = sin(2 pi x) (``x``: numpy array or torch tensor)."""
    x = x if hasattr(x, "sin") else np.asarray(x, dtype=float)
    return {"T": _sin(np.pi * x) + 1.0, "u": _sin(2.0 * np.pi * x)}


def reaction_diffusion_solution(case, x) -> dict:
    """cA = sin(pi x) + 2, cB = cos(pi x) + 2, cC = sin(2 pi x) + 2 (numpy or torch)."""
    x = x if hasattr(x, "sin") else np.asarray(x, dtype=float)
    return {
        "c_A": _sin(np.pi * x) + 2.0,
        "c_B": _cos(np.pi * x) + 2.0,
        "c_C": _sin(2.0 * np.pi * x) + 2.0,
    }
