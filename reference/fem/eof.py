r"""Steady electroosmotic flow with resolved double layers: six fields, one Newton solve.

The system of :class:`reference.cases.ElectroosmoticFlow` on the channel [0, L] x [0, 1]::

    Poisson      eps^2 lap(phi) + (c+ - c-)                     = 0
    NP+          div(grad c+ + c+ grad phi) - a u.grad(c+)      = 0
    NP-          div(grad c- - c- grad phi) - a u.grad(c-)      = 0
    momentum     -grad p + mu lap(u) + Ex (c+ - c-) e_x         = 0
    continuity   div(u)                                         = 0

with a = case.advection (Pe / U). Every field is solved at once (monolithic) in the mixed
space P2 (phi) x P2 (c+) x P2 (c-) x [P3]^2 (u, v) x P2 (p); velocity/pressure is the
Taylor-Hood pair P3/P2. (With P2/P1 the pressure converged only like h^2 and limited the
2D patch case to ~4e-4 relative; P3/P2 gives h^4 velocities and h^3 pressure.) Multiplying by test functions (q, s+, s-, w, r) and integrating by parts
gives the residual F(phi, c+, c-, u, p) = 0 for all tests::

    (eps^2 grad phi, grad q) - (c+ - c-, q)
  + (grad c+ + c+ grad phi, grad s+) + (a u.grad c+, s+)
  + (grad c- - c- grad phi, grad s-) + (a u.grad c-, s-)
  + (mu grad u, grad w) - (p, div w) - (Ex (c+ - c-), w_x)
  - (div u, r)

The boundary integrals that integration by parts leaves are the natural conditions: zero
ion flux (grad c +- c grad phi).n = 0, zero field grad phi.n = 0 and zero traction
mu du/dn - p n = 0, which is what ``sides="open"`` asks for. Dirichlet conditions:

- walls y = 0, 1: phi = zeta_w(x), c+- = exp(-+zeta_w(x)), u = v = 0;
- ``sides="developed"``: phi, c+-, u from the fully developed profile
  (:func:`reference.exact.channel_profile`), v = 0, and p = 0 at the corner (0, 0) (the
  pressure is otherwise fixed only up to a constant; the exact p is 0).

Newton's method (each step a MUMPS LU solve) starts from the developed profile. If it
fails, the solver continues from an easier problem (smaller Pe, then larger eps) on the
same mesh; if that fails too it raises :class:`SolverError`.

With manufactured ``sources`` (a dict of UFL expressions, see :mod:`reference.fem.mms`)
each equation R = 0 above becomes R = f.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from reference.exact import channel_profile
from reference.fem import compat
from reference.fem.meshes import ChannelMesh, build_mesh, channel_mesh_spec

__all__ = ["SolverError", "EOFSolution", "strong_residuals", "weak_residual", "solve",
           "mixed_space", "boundary_conditions"]

log = logging.getLogger("reference.fem")

PHI, C_PLUS, C_MINUS, VELOCITY, PRESSURE = range(5)
#: Newton stopping test (docs/references.md: atol 1e-11 never converges on graded meshes).
ATOL, RTOL, MAX_IT = 1e-9, 1e-10, 25


class SolverError(RuntimeError):
    """Newton's method did not converge (the message names the case and the residual)."""


def mixed_space(msh):
    """P2 x P2 x P2 x [P3]^2 x P2: phi, c+, c-, (u, v), p."""
    return compat.mixed_space(msh, [(2, ()), (2, ()), (2, ()), (3, (msh.geometry.dim,)), (2, ())])


def strong_residuals(case, phi, c_plus, c_minus, velocity, p) -> dict:
    """The left-hand sides of the five equations as UFL expressions (module docstring).

    Works on any UFL expressions, e.g. manufactured fields of SpatialCoordinate: that is
    how :mod:`reference.fem.mms` derives its sources from the same equations. The PINN's
    residuals are the same equations in PyTorch (pinn/problems/electroosmotic.py, momentum
    split into stokes_x, stokes_y); tests/test_equations.py checks that they agree.
    """
    div, grad, dot = ufl.div, ufl.grad, ufl.dot
    a, e_x = case.advection, ufl.as_vector((1.0, 0.0))
    charge = c_plus - c_minus
    return {
        "poisson": case.eps**2 * div(grad(phi)) + charge,
        "np_plus": div(grad(c_plus) + c_plus * grad(phi)) - a * dot(velocity, grad(c_plus)),
        "np_minus": div(grad(c_minus) - c_minus * grad(phi)) - a * dot(velocity, grad(c_minus)),
        "momentum": -grad(p) + case.mu * div(grad(velocity)) + case.Ex * charge * e_x,
        "continuity": div(velocity),
    }


def weak_residual(case, w, sources: dict | None = None):
    """The residual form F(w; tests) of the module docstring (plus sources if given)."""
    phi, c_plus, c_minus, velocity, p = ufl.split(w)
    q, s_plus, s_minus, test_u, r = ufl.TestFunctions(w.function_space)
    grad, inner, dot, div, dx = ufl.grad, ufl.inner, ufl.dot, ufl.div, ufl.dx
    a, e_x = case.advection, ufl.as_vector((1.0, 0.0))
    charge = c_plus - c_minus
    F = (case.eps**2 * inner(grad(phi), grad(q)) - charge * q) * dx
    F += inner(grad(c_plus) + c_plus * grad(phi), grad(s_plus)) * dx
    F += inner(grad(c_minus) - c_minus * grad(phi), grad(s_minus)) * dx
    F += (case.mu * inner(grad(velocity), grad(test_u)) - p * div(test_u)
          - case.Ex * charge * dot(e_x, test_u)) * dx
    F -= div(velocity) * r * dx
    if a:
        F += a * (dot(velocity, grad(c_plus)) * s_plus + dot(velocity, grad(c_minus)) * s_minus) * dx
    if sources:
        # R = f in strong form; the weak form above is -(R, test), so add (f, test).
        F += (sources["poisson"] * q + sources["np_plus"] * s_plus
              + sources["np_minus"] * s_minus + dot(sources["momentum"], test_u)
              + sources["continuity"] * r) * dx
    return F


# --- boundary conditions and the initial guess --------------------------------------------
def _on(coordinate: int, value: float):
    return lambda x: np.isclose(x[coordinate], value)


def dirichlet(W, msh, index: int, where, values: Callable):
    """Dirichlet condition on sub-space ``index`` at the boundary facets ``where`` selects;
    ``values(x)`` gives the data at points x (shape (n,) or (gdim, n))."""
    fdim = msh.topology.dim - 1
    V, _ = W.sub(index).collapse()
    data = fem.Function(V)
    data.interpolate(values)
    facets = mesh.locate_entities_boundary(msh, fdim, where)
    dofs = fem.locate_dofs_topological((W.sub(index), V), fdim, facets)
    return fem.dirichletbc(data, dofs, W.sub(index))


def boundary_conditions(case, W, msh) -> list:
    """Walls (and, for ``sides="developed"``, the sides and a pressure point) of the case."""
    bcs = []
    for wall, y_wall in (("bottom", 0.0), ("top", 1.0)):
        zeta = lambda x, wall=wall: case.wall_zeta(x[0], wall, exp=np.exp)
        where = _on(1, y_wall)
        bcs += [dirichlet(W, msh, PHI, where, zeta),
                dirichlet(W, msh, C_PLUS, where, lambda x, z=zeta: np.exp(-z(x))),
                dirichlet(W, msh, C_MINUS, where, lambda x, z=zeta: np.exp(z(x))),
                dirichlet(W, msh, VELOCITY, where, lambda x: np.zeros((2, x.shape[1])))]
    if case.sides == "developed":
        ends = lambda x: np.isclose(x[0], 0.0) | np.isclose(x[0], case.length)
        profile = lambda x: channel_profile(case, x[1])
        bcs += [dirichlet(W, msh, PHI, ends, lambda x: profile(x)["phi"]),
                dirichlet(W, msh, C_PLUS, ends, lambda x: profile(x)["c_plus"]),
                dirichlet(W, msh, C_MINUS, ends, lambda x: profile(x)["c_minus"]),
                dirichlet(W, msh, VELOCITY, ends,
                           lambda x: np.vstack([profile(x)["u"], np.zeros(x.shape[1])]))]
        bcs.append(pressure_gauge(W, lambda x: np.zeros(x.shape[1])))
    return bcs


def pressure_gauge(W, values: Callable):
    """p = values at the corner (0, 0): fixes the constant of an all-Dirichlet flow."""
    Q, _ = W.sub(PRESSURE).collapse()
    data = fem.Function(Q)
    data.interpolate(values)
    corner = lambda x: np.isclose(x[0], 0.0) & np.isclose(x[1], 0.0)
    dofs = fem.locate_dofs_geometrical((W.sub(PRESSURE), Q), corner)
    return fem.dirichletbc(data, dofs, W.sub(PRESSURE))


def set_fields(w, values: dict[int, Callable]) -> None:
    """Interpolate ``values[i]`` (a callable of x) into sub-field i of the mixed ``w``."""
    W = w.function_space
    for index, f in values.items():
        V, dofs = W.sub(index).collapse()
        g = fem.Function(V)
        g.interpolate(f)
        w.x.array[dofs] = g.x.array
    w.x.scatter_forward()


def profile_guess(case) -> dict[int, Callable]:
    """The fully developed profile (uniform wall zeta = case.zeta) as callables of x."""
    def field(name):
        return lambda x: channel_profile(case, x[1])[name]
    return {PHI: field("phi"), C_PLUS: field("c_plus"), C_MINUS: field("c_minus"),
            VELOCITY: lambda x: np.vstack([field("u")(x), np.zeros(x.shape[1])]),
            PRESSURE: lambda x: np.zeros(x.shape[1])}


# --- the solve --------------------------------------------------------------------------
@dataclass
class EOFSolution:
    """A converged solution: the case, its mesh, the mixed Function and solver statistics."""

    case: object
    spec: ChannelMesh | None
    msh: object
    w: object
    stats: dict = field(default_factory=dict)

    def functions(self) -> dict:
        """Collapsed Functions: phi, c_plus, c_minus, velocity (vector), p."""
        names = ("phi", "c_plus", "c_minus", "velocity", "p")
        return {name: self.w.sub(i).collapse() for i, name in enumerate(names)}

    def evaluate(self, points, root: int | None = None) -> dict[str, np.ndarray] | None:
        """Every case field (phi, c_plus, c_minus, u, v, p) at ``points`` (n, 2): on every
        rank (root None) or only on rank ``root`` (None elsewhere)."""
        values = {name: compat.evaluate(f, points, root=root)
                  for name, f in self.functions().items()}
        if root is not None and self.msh.comm.rank != root:
            return None
        velocity = values.pop("velocity")
        values["u"], values["v"] = velocity[:, 0], velocity[:, 1]
        return {name: values[name] for name in ("phi", "c_plus", "c_minus", "u", "v", "p")}


def newton(F, w, bcs, label: str) -> tuple[int, bool, list[float]]:
    """Newton (MUMPS) on the residual form F for w, a log line per step; returns
    (iterations, converged, residual norms), converged only with finite residuals."""
    residuals: list[float] = []
    comm = w.function_space.mesh.comm

    def monitor(k, norm):
        residuals.append(float(norm))
        if comm.rank == 0:
            log.info("%s Newton %d: |F| = %.3e", label, k, norm)

    iterations, converged = compat.newton_solve(F, w, bcs, atol=ATOL, rtol=RTOL,
                                                max_it=MAX_IT, monitor=monitor)
    converged = converged and all(math.isfinite(r) for r in residuals)
    return iterations, converged, residuals


def _continuation(case) -> list:
    """Easier problems leading to ``case``: Pe ramped up from 0, then eps from >= 0.5 down."""
    steps = []
    if case.Pe > 0:
        steps += [case.replace(Pe=case.Pe * f) for f in (0.0, 0.1, 0.3, 1.0)]
        base = steps[0]
    else:
        base = case
    if base.eps < 0.5:
        eps_path = [base.eps * 2**k for k in range(int(math.log2(0.5 / base.eps)), 0, -1)]
        steps = [base.replace(eps=e) for e in eps_path] + (steps or [case])
    return steps or [case]


def solve(case, spec: ChannelMesh | None = None, comm=MPI.COMM_WORLD, *, msh=None,
          bcs: Callable | None = None, sources: dict | None = None,
          guess: dict[int, Callable] | None = None) -> EOFSolution:
    """Solve the six-field system of ``case`` (an ElectroosmoticFlow).

    The mesh is ``msh`` if given, else built from ``spec`` (default: the case's own,
    :func:`reference.fem.meshes.channel_mesh_spec`). ``bcs(W, msh)`` and ``sources``
    replace the case's boundary conditions and add manufactured sources (MMS);
    ``guess`` maps sub-field index to a callable initial value.
    """
    if not hasattr(case, "wall_zeta") or not hasattr(case, "advection"):
        raise ValueError(f"the EOF solver needs an electroosmotic case, got {case.name!r}")
    start = time.perf_counter()
    if msh is None:
        spec = spec or channel_mesh_spec(case)
        msh = build_mesh(spec, comm)
    W = mixed_space(msh)
    w = fem.Function(W)
    make_bcs = bcs or (lambda W, msh: boundary_conditions(case, W, msh))
    boundary = make_bcs(W, msh)
    set_fields(w, guess or profile_guess(case))

    iterations, converged, residuals = newton(weak_residual(case, w, sources), w, boundary,
                                               case.label)
    history = [{"params": {case.coupling: case.coupling_value}, "iterations": iterations,
                "residuals": residuals}]
    if not converged:
        if msh.comm.rank == 0:
            log.warning("%s: Newton failed from the guess; continuing from easier problems",
                        case.label)
        set_fields(w, guess or profile_guess(case))
        for step in _continuation(case):
            # The Dirichlet data of a step differ only where the case does (eps, Pe enter
            # the profile and the equations), so the step's own conditions are used.
            step_bcs = (lambda W, msh, s=step: boundary_conditions(s, W, msh)) if bcs is None else make_bcs
            iterations, converged, residuals = newton(weak_residual(step, w, sources), w,
                                                      step_bcs(W, msh), step.label)
            history.append({"params": {"eps": step.eps, "Pe": step.Pe},
                            "iterations": iterations, "residuals": residuals})
            if not converged:
                last = residuals[-1] if residuals else float("nan")
                raise SolverError(
                    f"Newton did not converge for case {case.label} (continuation step "
                    f"eps={step.eps:g}, Pe={step.Pe:g}): last residual {last:.3e} after "
                    f"{iterations} iterations")
    index_map = W.dofmap.index_map
    stats = {
        "newton_iterations": sum(h["iterations"] for h in history),
        "residuals": history[-1]["residuals"],
        "solves": history,
        "dofs": int(index_map.size_global * W.dofmap.index_map_bs),
        "cells": int(msh.topology.index_map(msh.topology.dim).size_global),
        "wall_time": time.perf_counter() - start,
        "mpi_size": msh.comm.size,
        "linear_solver": "MUMPS LU",
        "stopping_test": {"atol": ATOL, "rtol": RTOL, "max_it": MAX_IT},
    }
    return EOFSolution(case, spec, msh, w, stats)
