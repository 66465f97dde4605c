"""Channel meshes for the electroosmotic cases, graded where the solution varies fast.

A structured ``crossed`` triangle mesh of the parameter square (s, t) in [0, 1]^2 is
mapped onto the channel [0, L] x [0, 1]:

    y(t) = g(ell(t; a_y, d_y)),  g(t) = (1 + tanh(beta (2t - 1)) / tanh(beta)) / 2
                                                      (towards both walls)
    x(s) = f(ell(s; a_x, d_x)),  f(s) = xc + A sinh(beta_x (s - s0)),
           A, s0 so that f(0) = 0, f(1) = L           (towards the patch at xc)

ell (:func:`_layered`) maps [0, 1] onto itself with the cell density
rho(u) = 1 + a (exp(-u/d) + exp(-(1 - u)/d)): thin layers of cells about 1 + a times finer
at both ends (a = 0: the identity). The patch channel uses them (docs/cases/eof-patch.md)
to resolve the four corners where a no-slip wall meets an open side: there the pressure
is singular (the side condition mu du/dx = p and u = 0 on the wall disagree unless
p = 0 at the corner), and its error falls only about linearly with the corner cell size.

``diagonal="crossed"`` (four triangles per rectangle) matters: with the default ``right``
diagonal the error of a channel flow depends on the cell aspect ratio (docs/references.md).

The resolution follows from the Debye ratio eps and the accuracy asked for, not from a
table per case: the grading strength beta grows by 1/4 per halving of eps, and the number
of cells across, ny = 70 (0.5 / eps)^0.6, was calibrated on the straight channel (exact
solution known) to give ~3e-7 relative L2 per field for eps = 0.5 ... 0.05; P2 errors
fall like h^3, so a tolerance tol scales that ny by (3e-7 / (tol / 3))^(1/3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq

__all__ = ["ChannelMesh", "channel_mesh_spec", "wall_grading", "cells_across", "build_mesh",
           "triangulation"]

#: Calibration of the resolution law (module docstring), measured on the straight channel.
CELLS_AT_HALF = 70           # ny at eps = 0.5 reaching ~3e-7 relative L2 (a 3x margin on 1e-6)
CELLS_EXPONENT = 0.6         # ny grows like eps^-0.6
CALIBRATED_ERROR = 3e-7
#: The accuracy each kind of channel is generated for (relative L2 per field).
TARGET = {"straight": 1e-6, "patch": 3e-6}   # the patch: a 3x margin on 1e-5 (its estimate)
#: End layers (weight a, width d of :func:`_layered`) of the patch channel: cells about
#: 1 + a times finer at the sides (x) and the walls (y), i.e. at the four corners.
SIDE_LAYERS = (60.0, 0.0025)
WALL_LAYERS = (10.0, 0.01)


def wall_grading(eps: float) -> float:
    """Grading strength beta: 1 at eps >= 0.5, growing by 1/4 per halving of eps, <= 3."""
    return float(np.clip(1.0 + 0.25 * math.log2(0.5 / eps), 1.0, 3.0))


def cells_across(eps: float, tolerance: float) -> int:
    """ny for relative L2 error ~ tolerance / 3: ny = 70 (0.5/eps)^0.6 (3e-7 / (tol/3))^(1/3).

    P2 errors fall like h^3, so a looser tolerance needs proportionally fewer cells."""
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    aim = tolerance / 3.0
    ny = CELLS_AT_HALF * (0.5 / min(eps, 0.5)) ** CELLS_EXPONENT * (CALIBRATED_ERROR / aim) ** (1 / 3)
    return max(8, math.ceil(ny))


def _graded(t, beta: float):
    """Map [0, 1] onto itself, clustering points towards both ends."""
    return 0.5 * (1.0 + np.tanh(beta * (2.0 * np.asarray(t) - 1.0)) / math.tanh(beta))


def _layered(t, weight: float, width: float):
    """Map [0, 1] onto itself with cell density rho(u) = 1 + weight (exp(-u/width) +
    exp(-(1-u)/width)): t = R(u) / R(1), R(u) = int_0^u rho, inverted by interpolation
    (monotone, exact at the ends, the same on every mesh of a refinement study)."""
    t = np.asarray(t, dtype=float)
    if weight == 0.0:
        return t
    u = np.linspace(0.0, 1.0, 200_001)
    R = u + weight * width * (1.0 - np.exp(-u / width) + np.exp(-(1.0 - u) / width)
                              - math.exp(-1.0 / width))
    return np.interp(t, R / R[-1], u)


def _focused(s, length: float, centre: float, beta_x: float):
    """Map [0, 1] onto [0, length], clustering points around ``centre`` (sinh map)."""
    s = np.asarray(s, dtype=float)
    if beta_x == 0.0:
        return length * s
    # s0 is where the map passes through the centre: sinh(b(1-s0)) / sinh(b s0) = (L-c)/c.
    if centre <= 0.0 or centre >= length:
        raise ValueError(f"focus centre must lie inside (0, {length}), got {centre}")
    ratio = (length - centre) / centre
    s0 = brentq(lambda z: math.sinh(beta_x * (1 - z)) - ratio * math.sinh(beta_x * z), 0.0, 1.0)
    scale = centre / math.sinh(beta_x * s0)
    return centre + scale * np.sinh(beta_x * (s - s0))


@dataclass(frozen=True)
class ChannelMesh:
    """A channel mesh description: nx x ny crossed cells, wall grading beta, patch focus
    beta_x around x_focus (beta_x = 0: uniform in x), end layers (weight, width) in x
    (at the sides) and y (at the walls); weight 0: none."""

    length: float
    nx: int
    ny: int
    beta: float
    beta_x: float = 0.0
    x_focus: float = 0.0
    side_layers: tuple[float, float] = (0.0, 0.0)
    wall_layers: tuple[float, float] = (0.0, 0.0)

    def x(self, s):
        return _focused(_layered(s, *self.side_layers), self.length, self.x_focus, self.beta_x)

    def y(self, t):
        return _graded(_layered(t, *self.wall_layers), self.beta)

    def refined(self, factor: float) -> "ChannelMesh":
        """The same mapping with factor times as many cells per direction."""
        return replace(self, nx=max(1, round(self.nx * factor)), ny=max(1, round(self.ny * factor)))

    def as_dict(self) -> dict:
        return {"length": self.length, "nx": self.nx, "ny": self.ny, "beta": self.beta,
                "beta_x": self.beta_x, "x_focus": self.x_focus,
                "side_layers": list(self.side_layers), "wall_layers": list(self.wall_layers),
                "diagonal": "crossed"}


def channel_mesh_spec(case, scale: float = 1.0, tolerance: float | None = None) -> ChannelMesh:
    """The mesh for an electroosmotic case (``scale`` multiplies the cell counts).

    Across the channel: beta = :func:`wall_grading` (eps), ny = :func:`cells_across` (eps,
    tolerance), tolerance defaulting to :data:`TARGET` of the kind of channel. Along it: a
    straight channel's exact solution does not depend on x, so 4 columns suffice; a patch
    gets nx = L ny / 2 columns focused towards the patch (beta_x = 1.5: cells at the patch
    cosh(0.75) = 1.3 times finer than at the ends), and end layers (:data:`SIDE_LAYERS`,
    :data:`WALL_LAYERS`) that refine the four corners; the rows and columns the layers
    take (a fraction 2 a d / (1 + 2 a d)) are added, so the rest keeps its resolution.
    """
    kind = "straight" if case.straight else "patch"
    ny = math.ceil(cells_across(case.eps, tolerance or TARGET[kind]) * scale)
    beta = wall_grading(case.eps)
    if case.straight:
        return ChannelMesh(case.length, 4, ny, beta)
    # Multiples of 4, so that the meshes of a refinement study (1/2 and 1/4 of the cells)
    # are nested exactly.
    share = lambda layers: 1.0 + 2.0 * layers[0] * layers[1]
    nx = 4 * math.ceil(0.5 * case.length * ny * share(SIDE_LAYERS) / 4)
    ny = 4 * math.ceil(ny * share(WALL_LAYERS) / 4)
    return ChannelMesh(case.length, nx, ny, beta, 1.5, case.patch_center, SIDE_LAYERS,
                       WALL_LAYERS)


def build_mesh(spec: ChannelMesh, comm):
    """The DOLFINx mesh of ``spec`` (its geometry mapped in place on every rank)."""
    from reference.fem import compat

    msh = compat.create_rectangle(comm, ((0.0, 0.0), (1.0, 1.0)), (spec.nx, spec.ny), "crossed")
    x = msh.geometry.x
    x[:, 0], x[:, 1] = spec.x(x[:, 0]), spec.y(x[:, 1])
    return msh


def triangulation(spec: ChannelMesh) -> dict[str, np.ndarray]:
    """The vertices and triangles of the crossed mesh of ``spec`` in numpy (for storing):
    the (nx+1)(ny+1) grid points, then one centre point per rectangle."""
    s = np.linspace(0.0, 1.0, spec.nx + 1)
    t = np.linspace(0.0, 1.0, spec.ny + 1)
    sc, tc = 0.5 * (s[1:] + s[:-1]), 0.5 * (t[1:] + t[:-1])
    S, T = np.meshgrid(s, t)
    SC, TC = np.meshgrid(sc, tc)
    vertices = np.column_stack([np.concatenate([spec.x(S.ravel()), spec.x(SC.ravel())]),
                                np.concatenate([spec.y(T.ravel()), spec.y(TC.ravel())])])
    j, i = np.meshgrid(np.arange(spec.ny), np.arange(spec.nx), indexing="ij")
    corner = lambda dj, di: ((j + dj) * (spec.nx + 1) + i + di).ravel()
    centre = (spec.nx + 1) * (spec.ny + 1) + (j * spec.nx + i).ravel()
    a, b, c, d = corner(0, 0), corner(0, 1), corner(1, 1), corner(1, 0)
    cells = np.concatenate([np.column_stack([a, b, centre]), np.column_stack([b, c, centre]),
                            np.column_stack([c, d, centre]), np.column_stack([d, a, centre])])
    return {"vertices": vertices, "cells": cells.astype(np.int64)}
