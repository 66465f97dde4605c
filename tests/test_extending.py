"""docs/extending.md, executed: a new 1D case added from outside the package (a case, a
problem, a recipe, three registry entries) trains, scores against its exact solution and
is refused by a suite profile that neither benchmarks nor defers it."""

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from pinn.problems import PROBLEMS
from pinn.problems.base import IntervalProblem
from pinn.training.recipe import PUBLISHED, Recipe
from pinn.training.trainer import TrainConfig, train
from reference.cases import CASES, Case
from suite.profiles import SMOKE, Profile   # (before the new case exists: see the last test)


# --- 1. the case: equations, exact solution, parameters (reference/cases.py) -------------
@dataclass(frozen=True)
class CoupledPoisson(Case):
    """Two Poisson equations, b driven by a (one-way linear coupling gamma), x in [0, 1]::

        -a''             = f_a,   f_a = pi^2 sin(pi x)
        -b'' + gamma a   = f_b,   f_b = 4 pi^2 sin(2 pi x) + gamma sin(pi x)

    exact solution a = sin(pi x), b = sin(2 pi x), Dirichlet data from it at both ends.
    """

    name: ClassVar[str] = "coupled-poisson"
    fields: ClassVar[tuple[str, ...]] = ("a", "b")
    coupling: ClassVar[str] = "gamma"
    sweep_values: ClassVar[tuple[float, ...]] = (1.0, 10.0, 100.0)

    gamma: float = 1.0
    length: float = 1.0

    def _validate(self):
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        return {"gamma": float(self.gamma), "length": float(self.length)}

    def exact(self, x):
        x = np.asarray(x, dtype=float)
        return {"a": np.sin(math.pi * x), "b": np.sin(2 * math.pi * x)}


# --- 2. the problem: residuals and boundary data (pinn/problems/) ------------------------
class CoupledPoissonProblem(IntervalProblem):
    cases = ("coupled-poisson",)
    orders = {"a": 2, "b": 2}          # the derivatives each residual needs

    def setup(self):
        super().setup()                  # the boundary targets, from boundary_values()
        x = self.interior[:, 0].to(torch.float64)
        gamma = self.case.gamma
        self.f_a = self.tensor(math.pi**2 * torch.sin(math.pi * x))
        self.f_b = self.tensor(4 * math.pi**2 * torch.sin(2 * math.pi * x)
                               + gamma * torch.sin(math.pi * x))

    def boundary_values(self):
        ends = self.case.exact([0.0, self.case.length])
        return {name: tuple(values) for name, values in ends.items()}

    def pde_residuals(self, fields):
        a, b = fields["a"], fields["b"]
        return {"pde_a": -a.dxx - self.f_a,
                "pde_b": -b.dxx + self.case.gamma * a.value - self.f_b}

    def exact_reference(self, points):
        return self.case.exact(points[:, 0])


# --- 3. register it (the case, its problem, its recipe) ------------------------------------
@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(CASES, "coupled-poisson", CoupledPoisson)
    monkeypatch.setitem(PROBLEMS, "coupled-poisson", CoupledPoissonProblem)
    monkeypatch.setitem(PUBLISHED, "coupled-poisson",
                        Recipe(steps=2000, lr=1e-3, width=32, depth=3, n_points=100))


def test_a_new_case_trains_and_scores(registered):
    assert (TrainConfig(case="coupled-poisson").steps, TrainConfig(case="coupled-poisson").lr
            ) == (2000, 1e-3)                       # its recipe
    config = TrainConfig(case="coupled-poisson", case_params={"gamma": 10.0}, optimizer="adam",
                         lr=1e-2, balancing="gn", balance_every=50, steps=500, eval_every=100,
                         width=16, depth=2, device="cpu", progress=False, seed=0)
    result = train(config)
    assert result.status == "completed"
    assert set(result.final["l2"]) == {"a", "b", "avg"}
    # measured (seed 0, 2-core CPU): L2_avg 0.85 -> 2.0e-3 in 500 steps
    assert result.history[0]["l2_avg"] > 0.5 and result.final["l2"]["avg"] < 1e-2


def test_a_profile_must_account_for_the_new_case(registered):
    with pytest.raises(ValueError, match=r"\['coupled-poisson'\] are neither benchmarked"):
        Profile(name="x", description="", couplings=SMOKE.couplings, budgets=SMOKE.budgets,
                deferred=SMOKE.deferred)
