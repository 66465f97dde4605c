"""The benchmark cases as plain data: one frozen dataclass per family of coupled systems.

Every part of the project reads the same case object: the finite-element solver
(:mod:`reference.fem`), the PINN residuals (:mod:`pinn.problems`), the reference store and
the benchmark suite. A case is nondimensional and steady; its docstring states the PDEs.
Parameters are validated when the case is built, so a bad value fails before any
computation with a ``ValueError`` that names the parameter and the allowed range.

>>> case = get_case("thermo", gamma=10)
>>> case.fields, case.coupling, case.coupling_value
(('T', 'u'), 'gamma', 10.0)
>>> [c.coupling_value for c in sweep("npp")]
[0.5, 0.2, 0.1, 0.05]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

__all__ = [
    "Case",
    "Thermoelastic",
    "ReactionDiffusion",
    "NernstPlanckPoisson",
    "ElectroosmoticFlow",
    "AsymmetricReactionDiffusion",
    "ElectroosmoticPatch",
    "CASES",
    "FE_CASES",
    "get_case",
    "case_from_params",
    "sweep",
]


def _finite(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _positive(name: str, value) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0 (allowed range: (0, inf)), got {value}")
    return value


#: The thinnest double layer a case may have, eps / (the length across it): the evaluation
#: grid (reference.store) resolves it down to there, with 7 of the 1000 uniform 1D points
#: and a dozen of the 200 graded 2D ones within one Debye length (eps / sqrt 2) of a wall.
#: Below it the scores would miss the layer (and the Poisson-Boltzmann solve soon fails).
MIN_EPS = 0.01


def _debye_ratio(value, across: float) -> float:
    """eps, checked against :data:`MIN_EPS` for a double layer across ``across``."""
    value = _positive("eps", value)
    if value < MIN_EPS * across:
        raise ValueError(f"eps must be >= {MIN_EPS * across:g} (allowed range: "
                         f"[{MIN_EPS * across:g}, inf): the evaluation grid resolves a double "
                         f"layer of eps / sqrt 2 down to there), got {value:g}")
    return value


def _nonnegative(name: str, value) -> float:
    value = _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (allowed range: [0, inf)), got {value}")
    return value


@dataclass(frozen=True)
class Case:
    """Common behaviour: validation, parameters as a dict, copies with changes.

    Subclasses declare ``name`` (the registry key), ``fields`` (the unknowns in the
    project's vocabulary), ``coupling`` (the parameter a sweep varies), ``sweep_values``
    (its values, weak to strong coupling) and implement
    ``_validate`` returning the converted parameter values.
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    coupling: ClassVar[str]
    sweep_values: ClassVar[tuple[float, ...]]

    def __post_init__(self):
        for key, value in self._validate().items():
            object.__setattr__(self, key, value)

    def _validate(self) -> dict:  # pragma: no cover - every case overrides it
        raise NotImplementedError

    @property
    def coupling_value(self) -> float:
        return getattr(self, self.coupling)

    @classmethod
    def smaller_is_stronger(cls) -> bool:
        """Whether the coupling strengthens as its parameter decreases (eps), as the
        direction of ``sweep_values`` says."""
        return len(cls.sweep_values) > 1 and cls.sweep_values[-1] < cls.sweep_values[0]

    @classmethod
    def weak_to_strong(cls, values) -> list[float]:
        """The distinct coupling ``values`` ordered from weak to strong coupling."""
        return sorted(set(values), reverse=cls.smaller_is_stronger())

    @property
    def dim(self) -> int:
        return len(self.domain)

    @property
    def domain(self) -> tuple[tuple[float, float], ...]:
        """Bounds per coordinate: ``((x0, x1),)`` in 1D, ``((x0, x1), (y0, y1))`` in 2D."""
        return ((0.0, self.length),)

    def params(self) -> dict:
        """The parameters as plain JSON-able values (what the store records)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Case":
        """A copy with some parameters changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for case {self.name!r}; "
                f"valid: {[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def field_scales(self) -> dict[str, float]:
        """The known magnitude of each field whose scale is far from 1 ({} when none is):
        what a network may learn its field divided by (``output_scales = "case"``)."""
        return {}

    @property
    def label(self) -> str:
        """A short identifier, e.g. ``thermo-gamma10`` (file names, benchmark ids)."""
        return f"{self.name}-{self.coupling}{self.coupling_value:g}"


@dataclass(frozen=True)
class Thermoelastic(Case):
    """1D thermoelasticity, one-way linear coupling (S = 2 fields: T, u), x in [0, L]::

        -kappa T''            = f_T,   f_T = kappa pi^2 sin(pi x)
        -E u''  + gamma T'    = f_u,   f_u = 4 E pi^2 sin(2 pi x) + gamma pi cos(pi x)

    with the exact solution T = sin(pi x) + 1, u = sin(2 pi x) imposed at x = 0 and x = L
    (the sources are written for L = 1; other lengths keep the same source functions).
    """

    name: ClassVar[str] = "thermo"
    fields: ClassVar[tuple[str, ...]] = ("T", "u")
    coupling: ClassVar[str] = "gamma"
    sweep_values: ClassVar[tuple[float, ...]] = (1.0, 5.0, 10.0, 50.0)

    gamma: float = 1.0
    kappa: float = 1.0
    E: float = 1.0
    length: float = 1.0

    def _validate(self):
        return dict(
            gamma=_nonnegative("gamma", self.gamma),
            kappa=_positive("kappa", self.kappa),
            E=_positive("E", self.E),
            length=_positive("length", self.length),
        )


@dataclass(frozen=True)
class ReactionDiffusion(Case):
    """1D reaction-diffusion A <-> B <-> C, linear two-way coupling (S = 3), x in [0, L]::

        D1 cA'' - k1 cA + k2 cB               = f1
        D2 cB'' + k1 cA - (k2 + k3) cB + k4 cC = f2
        D3 cC'' + k3 cB - k4 cC               = f3

    exact solution cA = sin(pi x) + 2, cB = cos(pi x) + 2, cC = sin(2 pi x) + 2 (the f's
    follow by substitution), Dirichlet data from it at both ends. ``symmetric`` cases
    have k1 = k2 = k3 = k4 = k; the coupling parameter of a sweep is ``k``, the overall
    rate scale: the rates are k * (r1, r2, r3, r4) with the ratios fixed by the case
    (this class: all ratios 1, the symmetric system).
    """

    name: ClassVar[str] = "rd-symmetric"
    fields: ClassVar[tuple[str, ...]] = ("c_A", "c_B", "c_C")
    coupling: ClassVar[str] = "k"
    sweep_values: ClassVar[tuple[float, ...]] = (1.0, 5.0, 10.0, 50.0)

    k: float = 1.0
    ratios: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    D1: float = 1.0
    D2: float = 1.0
    D3: float = 1.0
    length: float = 1.0

    def _validate(self):
        ratios = tuple(self.ratios)
        if len(ratios) != 4:
            raise ValueError(f"ratios must hold 4 rate ratios (k1..k4 / k), got {ratios!r}")
        return dict(
            k=_nonnegative("k", self.k),
            ratios=tuple(_nonnegative(f"ratios[{i}]", r) for i, r in enumerate(ratios)),
            D1=_positive("D1", self.D1),
            D2=_positive("D2", self.D2),
            D3=_positive("D3", self.D3),
            length=_positive("length", self.length),
        )

    @property
    def rates(self) -> tuple[float, float, float, float]:
        """(k1, k2, k3, k4)."""
        return tuple(self.k * r for r in self.ratios)

    @property
    def symmetric(self) -> bool:
        return len(set(self.ratios)) == 1

    def params(self) -> dict:
        params = super().params()
        params["ratios"] = list(self.ratios)
        params.update(zip(("k1", "k2", "k3", "k4"), self.rates))
        return params


@dataclass(frozen=True)
class NernstPlanckPoisson(Case):
    """1D Nernst-Planck-Poisson equilibrium double layer (S = 3: c_plus, c_minus, phi)::

        (c+' + c+ phi')' = 0,   (c-' - c- phi')' = 0,   eps^2 phi'' + (c+ - c-) = 0

    on x in [0, L]; x = 0: phi = zeta, c+- = exp(-+zeta); x = L: phi = 0, c+- = 1.
    Solution: c+- = exp(-+phi) with eps^2 phi'' = 2 sinh(phi). ``eps`` is the Debye
    ratio (the double-layer decay length is eps / sqrt(2)); smaller is harder.
    """

    name: ClassVar[str] = "npp"
    fields: ClassVar[tuple[str, ...]] = ("c_plus", "c_minus", "phi")
    coupling: ClassVar[str] = "eps"
    sweep_values: ClassVar[tuple[float, ...]] = (0.5, 0.2, 0.1, 0.05)

    eps: float = 0.1
    zeta: float = 1.0
    length: float = 1.0

    def _validate(self):
        length = _positive("length", self.length)
        return dict(
            eps=_debye_ratio(self.eps, length),
            zeta=_finite("zeta", self.zeta),
            length=length,
        )


@dataclass(frozen=True)
class ElectroosmoticFlow(Case):
    """2D electroosmotic channel flow with resolved double layers (S = 6 fields).

    Domain [0, L] x [0, 1]; walls y = 0 and y = 1, sides x = 0 and x = L::

        Poisson:     eps^2 lap(phi) + (c+ - c-) = 0
        NP+:         lap(c+) + div(c+ grad phi) - a u.grad(c+) = 0
        NP-:         lap(c-) - div(c- grad phi) - a u.grad(c-) = 0
        Stokes-x:    -p_x + mu lap(u) + Ex (c+ - c-) = 0
        Stokes-y:    -p_y + mu lap(v) = 0
        continuity:  u_x + v_y = 0

    Ion advection: a = Pe / U with U = eps^2 |zeta| Ex / mu the Helmholtz-Smoluchowski
    speed, so ``Pe`` is the Peclet number of the flow the case actually has (a = 0 when
    Pe = 0; the straight channel is then the paper's benchmark).

    Walls: phi = zeta_w(x), c+- = exp(-+zeta_w(x)), u = v = 0, with zeta_w = zeta on the
    top wall and, on the bottom wall, zeta plus a smooth Gaussian patch::

        zeta_bottom(x) = zeta + (patch_zeta - zeta) exp(-((x - patch_center) / patch_width)^2)

    (no patch when patch_zeta is None; this class is the straight channel, the patch
    case is :class:`ElectroosmoticPatch`). Sides, by ``sides``:

    - ``"developed"`` (the paper's BVP): phi, c+-, u from the fully developed 1D profile
      (eps^2 phi'' = 2 sinh phi, phi = zeta at both walls; c+- = exp(-+phi);
      u = (Ex eps^2 / mu)(phi - zeta)), v = 0, p = 0.
    - ``"open"`` (the channel between two reservoirs at equal pressure): zero normal
      derivative of phi and c+- (d/dx = 0) and zero traction in the do-nothing form,
      mu du/dx - p = 0 and mu dv/dx = 0. The fully developed profile satisfies these, so
      a patch far from the ends leaves them smooth; no pressure gauge is needed.
    """

    name: ClassVar[str] = "eof-straight"
    fields: ClassVar[tuple[str, ...]] = ("phi", "c_plus", "c_minus", "u", "v", "p")
    coupling: ClassVar[str] = "eps"
    sweep_values: ClassVar[tuple[float, ...]] = (0.5, 0.2, 0.1, 0.05)
    scored_fields: ClassVar[tuple[str, ...]] = ("phi", "c_plus", "c_minus", "u")

    eps: float = 0.2
    zeta: float = 1.0
    Ex: float = 1.0
    mu: float = 1.0
    Pe: float = 0.0
    length: float = 1.0
    patch_zeta: float | None = None
    patch_center: float = 0.5
    patch_width: float = 0.2
    sides: str = "developed"

    def _validate(self):
        checked = dict(
            eps=_debye_ratio(self.eps, 1.0),   # the channel's height
            zeta=_finite("zeta", self.zeta),
            Ex=_finite("Ex", self.Ex),
            mu=_positive("mu", self.mu),
            Pe=_nonnegative("Pe", self.Pe),
            length=_positive("length", self.length),
            patch_width=_positive("patch_width", self.patch_width),
        )
        checked["patch_center"] = _finite("patch_center", self.patch_center)
        if not 0 <= checked["patch_center"] <= checked["length"]:
            raise ValueError(
                f"patch_center must lie in [0, length] = [0, {checked['length']}], "
                f"got {checked['patch_center']}"
            )
        if self.patch_zeta is not None:
            checked["patch_zeta"] = _finite("patch_zeta", self.patch_zeta)
        if self.sides not in ("developed", "open"):
            raise ValueError(f"sides must be 'developed' or 'open', got {self.sides!r}")
        if checked["Pe"] > 0 and checked["zeta"] * checked["Ex"] == 0:
            raise ValueError("Pe > 0 needs a flow: zeta and Ex must be nonzero")
        return checked

    @property
    def domain(self):
        return ((0.0, self.length), (0.0, 1.0))

    @property
    def debye_length(self) -> float:
        """Decay length of the double layer, eps / sqrt(2)."""
        return self.eps / math.sqrt(2.0)

    @property
    def velocity_scale(self) -> float:
        """Helmholtz-Smoluchowski speed U = eps^2 |zeta| Ex / mu (its magnitude)."""
        return abs(self.eps**2 * self.zeta * self.Ex / self.mu)

    @property
    def field_scales(self) -> dict[str, float]:
        """u, v ~ U and p ~ mu U / H (H = 1, the channel's height: the viscous stress of the
        electroosmotic flow); phi ~ zeta and c+- ~ exp(-+phi) are of order 1."""
        scale = self.velocity_scale
        return {"u": scale, "v": scale, "p": self.mu * scale}

    @property
    def advection(self) -> float:
        """Coefficient a = Pe / U of u.grad(c) in the Nernst-Planck equations."""
        return self.Pe / self.velocity_scale if self.Pe > 0 else 0.0

    @property
    def straight(self) -> bool:
        """True when the wall charge is uniform (the fully developed profile is exact)."""
        return self.patch_zeta is None or self.patch_zeta == self.zeta

    def wall_zeta(self, x, wall: str, exp: Callable = math.exp):
        """Wall potential zeta_w(x) on ``wall`` ('bottom' or 'top').

        ``exp`` makes the same formula serve numpy (np.exp), torch (torch.exp) and UFL
        (ufl.exp) arguments.
        """
        if wall == "top" or self.straight:
            return self.zeta + 0.0 * x
        if wall != "bottom":
            raise ValueError(f"wall must be 'bottom' or 'top', got {wall!r}")
        bump = exp(-(((x - self.patch_center) / self.patch_width) ** 2))
        return self.zeta + (self.patch_zeta - self.zeta) * bump


@dataclass(frozen=True)
class AsymmetricReactionDiffusion(ReactionDiffusion):
    """Reaction-diffusion with distinct rates k1 = k, k2 = k/2, k3 = 2k, k4 = k/4
    (a forward-biased chain A -> B -> C)."""

    name: ClassVar[str] = "rd-asymmetric"
    ratios: tuple[float, float, float, float] = (1.0, 0.5, 2.0, 0.25)


@dataclass(frozen=True)
class ElectroosmoticPatch(ElectroosmoticFlow):
    """Genuinely 2D flow: an opposite-sign charge patch on the bottom wall of a 2:1 channel
    open to two reservoirs at equal pressure (docs/cases/eof-patch.md). The patch drives a
    pressure gradient and a recirculation; Pe > 0 makes the coupling two-way (the flow
    advects the ions that drive it). Swept over Pe."""

    name: ClassVar[str] = "eof-patch"
    coupling: ClassVar[str] = "Pe"
    sweep_values: ClassVar[tuple[float, ...]] = (0.0, 1.0, 10.0)

    eps: float = 0.1
    length: float = 2.0
    patch_zeta: float | None = -1.0
    patch_center: float = 1.0
    patch_width: float = 0.2
    sides: str = "open"


CASES: dict[str, type[Case]] = {
    cls.name: cls
    for cls in (
        Thermoelastic,
        ReactionDiffusion,
        AsymmetricReactionDiffusion,
        NernstPlanckPoisson,
        ElectroosmoticFlow,
        ElectroosmoticPatch,
    )
}


#: The cases with a finite-element reference (reference.fem.generate writes them).
FE_CASES = ("eof-straight", "eof-patch", "npp")


def get_case(name: str, **params) -> Case:
    """The case ``name`` with its default parameters, overridden by ``params``."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; valid cases: {sorted(CASES)}")
    cls = CASES[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = set(params) - set(valid)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for case {name!r}; valid: {valid}")
    return cls(**params)


def case_from_params(name: str, params: dict) -> Case:
    """The case a recorded ``Case.params()`` dict describes (as reference files store it):
    entries derived from the fields (the rates k1..k4 of reaction-diffusion) are dropped,
    lists become tuples."""
    cls = CASES[name] if name in CASES else get_case(name)  # get_case raises the error
    valid = {f.name for f in dataclasses.fields(cls)}
    return get_case(name, **{key: tuple(value) if isinstance(value, list) else value
                             for key, value in params.items() if key in valid})


def sweep(name: str, **params) -> list[Case]:
    """The cases of the coupling sweep of ``name``, weak to strong coupling."""
    cls = CASES[name] if name in CASES else get_case(name)  # get_case raises the error
    return [get_case(name, **{**params, cls.coupling: value}) for value in cls.sweep_values]
