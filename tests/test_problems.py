"""Problems: residuals vanish on exact solutions and not on perturbed ones, collocation
follows the recipe, scores give known numbers."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pinn.training.networks import FieldNetworks, build_model
from pinn.problems import get_problem
from reference import exact, store
from reference.cases import get_case

F64 = dict(dtype=torch.float64)


class Exact(nn.Module):
    """A 'network' computing given fields of the points with torch operations."""

    def __init__(self, *functions):
        super().__init__()
        self.functions = functions

    def forward(self, x):
        return torch.stack([f(x) for f in self.functions], dim=1)


def as_model(**fields):
    """A per-field FieldNetworks of exact torch functions of the points."""
    return FieldNetworks([Exact(f) for f in fields.values()], [(name,) for name in fields])


def max_abs(residuals):
    return {name: r.detach().abs().max().item() for name, r in residuals.items()}


# --- a Poisson-Boltzmann profile differentiable to any order in torch ------------------
# phi comes from the tight boundary-value solve; its derivative from the solve's slope and
# the slope's derivative from the ODE itself, phi'' = 2 sinh(phi) / eps^2. Residuals of
# exp(-+phi) then vanish to rounding, and its boundary values are the reference's.
class _Value(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, profile):
        ctx.save_for_backward(t)
        ctx.profile = profile
        return torch.as_tensor(profile[0](t.detach().cpu().numpy()), dtype=t.dtype)

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return grad * _Slope.apply(t, ctx.profile), None


class _Slope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, profile):
        ctx.save_for_backward(t)
        ctx.profile = profile
        return torch.as_tensor(profile[1](t.detach().cpu().numpy()), dtype=t.dtype)

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        eps = ctx.profile[2]
        return grad * 2 * torch.sinh(_Value.apply(t, ctx.profile)) / eps**2, None


def pb_profile(eps, left, right, length=1.0):
    phi, dphi = exact.poisson_boltzmann(eps, left, right, length)
    profile = (phi, dphi, eps)
    return lambda t: _Value.apply(t, profile)


def developed_flow(case, **perturbations):
    """The fully developed channel solution as a model, plus perturbations {field: f(x)}."""
    phi = pb_profile(case.eps, case.zeta, case.zeta)
    scale = case.Ex * case.eps**2 / case.mu
    developed = {
        "phi": lambda x: phi(x[:, 1]) + 0.0 * x[:, 0],
        "c_plus": lambda x: torch.exp(-phi(x[:, 1])),
        "c_minus": lambda x: torch.exp(phi(x[:, 1])),
        "u": lambda x: scale * (phi(x[:, 1]) - case.zeta),
        "v": lambda x: 0.0 * x[:, 0],
        "p": lambda x: 0.0 * x[:, 0],
    }

    def field(name):
        extra = perturbations.get(name)
        return developed[name] if extra is None else (lambda x: developed[name](x) + extra(x))

    return as_model(**{name: field(name) for name in developed})


# --- thermoelasticity --------------------------------------------------------------------
def thermo_exact(shift=0.0, delta=0.0):
    pi = math.pi
    return as_model(
        T=lambda x: torch.sin(pi * x[:, 0]) + 1 + shift + delta * torch.sin(3 * pi * x[:, 0]),
        u=lambda x: torch.sin(2 * pi * x[:, 0]),
    )


def test_thermo_exact_solution_has_zero_residuals():
    problem = get_problem(get_case("thermo", gamma=10), **F64)
    residuals = problem.residuals(thermo_exact())
    assert list(residuals) == ["pde_T", "pde_u", "bc_T", "bc_u"]
    assert residuals["pde_T"].shape == (200,) and residuals["bc_T"].shape == (2,)
    assert max(max_abs(residuals).values()) < 1e-9


def test_thermo_perturbation_gives_the_known_residual():
    # T + delta sin(3 pi x): pde_T gains 9 pi^2 kappa delta sin(3 pi x), pde_u gains the
    # coupling gamma * 3 pi delta cos(3 pi x); a constant shift only moves bc_T.
    case = get_case("thermo", gamma=10, kappa=2.0)
    problem = get_problem(case, **F64)
    delta, shift = 1e-2, 0.3
    residuals = problem.residuals(thermo_exact(shift=shift, delta=delta))
    x = problem.interior[:, 0]
    expected_T = 9 * math.pi**2 * case.kappa * delta * torch.sin(3 * math.pi * x)
    expected_u = case.gamma * 3 * math.pi * delta * torch.cos(3 * math.pi * x)
    assert torch.allclose(residuals["pde_T"], expected_T, atol=1e-9)
    assert torch.allclose(residuals["pde_u"], expected_u, atol=1e-9)
    assert residuals["pde_u"].abs().max() > 0.9  # the test can fail
    # sin(3 pi x) vanishes at both ends: bc_T is the shift alone.
    assert torch.allclose(residuals["bc_T"], torch.tensor([shift, shift], **F64), atol=1e-12)
    loss = problem.loss_terms(thermo_exact(shift=shift))
    assert loss["bc_T"].item() == pytest.approx(shift**2)
    assert loss["bc_u"].item() < 1e-28


def test_coupling_reaches_the_other_network_only_when_gamma_is_nonzero():
    torch.manual_seed(0)
    for gamma, coupled in ((0.0, False), (5.0, True)):
        problem = get_problem(get_case("thermo", gamma=gamma), n_points=20)
        model = build_model(problem.case, width=8, depth=2)
        loss_u = problem.loss_terms(model)["pde_u"]
        grads = torch.autograd.grad(loss_u, list(model.nets[0].parameters()), allow_unused=True)
        touched = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert touched == coupled


# --- reaction-diffusion ------------------------------------------------------------------
def rd_exact(shift_B=0.0):
    pi = math.pi
    return as_model(
        c_A=lambda x: torch.sin(pi * x[:, 0]) + 2,
        c_B=lambda x: torch.cos(pi * x[:, 0]) + 2 + shift_B,
        c_C=lambda x: torch.sin(2 * pi * x[:, 0]) + 2,
    )


@pytest.mark.parametrize("name", ["rd-symmetric", "rd-asymmetric"])
def test_reaction_diffusion_exact_and_perturbed(name):
    case = get_case(name, k=5.0)
    problem = get_problem(case, **F64)
    residuals = problem.residuals(rd_exact())
    assert list(residuals) == ["pde_c_A", "pde_c_B", "pde_c_C", "bc_c_A", "bc_c_B", "bc_c_C"]
    assert max(max_abs(residuals).values()) < 1e-9
    # cB + d: the rates move each equation by its coefficient of cB.
    d = 0.1
    k1, k2, k3, k4 = case.rates
    residuals = problem.residuals(rd_exact(shift_B=d))
    for term, coefficient in (("pde_c_A", k2), ("pde_c_B", -(k2 + k3)), ("pde_c_C", k3)):
        assert torch.allclose(residuals[term], torch.full((200,), coefficient * d, **F64),
                              atol=1e-9), term
    assert torch.allclose(residuals["bc_c_B"], torch.tensor([d, d], **F64))


# --- Nernst-Planck-Poisson ---------------------------------------------------------------
def gouy_chapman_model(eps, zeta, scale_plus=1.0):
    g = math.tanh(zeta / 4)

    def phi(x):
        e = torch.exp(-math.sqrt(2) * x[:, 0] / eps)
        return 2 * torch.log((1 + g * e) / (1 - g * e))

    return as_model(c_plus=lambda x: scale_plus * torch.exp(-phi(x)),
                    c_minus=lambda x: torch.exp(phi(x)), phi=phi)


def test_npp_gouy_chapman_is_exact_at_small_eps():
    # Autograd second derivatives of the closed form; the single-wall layer misses
    # phi(1) = 0 by 4 tanh(1/4) exp(-sqrt2/0.05) ~ 5e-13.
    problem = get_problem(get_case("npp", eps=0.05), **F64)
    residuals = problem.residuals(gouy_chapman_model(0.05, 1.0))
    assert list(residuals) == ["np_plus", "np_minus", "poisson",
                               "bc_c_plus", "bc_c_minus", "bc_phi"]
    errors = max_abs(residuals)
    # Each term is a sum of parts of size up to ~ 2 sinh(1) / eps^2 * e ~ 2500.
    assert max(errors[k] for k in ("np_plus", "np_minus", "poisson")) < 1e-8
    assert max(errors[k] for k in ("bc_c_plus", "bc_c_minus", "bc_phi")) < 1e-11


def test_npp_perturbations_break_only_the_equations_they_should():
    # c+ -> (1 + d) c+ keeps (c+' + c+ phi')' = 0 (linear in c+) but leaves a charge
    # d exp(-phi) in the Poisson equation and d exp(-zeta), d at the ends.
    eps, zeta, d = 0.05, 1.0, 0.02
    problem = get_problem(get_case("npp", eps=eps), **F64)
    residuals = problem.residuals(gouy_chapman_model(eps, zeta, scale_plus=1 + d))
    x = problem.interior.clone().requires_grad_(False)
    c_plus = gouy_chapman_model(eps, zeta)(x)["c_plus"]
    assert residuals["np_plus"].abs().max() < 1e-8
    assert torch.allclose(residuals["poisson"], d * c_plus, atol=1e-9)
    assert torch.allclose(residuals["bc_c_plus"],
                          torch.tensor([d * math.exp(-zeta), d], **F64), atol=1e-11)


@pytest.mark.parametrize("eps", [0.5, 0.1])
def test_npp_poisson_boltzmann_reference_has_zero_residuals(eps):
    case = get_case("npp", eps=eps)
    problem = get_problem(case, **F64)
    phi = pb_profile(case.eps, case.zeta, 0.0, case.length)
    model = as_model(c_plus=lambda x: torch.exp(-phi(x[:, 0])),
                     c_minus=lambda x: torch.exp(phi(x[:, 0])), phi=lambda x: phi(x[:, 0]))
    assert max(max_abs(problem.residuals(model)).values()) < 1e-8
    # and it is the reference it is scored against
    errors = problem.score(model)
    assert errors["avg"] < 1e-12


# --- electroosmotic flow -----------------------------------------------------------------
EOF_TERMS = ["poisson", "np_plus", "np_minus", "stokes_x", "stokes_y", "continuity",
             "bc_phi", "bc_c_plus", "bc_c_minus", "bc_u", "bc_v", "bc_p"]


@pytest.mark.parametrize("sides, Pe", [("developed", 0.0), ("open", 0.0), ("open", 5.0)])
def test_eof_developed_profile_has_zero_residuals(sides, Pe):
    case = get_case("eof-straight", sides=sides, Pe=Pe)
    problem = get_problem(case, n_points=400, **F64)
    residuals = problem.residuals(developed_flow(case))
    assert list(residuals) == EOF_TERMS
    assert residuals["poisson"].shape == (400,)
    assert residuals["bc_phi"].shape == (4 * problem.edge_count(400),)
    errors = max_abs(residuals)
    assert max(errors.values()) < 1e-9, errors


def test_eof_superposed_gouy_chapman_layers_with_autograd_laplacians():
    # Two single-wall layers at eps = 0.05 solve the channel to ~1e-6 (their overlap is
    # ~exp(-sqrt2 / (2 eps)) ~ 7e-7 at mid-channel); genuine autograd Laplacians in 2D.
    case = get_case("eof-straight", eps=0.05)
    problem = get_problem(case, n_points=400, **F64)
    g, k = math.tanh(case.zeta / 4), math.sqrt(2) / case.eps

    def layer(t):
        e = torch.exp(-k * t)
        return 2 * torch.log((1 + g * e) / (1 - g * e))

    def phi(x):
        return layer(x[:, 1]) + layer(1 - x[:, 1]) + 0.0 * x[:, 0]

    scale = case.Ex * case.eps**2 / case.mu
    model = as_model(phi=phi, c_plus=lambda x: torch.exp(-phi(x)),
                     c_minus=lambda x: torch.exp(phi(x)), u=lambda x: scale * (phi(x) - case.zeta),
                     v=lambda x: 0.0 * x[:, 0], p=lambda x: 0.0 * x[:, 0])
    errors = max_abs(problem.residuals(model))
    assert max(errors.values()) < 2e-5, errors
    model.nets[0].functions = (lambda x: 1.1 * phi(x),)  # phi off by 10 %
    broken = max_abs(problem.residuals(model))
    # 0.1 * 2 sinh(phi) at the walls; 0.1 c+ (phi'' - phi'^2) in NP+
    assert broken["poisson"] > 0.2 and broken["np_plus"] > 1.0


def test_eof_flow_perturbation_gives_the_known_residuals():
    # u + d sin(pi x) sin(pi y), v + w (x y + y^2), p + b x: stokes_x = -b - 2 pi^2 mu d s s,
    # stokes_y = 2 mu w, continuity = pi d cos(pi x) sin(pi y) + w (x + 2 y), and with
    # advection a the ion equations gain -a w (x y + y^2) c+-_y (c+-_x = 0).
    case = get_case("eof-straight", Pe=2.0, mu=0.5, Ex=2.0)
    problem = get_problem(case, n_points=300, **F64)
    d, b, w = 0.01, 0.2, 0.003
    pi = math.pi
    model = developed_flow(
        case,
        u=lambda x: d * torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1]),
        v=lambda x: w * (x[:, 0] * x[:, 1] + x[:, 1] ** 2),
        p=lambda x: b * x[:, 0],
    )
    r = problem.residuals(model)
    x, y = problem.interior[:, 0], problem.interior[:, 1]
    expected_stokes = -b - 2 * pi**2 * case.mu * d * torch.sin(pi * x) * torch.sin(pi * y)
    assert torch.allclose(r["stokes_x"], expected_stokes, atol=1e-9)
    assert torch.allclose(r["continuity"], pi * d * torch.cos(pi * x) * torch.sin(pi * y) + w * (x + 2 * y),
                          atol=1e-9)
    assert torch.allclose(r["stokes_y"], torch.full_like(x, 2 * case.mu * w), atol=1e-9)
    for name in ("c_plus", "c_minus"):
        c, dc_dy = field_values(developed_flow(case), problem.interior, name)
        assert torch.allclose(r[f"np_{name[2:]}"], -case.advection * w * (x * y + y**2) * dc_dy,
                              atol=1e-9)
    assert r["np_plus"].abs().max() > 1e-3
    # developed sides: v = w (x y + y^2) on the walls and sides; p = b x on the sides
    xe, ye = problem.edges[:, 0], problem.edges[:, 1]
    assert torch.allclose(r["bc_v"], w * (xe * ye + ye**2), atol=1e-12)
    x_sides = torch.cat([problem.boundary["left"][:, 0], problem.boundary["right"][:, 0]])
    assert torch.allclose(r["bc_p"], b * x_sides, atol=1e-12)


def test_eof_open_sides_give_the_known_boundary_rows():
    # Open sides: bc_phi side rows phi_x, bc_v side rows mu v_x, bc_p = mu u_x - p.
    case = get_case("eof-straight", sides="open", mu=0.5)
    problem = get_problem(case, n_points=300, **F64)
    d, b, w, e = 0.01, 0.2, 0.003, 0.05
    pi = math.pi
    model = developed_flow(
        case,
        phi=lambda x: e * torch.sin(pi * x[:, 0]),
        u=lambda x: d * torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1]),
        v=lambda x: w * x[:, 0] * x[:, 1],
        p=lambda x: b * x[:, 0],
    )
    r = problem.residuals(model)
    m = problem.edge_count(300)
    walls, sides = problem.edges[: 2 * m], problem.edges[2 * m:]
    xs, ys = sides[:, 0], sides[:, 1]
    assert torch.allclose(r["bc_phi"][: 2 * m], e * torch.sin(pi * walls[:, 0]), atol=1e-9)
    assert torch.allclose(r["bc_phi"][2 * m:], e * pi * torch.cos(pi * xs), atol=1e-9)
    assert r["bc_c_plus"].abs().max() < 1e-9  # c+- do not see the phi perturbation
    assert torch.allclose(r["bc_v"][2 * m:], case.mu * w * ys, atol=1e-12)
    traction = case.mu * d * pi * torch.cos(pi * xs) * torch.sin(pi * ys) - b * xs
    assert torch.allclose(r["bc_p"], traction, atol=1e-12)
    assert r["bc_u"].shape == (2 * m,) and r["bc_u"].abs().max() < 1e-12


def field_values(model, points, name):
    """(value, d/dy) of one field at the points."""
    x = points.clone().requires_grad_(True)
    value = model(x)[name]
    (g,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), g[:, 1]


def test_eof_paper_split_gives_the_same_residuals():
    case = get_case("eof-straight")
    problem = get_problem(case, n_points=200, **F64)
    per_field = developed_flow(case, u=lambda x: 0.01 * x[:, 0] * x[:, 1] ** 2,
                               p=lambda x: x[:, 1] ** 2 * x[:, 0])
    nets, groups = list(per_field.nets[:3]), list(per_field.groups[:3])
    flow = Exact(*(f for net in per_field.nets[3:] for f in net.functions))
    paper = FieldNetworks(nets + [flow], groups + [("u", "v", "p")])
    a, b = problem.residuals(per_field), problem.residuals(paper)
    assert list(a) == list(b)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-12), name
    assert a["stokes_y"].abs().max() > 0.1


def test_eof_patch_wall_data_follow_the_patch():
    # The straight-channel profile on the patch case (open sides): every equation and the
    # open side conditions hold, the bottom wall misses zeta_w(x) by the patch itself.
    case = get_case("eof-patch", Pe=0.0)
    problem = get_problem(case, n_points=300, **F64)
    r = problem.residuals(developed_flow(case))
    errors = max_abs(r)
    assert max(errors[k] for k in EOF_TERMS[:6] + ["bc_u", "bc_v", "bc_p"]) < 1e-9
    m = problem.edge_count(300)
    x_bottom = problem.boundary["bottom"][:, 0]
    patch = (case.patch_zeta - case.zeta) * torch.exp(-((x_bottom - case.patch_center)
                                                         / case.patch_width) ** 2)
    assert torch.allclose(r["bc_phi"][:m], -patch, atol=1e-12)
    assert r["bc_phi"][:m].abs().max() > 1.9  # a patch point lies near the centre
    assert r["bc_phi"][m:].abs().max() < 1e-9  # top wall and sides
    expected = math.exp(-case.zeta) - torch.exp(-(case.zeta + patch))
    assert torch.allclose(r["bc_c_plus"][:m], expected.to(torch.float64), atol=1e-12)
    assert r["bc_u"].shape == (2 * m,)  # the sides' x-traction is in bc_p


# --- collocation -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["thermo", "rd-symmetric"])
def test_1d_collocation_is_200_uniform_points(name):
    problem = get_problem(get_case(name, length=2.0))
    x = problem.interior[:, 0]
    assert problem.interior.shape == (200, 1) and x.dtype == torch.float32
    assert x[0].item() == pytest.approx(0.02) and x[-1].item() == pytest.approx(1.98)
    assert torch.allclose(torch.diff(x), torch.full((199,), 1.96 / 199), atol=1e-6)
    assert problem.boundary["ends"][:, 0].tolist() == [0.0, 2.0]


@pytest.mark.parametrize("eps, width", [(0.05, 0.25), (0.1, 0.5), (0.5, 0.5)])
def test_npp_collocation_clusters_in_the_double_layer(eps, width):
    problem = get_problem(get_case("npp", eps=eps), **F64)
    assert problem.layer_width == pytest.approx(width)
    x = problem.interior[:, 0]
    assert x.shape == (300,) and torch.all(x[1:] >= x[:-1])
    s = torch.linspace(0, math.pi / 2, 150, **F64)
    layer = width * (1 - torch.cos(s))
    uniform = torch.linspace(0.01, 0.99, 150, **F64)
    assert torch.allclose(x, torch.sort(torch.cat([layer, uniform])).values)
    # the first Debye length eps/sqrt2 holds more points than a uniform set would
    debye = eps / math.sqrt(2)
    assert (x < debye).sum() > 1.5 * 300 * debye


def test_eof_collocation_counts_bands_and_reproducibility():
    case = get_case("eof-straight", eps=0.02)  # band 5 eps = 0.1
    state = torch.get_rng_state()
    problem = get_problem(case, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    pts = problem.interior
    assert pts.shape == (3000, 2)
    assert problem.band == pytest.approx(0.1)
    assert pts.min() >= 0 and pts.max() <= 1
    y = pts[:, 1]
    in_bands = ((y < 0.1) | (y > 0.9)).sum().item()
    # 1500 band points + about 20 % of the 1500 uniform ones
    assert 1500 + 200 < in_bands < 1500 + 400
    assert (y[1500:2250] < 0.1).all() and (y[2250:] > 0.9).all()
    for edge, (axis, value) in {"bottom": (1, 0.0), "top": (1, 1.0),
                                "left": (0, 0.0), "right": (0, 1.0)}.items():
        points = problem.boundary[edge]
        assert points.shape == (200, 2)
        assert torch.all(points[:, axis] == value)
        assert points[:, 1 - axis].min() >= 0 and points[:, 1 - axis].max() <= 1
    again = get_problem(case, seed=3)
    other = get_problem(case, seed=4)
    assert torch.equal(again.interior, pts) and torch.equal(again.edges, problem.edges)
    assert not torch.equal(other.interior, pts)
    assert get_problem(get_case("eof-straight", eps=0.5)).band == pytest.approx(0.3)
    small = get_problem(case, n_points=300)
    assert small.interior.shape == (300, 2) and small.boundary["top"].shape == (20, 2)
    patch = get_problem(get_case("eof-patch"), n_points=300)
    assert patch.interior[:, 0].max() > 1.5  # the 2:1 channel is covered


# --- scoring -----------------------------------------------------------------------------
def test_relative_l2_of_known_perturbations():
    problem = get_problem(get_case("thermo"))
    ref = problem.reference()
    assert ref["T"].shape == (1000,)
    assert problem.evaluation_points().shape == (1000, 1)
    # T + c: error c / ||T|| with int_0^1 (sin(pi x) + 1)^2 dx = 3/2 + 4/pi.
    c = 0.05
    errors = problem.relative_l2({"T": ref["T"] + c, "u": torch.tensor(1.1 * ref["u"])})
    assert errors["T"] == pytest.approx(c / math.sqrt(1.5 + 4 / math.pi), rel=1e-5)
    assert errors["u"] == pytest.approx(0.1, rel=1e-12)
    assert errors["avg"] == pytest.approx((errors["T"] + 0.1) / 2)
    with pytest.raises(ValueError, match="lacks the scored field 'u'"):
        problem.relative_l2({"T": ref["T"]})
    with pytest.raises(ValueError, match="evaluation grid 1000"):
        problem.relative_l2({"T": ref["T"][:10], "u": ref["u"]})


def test_eof_scores_four_fields_on_the_graded_grid():
    case = get_case("eof-straight")
    problem = get_problem(case, n_points=100)
    grid = store.evaluation_grid(case)
    points = problem.evaluation_points()
    assert points.shape == (len(grid["y"]) * len(grid["x"]), 2)
    # (y, x) C-order: x runs fastest
    assert points[1, 0] > points[0, 0] and points[1, 1] == points[0, 1]
    ref = problem.reference()
    assert ref["u"].reshape(len(grid["y"]), -1)[100, 0] == pytest.approx(
        exact.channel_profile(case, grid["y"][100:101])["u"][0])
    pred = dict(ref, u=0.9 * ref["u"], v=ref["v"] + 1.0)
    errors = problem.relative_l2(pred)
    assert set(errors) == {"phi", "c_plus", "c_minus", "u", "avg"}
    assert errors["u"] == pytest.approx(0.1) and errors["phi"] == 0.0
    assert errors["avg"] == pytest.approx(0.025)


def test_patch_reference_comes_from_the_store(tmp_path):
    case = get_case("eof-patch", Pe=1.0)
    problem = get_problem(case, n_points=100, reference_root=tmp_path)
    with pytest.raises(store.ReferenceFileError, match="python -m reference generate eof-patch --Pe 1"):
        problem.reference()
    grid = store.evaluation_grid(case)
    y, x = np.meshgrid(grid["y"], grid["x"], indexing="ij")
    fields = {name: (i + 1) + x * y for i, name in enumerate(case.fields)}
    store.write_reference(store.reference_path(case, tmp_path), case, grid_fields=fields)
    ref = problem.reference()
    assert np.allclose(ref["c_plus"], (2 + x * y).ravel())
    pred = {name: values * 1.02 for name, values in ref.items()}
    errors = problem.relative_l2(pred)
    assert errors["avg"] == pytest.approx(0.02)


# --- interface ---------------------------------------------------------------------------
def test_registry_options_and_errors():
    for name in ("thermo", "rd-symmetric", "rd-asymmetric", "npp", "eof-straight", "eof-patch"):
        problem = get_problem(name, n_points=40)
        model = build_model(problem.case, width=4, depth=1)
        loss = problem.loss_terms(model)
        assert all(v.ndim == 0 and v.dtype == torch.float32 and v.requires_grad
                   for v in loss.values())
        with torch.no_grad():  # residuals need autograd; they switch it on themselves
            values = problem.loss_terms(model)
        assert list(values) == list(loss)
        for name in loss:
            assert not values[name].requires_grad
            assert values[name].item() == pytest.approx(loss[name].item(), rel=1e-6)
    with pytest.raises(ValueError, match="valid cases"):
        get_problem("heat")
    with pytest.raises(ValueError, match="n_points"):
        get_problem("thermo", n_points=0)
    problem = get_problem("thermo")
    wrong = build_model(get_case("npp"), width=4, depth=1)
    with pytest.raises(ValueError, match="produces the fields"):
        problem.loss_terms(wrong)
    with pytest.raises(ValueError, match="torch.float64 on cpu"):
        problem.loss_terms(build_model(problem.case, width=4, depth=1).double())
