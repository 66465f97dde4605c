"""The neural tangent kernel of a PINN and its block-diagonal Gauss-Newton preconditioned form.

Residual vector. A problem gives one residual vector r_i (N_i rows) per loss term i; with
loss weights lambda_i (default 1) they are stacked, MSE-scaled, into ::

    r(theta) = concat_i sqrt(lambda_i / N_i) r_i(theta),   so that
    L(theta) = sum_i lambda_i mean_k r_i,k^2 = ||r||^2        (M = sum_i N_i rows).

Jacobian. J = dr/dtheta = [J_1 | ... | J_S], J_s the columns of the parameters of network
s (``model.nets[s]``), computed in float64 by reverse mode: one vectorised backward pass
per row through the residual graph, which already holds the input derivatives (u', u'')
built with ``create_graph=True``.

Kernels. ::

    K   = J J^T = sum_s J_s J_s^T                          (the NTK)
    K_P = J H^+ J^T,  H = blockdiag(J_1^T J_1, ..., J_S^T J_S)
        = sum_s J_s (J_s^T J_s)^+ J_s^T = sum_s P_s        (preconditioned NTK)

P_s is the orthogonal projector onto range(J_s): from the thin SVD of the row-equilibrated
block D^{-1} J_s = U S V^T (D = diag of its nonzero row norms), r = #{S_k > rtol S_1},
P_s = Q Q^T with Q = qr(D U_r) (range(J_s) = D range(D^{-1} J_s); see :func:`_range_basis`
for why the rank is judged row by row). (J_s^T J_s)^+ is never formed: it squares the
condition number. Hence 0 <= K_P <= S I and lambda_max(K_P) <= S.

When is lambda_max(K_P) = S? Let R_s be the rows network s influences (nonzero rows of
J_s). range(J_s) lies in span{e_i : i in R_s}; if rank(J_s) = |R_s| ("full row rank on
its rows") the two are equal, P_s = diag(1_{R_s}) and K_P = diag(c), c_i = #{s : i in
R_s}, so lambda_max(K_P) = max_i c_i =: coverage. A block is reported rank-deficient when
rank(J_s) < |R_s|; no equality is then claimed from the ranks. Equality is still certified
by a witness row: lambda_max(K_P) >= max_i (K_P)_ii = max_i sum_s ||P_s e_i||^2, and a row
with (K_P)_ii = S lies in every range(J_s). Over-parameterisation alone does not give full
row rank: two rows of a block that are the same functional of that network (k c_B in the
A- and C-equations of reaction-diffusion; c+ - c- in Poisson and Stokes-x of the 2D flow;
phi enters the three NPP equations through phi', phi'' only) cap its rank whatever the
width. docs/ntk.md lists what this gives for each system.

Default rtol = 1e-10. The SVD of a float64 matrix resolves singular values down to
about 1e-16 sigma_max (machine epsilon times a modest factor), so values above 1e-10
sigma_max are genuine with a margin of ~1e6, while a tanh network's Jacobian has a
smoothly decaying singular spectrum: a much larger rtol would call full-rank blocks
rank-deficient, a much smaller one would count rounding noise as rank.

Stable learning rate. Gradient descent on L = ||r||^2 moves the linearised residual as
r <- (I - 2 eta K) r, which is stable iff eta < 1 / lambda_max(K). (The often quoted
2 / lambda_max(K) is the same bound for L = ||r||^2 / 2.) ``NTKReport.lr_max`` is
1 / lambda_max(K), the bound for the loss this project trains.

>>> from reference.cases import get_case
>>> report = ntk_at(get_case("thermo", gamma=10), width=32, depth=2, n_points=10)
>>> report.n_blocks, round(report.lambda_max_KP, 8), report.coverage
(2, 2.0, 2)
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from reference.cases import get_case

__all__ = [
    "DEFAULT_RTOL",
    "StackedJacobian",
    "BlockReport",
    "NTKReport",
    "residual_vector",
    "jacobian",
    "analyze",
    "ntk_at",
    "load_state",
    "coupling_sweep",
    "fit_slope",
    "ntk_logger",
]

DEFAULT_RTOL = 1e-10
ROW_TOL = 1e-14  # a row of J_s below this fraction of its largest row counts as zero


# --- the residual vector and its Jacobian ------------------------------------------------
def residual_vector(problem, model, weights: Mapping[str, float] | None = None):
    """The stacked residual r = concat_i sqrt(lambda_i / N_i) r_i and the row slice of each
    term: ``(r (M,), {term: slice})``. ``weights`` maps term names to lambda_i >= 0
    (missing terms: 1), so that ||r||^2 = sum_i lambda_i mean(r_i^2)."""
    residuals = problem.residuals(model)
    weights = {} if weights is None else dict(weights)
    unknown = set(weights) - set(residuals)
    if unknown:
        raise ValueError(f"weights name unknown loss terms {sorted(unknown)}; "
                         f"the terms are {list(residuals)}")
    pieces, rows, start = [], {}, 0
    for name, values in residuals.items():
        values = values.reshape(-1)
        if values.numel() == 0:
            raise ValueError(f"loss term {name!r} has no rows")
        weight = float(weights.get(name, 1.0))
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {name!r} must be finite and >= 0, got {weight}")
        pieces.append(values * math.sqrt(weight / values.numel()))
        rows[name] = slice(start, start + values.numel())
        start += values.numel()
    return torch.cat(pieces), rows


@dataclass(frozen=True)
class StackedJacobian:
    """J = [J_1 | ... | J_S] (M, P) float64 with the column slice of each network
    (``blocks``), the row slice of each loss term (``terms``) and each network's fields."""

    matrix: torch.Tensor
    blocks: tuple[slice, ...]
    terms: dict[str, slice]
    groups: tuple[tuple[str, ...], ...]

    def block(self, s: int) -> torch.Tensor:
        """J_s, the (M, P_s) columns of network s."""
        return self.matrix[:, self.blocks[s]]


def _network_parameters(model) -> list[list[torch.Tensor]]:
    nets = getattr(model, "nets", None)
    if nets is None or len(nets) == 0:
        raise ValueError("model must hold its networks in `.nets` (a FieldNetworks)")
    params = [[p for p in net.parameters() if p.requires_grad] for net in nets]
    seen = set()
    for s, group in enumerate(params):
        if not group:
            raise ValueError(f"network {s} has no trainable parameters")
        for p in group:
            if id(p) in seen:
                raise ValueError("networks share a parameter tensor: the blocks J_s must "
                                 "have disjoint columns")
            seen.add(id(p))
    return params


def jacobian(problem, model, weights: Mapping[str, float] | None = None, *,
             vectorize: bool = True, chunk_rows: int = 128,
             max_bytes: float = 2e9) -> StackedJacobian:
    """J = dr/dtheta of :func:`residual_vector`, float64, blocks in the order of
    ``model.nets``.

    Rows are obtained by reverse mode, ``chunk_rows`` at a time, as one batched backward
    pass (``torch.autograd.grad(..., is_grads_batched=True)``, i.e. vmap over the
    cotangents e_i). The residuals contain input derivatives built with
    ``create_graph=True``; their graph is differentiated like any other. With
    ``vectorize=False`` (or if batching fails) the rows are looped, one backward each.
    The problem and model must be float64 (``get_problem(..., dtype=torch.float64)``,
    ``model.double()``): float32 would limit the rank test to ~1e-7. J takes
    8 M P bytes; more than ``max_bytes`` is refused before any row is computed.
    """
    params = _network_parameters(model)
    flat = [p for group in params for p in group]
    if any(p.dtype != torch.float64 for p in flat):
        raise ValueError("the model must be float64 (model.double()) for the NTK analysis")
    r, terms = residual_vector(problem, model, weights)
    if r.dtype != torch.float64:
        raise ValueError("the problem must be float64: get_problem(case, dtype=torch.float64)")
    if not r.requires_grad:
        raise ValueError("the residuals do not depend on the model's parameters")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    n_rows = r.numel()
    n_params = sum(p.numel() for p in flat)
    n_bytes = 8.0 * n_rows * n_params
    if n_bytes > max_bytes:
        raise ValueError(
            f"the Jacobian would hold {n_rows} rows x {n_params} parameters "
            f"= {n_bytes / 1e9:.1f} GB (> max_bytes = {max_bytes / 1e9:.1f} GB): use fewer "
            "collocation points (n_points) or smaller networks (width, depth)")

    def rows_batched(start, stop):
        cotangents = torch.zeros(stop - start, n_rows, dtype=r.dtype, device=r.device)
        cotangents[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        grads = torch.autograd.grad(r, flat, grad_outputs=cotangents, is_grads_batched=True,
                                    retain_graph=True, allow_unused=True,
                                    materialize_grads=True)
        return torch.cat([g.reshape(stop - start, -1) for g in grads], dim=1)

    def row_loop(start, stop):
        rows = []
        for i in range(start, stop):
            grads = torch.autograd.grad(r[i], flat, retain_graph=True, allow_unused=True,
                                        materialize_grads=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        return torch.stack(rows)

    chunks = []
    for start in range(0, n_rows, chunk_rows):
        stop = min(start + chunk_rows, n_rows)
        if vectorize:
            try:
                chunks.append(rows_batched(start, stop))
                continue
            except RuntimeError as error:  # an op without a batching rule: loop instead
                warnings.warn(f"batched Jacobian rows failed ({error}); computing them one "
                              "by one", RuntimeWarning, stacklevel=2)
                vectorize = False
        chunks.append(row_loop(start, stop))
    matrix = torch.cat(chunks).detach()

    blocks, start = [], 0
    for group in params:
        size = sum(p.numel() for p in group)
        blocks.append(slice(start, start + size))
        start += size
    groups = tuple(tuple(g) for g in getattr(model, "groups", [(f"net{s}",) for s in range(len(params))]))
    return StackedJacobian(matrix, tuple(blocks), terms, groups)


# --- spectra -----------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockReport:
    """One network s: its fields, parameter count, the rows it influences |R_s|,
    rank(J_s) (singular values > rtol sigma_max) and lambda_max(J_s J_s^T) = sigma_max^2.
    ``margin`` = sigma_r / sigma_1 of the row-equilibrated block (see _range_basis), the
    smallest singular value kept over the largest (0 for a block that influences no row):
    rounding errors E of that block turn its kept singular subspace, hence P_s, by up to
    about ||E|| / sigma_r (Wedin's theorem), so 1 / margin is how much P_s amplifies them."""

    fields: tuple[str, ...]
    n_params: int
    rows: int
    rank: int
    lambda_max: float
    margin: float

    @property
    def rank_deficient(self) -> bool:
        """rank(J_s) < |R_s|: the projector P_s is not diag(1_{R_s})."""
        return self.rank < self.rows


@dataclass(frozen=True)
class NTKReport:
    """lambda_max of K = J J^T and of K_P = sum_s P_s, with the per-block data.

    ``coverage`` = max_i #{s : row i depends on network s}; when no block is
    rank-deficient, lambda_max(K_P) = coverage (= S if some row depends on every network).
    ``max_diag_KP`` = max_i (K_P)_ii = max_i sum_s ||P_s e_i||^2 <= lambda_max(K_P), at
    the row ``witness`` ("term[k]"): when it reaches S, e_i lies in every range(J_s) and
    lambda_max(K_P) = S is certified whatever the ranks. ``eigenvalues_K``/
    ``eigenvalues_KP`` (descending, all M) only when asked for.
    """

    lambda_max_K: float
    lambda_max_KP: float
    n_rows: int
    blocks: tuple[BlockReport, ...]
    coverage: int
    rtol: float
    max_diag_KP: float = math.nan
    witness: str = ""
    eigenvalues_K: np.ndarray | None = field(default=None, repr=False)
    eigenvalues_KP: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_blocks(self) -> int:
        """S, the number of networks."""
        return len(self.blocks)

    @property
    def lr_max(self) -> float:
        """1 / lambda_max(K): gradient descent on L = ||r||^2 is stable below it."""
        return 1.0 / self.lambda_max_K if self.lambda_max_K > 0 else math.inf

    @property
    def rank_deficient(self) -> bool:
        """True if any block J_s is rank-deficient on the rows it influences."""
        return any(block.rank_deficient for block in self.blocks)

    @property
    def expected_KP(self) -> int | None:
        """The value lambda_max(K_P) must take: ``coverage`` when every block has full row
        rank on its rows, None (no claim) when a block is rank-deficient."""
        return None if self.rank_deficient else self.coverage

    def verdict(self, atol: float = 1e-8) -> str:
        """A short statement of how lambda_max(K_P) compares with S."""
        S, value = self.n_blocks, self.lambda_max_KP
        bad = [i for i, b in enumerate(self.blocks) if b.rank_deficient]
        if abs(self.max_diag_KP - S) <= atol:
            note = f" (rank-deficient block(s) {bad})" if bad else ""
            return (f"lambda_max(K_P) = S = {S}, certified: row {self.witness} lies in "
                    f"every range(J_s){note}")
        if bad:
            return (f"rank-deficient block(s) {bad}: no equality claimed "
                    f"(lambda_max(K_P) = {value:.10g} <= S = {S})")
        if abs(value - S) <= atol:
            return f"lambda_max(K_P) = S = {S}"
        if abs(value - self.coverage) <= atol:
            return (f"lambda_max(K_P) = {self.coverage} < S = {S}: no residual row depends "
                    f"on all {S} networks")
        return f"lambda_max(K_P) = {value:.10g}, expected {self.coverage} (S = {S})"


def _validate_rtol(rtol) -> float:
    rtol = float(rtol)
    if not (0 < rtol < 1):
        raise ValueError(f"rtol must lie in (0, 1), got {rtol}")
    return rtol


def _range_basis(Js, row_norm, influenced, rtol):
    """An orthonormal basis Q (M, r) of range(J_s), r = rank(J_s) and sigma_r / sigma_1.

    With D = diag(row norms) of the influenced rows, range(J_s) = D range(D^{-1} J_s):
    the rank is decided on the row-equilibrated D^{-1} J_s (thin SVD U S V^T, r = #{S_k >
    rtol S_1}), because backpropagation computes every row to its own relative accuracy,
    so a row scaled by a small coefficient (eps^2 phi'') is as exact as any other and
    must not fall below the cutoff for its scale alone; then Q = qr(D U_r).
    """
    n_rows = Js.shape[0]
    if not bool(influenced.any()):
        return Js.new_zeros(n_rows, 0), 0, 0.0
    scale = row_norm[influenced, None]
    U, sigma, _ = torch.linalg.svd(Js[influenced] / scale, full_matrices=False)
    rank = int((sigma > rtol * sigma[0]).sum())
    lifted = Js.new_zeros(n_rows, rank)
    lifted[influenced] = scale * U[:, :rank]
    Q, _ = torch.linalg.qr(lifted)
    return Q, rank, float(sigma[rank - 1] / sigma[0]) if rank else 0.0


def analyze(jac: StackedJacobian, rtol: float = DEFAULT_RTOL, spectra: bool = False) -> NTKReport:
    """Spectra of K = J J^T and K_P = sum_s U_r,s U_r,s^T from a :class:`StackedJacobian`.

    lambda(K) = sigma(J)^2 and lambda(K_P) = sigma([U_r,1 | ... | U_r,S])^2 (padded with
    zeros to M values), so neither M x M kernel needs an eigensolver of its own.
    """
    rtol = _validate_rtol(rtol)
    J = jac.matrix.to(torch.float64)
    n_rows = J.shape[0]
    bases, blocks, influence = [], [], torch.zeros(n_rows, dtype=torch.int64, device=J.device)
    for s in range(len(jac.blocks)):
        Js = jac.block(s).to(torch.float64)
        top = float(torch.linalg.svdvals(Js)[0]) if Js.numel() else 0.0
        row_norm = Js.norm(dim=1)
        influenced = row_norm > ROW_TOL * row_norm.max()  # all False for a zero block
        influence += influenced.to(torch.int64)
        basis, rank, margin = _range_basis(Js, row_norm, influenced, rtol)
        bases.append(basis)
        blocks.append(BlockReport(jac.groups[s], Js.shape[1], int(influenced.sum()), rank, top**2,
                                  margin))
    sigma_K = torch.linalg.svdvals(J)
    sigma_P = torch.linalg.svdvals(torch.cat(bases, dim=1))
    diagonal = sum(basis.square().sum(dim=1) for basis in bases)
    row = int(torch.argmax(diagonal))
    witness = next(f"{name}[{row - rows.start}]" for name, rows in jac.terms.items()
                   if rows.start <= row < rows.stop)

    def eigenvalues(sigma):
        values = np.zeros(n_rows)
        count = min(n_rows, sigma.numel())
        values[:count] = sigma[:count].cpu().numpy() ** 2
        return values

    return NTKReport(
        lambda_max_K=float(sigma_K[0]) ** 2,
        lambda_max_KP=float(sigma_P[0]) ** 2 if sigma_P.numel() else 0.0,
        n_rows=n_rows,
        blocks=tuple(blocks),
        coverage=int(influence.max()),
        rtol=rtol,
        max_diag_KP=float(diagonal[row]),
        witness=witness,
        eigenvalues_K=eigenvalues(sigma_K) if spectra else None,
        eigenvalues_KP=eigenvalues(sigma_P) if spectra else None,
    )


# --- a model of a case, at initialisation or from a checkpoint -----------------------------
def load_state(model, state):
    """A float64 copy of ``model`` with the weights ``state``: a state_dict, a checkpoint
    dict holding one under "model" (what :mod:`pinn.training.trainer` writes), or a path to either
    (read with ``torch.load(weights_only=True)``). ``model`` itself is left unchanged."""
    if isinstance(state, (str, bytes)) or hasattr(state, "__fspath__"):
        state = torch.load(state, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a state_dict or a checkpoint dict, got {type(state).__name__}")
    for key in ("model", "model_state", "state_dict"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    copy64 = copy.deepcopy(model).to(torch.float64)
    try:
        copy64.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the state does not fit the model: {error}") from None
    return copy64


def ntk_at(case, model=None, *, state=None, width: int | None = None, depth: int | None = None,
           split: str = "per-field", n_points: int | None = None, seed: int = 0,
           weights: Mapping[str, float] | None = None, rtol: float = DEFAULT_RTOL,
           spectra: bool = False, device="cpu") -> NTKReport:
    """The NTK report of ``model`` (built with ``build_model(case, width, depth, split)``
    after ``torch.manual_seed(seed)`` when None) on ``case``'s problem with ``n_points``
    interior points, in float64, computed on ``device`` (the weights are built on the CPU
    and copied there). ``state`` (state_dict, checkpoint dict or path) loads trained
    weights, e.g. a training checkpoint; the model given is not modified."""
    from ..training.networks import build_model
    from ..problems import get_problem

    if model is None:
        torch.manual_seed(seed)
        model = build_model(case, width=width, depth=depth, split=split)
    model = load_state(model, state) if state is not None else copy.deepcopy(model).to(torch.float64)
    model = model.to(device)
    problem = get_problem(case, n_points=n_points, dtype=torch.float64, device=device, seed=seed)
    return analyze(jacobian(problem, model, weights), rtol=rtol, spectra=spectra)


def coupling_sweep(name: str, couplings: Sequence[float], *, model=None, **options):
    """[(coupling, NTKReport)] for the case ``name`` at each coupling value, all with the
    same network weights (``model``, or one built from ``seed``). ``options`` go to
    :func:`ntk_at`; ``case_params`` (a dict) sets the other case parameters."""
    from ..training.networks import build_model

    case_params = dict(options.pop("case_params", None) or {})
    couplings = [float(c) for c in couplings]
    if not couplings:
        raise ValueError("couplings must not be empty")
    base = get_case(name, **case_params)
    if model is None:
        torch.manual_seed(options.get("seed", 0))
        model = build_model(base, width=options.pop("width", None),
                            depth=options.pop("depth", None),
                            split=options.pop("split", "per-field"))
    else:
        for key in ("width", "depth", "split"):
            options.pop(key, None)
    return [(c, ntk_at(base.replace(**{base.coupling: c}), model, **options)) for c in couplings]


def fit_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (the exponent p in y ~ x^p)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("fit_slope needs two equal-length sequences of >= 2 values")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_slope needs positive values (log-log fit)")
    if np.ptp(np.log(x)) == 0:
        raise ValueError("fit_slope needs at least two distinct x values")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def ntk_logger(problem, every: int, rtol: float = DEFAULT_RTOL):
    """A training callback ``log(step, model) -> dict | None`` that returns
    {"step", "lambda_max_K", "lambda_max_KP", "rank_deficient"} every ``every`` steps (and
    None otherwise). ``problem`` must be float64; the model is copied to float64 first,
    so training in float32 is not disturbed. Keep ``problem`` small: J is rows x params."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")

    def log(step: int, model):
        if step % every:
            return None
        report = analyze(jacobian(problem, copy.deepcopy(model).to(torch.float64)), rtol=rtol)
        return {"step": step, "lambda_max_K": report.lambda_max_K,
                "lambda_max_KP": report.lambda_max_KP, "rank_deficient": report.rank_deficient}

    return log


def checkpoint_report(path, *, n_points: int | None = None, weighted: bool = False,
                      rtol: float = DEFAULT_RTOL, spectra: bool = False):
    """``(step, case, NTKReport)`` of a checkpoint written by :mod:`pinn.training.trainer`.

    The case, networks and collocation seed come from the checkpoint's config; the NTK
    problem has ``n_points`` interior points (default: the run's). ``weighted`` applies
    the run's balancing weights lambda_i to the rows, i.e. the kernel of the loss that was
    actually being minimised at that step.
    """
    from ..training.checkpoint import load
    from ..training.config import TrainConfig
    from ..training.networks import model_for

    state = load(path)
    config = TrainConfig.from_stored(dict(state["config"], progress=False), path)
    case = get_case(config.case, **config.case_params)
    model = model_for(case, config)
    weights = None
    if weighted:
        balancer = state["balancer"]
        weights = dict(zip(balancer["terms"], torch.as_tensor(balancer["weights"]).tolist()))
    report = ntk_at(case, model, state=state["model"], rtol=rtol, spectra=spectra,
                    n_points=config.n_points if n_points is None else n_points,
                    seed=config.seed, weights=weights)
    return int(state["step"]), case, report
