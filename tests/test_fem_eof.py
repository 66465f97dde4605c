"""The six-field EOF solver, the 1D NPP solver and their verification (coarse meshes)."""

import pytest

pytest.importorskip("dolfinx")   # the finite-element tests need it

import fem_problems  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from reference import store  # noqa: E402
from reference.cases import get_case  # noqa: E402
from reference.exact import channel_profile, npp_profile  # noqa: E402
from reference.fem import eof, generate, mms, npp  # noqa: E402
from reference.fem.meshes import channel_mesh_spec, triangulation  # noqa: E402

COMM = MPI.COMM_SELF


@pytest.mark.parametrize("eps", [0.5, 0.2])
def test_straight_channel_matches_the_exact_profile(eps):
    case = get_case("eof-straight", eps=eps)
    path, record = generate.generate(case, comm=COMM, write=False)
    checks = record["verification"]
    errors = checks["relative_l2_vs_exact"]
    assert set(errors) == {"phi", "c_plus", "c_minus", "u"}
    assert max(errors.values()) < 1e-6 and checks["meets_tolerance"]
    assert min(errors.values()) > 1e-10          # a real discretisation error, not a copy
    assert max(checks["absolute_l2_vs_exact"].values()) < 1e-5   # v, p (exact: 0)
    assert max(checks["symmetry_max_abs"].values()) < 1e-10
    assert checks["min_concentration"]["c_plus"] == pytest.approx(np.exp(-case.zeta), rel=1e-9)
    assert checks["flow_rate"]["relative_variation"] < 1e-8
    # and the rate itself is that of the exact profile, int_0^1 u dy (Simpson, fine grid)
    y = np.linspace(0.0, 1.0, 20001)
    u = channel_profile(case, y)["u"]
    exact_rate = (y[1] - y[0]) / 3 * (u[0] + u[-1] + 4 * u[1:-1:2].sum() + 2 * u[2:-1:2].sum())
    np.testing.assert_allclose(checks["flow_rate"]["Q"], exact_rate, rtol=1e-6)
    assert max(checks["ion_flux_relative"].values()) < 1e-3
    # the MMS orders of the family travel with every file
    rates = checks["mms"]["rates"]
    assert abs(rates["phi"][-1] - 3) < 0.1 and abs(rates["u"][-1] - 4) < 0.2
    assert rates["p"][-1] > 2.8         # P2 pressure: h^3 (faster, 3.5, on these meshes)


def test_newton_converges_from_a_crude_guess():
    """Bulk values (phi = 0, c = 1, no flow) instead of the profile: more Newton steps,
    the same discrete solution."""
    case = get_case("eof-straight", eps=0.2)
    spec = channel_mesh_spec(case, 0.5)
    crude = {eof.PHI: lambda x: np.zeros(x.shape[1]), eof.C_PLUS: lambda x: np.ones(x.shape[1]),
             eof.C_MINUS: lambda x: np.ones(x.shape[1]),
             eof.VELOCITY: lambda x: np.zeros((2, x.shape[1])),
             eof.PRESSURE: lambda x: np.zeros(x.shape[1])}
    from_crude = eof.solve(case, spec, COMM, guess=crude)
    from_profile = eof.solve(case, spec, COMM)
    assert from_crude.stats["newton_iterations"] >= 3
    assert from_crude.stats["newton_iterations"] > from_profile.stats["newton_iterations"]
    points = np.column_stack([np.full(50, 0.5), np.linspace(0, 1, 50)])
    a, b = from_crude.evaluate(points), from_profile.evaluate(points)
    for name in ("phi", "c_plus", "c_minus", "u"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-8, atol=1e-11)


def test_straight_channel_error_falls_with_the_mesh():
    case = get_case("eof-straight", eps=0.1)
    y = np.linspace(0, 1, 301)
    points = np.column_stack([np.full_like(y, 0.5), y])
    exact = channel_profile(case, y)["phi"]
    errors = []
    for scale in (0.25, 0.5):
        solution = eof.solve(case, channel_mesh_spec(case, scale), COMM)
        errors.append(np.abs(solution.evaluate(points)["phi"] - exact).max())
    assert 5 < errors[0] / errors[1] < 12      # ~ 2^3 for P2


def test_mms_rates_of_the_coupled_system_with_advection():
    case = get_case("eof-straight", eps=0.5, Pe=10.0)   # advection a = 40
    assert case.advection == pytest.approx(40.0)
    result = mms.convergence(case, (4, 8, 16), COMM)
    for name in ("phi", "c_plus", "c_minus"):           # P2
        assert result["rates"][name][-1] == pytest.approx(3.0, abs=0.2), name
    for name in ("u", "v"):                               # P3
        assert result["rates"][name][-1] == pytest.approx(4.0, abs=0.2), name
    assert result["rates"]["p"][-1] > 2.8   # P2 pressure: at least h^3 (3.7 on crossed meshes)
    assert result["errors"]["phi"][-1] < 1e-4


def test_patch_is_two_way_coupled_and_conserves_the_flow():
    low, high = fem_problems.small_patch(COMM, Pe=0.0), fem_problems.small_patch(COMM, Pe=10.0)
    case = high.case
    grid = store.evaluation_grid(case)
    X, Y = np.meshgrid(grid["x"], grid["y"])
    points = np.column_stack([X.ravel(), Y.ravel()])
    a, b = low.evaluate(points), high.evaluate(points)
    w = grid["weight"].ravel()
    rel = {k: np.sqrt(np.sum(w * (b[k] - a[k]) ** 2) / np.sum(w * a[k] ** 2)) for k in a}
    assert rel["phi"] > 1e-2 and rel["u"] > 1e-3     # Pe = 10 changes the fields
    assert b["c_plus"].min() > 0 and b["c_minus"].min() > 0
    # the wall data: phi = zeta_w(x) on the bottom wall, negative under the patch
    bottom = points[:, 1] == 0.0
    zeta = case.wall_zeta(points[bottom, 0], "bottom", exp=np.exp)
    assert zeta.min() < -0.95
    np.testing.assert_allclose(b["phi"][bottom], zeta, atol=0.06)   # coarse P2 interpolant (12 x 12)
    spec = channel_mesh_spec(case, tolerance=1e-2)
    flow = generate._flow_rates(high, spec)
    assert flow["relative_variation"] < 5e-3   # 1e-6 on the stored meshes


def test_newton_failure_names_the_case_and_residual(monkeypatch):
    monkeypatch.setattr(eof, "MAX_IT", 2)
    case = get_case("eof-patch", Pe=10.0)
    with pytest.raises(eof.SolverError, match=r"eof-patch-Pe10.*last residual"):
        eof.solve(case, channel_mesh_spec(case, tolerance=1e-1), COMM)


def test_solvers_reject_the_wrong_case():
    with pytest.raises(ValueError, match="electroosmotic"):
        eof.solve(get_case("npp"))
    with pytest.raises(ValueError, match="npp"):
        npp.solve(get_case("eof-straight"))
    with pytest.raises(ValueError, match="no finite-element reference"):
        generate.generate(get_case("thermo"), write=False)


@pytest.mark.parametrize("eps", [0.5, 0.05])
def test_npp_finite_elements_agree_with_the_scipy_reference(eps):
    case = get_case("npp", eps=eps)
    solution = npp.solve(case, comm=COMM)
    x = np.linspace(0, case.length, 500)
    fe, exact = solution.evaluate(x), npp_profile(case, x)
    for name in case.fields:
        assert np.abs(fe[name] - exact[name]).max() < 1e-8, name


def test_triangulation_matches_the_mesh_counts():
    case = get_case("eof-patch")
    spec = channel_mesh_spec(case, tolerance=1e-2)
    mesh = triangulation(spec)
    assert mesh["cells"].shape == (4 * spec.nx * spec.ny, 3)
    assert mesh["vertices"].shape == ((spec.nx + 1) * (spec.ny + 1) + spec.nx * spec.ny, 2)
    v = mesh["vertices"][mesh["cells"]]
    area = 0.5 * np.abs((v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1])
                        - (v[:, 2, 0] - v[:, 0, 0]) * (v[:, 1, 1] - v[:, 0, 1]))
    assert area.sum() == pytest.approx(case.length, rel=1e-12) and area.min() > 0


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["phi", "c_plus", "c_minus", "u", "v", "p"])
def test_two_ranks_solve_the_patch_like_one(name, parallel_values, serial_values):
    assert parallel_values["patch_dofs"] == serial_values["patch_dofs"]
    np.testing.assert_allclose(parallel_values[f"patch_{name}"], serial_values[f"patch_{name}"],
                               rtol=0, atol=1e-10)
