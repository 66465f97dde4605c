"""Small DOLFINx problems with known solutions, shared by the serial tests and the
``mpirun -n 2`` script (tests/fem_parallel_script.py)."""

import sys
from pathlib import Path

import numpy as np
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

from reference.cases import get_case
from reference.fem import compat, eof
from reference.fem.meshes import channel_mesh_spec
from reference.mpirun import mpirun

#: Evaluation points (fixed, so every rank and every run uses the same ones): random ones,
#: and a 7 x 7 lattice on the vertices of the 6 x 6 meshes (points that several ranks'
#: cells share, where the parallel evaluation must count each point once).
_LATTICE = np.stack(np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 7)), -1).reshape(-1, 2)
POINTS = np.concatenate([np.random.default_rng(7).uniform(0.0, 1.0, size=(40, 2)), _LATTICE])


def _boundary_dofs(V, msh, where=lambda x: np.full(x.shape[1], True)):
    facets = mesh.locate_entities_boundary(msh, msh.topology.dim - 1, where)
    return fem.locate_dofs_topological(V, msh.topology.dim - 1, facets)


def poisson_p2(comm, n=6):
    """-lap u = -6 with u = 1 + x^2 + 2 y^2 on the boundary: P2 reproduces u exactly."""
    msh = compat.create_rectangle(comm, ((0, 0), (1, 1)), (n, n), "right")
    V = compat.function_space(msh, 2)
    exact = lambda x: 1 + x[0] ** 2 + 2 * x[1] ** 2
    g = fem.Function(V)
    g.interpolate(exact)
    bc = fem.dirichletbc(g, _boundary_dofs(V, msh))
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    f = fem.Constant(msh, compat.scalar_type()(-6.0))
    problem = compat.linear_problem(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx, f * v * ufl.dx, [bc])
    return problem.solve(), exact


def nonlinear_p2(comm, n=5, monitor=None):
    """-div((1 + u^2) grad u) = f, u = 1 + x + 2 y (so f = -10 u): Newton, exact in P2."""
    msh = compat.create_rectangle(comm, ((0, 0), (1, 1)), (n, n), "crossed")
    V = compat.function_space(msh, 2)
    exact = lambda x: 1 + x[0] + 2 * x[1]
    g = fem.Function(V)
    g.interpolate(exact)
    bc = fem.dirichletbc(g, _boundary_dofs(V, msh))
    u, v = fem.Function(V), ufl.TestFunction(V)
    x = ufl.SpatialCoordinate(msh)
    f = -10.0 * (1 + x[0] + 2 * x[1])
    F = ((1 + u**2) * ufl.inner(ufl.grad(u), ufl.grad(v)) - f * v) * ufl.dx
    iterations, converged = compat.newton_solve(F, u, [bc], monitor=monitor)
    return u, exact, iterations, converged


def stokes_taylor_hood(comm, n=4):
    """Poiseuille flow u = (y (1 - y), 0), p = 2 (1 - x): -lap u + grad p = 0, div u = 0;
    Taylor-Hood P2/P1 reproduces it exactly. Velocity Dirichlet all round, p(0, 0) = 2."""
    msh = compat.create_rectangle(comm, ((0, 0), (1, 1)), (n, n), "crossed")
    W = compat.mixed_space(msh, [(2, (2,)), (1, ())])
    V, _ = W.sub(0).collapse()
    Q, _ = W.sub(1).collapse()
    velocity = lambda x: np.vstack([x[1] * (1 - x[1]), np.zeros(x.shape[1])])
    pressure = lambda x: 2 * (1 - x[0])
    g = fem.Function(V)
    g.interpolate(velocity)
    bc_u = fem.dirichletbc(g, _boundary_dofs((W.sub(0), V), msh), W.sub(0))
    h = fem.Function(Q)
    h.interpolate(pressure)
    corner = fem.locate_dofs_geometrical((W.sub(1), Q), lambda x: np.isclose(x[0], 0) & np.isclose(x[1], 0))
    bc_p = fem.dirichletbc(h, corner, W.sub(1))
    (u, p), (w, q) = ufl.TrialFunctions(W), ufl.TestFunctions(W)
    a = (ufl.inner(ufl.grad(u), ufl.grad(w)) - p * ufl.div(w) - q * ufl.div(u)) * ufl.dx
    zero = fem.Constant(msh, compat.scalar_type()(0.0))
    L = zero * q * ufl.dx
    solution = compat.linear_problem(a, L, [bc_u, bc_p]).solve()
    return solution, velocity, pressure


def small_patch(comm, Pe=10.0):
    """eof-patch on a coarse mesh (tolerance 1e-2: for comparisons, not accuracy)."""
    case = get_case("eof-patch", Pe=Pe)
    spec = channel_mesh_spec(case, tolerance=1e-2)
    return eof.solve(case, spec, comm)


def all_values(comm=MPI.COMM_WORLD) -> dict:
    """Point values of every problem above (the same on every rank)."""
    values = {}
    u, _ = poisson_p2(comm)
    values["poisson"] = compat.evaluate(u, POINTS)
    u, _, iterations, _ = nonlinear_p2(comm)
    values["newton"] = compat.evaluate(u, POINTS)
    values["newton_iterations"] = np.array(iterations)
    w, _, _ = stokes_taylor_hood(comm)
    values["stokes_u"] = compat.evaluate(w.sub(0).collapse(), POINTS)
    values["stokes_p"] = compat.evaluate(w.sub(1).collapse(), POINTS)
    solution = small_patch(comm)
    points = POINTS * np.array([2.0, 1.0])
    for name, v in solution.evaluate(points).items():
        values[f"patch_{name}"] = v
    values["patch_dofs"] = np.array(solution.stats["dofs"])
    values["mpi_size"] = np.array(comm.size)
    return values


def parallel_run() -> dict:
    """tests/fem_parallel_script.py under ``mpirun -n 2``."""
    import tempfile

    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "values.npz"
        result = mpirun(2, [sys.executable, str(here / "fem_parallel_script.py"), str(out)],
                        cwd=here.parent, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(np.load(out))


def serial_run() -> dict:
    return all_values(MPI.COMM_SELF)
