"""The few DOLFINx calls whose spelling changed between 0.5 and 0.10+, behind one name each.

Every function tests for the *feature* it needs (``hasattr`` or a guarded import), never a
version number, so the same solver code runs on Debian 12's DOLFINx 0.5.2, Debian 13's
0.9 and 0.10/0.11 (conda-forge, the PyPI wheel dolfinx-solver-real); ``make test`` runs the
finite-element tests on 0.5.2 and on the wheel's 0.11. The Newton solve stops by the same
test on every version (:func:`newton_solve`). What changed (docs/references.md has the
full table):

==========================  ==================================  ===============================
feature                     0.5 - 0.8                           0.9+ (0.10+ where marked)
==========================  ==================================  ===============================
function space              ``fem.FunctionSpace(msh, elem)``    ``fem.functionspace(msh, elem)``
elements                    ``ufl.FiniteElement`` / ``Vector``  ``basix.ufl.element(shape=)``
mixed element               ``ufl.MixedElement``                ``basix.ufl.mixed_element``
scalar type                 ``PETSc.ScalarType``                ``dolfinx.default_scalar_type``
bounding boxes              ``geometry.BoundingBoxTree``        ``geometry.bb_tree``
colliding boxes             ``compute_collisions``              ``compute_collisions_points``
form options keyword        ``form_compiler_params``            ``form_compiler_options``
nonlinear solve             ``NonlinearProblem + NewtonSolver`` SNES ``NonlinearProblem`` (0.10+)
==========================  ==================================  ===============================

The public functions: :func:`scalar_type`, :func:`function_space`, :func:`mixed_space`,
:func:`create_rectangle`, :func:`create_interval`, :func:`evaluate`, :func:`linear_problem`,
:func:`newton_solve`, and :data:`MUMPS` (the PETSc options of a direct MUMPS LU solve).
"""

from __future__ import annotations

import inspect
import itertools
from typing import Callable, Sequence

import dolfinx
import dolfinx.fem.petsc
import numpy as np
import ufl
from dolfinx import fem, geometry, mesh
from mpi4py import MPI
from petsc4py import PETSc

__all__ = [
    "MUMPS",
    "scalar_type",
    "function_space",
    "mixed_space",
    "create_rectangle",
    "create_interval",
    "evaluate",
    "linear_problem",
    "newton_solve",
]

#: PETSc options of a direct solve with MUMPS LU (a preonly KSP).
MUMPS = {"ksp_type": "preonly", "pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}

_prefixes = itertools.count()


def scalar_type():
    """The floating-point type of DOLFINx's PETSc build (float64 here)."""
    return getattr(dolfinx, "default_scalar_type", PETSc.ScalarType)


# --- elements and spaces -----------------------------------------------------------------
def _element(msh, degree: int, shape: tuple[int, ...] = ()):
    """A Lagrange element of ``degree`` on the mesh's cell, scalar (shape ()) or vector."""
    try:
        import basix.ufl

        if hasattr(basix.ufl, "mixed_element"):  # the basix.ufl elements of 0.7+
            return basix.ufl.element("Lagrange", msh.basix_cell(), degree, shape=shape or None)
    except ImportError:
        pass
    cell = msh.ufl_cell()
    if shape:
        return ufl.VectorElement("Lagrange", cell, degree, dim=shape[0])
    return ufl.FiniteElement("Lagrange", cell, degree)


def _space(msh, element):
    if hasattr(fem, "functionspace"):
        return fem.functionspace(msh, element)
    return fem.FunctionSpace(msh, element)


def function_space(msh, degree: int, shape: tuple[int, ...] = ()):
    """Continuous Lagrange space P_degree: scalar, or vector with ``shape=(gdim,)``."""
    if degree < 1:
        raise ValueError(f"Lagrange degree must be >= 1, got {degree}")
    return _space(msh, _element(msh, degree, tuple(shape)))


def mixed_space(msh, parts: Sequence[tuple[int, tuple[int, ...]]]):
    """One space for several unknowns: ``parts`` lists (degree, shape) per sub-space.

    E.g. Taylor-Hood P2^2/P1 is ``mixed_space(msh, [(2, (2,)), (1, ())])``; ``W.sub(i)``
    is the i-th part.
    """
    if len(parts) < 2:
        raise ValueError("a mixed space needs at least two parts")
    elements = [_element(msh, degree, tuple(shape)) for degree, shape in parts]
    try:
        import basix.ufl

        if hasattr(basix.ufl, "mixed_element"):
            return _space(msh, basix.ufl.mixed_element(elements))
    except ImportError:
        pass
    return _space(msh, ufl.MixedElement(elements))


# --- meshes ----------------------------------------------------------------------------
_DIAGONALS = ("right", "left", "crossed", "right/left", "left/right")


def create_rectangle(comm, corners, n, diagonal: str = "crossed"):
    """Triangle mesh of the box ``corners = ((x0, y0), (x1, y1))`` with n = (nx, ny) cells
    per direction; ``diagonal`` splits each rectangle ('crossed': four triangles)."""
    if diagonal not in _DIAGONALS:
        raise ValueError(f"diagonal must be one of {_DIAGONALS}, got {diagonal!r}")
    nx, ny = (int(k) for k in n)
    if nx < 1 or ny < 1:
        raise ValueError(f"cell counts must be >= 1, got {n}")
    kind = getattr(mesh.DiagonalType, diagonal.replace("/", "_"))
    points = [np.asarray(c, dtype=float) for c in corners]
    return mesh.create_rectangle(comm, points, [nx, ny], cell_type=mesh.CellType.triangle,
                                 diagonal=kind)


def create_interval(comm, n: int, bounds=(0.0, 1.0)):
    """Interval mesh of [bounds[0], bounds[1]] with ``n`` cells."""
    if int(n) < 1:
        raise ValueError(f"cell count must be >= 1, got {n}")
    return mesh.create_interval(comm, int(n), [float(bounds[0]), float(bounds[1])])


# --- point evaluation --------------------------------------------------------------------
def _owned_cells_tree(msh):
    tdim = msh.topology.dim
    owned = np.arange(msh.topology.index_map(tdim).size_local, dtype=np.int32)
    if hasattr(geometry, "bb_tree"):
        return geometry.bb_tree(msh, tdim, entities=owned)
    return geometry.BoundingBoxTree(msh, tdim, entities=owned)


def _candidates(tree, points):
    if hasattr(geometry, "compute_collisions_points"):
        return geometry.compute_collisions_points(tree, points)
    return geometry.compute_collisions(tree, points)


def evaluate(function, points, root: int | None = None) -> np.ndarray:
    """Values of a DOLFINx ``function`` at ``points`` (shape (n, d), d <= 3), in serial
    and in parallel.

    Every rank passes the same points. Each rank evaluates those that lie in the cells it
    owns; the values are then combined, taking the lowest rank's value for a point on a
    partition boundary. Returns an array of shape (n,) for a scalar, (n, k) for a
    k-vector: on every rank (``root=None``) or on rank ``root`` only (others get None).
    Raises ValueError when a point lies outside the mesh.
    """
    msh = function.function_space.mesh
    comm = msh.comm
    points = np.asarray(points, dtype=float)
    if points.ndim == 1:
        points = points[:, None]
    xyz = np.zeros((points.shape[0], 3))
    xyz[:, :points.shape[1]] = points
    tree = _owned_cells_tree(msh)
    colliding = geometry.compute_colliding_cells(msh, _candidates(tree, xyz), xyz)
    found = np.array([len(colliding.links(i)) > 0 for i in range(len(xyz))], dtype=bool)
    index = np.flatnonzero(found)
    cells = np.array([colliding.links(i)[0] for i in index], dtype=np.int32)
    size = function.function_space.dofmap.index_map_bs
    local = np.zeros((len(xyz), size))
    if index.size:
        local[index] = function.eval(xyz[index], cells).reshape(index.size, size)

    # Rank r claims the points it found; the lowest claiming rank wins.
    owner = np.where(found, comm.rank, comm.size).astype(np.int32)
    first = np.empty_like(owner)
    comm.Allreduce(owner, first, op=MPI.MIN)
    if np.any(first == comm.size):
        missing = xyz[first == comm.size][0, :msh.geometry.dim]
        raise ValueError(f"{np.sum(first == comm.size)} point(s) lie outside the mesh, "
                         f"e.g. {missing}")
    local[first != comm.rank] = 0.0
    if root is None:
        values = np.empty_like(local)
        comm.Allreduce(local, values, op=MPI.SUM)
    else:
        values = np.empty_like(local) if comm.rank == root else None
        comm.Reduce(local, values, op=MPI.SUM, root=root)
        if comm.rank != root:
            return None
    return values[:, 0] if not function.ufl_shape else values   # a scalar field: (n,)


# --- solvers -------------------------------------------------------------------------------
def _options_keyword() -> str:
    """Name of the form-compiler keyword of the fem.petsc problems."""
    parameters = inspect.signature(dolfinx.fem.petsc.LinearProblem.__init__).parameters
    return "form_compiler_options" if "form_compiler_options" in parameters else "form_compiler_params"


def _needs_prefix(cls) -> bool:
    return "petsc_options_prefix" in inspect.signature(cls.__init__).parameters


def linear_problem(a, L, bcs=(), petsc_options=None, form_compiler_options=None, prefix=None):
    """A ``fem.petsc.LinearProblem`` (default options: MUMPS LU); ``.solve()`` returns
    the solution Function."""
    cls = dolfinx.fem.petsc.LinearProblem
    kwargs = {"bcs": list(bcs), "petsc_options": dict(MUMPS if petsc_options is None else petsc_options)}
    if form_compiler_options:
        kwargs[_options_keyword()] = form_compiler_options
    if _needs_prefix(cls):
        kwargs["petsc_options_prefix"] = prefix or f"linear_{next(_prefixes)}_"
    return cls(a, L, **kwargs)


def _set_options(prefix: str, options: dict) -> None:
    opts = PETSc.Options()
    for key, value in options.items():
        opts[f"{prefix}{key}"] = value


def newton_solve(F, u, bcs=(), J=None, *, atol: float = 1e-9, rtol: float = 1e-10,
                 max_it: int = 25, petsc_options=None,
                 monitor: Callable[[int, float], None] | None = None,
                 prefix: str | None = None) -> tuple[int, bool]:
    """Solve the nonlinear problem F(u; v) = 0 for ``u`` by Newton's method (in place).

    Stopping test on the residual norm, that of DOLFINx's ``NewtonSolver`` (0.5 - 0.9),
    which made the stored references, on every version: converged at step k when
    ||F(u_k)|| < atol, or (k >= 1) ||F(u_k)|| < rtol ||du_1||, where du_1 is the first
    Newton update (NewtonSolver's "residual0" is that norm, not ||F(u_0)||; the SNES path
    of 0.10+ reproduces it with its own convergence test, docs/references.md). atol 1e-11
    never converges on graded meshes: the residual floors at round-off. Each linear step
    uses ``petsc_options`` (default MUMPS LU).
    ``monitor(k, ||F(u_k)||)`` is called once per Newton step, k = 0 first.
    Returns (iterations, converged); a failed solve does not raise, the caller decides.
    """
    if J is None:
        J = ufl.derivative(F, u)
    options = dict(MUMPS if petsc_options is None else petsc_options)
    cls = dolfinx.fem.petsc.NonlinearProblem
    if _needs_prefix(cls):  # 0.10+: a PETSc SNES behind the problem
        return _snes_solve(cls, F, u, bcs, J, atol, rtol, max_it, options, monitor, prefix)

    from dolfinx.nls.petsc import NewtonSolver  # 0.5 - 0.9 (deprecated in 0.10)

    class MonitoredProblem(cls):
        """The problem that reports the residual norm the NewtonSolver tests."""

        step = 0

        def F(self, x, b):
            super().F(x, b)
            if monitor is not None:
                monitor(self.step, b.norm())
            self.step += 1

    problem = MonitoredProblem(F, u, bcs=list(bcs), J=J)
    solver = NewtonSolver(u.function_space.mesh.comm, problem)
    solver.convergence_criterion = "residual"
    solver.atol, solver.rtol, solver.max_it = atol, rtol, max_it
    solver.error_on_nonconvergence = False
    ksp = solver.krylov_solver
    prefix = prefix or f"newton_{next(_prefixes)}_"
    ksp.setOptionsPrefix(prefix)
    _set_options(prefix, options)
    ksp.setFromOptions()
    try:
        iterations, converged = solver.solve(u)
    except RuntimeError:  # e.g. a singular or non-finite Jacobian
        return problem.step, False
    return int(iterations), bool(converged)


def _newton_solver_test(atol: float, rtol: float, max_it: int):
    """A SNES convergence test that is NewtonSolver's residual criterion (0.5 - 0.9):
    ||F_k|| < atol, or ||F_k|| < rtol ||du_1|| from step 1 on (du_1: the first update).

    PETSc's default test is relative to ||F_0|| instead and, where ||F_0|| is large, stops
    one step earlier (npp eps = 0.5: after 2 steps at ||F|| = 3.1e-9 < 1e-10 ||F_0||
    = 3.9e-9 instead of 3; the fields then differ by 3e-9 relative, docs/references.md)."""
    reasons = PETSc.SNES.ConvergedReason
    first_update = [0.0]

    def test(snes, it, norms):
        _xnorm, step_norm, fnorm = norms
        if it == 1:
            first_update[0] = step_norm
        if not np.isfinite(fnorm):
            return reasons.DIVERGED_FNORM_NAN
        if fnorm < atol:
            return reasons.CONVERGED_FNORM_ABS
        if it >= 1 and fnorm < rtol * first_update[0]:
            return reasons.CONVERGED_FNORM_RELATIVE
        if it >= max_it:
            return reasons.DIVERGED_MAX_IT
        return reasons.ITERATING

    return test


def _snes_solve(cls, F, u, bcs, J, atol, rtol, max_it, options, monitor, prefix):
    """The 0.10+ path: SNES Newton, full steps (no line search), NewtonSolver's stopping
    test (:func:`_newton_solver_test`)."""
    options = {"snes_type": "newtonls", "snes_linesearch_type": "basic",
               "snes_max_it": max_it, "snes_error_if_not_converged": False, **options}
    problem = cls(F, u, bcs=list(bcs), J=J, petsc_options=options,
                  petsc_options_prefix=prefix or f"newton_{next(_prefixes)}_")
    snes = problem.solver
    snes.setConvergenceTest(_newton_solver_test(atol, rtol, max_it))
    if monitor is not None:
        snes.setMonitor(lambda _snes, k, norm: monitor(k, norm))
    try:
        problem.solve()
    except PETSc.Error:  # as the NewtonSolver path: a failed solve does not raise
        return int(snes.getIterationNumber()), False
    return int(snes.getIterationNumber()), snes.getConvergedReason() > 0
