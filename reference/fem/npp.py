r"""The 1D Nernst-Planck-Poisson double layer by finite elements (a cross-check of exact.py).

:class:`reference.cases.NernstPlanckPoisson` on x in [0, L]::

    (c+' + c+ phi')' = 0,   (c-' - c- phi')' = 0,   eps^2 phi'' + (c+ - c-) = 0,
    x = 0: phi = zeta, c+- = exp(-+zeta);   x = L: phi = 0, c+- = 1.

that is, with the fluxes J+ = c+' + c+ phi', J- = c-' - c- phi' and D = eps^2 phi'
(:func:`fluxes`), J+' = 0, J-' = 0, D' + c+ - c- = 0 (:func:`strong_residuals`: the same
equations as the PINN's residuals np_plus, np_minus, poisson in pinn/problems/npp.py;
tests/test_equations.py evaluates both on the same fields). Weak form (P2 for all three
fields, tests s+, s-, q; minus the strong form against the tests, integrated by parts)::

    (J+, s+') + (J-, s-') + (D, q') - (c+ - c-, q) = 0

solved by Newton + MUMPS from the Debye-Hueckel guess phi = zeta exp(-sqrt(2) x / eps),
c+- = exp(-+phi). The layer sits at x = 0, so the mesh is graded towards it:
x(s) = L (1 - tanh(beta (1 - s)) / tanh(beta)).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from reference.fem import compat
from reference.fem.eof import ATOL, RTOL, SolverError, dirichlet, newton, set_fields

__all__ = ["NPPSolution", "solve", "graded_interval", "fluxes", "strong_residuals"]

log = logging.getLogger("reference.fem")
C_PLUS, C_MINUS, PHI = range(3)


def graded_points(s, length: float, beta: float) -> np.ndarray:
    """x(s) = length (1 - tanh(beta (1 - s)) / tanh(beta)): [0, 1] onto [0, length],
    clustered towards x = 0 (strength beta)."""
    return length * (1.0 - np.tanh(beta * (1.0 - np.asarray(s))) / math.tanh(beta))


def graded_interval(comm, n: int, length: float, beta: float):
    """Interval mesh of [0, length], n cells placed by :func:`graded_points`."""
    msh = compat.create_interval(comm, n, (0.0, 1.0))
    msh.geometry.x[:, 0] = graded_points(msh.geometry.x[:, 0].copy(), length, beta)
    return msh


class NPPSolution:
    """A converged 1D solution: ``evaluate(x)`` gives c_plus, c_minus, phi at points x."""

    def __init__(self, case, msh, w, stats):
        self.case, self.msh, self.w, self.stats = case, msh, w, stats

    def evaluate(self, x, root: int | None = None):
        points = np.asarray(x, dtype=float)[:, None]
        values = {name: compat.evaluate(self.w.sub(i).collapse(), points, root=root)
                  for i, name in enumerate(("c_plus", "c_minus", "phi"))}
        if root is not None and self.msh.comm.rank != root:
            return None
        return values


def fluxes(case, c_plus, c_minus, phi):
    """(J+, J-, D): J+- = grad c+- +- c+- grad phi, D = eps^2 grad phi (UFL)."""
    grad = ufl.grad
    return (grad(c_plus) + c_plus * grad(phi), grad(c_minus) - c_minus * grad(phi),
            case.eps**2 * grad(phi))


def strong_residuals(case, c_plus, c_minus, phi) -> dict:
    """The equations in strong form (UFL), named as the PINN's residuals."""
    j_plus, j_minus, d = fluxes(case, c_plus, c_minus, phi)
    return {"np_plus": ufl.div(j_plus), "np_minus": ufl.div(j_minus),
            "poisson": ufl.div(d) + c_plus - c_minus}


def solve(case, n: int | None = None, beta: float = 2.0, comm=MPI.COMM_WORLD) -> NPPSolution:
    """Solve the NPP case on a graded P2 mesh of n cells (default: 40 cells per Debye
    length at the wall, at least 2000)."""
    if case.name != "npp":
        raise ValueError(f"the NPP solver needs the 'npp' case, got {case.name!r}")
    start = time.perf_counter()
    debye = case.eps / math.sqrt(2.0)
    if n is None:
        wall_cell = case.length * beta / math.tanh(beta) / math.cosh(beta) ** 2
        n = max(2000, math.ceil(40 * wall_cell / debye))
    msh = graded_interval(comm, n, case.length, beta)
    W = compat.mixed_space(msh, [(2, ()), (2, ()), (2, ())])
    w = fem.Function(W)
    c_plus, c_minus, phi = ufl.split(w)
    s_plus, s_minus, q = ufl.TestFunctions(W)
    grad, inner = ufl.grad, ufl.inner
    j_plus, j_minus, d = fluxes(case, c_plus, c_minus, phi)
    F = (inner(j_plus, grad(s_plus)) + inner(j_minus, grad(s_minus)) + inner(d, grad(q))
         - (c_plus - c_minus) * q) * ufl.dx

    guess = lambda x: case.zeta * np.exp(-x[0] / debye)
    set_fields(w, {C_PLUS: lambda x: np.exp(-guess(x)), C_MINUS: lambda x: np.exp(guess(x)),
                   PHI: guess})
    ends = {0.0: {PHI: case.zeta, C_PLUS: math.exp(-case.zeta), C_MINUS: math.exp(case.zeta)},
            case.length: {PHI: 0.0, C_PLUS: 1.0, C_MINUS: 1.0}}
    bcs = [dirichlet(W, msh, index, lambda x, e=end: np.isclose(x[0], e),
                      lambda x, v=value: np.full(x.shape[1], v))
           for end, values in ends.items() for index, value in values.items()]
    iterations, converged, residuals = newton(F, w, bcs, case.label)
    if not converged:
        raise SolverError(f"Newton did not converge for case {case.label} (eps={case.eps:g}): "
                          f"last residual {residuals[-1] if residuals else float('nan'):.3e}")
    stats = {"newton_iterations": iterations, "residuals": residuals, "cells": n, "beta": beta,
             "dofs": int(W.dofmap.index_map.size_global * W.dofmap.index_map_bs),
             "wall_time": time.perf_counter() - start, "mpi_size": comm.size,
             "linear_solver": "MUMPS LU", "stopping_test": {"atol": ATOL, "rtol": RTOL}}
    return NPPSolution(case, msh, w, stats)
