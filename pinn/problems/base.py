"""What every PINN problem shares: fixed collocation points, strong-form residuals from
autograd derivatives, the mean-square loss terms and scoring against the reference.

A problem turns a case (:mod:`reference.cases`) into loss terms. Subclasses state

- ``cases``: the case names they serve,
- ``orders``: which derivatives each field needs at the interior points (0, 1 or 2),
- ``sample``: the collocation points (drawn once, from a seeded ``torch.Generator``),
- ``pde_residuals``/``boundary_residuals``: one residual vector per loss term,
- ``exact_reference``: the reference fields on the evaluation grid.

Loss terms are mean squares, L_i = mean_k r_i(x_k)^2, one per residual vector, in the
order of :meth:`Problem.residuals`. Scores are relative L2 errors with the quadrature
weights w of the store's evaluation grid::

    e_f = sqrt( sum_k w_k (pred_f - ref_f)^2 / sum_k w_k ref_f^2 ).
"""

from __future__ import annotations

import collections
import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from reference import store

from ..training.recipe import recipe

__all__ = ["Field", "Problem", "IntervalProblem", "field_derivatives", "autograd_derivatives",
           "uniform_interval", "stack_problems"]


@dataclass
class Field:
    """A field and the derivatives a residual needs, at N points of a dim-D domain.

    ``value`` is (N,), ``grad`` (N, dim), ``second`` the pure second derivatives
    d^2/dx_i^2 as (N, dim); either is None when not computed. Fields of R runs trained
    together (:mod:`pinn.training.trainer`) carry a leading run axis, (R, N) and (R, N, dim): the
    coordinate is always the last axis, so residual code serves both.
    """

    value: torch.Tensor
    grad: torch.Tensor | None = None
    second: torch.Tensor | None = None

    @property
    def dx(self) -> torch.Tensor:
        """d/dx."""
        return self.grad[..., 0]

    @property
    def dy(self) -> torch.Tensor:
        """d/dy."""
        return self.grad[..., 1]

    @property
    def dxx(self) -> torch.Tensor:
        """d^2/dx^2."""
        return self.second[..., 0]

    @property
    def dyy(self) -> torch.Tensor:
        """d^2/dy^2."""
        return self.second[..., 1]

    @property
    def lap(self) -> torch.Tensor:
        """The Laplacian, sum_i d^2/dx_i^2."""
        return self.second.sum(dim=-1)


def _grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d y_k / d x_k for every point k (rows of ``x`` are independent), kept differentiable.

    A field that does not depend on x (a constant) has a zero gradient.
    """
    if not y.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


_ANALYTIC = True  # networks with a ``derivatives`` method use it


@contextmanager
def autograd_derivatives():
    """Within this block :func:`field_derivatives` uses autograd for every network (the
    reference path; for tests and benchmarks)."""
    global _ANALYTIC
    previous, _ANALYTIC = _ANALYTIC, False
    try:
        yield
    finally:
        _ANALYTIC = previous


def field_derivatives(model, x: torch.Tensor, orders: dict[str, int]) -> dict[str, Field]:
    """Every field of ``model`` at ``x`` (N, dim), with derivatives up to ``orders[name]``.

    A network with a ``derivatives(x, order)`` method (:meth:`pinn.training.networks.MLP.derivatives`)
    gives its fields and their input derivatives by forward propagation, so that the loss
    needs only a first-order backward. Any other network (or every one, inside
    :func:`autograd_derivatives`) takes one forward pass; then one backward pass per field
    for the gradient and one per coordinate for the pure second derivatives, all with
    ``create_graph=True`` so that the loss can be differentiated with respect to the weights.
    """
    if hasattr(model, "field_derivatives"):  # stacked runs (pinn.training.stacked)
        if _ANALYTIC:
            return model.field_derivatives(x.detach(), orders)
        # autograd: one copy of the points per run, so that each run's derivatives are its own
        x = x.detach().expand(model.runs, *x.shape[-2:]).clone().requires_grad_(True)
        return {name: _autograd_field(value, x, orders.get(name, 0))
                for name, value in model(x).items()}
    x = x.detach()
    x_grad = x.detach().requires_grad_(any(orders.values()))  # for the autograd path
    fields = {}
    for net, group in zip(model.nets, model.groups):
        order = max(orders.get(name, 0) for name in group)
        if _ANALYTIC and hasattr(net, "derivatives"):
            values, grad, second = net.derivatives(x, order)
            for j, name in enumerate(group):
                k = orders.get(name, 0)
                fields[name] = Field(values[:, j], grad[:, :, j] if k >= 1 else None,
                                     second[:, :, j] if k >= 2 else None)
            continue
        values = net(x_grad)
        for j, name in enumerate(group):
            fields[name] = _autograd_field(values[:, j], x_grad, orders.get(name, 0))
    return fields


def _autograd_field(value: torch.Tensor, x: torch.Tensor, order: int) -> Field:
    """A field's value at ``x`` with its derivatives up to ``order`` by autograd (each
    value depends on its own point only; the coordinate is x's last axis)."""
    field = Field(value)
    if order >= 1:
        field.grad = _grad(value, x)
    if order >= 2:
        field.second = torch.stack([_grad(field.grad[..., i], x)[..., i]
                                    for i in range(x.shape[-1])], dim=-1)
    return field


def uniform_interval(n: int, lo: float, hi: float) -> torch.Tensor:
    """n equispaced points of [lo + 0.01 (hi - lo), hi - 0.01 (hi - lo)] as (n, 1) float64:
    the recipe's "uniform points in [0.01, 0.99]" scaled to the interval."""
    return (lo + (hi - lo) * torch.linspace(0.01, 0.99, n, dtype=torch.float64))[:, None]


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    return np.asarray(values, dtype=float)


class Problem:
    """The loss terms and the score of one case.

    ``Problem(case, n_points=None, dtype=torch.float32, device="cpu", seed=0)`` samples the
    collocation points once: ``n_points`` sets the number of interior points (default: the
    recipe's), ``seed`` makes random sets reproducible. ``reference`` says what the model
    is scored against: "exact" (the exact or scipy solution; an error where the case has
    none), "stored" (the finite-element reference file in ``reference_root``, default the
    project's data/ folder) or "auto" (exact where there is one, else stored).
    """

    cases: ClassVar[tuple[str, ...]] = ()
    orders: ClassVar[dict[str, int]] = {}

    def __init__(self, case, *, n_points: int | None = None, dtype: torch.dtype = torch.float32,
                 device="cpu", seed: int = 0, reference_root=None,
                 reference: str = "auto"):
        if getattr(case, "name", None) not in self.cases:
            raise ValueError(
                f"{type(self).__name__} serves the cases {list(self.cases)}, "
                f"got {getattr(case, 'name', case)!r}"
            )
        if n_points is None:
            n_points = recipe(case).n_points
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
            raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.case = case
        self.n_points = n_points
        self.dtype = dtype
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0"
        self.seed = seed
        if reference not in ("auto", "exact", "stored"):
            raise ValueError(f"reference must be 'auto', 'exact' or 'stored', got {reference!r}")
        self.reference_root = reference_root
        self.reference_source = reference
        generator = torch.Generator().manual_seed(seed)
        interior, boundary = self.sample(n_points, generator)
        self.interior = self.tensor(interior)
        self.boundary = {name: self.tensor(points) for name, points in boundary.items()}
        self.setup()
        self._grid = None
        self._reference = None
        self._evaluation_points = None

    # --- for subclasses ---------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator):
        """(interior (n, dim), {boundary part: (m, dim)}) as float64 tensors."""
        raise NotImplementedError

    def setup(self) -> None:
        """Precompute what the residuals need at the fixed points (sources, data)."""

    def pde_residuals(self, fields: dict[str, Field]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def boundary_residuals(self, model) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def exact_reference(self, points: np.ndarray) -> dict[str, np.ndarray] | None:
        """Reference fields at ``points`` (M, dim); None (the default) when only a stored
        finite-element file has them."""
        return None

    def tensor(self, values) -> torch.Tensor:
        """``values`` as a tensor of the problem's dtype on its device."""
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        return values.to(device=self.device, dtype=self.dtype)

    # --- training ---------------------------------------------------------------------
    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.case.fields)

    def _check_model(self, model) -> None:
        names = sorted(name for group in model.groups for name in group)
        if names != sorted(self.fields):
            raise ValueError(
                f"the model produces the fields {names}, case {self.case.name!r} needs "
                f"{sorted(self.fields)}"
            )
        weight = next(iter(model.parameters()), None)
        if weight is not None and (weight.dtype != self.dtype or weight.device != self.device):
            raise ValueError(
                f"the model is {weight.dtype} on {weight.device}, the problem's points are "
                f"{self.dtype} on {self.device}: move one of them (model.to(...))"
            )

    def residuals(self, model) -> dict[str, torch.Tensor]:
        """One residual vector per loss term: the PDEs first, then the boundary terms."""
        self._check_model(model)
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():  # the strong form needs autograd even under no_grad
            fields = field_derivatives(model, self.interior, self.orders)
            terms = self.pde_residuals(fields)
            terms.update(self.boundary_residuals(model))
        if not keep_graph:
            terms = {name: r.detach() for name, r in terms.items()}
        return terms

    def loss_terms(self, model) -> dict[str, torch.Tensor]:
        """Mean square of each residual vector: {term: scalar} ({term: (R,)} for the
        stacked problem of R runs, :func:`stack_problems`)."""
        return {name: r.square().mean(dim=-1) for name, r in self.residuals(model).items()}

    # --- scoring ----------------------------------------------------------------------
    @property
    def grid(self) -> dict[str, np.ndarray]:
        """The store's evaluation grid of the case: x, (y,) and the quadrature weights."""
        if self._grid is None:
            self._grid = store.evaluation_grid(self.case)
        return self._grid

    def _grid_points(self) -> np.ndarray:
        return store.grid_points(self.grid)

    def evaluation_points(self) -> torch.Tensor:
        """The grid points (M, dim); in 2D flattened in (y, x) C-order (built once)."""
        if self._evaluation_points is None:
            self._evaluation_points = self.tensor(self._grid_points())
        return self._evaluation_points

    @property
    def scored_fields(self) -> tuple[str, ...]:
        return tuple(getattr(self.case, "scored_fields", self.case.fields))

    def reference(self) -> dict[str, np.ndarray]:
        """Every field of the reference at :meth:`evaluation_points`, shape (M,) each."""
        if self._reference is None:
            fields = None
            if self.reference_source != "stored":
                fields = self.exact_reference(self._grid_points())
            if fields is None and self.reference_source == "exact":
                raise ValueError(f"{self.case.label} has no exact reference; use reference='stored'")
            if fields is None:
                fields = self._stored_reference()
            self._reference = {name: np.asarray(fields[name], dtype=float).ravel()
                               for name in self.fields}
        return self._reference

    def _stored_reference(self) -> dict[str, np.ndarray]:
        # store.open_reference raises store.ReferenceFileError naming the file and the
        # command that regenerates it, for a file of another case, parameters or grid too.
        path = store.reference_path(self.case, self.reference_root)
        dataset = store.open_reference(path, case=self.case)
        return {name: dataset[name].values for name in self.fields}

    def relative_l2(self, pred) -> dict[str, float]:
        """Relative L2 error of ``pred`` ({field: (M,) array or tensor on the evaluation
        points}) per scored field, weighted by the grid's quadrature, and their mean "avg"."""
        reference = self.reference()
        weight = np.asarray(self.grid["weight"], dtype=float).ravel()
        errors = {}
        for name in self.scored_fields:
            if name not in pred:
                raise ValueError(f"pred lacks the scored field {name!r} (needs {self.scored_fields})")
            values = _as_numpy(pred[name]).ravel()
            if values.shape != weight.shape:
                raise ValueError(
                    f"pred[{name!r}] has {values.size} values, the evaluation grid {weight.size}"
                )
            ref = reference[name]
            errors[name] = math.sqrt(np.sum(weight * (values - ref) ** 2) / np.sum(weight * ref**2))
        errors["avg"] = float(np.mean([errors[name] for name in self.scored_fields]))
        return errors

    def predict(self, model) -> dict[str, np.ndarray]:
        """The model's fields at the evaluation points, as float64 arrays."""
        with torch.no_grad():
            out = model(self.evaluation_points())
        return {name: _as_numpy(values) for name, values in out.items()}

    def score(self, model) -> dict[str, float]:
        """``relative_l2(predict(model))``."""
        return self.relative_l2(self.predict(model))


class IntervalProblem(Problem):
    """A 1D problem on the case's interval [x0, x1] with Dirichlet data for every field at
    both ends: one boundary term per field, ``bc_<field>`` = (f(x0) - g0, f(x1) - g1)."""

    def sample_interior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        (lo, hi), = self.case.domain
        return uniform_interval(n, lo, hi)

    def sample(self, n, generator):
        (lo, hi), = self.case.domain
        ends = torch.tensor([[lo], [hi]], dtype=torch.float64)
        return self.sample_interior(n, generator), {"ends": ends}

    def boundary_values(self) -> dict[str, tuple[float, float]]:
        """{field: (value at x0, value at x1)}."""
        raise NotImplementedError

    def setup(self) -> None:
        self.boundary_targets = {
            name: self.tensor(values) for name, values in self.boundary_values().items()
        }

    def boundary_residuals(self, model) -> dict[str, torch.Tensor]:
        values = model(self.boundary["ends"])
        return {f"bc_{name}": values[name] - self.boundary_targets[name] for name in self.fields}


class ManufacturedProblem(IntervalProblem):
    """A 1D problem with a manufactured solution: each PDE residual subtracts a source,
    ``self.sources[term]``, chosen so that the case's exact solution solves it. The exact
    solution is written once (:meth:`exact_solution`, in :mod:`reference.exact`); the
    sources are the residual operator applied to it, differentiated by autograd in float64
    at the collocation points, so they cannot disagree with the residuals or the solution.
    It is also the Dirichlet data at both ends and the reference the runs are scored
    against."""

    def exact_solution(self, x):
        """{field: values} of the exact solution at ``x`` (numpy array or torch tensor)."""
        raise NotImplementedError

    def setup(self) -> None:
        super().setup()
        x = self.interior.to(torch.float64).detach().requires_grad_(True)
        exact = self.exact_solution(x[:, 0])
        fields = {name: _autograd_field(exact[name], x, self.orders.get(name, 0))
                  for name in self.fields}
        self.sources = collections.defaultdict(float)   # zero: the residual is the operator
        operator = self.pde_residuals(fields)
        self.sources = {term: self.tensor(value.detach()) for term, value in operator.items()}

    def boundary_values(self):
        (lo, hi), = self.case.domain
        ends = self.exact_solution(np.array([lo, hi]))
        return {name: tuple(float(v) for v in ends[name]) for name in self.fields}

    def exact_reference(self, points):
        return self.exact_solution(points[:, 0])


# --- R runs as one problem -----------------------------------------------------------
def _stacked(values: list, name: str, number):
    """One value for R runs: the value itself when the runs agree, else tensors stacked
    along a new leading run axis and numbers as ``number(values)`` (an (R, 1) tensor)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        if all(v.shape == first.shape and torch.equal(v, first) for v in values[1:]):
            return first
        return torch.stack(values)
    if isinstance(first, dict):
        return {key: _stacked([v[key] for v in values], f"{name}.{key}", number)
                for key in first}
    if isinstance(first, (tuple, list)) and all(len(v) == len(first) for v in values):
        return type(first)(_stacked(list(column), name, number) for column in zip(*values))
    if all(v == first for v in values[1:]):
        return first
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return number(values)
    raise ValueError(f"the runs of a batch differ in {name} ({values!r}), which cannot be "
                     "stacked")


class _StackedCase:
    """The cases of R runs read as one: an attribute on which the runs agree is that value,
    a number on which they differ (the coupling) an (R, 1) tensor, which broadcasts against
    the (R, N) fields. Read once per attribute (cases are immutable)."""

    def __init__(self, cases, number):
        self._cases, self._number, self._cache = list(cases), number, {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._cache:
            values = [getattr(case, name) for case in self._cases]
            self._cache[name] = _stacked(values, f"case.{name}", self._number)
        return self._cache[name]


def stack_problems(problems) -> Problem:
    """The problem of R runs trained together (:mod:`pinn.training.trainer`): the first run's
    problem with every attribute stacked over the runs (:func:`_stacked`; the case becomes
    a :class:`_StackedCase`). Its residuals take fields with a leading run axis and return
    (R, N) rows, its :meth:`Problem.loss_terms` (R,) per term: one pass for all runs, with
    each problem's residual code unchanged. Scoring stays with each run's own problem."""
    problems = list(problems)
    first = problems[0]
    if any(type(p) is not type(first) for p in problems):
        raise ValueError("the runs of a batch need problems of one type")

    def number(values):
        return torch.tensor(values, dtype=first.dtype, device=first.device)[:, None]

    stacked = copy.copy(first)
    for name, value in vars(first).items():
        if name == "case":
            stacked.case = _StackedCase([p.case for p in problems], number)
        elif not name.startswith("_"):
            setattr(stacked, name, _stacked([vars(p)[name] for p in problems], name, number))
    stacked.runs = len(problems)
    return stacked
