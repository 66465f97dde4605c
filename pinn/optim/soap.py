r"""SOAP: Adam run in the eigenbasis of Shampoo's Kronecker factors (Vyas et al. 2024).

Reference: N. Vyas, D. Morwani, R. Zhao, I. Shapira, D. Brandfonbrener, L. Janson,
S. Kakade, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv 2409.11321
(ICLR 2025).

Algorithm (per parameter tensor; tensors are never coupled)
-----------------------------------------------------------
Write the gradient of a weight matrix as :math:`G \in \mathbb{R}^{m\times n}`, the
step counter of *updates* as :math:`t`, :math:`\beta_s` = ``shampoo_beta``.

First call of :meth:`SOAP.step` for a tensor (no parameter update, no weight decay):

.. math::

    L = (1-\beta_s)\, G G^\top,\qquad R = (1-\beta_s)\, G^\top G,\qquad
    Q_L, Q_R = \operatorname{eigh}(L), \operatorname{eigh}(R)

with the eigenvector columns ordered by descending eigenvalue. The first gradient
only seeds the factors, so the projection never uses the gradient it projects.

Every later call, :math:`t = 1, 2, \dots`:

.. math::

    G' &= Q_L^\top G\, Q_R                                   \\
    M  &\leftarrow \beta_1 M + (1-\beta_1)\, G               \quad\text{(kept in the original basis)}\\
    V  &\leftarrow \beta_2 V + (1-\beta_2)\, G' \odot G'     \quad\text{(kept in the rotated basis)}\\
    N' &= (Q_L^\top M Q_R) \oslash (\sqrt{V} + \epsilon)     \\
    N  &= Q_L N' Q_R^\top\qquad (N \leftarrow N / (10^{-30} + \operatorname{rms}(N))
          \text{ if normalize\_grads})                       \\
    W  &\leftarrow W - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, N
          \quad(\text{just } \eta \text{ if not correct\_bias})\\
    W  &\leftarrow (1 - \eta\lambda)\, W                      \quad\text{(decoupled weight decay)}\\
    L  &\leftarrow \beta_s L + (1-\beta_s)\, G G^\top,\qquad
    R   \leftarrow \beta_s R + (1-\beta_s)\, G^\top G.

When :math:`t` is a multiple of ``precondition_frequency`` each basis is refreshed by
one power iteration and a QR factorisation (shown for :math:`L`; likewise :math:`R` on
axis 1):

.. math::

    P = L Q_L,\quad d = \operatorname{diag}(Q_L^\top P),\quad
    \pi = \operatorname{argsort}(d,\ \text{descending}),\quad
    V \leftarrow V[\pi, :],\quad Q_L \leftarrow \operatorname{qr}(P[:, \pi]).Q

(the second moment is permuted with its axis, so every entry keeps following the
same eigen-direction). Storing :math:`M` in the original basis and projecting it on
every step is exactly what rotating a projected :math:`M` at each basis change does.

Tensors of any rank are handled axis by axis (:math:`G \times_k Q_k^\top`).
An axis is left unpreconditioned (identity basis) when it is longer than
``max_precond_dim`` or has length 1 (a 1x1 basis is +-1, which cancels exactly);
1-D tensors (biases) use the identity unless ``precondition_1d``. A tensor without
any preconditioned axis therefore runs plain Adam (with the first call skipped).
``merge_dims=True`` reshapes tensors of rank > 2 by merging neighbouring axes while
their product stays <= ``max_precond_dim`` (e.g. (4, 5, 6) with limit 25 -> (20, 6));
tensors of rank <= 2 are never reshaped.

Defaults
--------
The defaults are the PINN recipe of this project (docs/paper.md; Wang et al. 2025):
``lr=1e-3, betas=(0.99, 0.999), shampoo_beta=-1 (-> beta2), eps=1e-8,
weight_decay=0, precondition_frequency=2, max_precond_dim=10000, merge_dims=False,
precondition_1d=False, normalize_grads=False, correct_bias=True``.
The SOAP paper's reference defaults are ``lr=3e-3, betas=(0.95, 0.95),
shampoo_beta=-1, eps=1e-8, weight_decay=0.01, precondition_frequency=10,
max_precond_dim=10000, merge_dims=False, precondition_1d=False,
normalize_grads=False, correct_bias=True``.

Numerics and cost
-----------------
* ``eigh`` runs only on a tensor's first call; the basis is then refreshed with one
  matrix product and one QR every ``precondition_frequency`` updates, for all the factors
  of one size together (one batched product and QR per size, not per tensor). Factors,
  bases and moments have the parameter's dtype and device; eigh/QR of half-precision
  factors run in float32. If ``eigh`` fails (``torch.linalg.LinAlgError`` or a
  non-finite result) it is retried in float64, then in float64 with a growing
  multiple of the mean diagonal added to the diagonal; if everything fails the axis
  falls back to the identity basis with a ``RuntimeWarning``.
* Non-finite gradients: with ``check_finite=True`` (default) :meth:`step` first
  reduces every gradient to its max-abs value in one fused ``torch._foreach_norm``
  and reads one boolean back. That single host synchronisation per step is needed to
  raise a Python exception at all (the state cannot be inspected on the device
  without syncing). On failure a ``FloatingPointError`` names the parameter and the
  step, and neither the parameters nor the optimizer state are touched.
  ``check_finite=False`` removes the sync; NaN/Inf then propagate as in
  ``torch.optim.Adam``.
* Step counters are Python ints (no device tensors), so the bias correction costs no
  synchronisation either.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer

__all__ = ["SOAP"]

_EIGH_JITTERS = (1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2)


def _merged_shape(shape: tuple[int, ...], limit: int) -> tuple[int, ...]:
    """Greedily fuse neighbouring axes while the running product stays <= ``limit``."""
    out: list[int] = []
    for size in shape:
        if out and out[-1] * size <= limit:
            out[-1] *= size
        else:
            out.append(size)
    return tuple(out)


def _solver_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _eigenbasis(factor: torch.Tensor) -> torch.Tensor | None:
    """Eigenvectors of a symmetric factor, columns by descending eigenvalue.

    Tries the factor's own precision, then float64, then float64 with jitter.
    Returns None when every attempt fails (the caller then uses the identity).
    """
    n = factor.shape[0]
    work = factor.to(_solver_dtype(factor.dtype))
    attempts: list[tuple[torch.dtype, float]] = [(work.dtype, 0.0)]
    attempts.append((torch.float64, 0.0))
    attempts.extend((torch.float64, j) for j in _EIGH_JITTERS)
    for dtype, jitter in attempts:
        mat = work.to(dtype)
        if jitter > 0.0:
            scale = mat.diagonal().abs().mean().clamp_min(torch.finfo(dtype).tiny)
            mat = mat + (jitter * scale) * torch.eye(n, dtype=dtype, device=mat.device)
        try:
            _, vecs = torch.linalg.eigh(mat)
        except (torch.linalg.LinAlgError, RuntimeError):
            continue
        if bool(torch.isfinite(vecs).all()):  # first call only: a sync here is fine
            return torch.flip(vecs, dims=(1,)).to(factor.dtype).contiguous()
    warnings.warn(
        f"SOAP: eigh of a {n}x{n} Kronecker factor failed in every precision and with "
        "every jitter; that axis falls back to the identity basis.",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _rotate_matrix(x: torch.Tensor, ql, qr, forward: bool) -> torch.Tensor:
    """A matrix (or a stack of them): x -> Ql^T x Qr (forward) or Ql x Qr^T (backward);
    a None factor leaves its side unrotated."""
    if ql is not None:
        x = (ql.mT if forward else ql) @ x
    if qr is not None:
        x = x @ (qr if forward else qr.mT)
    return x


def _rotate(x: torch.Tensor, bases: list, forward: bool) -> torch.Tensor:
    """x -> x x_k Q_k^T on every axis (forward) or x -> x x_k Q_k (backward)."""
    if x.dim() == 2:
        return _rotate_matrix(x, *bases, forward)
    if x.dim() == 1:
        (q,) = bases
        if q is None:
            return x
        return (q.mT @ x) if forward else (q @ x)
    if all(q is None for q in bases):
        return x
    # General rank: contract axis 0 each time; the new axis lands last, so after one
    # pass over all axes the original order is back.
    for q in bases:
        if q is None:
            x = x.movedim(0, -1)
        else:
            x = torch.tensordot(x, q, dims=([0], [0 if forward else 1]))
    return x


def _accumulate_runs(g: torch.Tensor, factors: list, beta: float) -> None:
    """F_k[r] <- beta F_k[r] + (1 - beta) (g[r] contracted with itself on every axis but k),
    for a stack of R vectors (R, n) or matrices (R, m, n) and their stacked factors."""
    alpha = 1.0 - beta
    if g.dim() == 2:
        if factors[0] is not None:
            factors[0].baddbmm_(g.unsqueeze(2), g.unsqueeze(1), beta=beta, alpha=alpha)
        return
    fl, fr = factors
    if fl is not None:
        fl.baddbmm_(g, g.mT, beta=beta, alpha=alpha)
    if fr is not None:
        fr.baddbmm_(g.mT, g, beta=beta, alpha=alpha)


def _accumulate_factors(g: torch.Tensor, factors: list, beta: float) -> None:
    """F_k <- beta F_k + (1 - beta) * (g contracted with itself on every axis but k)."""
    if g.dim() <= 2:
        # A stack of one run: the same baddbmm kernel, hence the same bits, as
        # pinn.optim.soap_batched.BatchedSOAP. Bitwise-equal factors matter: a rank-deficient
        # factor's null-space eigenvectors are arbitrary, and any rounding difference
        # picks another basis of that space.
        _accumulate_runs(g[None], [None if f is None else f[None] for f in factors], beta)
        return
    alpha = 1.0 - beta
    axes = list(range(g.dim()))
    for k, f in enumerate(factors):
        if f is None:
            continue
        other = axes[:k] + axes[k + 1:]
        f.mul_(beta).add_(torch.tensordot(g, g, dims=(other, other)), alpha=alpha)


def _permute_runs(x: torch.Tensor, axis: int, order: torch.Tensor) -> torch.Tensor:
    """x[r] with its ``axis`` (counted with the run axis) reordered by order[r]."""
    shape = [order.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = order.shape[1]
    return torch.gather(x, axis, order.reshape(shape).expand_as(x))


def _refresh_together(states: list[dict], run_axes: int) -> None:
    """The refresh of every basis of ``states`` (the tensors due this step), with one power
    step and one QR per factor size: per (run, axis) P = F Q, d = diag(Q^T P), sort d
    descending, permute V's axis by it, Q = qr(P). Factors of one size, from any tensor and
    any run, are stacked along a leading axis, so a refresh costs one matmul, one sort and
    one batched QR per distinct size instead of one each per tensor and axis (each matrix of
    a batched QR is factored by the same LAPACK routine as alone). ``run_axes`` is 0 for
    single tensors (factors (n, n)) and 1 for stacks of runs (factors (R, n, n))."""
    groups: dict = {}
    for state in states:
        for k, (f, q) in enumerate(zip(state["GG"], state["Q"])):
            if f is not None and q is not None:
                groups.setdefault((f.shape[-1], f.dtype, f.device), []).append((state, k))
    for members in groups.values():
        factors = [state["GG"][k] for state, k in members]
        bases = [state["Q"][k] for state, k in members]
        if run_axes == 0:
            factors, bases = [f[None] for f in factors], [q[None] for q in bases]
        counts = [q.shape[0] for q in bases]
        f, q = (torch.cat(x) if len(x) > 1 else x[0] for x in (factors, bases))
        power = f @ q
        estimate = (q * power).sum(dim=-2)  # (B, n): the diagonal of Q^T F Q per matrix
        order = torch.argsort(estimate, dim=-1, descending=True, stable=True)
        power = _permute_runs(power, 2, order)
        new_q, _ = torch.linalg.qr(power.to(_solver_dtype(power.dtype)))
        # QR's Q is column-major; one fixed layout keeps the matmul rounding (hence a
        # resumed run) independent of how Q was stored and reloaded
        new_q = new_q.to(q.dtype).contiguous()
        for (state, k), q_k, order_k in zip(members, new_q.split(counts), order.split(counts)):
            v = state["exp_avg_sq"] if run_axes else state["exp_avg_sq"][None]
            v = _permute_runs(v, k + 1, order_k)
            state["exp_avg_sq"] = v if run_axes else v[0]
            state["Q"][k] = q_k if run_axes else q_k[0]


class SOAP(Optimizer):
    """SOAP optimizer (Shampoo eigenbasis + Adam); see the module docstring for the equations.

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate eta (>= 0).
        betas: (beta1, beta2), each in [0, 1): first/second moment decay rates.
        shampoo_beta: decay rate of the Kronecker factors in [0, 1); negative -> beta2.
        eps: added to sqrt(V) (> 0).
        weight_decay: decoupled weight decay lambda (>= 0), applied after the update.
        precondition_frequency: refresh the bases every this many updates (int >= 1).
        max_precond_dim: axes longer than this keep the identity basis (int >= 0).
        merge_dims: merge neighbouring axes of rank > 2 tensors (product <= max_precond_dim).
        precondition_1d: precondition 1-D tensors with a full factor.
        normalize_grads: divide each tensor's update direction by its RMS.
        correct_bias: Adam bias correction sqrt(1 - beta2^t) / (1 - beta1^t).
        check_finite: raise FloatingPointError on NaN/Inf gradients (one host sync per step).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.99, 0.999),
        shampoo_beta: float = -1.0,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        precondition_frequency: int = 2,
        max_precond_dim: int = 10000,
        merge_dims: bool = False,
        precondition_1d: bool = False,
        normalize_grads: bool = False,
        correct_bias: bool = True,
        check_finite: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            shampoo_beta=shampoo_beta,
            eps=eps,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            max_precond_dim=max_precond_dim,
            merge_dims=merge_dims,
            precondition_1d=precondition_1d,
            normalize_grads=normalize_grads,
            correct_bias=correct_bias,
        )
        self._validate(defaults)
        if not isinstance(check_finite, bool):
            raise ValueError(f"check_finite must be a bool, got {check_finite!r}")
        self.check_finite = check_finite
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _validate(group: dict) -> None:
        def real(name: str) -> float:
            value = group[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"SOAP: {name} must be a real number, got {value!r}")
            return float(value)

        if real("lr") < 0.0:
            raise ValueError(f"SOAP: invalid learning rate lr={group['lr']} (must be >= 0)")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"SOAP: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
                raise ValueError(f"SOAP: invalid beta{i + 1}={b!r} (must lie in [0, 1))")
        if real("shampoo_beta") >= 1.0:
            raise ValueError(
                f"SOAP: invalid shampoo_beta={group['shampoo_beta']} "
                "(must be < 1; a negative value means 'use beta2')")
        if not real("eps") > 0.0 or math.isinf(group["eps"]):
            raise ValueError(f"SOAP: invalid eps={group['eps']} (must be finite and > 0)")
        if real("weight_decay") < 0.0 or math.isinf(group["weight_decay"]):
            raise ValueError(f"SOAP: invalid weight_decay={group['weight_decay']} (must be >= 0)")
        freq = group["precondition_frequency"]
        if isinstance(freq, bool) or not isinstance(freq, int) or freq < 1:
            raise ValueError(
                f"SOAP: invalid precondition_frequency={freq!r} (must be an int >= 1)")
        dim = group["max_precond_dim"]
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise ValueError(f"SOAP: invalid max_precond_dim={dim!r} (must be an int >= 0)")
        for name in ("merge_dims", "precondition_1d", "normalize_grads", "correct_bias"):
            if not isinstance(group[name], bool):
                raise ValueError(f"SOAP: {name} must be a bool, got {group[name]!r}")

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._validate(self.param_groups[-1])

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("check_finite", True)

    # ------------------------------------------------------------------ helpers
    # The linear algebra of one tensor, as methods so that a subclass can replace it
    # (pinn.optim.soap_batched.BatchedSOAP vectorises it over a leading run axis).
    _run_axes = 0  # leading axes that index independent runs (BatchedSOAP: 1)

    def _rotate(self, x, bases, forward):
        return _rotate(x, bases, forward)

    def _accumulate_factors(self, g, factors, beta):
        _accumulate_factors(g, factors, beta)

    def _refresh(self, states):
        _refresh_together(states, self._run_axes)

    def _eigenbasis(self, factor):
        return _eigenbasis(factor)

    def _rms(self, d: torch.Tensor) -> torch.Tensor:
        """Root mean square of an update direction (normalize_grads), per run."""
        return d.square().mean(dim=tuple(range(self._run_axes, d.dim())), keepdim=True).sqrt_()

    def _check_gradients(self) -> None:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        peaks = torch._foreach_norm(grads, float("inf"))
        if len({t.device for t in peaks}) > 1:
            peaks = [t.cpu() for t in peaks]
        if bool(torch.isfinite(torch.stack(peaks)).all()):
            return
        index = 0
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    state = self.state.get(p, {})
                    if "Q" in state:
                        when = f"update {state['step'] + 1} (call {state['step'] + 2})"
                    else:
                        when = "its first call (factor initialisation)"
                    raise FloatingPointError(
                        f"SOAP: non-finite gradient (NaN/Inf) in parameter {index} "
                        f"(group {gi}, index {pi}, shape {tuple(p.shape)}, dtype {p.dtype}) "
                        f"at {when}; parameters and optimizer state were left unchanged.")
                index += 1

    @staticmethod
    def _work_shape(p: torch.Tensor, group: dict) -> tuple[int, ...]:
        if group["merge_dims"] and p.dim() > 2:
            return _merged_shape(tuple(p.shape), group["max_precond_dim"])
        return tuple(p.shape)

    def _init_state(self, p: torch.Tensor, g: torch.Tensor, group: dict, beta_s: float) -> None:
        state = self.state[p]
        runs, shape = g.shape[:self._run_axes], g.shape[self._run_axes:]
        limit = group["max_precond_dim"]
        if len(shape) == 1 and not group["precondition_1d"]:
            wanted = [False]
        else:
            wanted = [1 < size <= limit for size in shape]
        factors = [torch.zeros(*runs, size, size, dtype=g.dtype, device=g.device) if w else None
                   for size, w in zip(shape, wanted)]
        self._accumulate_factors(g, factors, beta_s)
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g, memory_format=torch.contiguous_format)
        state["exp_avg_sq"] = torch.zeros_like(g, memory_format=torch.contiguous_format)
        state["GG"] = factors
        state["Q"] = [None if f is None else self._eigenbasis(f) for f in factors]

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """Perform one optimisation step (the first call per tensor only seeds its factors)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse:
                        raise RuntimeError("SOAP does not support sparse gradients")
                    if torch.is_complex(p):
                        raise RuntimeError("SOAP does not support complex parameters")
        if self.check_finite:
            self._check_gradients()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            beta_s = group["shampoo_beta"] if group["shampoo_beta"] >= 0 else beta2
            lr, eps, freq = group["lr"], group["eps"], group["precondition_frequency"]

            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                shape = self._work_shape(p, group)
                if tuple(g.shape) != shape:
                    g = g.reshape(shape)
                state = self.state[p]
                if "Q" not in state:
                    self._init_state(p, g, group, beta_s)
                    continue
                params.append(p)
                grads.append(g)
                states.append(state)
            if not params:
                continue

            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            rotated = [self._rotate(g, s["Q"], True) for g, s in zip(grads, states)]
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, rotated, rotated, value=1.0 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denom, eps)
            numer = [self._rotate(m, s["Q"], True) for m, s in zip(exp_avgs, states)]
            directions = torch._foreach_div(numer, denom)
            directions = [self._rotate(d, s["Q"], False) for d, s in zip(directions, states)]
            if group["normalize_grads"]:
                directions = [d / self._rms(d).add_(1e-30) for d in directions]

            # Step sizes (Python floats: no device sync); usually one value per group.
            by_size: dict[float, tuple[list, list]] = {}
            for p, d, s in zip(params, directions, states):
                t = s["step"] + 1
                s["step"] = t
                size = lr
                if group["correct_bias"]:
                    size = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
                ps, ds = by_size.setdefault(size, ([], []))
                ps.append(p)
                ds.append(d.view(p.shape) if d.is_contiguous() else d.reshape(p.shape))
            for size, (ps, ds) in by_size.items():
                torch._foreach_add_(ps, ds, alpha=-size)
            if group["weight_decay"] > 0.0:
                torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])

            for g, s in zip(grads, states):
                self._accumulate_factors(g, s["GG"], beta_s)
            due = [s for s in states if s["step"] % freq == 0]
            if due:
                self._refresh(due)
        return loss
