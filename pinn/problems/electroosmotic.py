"""2D electroosmotic flow with resolved double layers (cases ``eof-straight``, ``eof-patch``).

Six fields (phi, c+, c-, u, v, p) on [0, L] x [0, 1], walls y = 0, 1, sides x = 0, L
(:class:`reference.cases.ElectroosmoticFlow`); a = case.advection = Pe / U::

    poisson    = eps^2 lap(phi) + (c+ - c-)
    np_plus    = lap(c+) + div(c+ grad phi) - a u.grad(c+)
               = lap(c+) + grad(c+).grad(phi) + c+ lap(phi) - a (u c+_x + v c+_y)
    np_minus   = lap(c-) - grad(c-).grad(phi) - c- lap(phi) - a (u c-_x + v c-_y)
    stokes_x   = -p_x + mu lap(u) + Ex (c+ - c-)
    stokes_y   = -p_y + mu lap(v)
    continuity = u_x + v_y

The finite-element reference solves the same equations, written in UFL in
:func:`reference.fem.eof.strong_residuals` (its "momentum" is (stokes_x, stokes_y));
tests/test_equations.py checks that both sides agree on manufactured fields.

Boundary terms, one per field, each the concatenation of its wall rows and its side rows:

    walls (both)       phi - zeta_w(x), c+ - exp(-zeta_w), c- - exp(zeta_w), u, v
    sides "developed"  phi, c+, c-, u minus the fully developed profile, v, p
    sides "open"       phi_x, c+_x, c-_x, mu v_x;  bc_p holds mu u_x - p (zero traction)

zeta_w is case.wall_zeta (the patch, when there is one); bc_u has no side rows when the
sides are open. Loss terms, in order: poisson, np_plus, np_minus, stokes_x, stokes_y,
continuity, bc_phi, bc_c_plus, bc_c_minus, bc_u, bc_v, bc_p.

Collocation (the recipe, for n = 3000 interior points): n/2 uniform in the domain, n/2 in
the wall bands y < b and y > 1 - b (half each), b = min(5 eps, 0.3); 200 uniform random
points per edge, scaled with n (m = max(8, round(200 n / 3000))).
"""

from __future__ import annotations

import numpy as np
import torch

from reference import exact

from ..training.recipe import recipe
from .base import Problem, field_derivatives

__all__ = ["ElectroosmoticProblem"]

WALLS = ("bottom", "top")
SIDES = ("left", "right")


class ElectroosmoticProblem(Problem):
    """Residuals of the 2D electroosmotic channel, straight or with a wall-charge patch."""

    cases = ("eof-straight", "eof-patch")
    orders = {"phi": 2, "c_plus": 2, "c_minus": 2, "u": 2, "v": 2, "p": 1}
    n_edge = 200   # edge points of the recipe's interior points (pinn.training.recipe)

    @property
    def band(self) -> float:
        """Thickness b = min(5 eps, 0.3) of the wall bands of extra collocation points."""
        return min(5.0 * self.case.eps, 0.3)

    def edge_count(self, n: int) -> int:
        return max(8, round(self.n_edge * n / recipe(self.case).n_points))

    def sample(self, n, generator):
        (x0, x1), (y0, y1) = self.case.domain

        def uniform(count, lo, hi):
            return lo + (hi - lo) * torch.rand(count, generator=generator, dtype=torch.float64)

        def box(count, ylo, yhi):
            return torch.stack([uniform(count, x0, x1), uniform(count, ylo, yhi)], dim=1)

        n_uniform = n // 2
        n_bottom = (n - n_uniform) // 2
        n_top = n - n_uniform - n_bottom
        b = self.band * (y1 - y0)
        interior = torch.cat([box(n_uniform, y0, y1), box(n_bottom, y0, y0 + b),
                              box(n_top, y1 - b, y1)])

        m = self.edge_count(n)

        def edge(axis, value, lo, hi):
            """m random points on the edge where coordinate ``axis`` equals ``value``."""
            free = uniform(m, lo, hi)
            fixed = torch.full_like(free, value)
            return torch.stack([free, fixed] if axis == 1 else [fixed, free], dim=1)

        boundary = {"bottom": edge(1, y0, x0, x1), "top": edge(1, y1, x0, x1),
                    "left": edge(0, x0, y0, y1), "right": edge(0, x1, y0, y1)}
        return interior, boundary

    def setup(self) -> None:
        case = self.case
        # All edge points in one tensor (walls first), so each network runs once on them.
        self.edges = torch.cat([self.boundary[name] for name in WALLS + SIDES])
        self.n_wall = sum(len(self.boundary[name]) for name in WALLS)

        zeta_w = torch.cat([
            case.wall_zeta(self.boundary[wall][:, 0].to(torch.float64), wall, exp=torch.exp)
            for wall in WALLS
        ])
        self.wall_data = {
            "phi": self.tensor(zeta_w),
            "c_plus": self.tensor(torch.exp(-zeta_w)),
            "c_minus": self.tensor(torch.exp(zeta_w)),
        }
        if case.sides == "developed":
            y = torch.cat([self.boundary[side][:, 1] for side in SIDES]).cpu().double().numpy()
            profile = exact.channel_profile(case, y)
            self.side_data = {name: self.tensor(profile[name]) for name in self.fields}

    def pde_residuals(self, fields):
        case = self.case
        phi, cp, cm = fields["phi"], fields["c_plus"], fields["c_minus"]
        u, v, p = fields["u"], fields["v"], fields["p"]
        charge = cp.value - cm.value
        drift_plus = (cp.grad * phi.grad).sum(dim=-1) + cp.value * phi.lap
        drift_minus = (cm.grad * phi.grad).sum(dim=-1) + cm.value * phi.lap
        np_plus = cp.lap + drift_plus
        np_minus = cm.lap - drift_minus
        a = case.advection  # a number, or (R, 1) when batched runs differ in Pe
        if torch.is_tensor(a) or a:
            np_plus = np_plus - a * (u.value * cp.dx + v.value * cp.dy)
            np_minus = np_minus - a * (u.value * cm.dx + v.value * cm.dy)
        return {
            "poisson": case.eps**2 * phi.lap + charge,
            "np_plus": np_plus,
            "np_minus": np_minus,
            "stokes_x": -p.dx + case.mu * u.lap + case.Ex * charge,
            "stokes_y": -p.dy + case.mu * v.lap,
            "continuity": u.dx + v.dy,
        }

    def boundary_residuals(self, model):
        # Rows along the last axis: fields of batched runs carry a leading run axis.
        case, n = self.case, self.n_wall
        open_sides = case.sides == "open"
        orders = {name: 1 for name in self.fields if name != "p"} if open_sides else {}
        f = field_derivatives(model, self.edges, orders)
        wall = {name: field.value[..., :n] for name, field in f.items()}
        wall_rows = {
            "phi": wall["phi"] - self.wall_data["phi"],
            "c_plus": wall["c_plus"] - self.wall_data["c_plus"],
            "c_minus": wall["c_minus"] - self.wall_data["c_minus"],
            "u": wall["u"],
            "v": wall["v"],
        }

        def rows(*parts):
            return torch.cat(parts, dim=-1)

        if open_sides:
            side_rows = {name: f[name].dx[..., n:] for name in ("phi", "c_plus", "c_minus")}
            side_rows["v"] = case.mu * f["v"].dx[..., n:]
            traction = case.mu * f["u"].dx[..., n:] - f["p"].value[..., n:]
            terms = {name: rows(wall_rows[name], side_rows[name])
                     for name in ("phi", "c_plus", "c_minus")}
            terms.update(u=wall_rows["u"], v=rows(wall_rows["v"], side_rows["v"]), p=traction)
        else:
            side_rows = {name: f[name].value[..., n:] - self.side_data[name]
                         for name in self.fields}
            terms = {name: rows(wall_rows[name], side_rows[name]) for name in wall_rows}
            terms["p"] = side_rows["p"]
        return {f"bc_{name}": terms[name] for name in self.fields}

    def exact_reference(self, points):
        if not self.case.straight:
            return None  # only the finite-element reference knows the patch flow
        # The fully developed profile is exact for a straight channel with either kind of
        # side (it satisfies the open conditions too) and for any Pe (u.grad c = 0).
        return exact.channel_profile(self.case, np.asarray(points)[:, 1])
