"""The PINN and the finite-element reference solve the same equations.

The 1D NPP double layer is written as PyTorch residuals (pinn/problems/npp.py) and as UFL
(reference/fem/npp.py ``strong_residuals``, whose fluxes the weak form uses): the last test
evaluates both on the same smooth fields.

The 2D flow is written twice: as PyTorch residuals (pinn/problems/electroosmotic.py,
what the networks minimise) and as UFL (reference/fem/eof.py, ``strong_residuals``; the
weak form the solver discretises is checked against it by the manufactured-solution
convergence rates in test_fem_eof.py). Here both strong forms are evaluated on the same
smooth manufactured fields (those of reference/fem/mms.py) at the same points and must agree to
rounding, with advection and a wall-charge patch switched on, so a sign or a coefficient
changed on one side only fails.
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("dolfinx")   # reference.fem needs it (as every FE test)

import ufl  # noqa: E402
from ufl.algorithms.apply_algebra_lowering import apply_algebra_lowering  # noqa: E402
from ufl.algorithms.apply_derivatives import apply_derivatives  # noqa: E402

from pinn.problems import get_problem  # noqa: E402
from pinn.problems.base import field_derivatives  # noqa: E402
from reference.cases import get_case  # noqa: E402
from reference.fem import eof, mms, npp  # noqa: E402

# the PINN's name for each (UFL residual, component)
NAMES = {"poisson": ("poisson", None), "np_plus": ("np_plus", None),
         "np_minus": ("np_minus", None), "stokes_x": ("momentum", 0),
         "stokes_y": ("momentum", 1), "continuity": ("continuity", None)}


def manufactured(x, lib):
    """reference/fem/mms.py's fields, u given a divergence (0.5 x1) so that continuity
    is tested too (the MMS velocity is divergence-free)."""
    fields = mms.manufactured_fields(x, lib)
    fields["u"] = fields["u"] + 0.5 * x[0] * x[1]
    return fields


class Field(torch.nn.Module):
    """One manufactured field of reference/fem/mms.py as a 'network' x (N, 2) -> (N, 1)."""

    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        return manufactured(x.T, torch)[self.name][:, None]


class Manufactured(torch.nn.Module):
    """The manufactured fields as a model of one network per field (pinn.training.networks' shape)."""

    def __init__(self):
        super().__init__()
        self.groups = [(name,) for name in mms.FIELDS]
        self.nets = torch.nn.ModuleList(Field(name) for name in mms.FIELDS)


def ufl_residuals(case, points):
    """reference.fem.eof.strong_residuals of the manufactured fields, evaluated by UFL at
    each point (no mesh: UFL differentiates the expressions of the coordinates)."""
    domain = ufl.Mesh(ufl.VectorElement("Lagrange", ufl.triangle, 1))
    f = manufactured(ufl.SpatialCoordinate(domain), ufl)
    forms = eof.strong_residuals(case, f["phi"], f["c_plus"], f["c_minus"],
                                 ufl.as_vector((f["u"], f["v"])), f["p"])
    out = {}
    for name, (form, component) in NAMES.items():
        expr = apply_derivatives(apply_algebra_lowering(forms[form]))
        if component is not None:
            expr = expr[component]
        out[name] = np.array([float(expr(tuple(point))) for point in points])
    return out


@pytest.mark.parametrize("name, params", [
    ("eof-straight", {"eps": 0.2}),
    ("eof-straight", {"eps": 0.1, "Pe": 3.0, "mu": 0.7, "Ex": 1.3}),   # every coefficient
    ("eof-patch", {"Pe": 10.0}),
])
def test_the_torch_and_ufl_residuals_are_the_same_equations(name, params):
    case = get_case(name, **params)
    problem = get_problem(case, n_points=16, dtype=torch.float64, seed=0)
    points = torch.rand(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fields = field_derivatives(Manufactured(), points, problem.orders)
    torch_side = {k: v.detach().numpy() for k, v in problem.pde_residuals(fields).items()}
    assert set(torch_side) == set(NAMES)
    ufl_side = ufl_residuals(case, points.numpy())
    for term in NAMES:
        scale = max(1.0, float(np.abs(ufl_side[term]).max()))
        np.testing.assert_allclose(torch_side[term], ufl_side[term], rtol=0,
                                   atol=1e-12 * scale, err_msg=f"{name} {params}: {term}")
    # the check has teeth: the terms are far from zero on these fields
    assert min(float(np.abs(v).max()) for v in ufl_side.values()) > 0.1 * math.pi


def npp_fields(x, lib):
    """Smooth fields of x (torch or UFL), none of them a solution."""
    return {"c_plus": 1.0 + 0.3 * lib.sin(2.0 * x), "c_minus": lib.exp(0.5 * x),
            "phi": x * lib.cos(3.0 * x)}


class NPPFields(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.groups = [(name,) for name in ("c_plus", "c_minus", "phi")]
        self.nets = torch.nn.ModuleList(Single(name) for name in ("c_plus", "c_minus", "phi"))


class Single(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        return npp_fields(x[:, 0], torch)[self.name][:, None]


@pytest.mark.parametrize("eps", [0.5, 0.05])
def test_the_npp_torch_and_ufl_residuals_are_the_same_equations(eps):
    case = get_case("npp", eps=eps)
    problem = get_problem(case, n_points=16, dtype=torch.float64, seed=0)
    points = torch.linspace(0.0, 1.0, 25, dtype=torch.float64)[:, None]
    fields = field_derivatives(NPPFields(), points, problem.orders)
    torch_side = {k: v.detach().numpy() for k, v in problem.pde_residuals(fields).items()}
    domain = ufl.Mesh(ufl.VectorElement("Lagrange", ufl.interval, 1))
    f = npp_fields(ufl.SpatialCoordinate(domain)[0], ufl)
    forms = npp.strong_residuals(case, f["c_plus"], f["c_minus"], f["phi"])
    assert set(forms) == set(torch_side)
    for term, form in forms.items():
        expr = apply_derivatives(apply_algebra_lowering(form))
        ufl_side = np.array([float(expr((float(x),))) for x in points[:, 0]])
        np.testing.assert_allclose(torch_side[term], ufl_side, rtol=0, atol=1e-12,
                                   err_msg=f"npp eps={eps}: {term}")
        assert np.abs(ufl_side).max() > 0.1   # far from zero on these fields
