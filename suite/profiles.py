"""Benchmark profiles: which runs the suite makes, and how long each one trains.

A profile is a plain config (jaxpi style): the systems with their couplings (weak to
strong), the methods (optimizer x balancing), the seeds, and per system the training
budget. ``smoke`` (the default) fits the whole suite in about ten minutes on a 2-core CPU;
``paper`` is the published recipe (meant for a GPU); ``tiny`` checks the harness in
seconds (the tests use it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference.cases import CASES

METHODS = (("adam", "none"), ("adam", "gn"), ("soap", "none"), ("soap", "gn"))


@dataclass(frozen=True)
class Budget:
    """How one system trains: steps, learning rate, networks, collocation, evaluation."""

    steps: int
    lr: float
    width: int
    depth: int
    n_points: int | None = None      # interior collocation points; None = the recipe's
    balance_every: int = 1000
    eval_every: int = 100


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    couplings: dict[str, tuple[float, ...]]   # case -> coupling values, weak to strong
    budgets: dict[str, Budget]
    methods: tuple[tuple[str, str], ...] = METHODS
    seeds: tuple[int, ...] = (42,)
    claim_ratio: float = 1.1                  # paper: SOAP+GN degrades <= 1.1x
    dtype: str = "float32"
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.couplings) - set(CASES)
        if unknown:
            raise ValueError(f"profile {self.name!r}: unknown case(s) {sorted(unknown)}")
        missing = set(self.couplings) - set(self.budgets)
        if missing:
            raise ValueError(f"profile {self.name!r}: no budget for {sorted(missing)}")

    def runs(self):
        """Every run as (case, coupling, optimizer, balancing, seed)."""
        for case, values in self.couplings.items():
            for value in values:
                for optimizer, balancing in self.methods:
                    for seed in self.seeds:
                        yield case, value, optimizer, balancing, seed


_SMOKE_1D = Budget(steps=1500, lr=1e-3, width=32, depth=3, n_points=100, balance_every=250,
                   eval_every=250)
_SMOKE_2D = Budget(steps=600, lr=1e-3, width=32, depth=3, n_points=400, balance_every=200,
                   eval_every=100)

SMOKE = Profile(
    name="smoke",
    description="every system, 2 couplings, 4 methods, short CPU runs (minutes in all)",
    couplings={
        "thermo": (1.0, 10.0),
        "rd-symmetric": (1.0, 10.0),
        "rd-asymmetric": (1.0, 10.0),
        "npp": (0.5, 0.2),
        "eof-straight": (0.5, 0.2),
        "eof-patch": (0.0, 10.0),
    },
    budgets={
        "thermo": _SMOKE_1D,
        "rd-symmetric": _SMOKE_1D,
        "rd-asymmetric": _SMOKE_1D,
        "npp": _SMOKE_1D,
        "eof-straight": _SMOKE_2D,
        "eof-patch": _SMOKE_2D,
    },
)

_PAPER_1D = Budget(steps=60_000, lr=1e-3, width=64, depth=4, eval_every=500)
_PAPER_2D = Budget(steps=50_000, lr=3e-4, width=128, depth=5, eval_every=1000)

PAPER = Profile(
    name="paper",
    description="the published recipe: full sweeps, 60k/30k/50k steps (GPU)",
    couplings={
        "thermo": CASES["thermo"].sweep_values,
        "rd-symmetric": CASES["rd-symmetric"].sweep_values,
        "rd-asymmetric": CASES["rd-asymmetric"].sweep_values,
        "npp": CASES["npp"].sweep_values,
        "eof-straight": (0.5, 0.2, 0.1),
        "eof-patch": CASES["eof-patch"].sweep_values,
    },
    budgets={
        "thermo": _PAPER_1D,
        "rd-symmetric": _PAPER_1D,
        "rd-asymmetric": _PAPER_1D,
        "npp": Budget(steps=30_000, lr=3e-4, width=64, depth=4, eval_every=500),
        "eof-straight": _PAPER_2D,
        "eof-patch": _PAPER_2D,
    },
)

_TINY = Budget(steps=20, lr=1e-3, width=8, depth=2, n_points=20, balance_every=10,
               eval_every=10)

TINY = Profile(
    name="tiny",
    description="a few steps per system: checks the harness end to end (seconds)",
    couplings={"thermo": (1.0, 10.0), "npp": (0.5, 0.2), "eof-straight": (0.5, 0.2),
               "eof-patch": (0.0, 10.0)},
    budgets={"thermo": _TINY, "npp": _TINY, "eof-straight": _TINY, "eof-patch": _TINY},
    methods=(("adam", "gn"), ("soap", "gn")),
)

PROFILES = {profile.name: profile for profile in (SMOKE, PAPER, TINY)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {sorted(PROFILES)}")
    return PROFILES[name]
