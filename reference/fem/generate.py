"""Solve a case, verify the solution and write its reference file (serial or under MPI).

Every rank solves; the fields are evaluated on the store's evaluation grid and at the mesh
vertices, gathered on rank 0, and rank 0 writes the file through :mod:`reference.store`.
What each file's ``verification`` record holds:

- all EOF cases: the observed MMS orders of the discretisation family (P2 phi, c+-;
  P3 u, v; P2 p; crossed meshes; advection on), computed once per run; minimum concentrations;
  the flow rate Q(x) = int u dy through 11 cross-sections (constant for a
  divergence-free flow between no-slip walls);
- eof-straight: relative L2 error per field against the exact developed profile (absolute
  for v and p, whose exact value is 0), the mirror symmetry about y = 1/2, and the size of
  the ion fluxes (zero at equilibrium);
- eof-patch: a mesh-refinement (Richardson) estimate of the error per field from the
  meshes with 1/4, 1/2 and all of the cells, and for Pe > 0 how far the fields are from
  those at Pe = 0 (the two-way coupling; both on the mesh with 1/2 of the cells);
- npp: the error against the scipy boundary-value reference of :mod:`reference.exact`.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from reference import store
from reference.cases import FE_CASES, get_case
from reference.exact import channel_profile, npp_profile
from reference.fem import compat, eof, mms, npp
from reference.fem.meshes import channel_mesh_spec, triangulation

__all__ = ["generate", "versions", "weighted_l2"]

log = logging.getLogger("reference.fem")
SECTIONS = 11
#: L2 orders of the discretisation for smooth solutions (P2 phi, c+-; P3 u, v; P2 p).
NOMINAL_ORDER = {"phi": 3, "c_plus": 3, "c_minus": 3, "u": 4, "v": 4, "p": 3}


def versions(comm) -> dict:
    import dolfinx
    from petsc4py import PETSc

    return {"dolfinx": dolfinx.__version__,
            "petsc": ".".join(str(v) for v in PETSc.Sys.getVersion()),
            "mpi_size": comm.size}


def weighted_l2(values, weight) -> float:
    """sqrt(sum w f^2): the grid's quadrature of the L2 norm."""
    return float(np.sqrt(np.sum(weight * np.asarray(values) ** 2)))


def _grid_points(case):
    grid = store.evaluation_grid(case)
    return grid, store.grid_points(grid)


def _on_grid(solution, case, root=0):
    grid, points = _grid_points(case)
    values = solution.evaluate(points, root=root)
    if values is None:
        return None
    return {name: v.reshape(grid["weight"].shape) for name, v in values.items()}


_MMS_CACHE: dict = {}
_PE0_CACHE: dict = {}


def _mms_record(comm) -> dict:
    """Observed orders of the six-field discretisation (strong advection: a = 40),
    computed once per run (per communicator size) and stored in every EOF file."""
    if comm.size not in _MMS_CACHE:
        case = get_case("eof-straight", eps=0.5, Pe=10.0)
        _MMS_CACHE[comm.size] = mms.convergence(case, (8, 16, 32), comm)
    return _MMS_CACHE[comm.size]


def _flow_rates(solution, spec, root=0):
    """Q(x) = int_0^1 u dy at SECTIONS positions (4-point Gauss on 4 sub-intervals of each
    mesh row, exact for the piecewise cubic u up to round-off)."""
    nodes, weights = np.polynomial.legendre.leggauss(4)
    t = spec.y(np.linspace(0.0, 1.0, 4 * spec.ny + 1))
    mid, half = 0.5 * (t[1:] + t[:-1]), 0.5 * np.diff(t)
    y = (mid[:, None] + half[:, None] * nodes).ravel()
    wy = (half[:, None] * weights).ravel()
    xs = np.linspace(0.0, spec.length, SECTIONS)
    points = np.column_stack([np.repeat(xs, y.size), np.tile(y, xs.size)])
    velocity = solution.functions()["velocity"]
    values = compat.evaluate(velocity, points, root=root)
    if values is None:
        return None
    rates = (values[:, 0].reshape(xs.size, y.size) * wy).sum(axis=1)
    return {"x": xs.tolist(), "Q": rates.tolist(),
            "relative_variation": float(np.ptp(rates) / np.abs(rates).mean())}


def _ion_fluxes(solution) -> dict:
    """||grad c+- +- c+- grad phi|| / ||grad c+-||: zero at equilibrium (Boltzmann ions)."""
    phi, c_plus, c_minus, _, _ = ufl.split(solution.w)
    comm = solution.msh.comm
    norm = lambda e: math.sqrt(comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(e, e) * ufl.dx)),
                                              op=MPI.SUM))
    grad = ufl.grad
    return {"c_plus": norm(grad(c_plus) + c_plus * grad(phi)) / norm(grad(c_plus)),
            "c_minus": norm(grad(c_minus) - c_minus * grad(phi)) / norm(grad(c_minus))}


def _relative_differences(a: dict, b: dict, weight) -> dict:
    return {name: weighted_l2(a[name] - b[name], weight) / weighted_l2(b[name], weight)
            for name in a}


def _eof(case, comm):
    spec = channel_mesh_spec(case)
    solution = eof.solve(case, spec, comm)
    grid = store.evaluation_grid(case)
    fields = _on_grid(solution, case)
    mesh = triangulation(spec)
    mesh_fields = solution.evaluate(mesh["vertices"], root=0)
    flow = _flow_rates(solution, spec)
    fluxes = _ion_fluxes(solution) if case.straight else None  # stored for the straight channel
    checks = {"mms": _mms_record(comm), "mesh": spec.as_dict()}

    extra = {}
    if case.straight:
        checks["tolerance"] = 1e-6
    else:
        # Richardson: e_N ~ |f_N - f_N/2| / (2^p - 1), p observed from N/4, N/2, N.
        for factor in (0.5, 0.25):
            coarse = eof.solve(case, spec.refined(factor), comm)
            extra[factor] = _on_grid(coarse, case)
            checks.setdefault("coarse_solves", []).append(
                {"factor": factor, "dofs": coarse.stats["dofs"],
                 "newton_iterations": coarse.stats["newton_iterations"]})
        # The coupling measure (fields at Pe vs Pe = 0, differences of 1e-3 ... 1e-1) is
        # taken on the N/2 mesh: its ~3e-5 error is small enough, and a second fine
        # solve would double the generation time.
        half = spec.refined(0.5)
        if case.Pe > 0:
            key = (case.replace(Pe=0.0), half)
            if key not in _PE0_CACHE:  # --all solves Pe = 0 first: reuse it
                _PE0_CACHE[key] = _on_grid(eof.solve(key[0], half, comm), case)
            extra["Pe0"] = _PE0_CACHE[key]
        else:
            _PE0_CACHE[(case, half)] = extra[0.5]
    if comm.rank != 0:
        return None

    weight = grid["weight"]
    checks["min_concentration"] = {"c_plus": float(fields["c_plus"].min()),
                                   "c_minus": float(fields["c_minus"].min())}
    checks["flow_rate"] = flow
    if case.straight:
        exact = channel_profile(case, grid["y"])
        errors, absolute = {}, {}
        for name in case.fields:
            diff = weighted_l2(fields[name] - exact[name][:, None], weight)
            scale = weighted_l2(np.broadcast_to(exact[name][:, None], weight.shape), weight)
            if scale > 0:
                errors[name] = diff / scale
            else:
                absolute[name] = diff
        checks["relative_l2_vs_exact"] = errors
        checks["absolute_l2_vs_exact"] = absolute
        checks["meets_tolerance"] = bool(max(errors.values()) <= checks["tolerance"])
        checks["symmetry_max_abs"] = {name: float(np.abs(v - v[::-1]).max())
                                      for name, v in fields.items() if name != "v"}
        checks["symmetry_max_abs"]["v"] = float(np.abs(fields["v"] + fields["v"][::-1]).max())
        checks["ion_flux_relative"] = fluxes
    else:
        d1 = _relative_differences(fields, extra[0.5], weight)
        d2 = _relative_differences(extra[0.5], extra[0.25], weight)
        orders = {k: math.log2(d2[k] / d1[k]) for k in d1}
        checks["richardson"] = {
            "difference_N_vs_N/2": d1, "difference_N/2_vs_N/4": d2, "observed_order": orders,
            "estimated_relative_error": {k: d1[k] / (2.0 ** orders[k] - 1.0) for k in d1},
            "estimated_relative_error_nominal_order": {
                k: d1[k] / (2.0 ** NOMINAL_ORDER[k] - 1.0) for k in d1},
        }
        checks["tolerance"] = 1e-5
        if case.Pe > 0:
            checks["relative_difference_from_Pe0"] = _relative_differences(extra[0.5], extra["Pe0"], weight)
            checks["relative_difference_from_Pe0_mesh"] = "N/2"
    solver = {**solution.stats, "mesh": spec.as_dict()}
    return dict(grid_fields=fields, mesh=mesh, mesh_fields=mesh_fields, solver=solver,
                verification=checks)


def _npp(case, comm):
    solution = npp.solve(case, comm=comm)
    grid = store.evaluation_grid(case)
    fields = solution.evaluate(grid["x"], root=0)
    n, beta = solution.stats["cells"], solution.stats["beta"]
    vertices = npp.graded_points(np.linspace(0.0, 1.0, n + 1), case.length, beta)
    mesh_fields = solution.evaluate(vertices, root=0)
    if comm.rank != 0:
        return None
    exact = npp_profile(case, grid["x"])
    weight = grid["weight"]
    checks = {
        "max_abs_vs_exact": {k: float(np.abs(fields[k] - exact[k]).max()) for k in fields},
        "relative_l2_vs_exact": {k: weighted_l2(fields[k] - exact[k], weight)
                                 / weighted_l2(exact[k], weight) for k in fields},
        "exact": "reference.exact.npp_profile (scipy solve_bvp, tol 1e-11)",
    }
    mesh = {"vertices": vertices[:, None], "cells": np.column_stack([np.arange(n), np.arange(1, n + 1)])}
    return dict(grid_fields=fields, mesh=mesh, mesh_fields=mesh_fields, solver=solution.stats,
                verification=checks)


def generate(case, out=None, comm=MPI.COMM_WORLD, write: bool = True):
    """Solve and verify ``case``; on rank 0 write ``<out>/<case.label>.h5`` (when
    ``write``; ``out`` defaults to the project's data/ folder, where readers look) and
    return (path or None, record); other ranks return (None, None)."""
    if case.name not in FE_CASES:
        raise ValueError(f"no finite-element reference for case {case.name!r}; "
                         f"cases with one: {list(FE_CASES)}")
    record = _npp(case, comm) if case.name == "npp" else _eof(case, comm)
    if comm.rank != 0:
        return None, None
    path = None
    if write:
        path = store.reference_path(case, out)
        store.write_reference(path, case, generator=versions(comm), **record)
        log.info("wrote %s", path)
    return path, record
