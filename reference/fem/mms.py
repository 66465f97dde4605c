r"""Method of manufactured solutions for the six-field EOF discretisation.

Pick smooth fields on the unit square (the velocity divergence-free, from the stream
function psi = sin(pi x) sin(pi y) / pi; the concentrations positive)::

    phi = 0.5 sin(pi x) cos(pi y) + 0.3
    c+  = 1 + 0.4 cos(pi x) sin(pi y),     c- = 1 - 0.3 sin(2 pi x) sin(pi y) + 0.2 y
    u   = sin(pi x) cos(pi y),   v = -cos(pi x) sin(pi y),   p = cos(pi x) cos(pi y)

and let UFL differentiate them: the sources are the strong residuals
(:func:`reference.fem.eof.strong_residuals`, the same equations the solver discretises)
applied to these expressions, so the sources are derived once, symbolically. All of
phi, c+-, u, v are Dirichlet data on the whole boundary and p is fixed at (0, 0).

The discrete solution on crossed n x n meshes converges in L2 like h^3 for the P2
fields (phi, c+-), h^4 for the P3 velocity (u, v) and h^3 for the P2 pressure;
:func:`convergence` measures the observed orders  log(e_n / e_2n) / log 2.
"""

from __future__ import annotations

import math

import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from reference.fem import compat, eof

__all__ = ["manufactured_fields", "solve_manufactured", "errors", "convergence"]

FIELDS = ("phi", "c_plus", "c_minus", "u", "v", "p")


def manufactured_fields(x, lib=ufl):
    """The exact fields as expressions of the coordinates x = (x0, x1); ``lib`` is ufl
    (UFL expressions) or numpy (arrays)."""
    pi = math.pi
    sin, cos = lib.sin, lib.cos
    return {
        "phi": 0.5 * sin(pi * x[0]) * cos(pi * x[1]) + 0.3,
        "c_plus": 1.0 + 0.4 * cos(pi * x[0]) * sin(pi * x[1]),
        "c_minus": 1.0 - 0.3 * sin(2 * pi * x[0]) * sin(pi * x[1]) + 0.2 * x[1],
        "u": sin(pi * x[0]) * cos(pi * x[1]),
        "v": -cos(pi * x[0]) * sin(pi * x[1]),
        "p": cos(pi * x[0]) * cos(pi * x[1]),
    }


def solve_manufactured(case, n: int, comm=MPI.COMM_WORLD) -> eof.EOFSolution:
    """Solve the manufactured problem for ``case``'s coefficients (eps, mu, Ex, advection)
    on the crossed n x n mesh of the unit square."""
    msh = compat.create_rectangle(comm, ((0.0, 0.0), (1.0, 1.0)), (n, n), "crossed")
    X = ufl.SpatialCoordinate(msh)
    exact = manufactured_fields(X)
    velocity = ufl.as_vector((exact["u"], exact["v"]))
    sources = eof.strong_residuals(case, exact["phi"], exact["c_plus"], exact["c_minus"],
                                   velocity, exact["p"])
    numpy_exact = lambda name: (lambda x: manufactured_fields(x, np)[name])
    vector = lambda x: np.vstack([numpy_exact("u")(x), numpy_exact("v")(x)])
    everywhere = lambda x: np.full(x.shape[1], True)

    def bcs(W, msh):
        return [eof.dirichlet(W, msh, eof.PHI, everywhere, numpy_exact("phi")),
                eof.dirichlet(W, msh, eof.C_PLUS, everywhere, numpy_exact("c_plus")),
                eof.dirichlet(W, msh, eof.C_MINUS, everywhere, numpy_exact("c_minus")),
                eof.dirichlet(W, msh, eof.VELOCITY, everywhere, vector),
                eof.pressure_gauge(W, numpy_exact("p"))]

    guess = {eof.PHI: lambda x: np.zeros(x.shape[1]), eof.C_PLUS: lambda x: np.ones(x.shape[1]),
             eof.C_MINUS: lambda x: np.ones(x.shape[1]),
             eof.VELOCITY: lambda x: np.zeros((2, x.shape[1])),
             eof.PRESSURE: lambda x: np.zeros(x.shape[1])}
    return eof.solve(case, msh=msh, bcs=bcs, sources=sources, guess=guess)


def errors(solution: eof.EOFSolution) -> dict[str, float]:
    """L2 error of each field against the manufactured solution (degree-8 quadrature)."""
    msh = solution.msh
    exact = manufactured_fields(ufl.SpatialCoordinate(msh))
    phi, c_plus, c_minus, velocity, p = ufl.split(solution.w)
    computed = {"phi": phi, "c_plus": c_plus, "c_minus": c_minus, "u": velocity[0],
                "v": velocity[1], "p": p}
    dx = ufl.dx(metadata={"quadrature_degree": 8})
    result = {}
    for name in FIELDS:
        local = fem.assemble_scalar(fem.form((computed[name] - exact[name]) ** 2 * dx))
        result[name] = math.sqrt(msh.comm.allreduce(local, op=MPI.SUM))
    return result


def convergence(case, meshes=(8, 16, 32), comm=MPI.COMM_WORLD) -> dict:
    """L2 errors per field on each mesh and the observed orders between successive ones."""
    table = {n: errors(solve_manufactured(case, n, comm)) for n in meshes}
    rates = {name: [math.log(table[a][name] / table[b][name]) / math.log(b / a)
                    for a, b in zip(meshes[:-1], meshes[1:])] for name in FIELDS}
    return {"meshes": list(meshes), "mesh": "unit square, crossed diagonals",
            "params": {"eps": case.eps, "Pe": case.Pe, "advection": case.advection},
            "errors": {name: [table[n][name] for n in meshes] for name in FIELDS},
            "rates": rates}
