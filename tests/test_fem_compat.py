"""reference.fem.compat: each wrapped DOLFINx feature on a problem with a known solution,
serial and under ``mpirun -n 2`` (the parallel values must equal the serial ones)."""

import pytest

pytest.importorskip("dolfinx")   # the finite-element tests need it

import fem_problems  # noqa: E402  (a helper module beside the tests)
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from reference.fem import compat  # noqa: E402

COMM = MPI.COMM_SELF
POINTS = fem_problems.POINTS


def test_poisson_p2_reproduces_a_quadratic():
    u, exact = fem_problems.poisson_p2(COMM)
    values = compat.evaluate(u, POINTS)
    assert values.shape == (len(POINTS),)
    assert np.abs(values - exact(POINTS.T)).max() < 1e-12


def test_newton_solves_a_nonlinear_problem_and_reports_each_step():
    residuals = []
    u, exact, iterations, converged = fem_problems.nonlinear_p2(
        COMM, monitor=lambda k, norm: residuals.append((k, norm)))
    assert converged and 2 <= iterations <= 8
    assert [k for k, _ in residuals] == list(range(iterations + 1))
    assert residuals[-1][1] < 1e-9 < residuals[0][1]
    assert np.abs(compat.evaluate(u, POINTS) - exact(POINTS.T)).max() < 1e-11


def test_newton_reports_failure_instead_of_raising():
    # u^3 makes it nonlinear: one Newton step from u = 0 cannot reach the tolerance
    import ufl
    from dolfinx import fem

    msh = compat.create_rectangle(COMM, ((0, 0), (1, 1)), (3, 3))
    V = compat.function_space(msh, 1)
    u, v = fem.Function(V), ufl.TestFunction(V)
    F = (ufl.inner(ufl.grad(u), ufl.grad(v)) + u**3 * v - v) * ufl.dx
    iterations, converged = compat.newton_solve(F, u, [], max_it=1)
    assert not converged and iterations == 1


def test_taylor_hood_stokes_is_exact_for_poiseuille_flow():
    w, velocity, pressure = fem_problems.stokes_taylor_hood(COMM)
    u = compat.evaluate(w.sub(0).collapse(), POINTS)
    p = compat.evaluate(w.sub(1).collapse(), POINTS)
    assert u.shape == (len(POINTS), 2)
    assert np.abs(u - velocity(POINTS.T).T).max() < 1e-12
    assert np.abs(p - pressure(POINTS.T)).max() < 1e-11


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="diagonal"):
        compat.create_rectangle(COMM, ((0, 0), (1, 1)), (2, 2), "diagonal")
    with pytest.raises(ValueError, match="cell counts"):
        compat.create_rectangle(COMM, ((0, 0), (1, 1)), (0, 2))
    with pytest.raises(ValueError, match="degree"):
        compat.function_space(compat.create_interval(COMM, 2), 0)
    u, _ = fem_problems.poisson_p2(COMM, n=2)
    with pytest.raises(ValueError, match="outside the mesh"):
        compat.evaluate(u, np.array([[0.5, 0.5], [2.0, 0.5]]))


@pytest.mark.mpi
def test_the_parallel_run_has_two_ranks(parallel_values, serial_values):
    assert int(parallel_values["mpi_size"]) == 2 and int(serial_values["mpi_size"]) == 1


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["poisson", "newton", "stokes_u", "stokes_p"])
def test_two_ranks_agree_with_serial(name, parallel_values, serial_values):
    assert parallel_values[name].shape == serial_values[name].shape
    np.testing.assert_allclose(parallel_values[name], serial_values[name], rtol=0, atol=1e-10)
