"""Loss balancing: the per-term weights lambda_i of the training loss sum_i lambda_i L_i.

A :class:`Balancer` holds the weights as a tensor (on the training device, so that using
them costs no host-device transfer) and refreshes them from the per-term gradients
g_i = grad_theta L_i on the steps where :meth:`Balancer.due` is true. Between refreshes
the weights are constants, so the trainer needs the per-term gradients only on refresh
steps and back-propagates the weighted sum once on every other step.

Steps are counted from 1 (the first optimizer step is step 1). Schemes (:data:`SCHEMES`):

``"none"``
    lambda_i = 1 forever.

``"gn"`` (inverse gradient norm; the paper's scheme, also jaxpi's "grad_norm")
    On steps 1, 1 + every, 1 + 2 every, ...::

        n_i      = ||g_i||_2            (over ALL parameters of all networks)
        nbar     = mean_i n_i
        lhat_i   = nbar / n_i
        lambda_i <- m lambda_i + (1 - m) lhat_i      (m = 0.9, lambda_i = 1 at the start)

    A term whose gradient vanishes (n_i = 0: the term is identically zero, or does not
    depend on the parameters) would get lhat_i = inf. Such a term contributes nothing
    to the parameter gradient whatever its weight, so it is left out: its lambda_i is
    kept unchanged and nbar is the mean over the terms with n_i > 0 only (a dead term
    does not pull the other weights down). If every n_i is 0 nothing changes. A
    non-finite n_i is not guarded: it makes the weights non-finite, the loss follows,
    and the trainer's divergence check stops the run.

``"lra"`` (learning-rate annealing, Wang, Teng & Perdikaris, SIAM J. Sci. Comput. 43
(2021) A3055, "Understanding and mitigating gradient pathologies in PINNs", Alg. 1)
    The PDE residual terms (the "reference" terms r) keep lambda_r = 1; every other
    term i (boundary data) gets, on the same refresh steps as GN::

        lhat_i   = max_theta |g_R| / mean_theta |g_i|,     g_R = sum_r g_r
        lambda_i <- (1 - alpha) lambda_i + alpha lhat_i    (alpha = 0.9 in the paper)

    max and mean run over every scalar parameter of all networks; with several PDE
    residuals (a coupled system) L_R is their sum. A term with mean |g_i| = 0 keeps its
    weight, as in GN. The paper's authors report this scheme blowing up on the NPP
    system (weights ~1e9): it is here as a baseline, not a recommendation.

The weights are updated with tensor operations only (no ``.item()``), so a refresh does
not synchronise a GPU with the host.

Batched runs (:mod:`pinn.training.trainer`): with ``runs=R`` the weights are (R, n_terms), every
gradient tensor has a leading run axis (slice r holds run r's gradient of its own term) and
every norm, max and mean above is taken over run r's slices only, so row r of the weights
evolves exactly as the weights of run r trained alone.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["Balancer", "NoBalancing", "GradNormBalancer", "LearningRateAnnealing",
           "SCHEMES", "make_balancer"]


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _fraction(name, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


class Balancer:
    """Per-term loss weights, refreshed from per-term gradients: the protocol every scheme,
    built in or your own, follows.

    The engine builds it as ``Class(terms, every, residuals=..., dtype=..., device=...,
    runs=..., **balancing_args)`` and then, on each step t (from 1):
    ``due(t)`` -- does the scheme want the per-term gradients now? If so,
    ``update(t, grads)`` with ``grads[i]`` the gradients of term i, one tensor per (stacked)
    parameter, zeros where the term does not depend on it; it calls :meth:`reweight`, which
    a scheme implements and which sets ``weights``. The loss of every step is
    sum_i weights[i] L_i.

    ``terms``       the names of the loss terms, in the order of the weights
    ``residuals``   the PDE residual terms among them (the others are boundary data)
    ``weights``     tensor (n_terms,) of the lambda_i, (runs, n_terms) for a batch of runs:
                    row r is run r's, and must depend on run r's slices of the gradients
                    only (:meth:`by_run` gives them)
    ``every``       the refresh period: ``due`` is true on steps 1, 1 + every, ...

    A scheme of your own: subclass, set ``name``, implement ``reweight(grads)`` (under
    ``torch.no_grad``; use tensor operations only, no ``.item()``, so that a GPU is not
    synchronised), take extra settings as keyword arguments of ``__init__`` (they come from
    ``balancing_args``) and add them to :meth:`state_dict` if they matter on resume.
    :class:`GradNormBalancer` is the model to copy.
    """

    name = "base"

    def __init__(self, terms: Sequence[str], every: int = 1000, *,
                 residuals: Sequence[str] | None = None, dtype: torch.dtype = torch.float32,
                 device="cpu", runs: int | None = None):
        self.terms = tuple(terms)
        if not self.terms or len(set(self.terms)) != len(self.terms):
            raise ValueError(f"terms must be distinct names, at least one, got {terms!r}")
        self.every = _positive_int("every", every)
        self.residuals = tuple(residuals) if residuals is not None else None
        if self.residuals is not None and not set(self.residuals) <= set(self.terms):
            raise ValueError(f"residual terms {list(self.residuals)} must be among the terms "
                             f"{list(self.terms)}")
        self.runs = None if runs is None else _positive_int("runs", runs)
        shape = (len(self.terms),) if runs is None else (runs, len(self.terms))
        self.weights = torch.ones(shape, dtype=dtype, device=device)
        self.updates = 0

    def due(self, step: int) -> bool:
        """True on steps 1, 1 + every, 1 + 2 every, ... (never for fixed weights)."""
        return step >= 1 and (step - 1) % self.every == 0

    def update(self, step: int, grads: Sequence[Sequence[torch.Tensor]]) -> None:
        if len(grads) != len(self.terms):
            raise ValueError(f"need the gradients of {len(self.terms)} terms, got {len(grads)}")
        with torch.no_grad():
            self.reweight(grads)
        self.updates += 1

    def reweight(self, grads) -> None:  # pragma: no cover - subclasses override
        """Set ``weights`` from ``grads`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement reweight(grads)")

    def by_run(self, g: torch.Tensor) -> torch.Tensor:
        """A gradient tensor as (runs, -1): one row per run (one row when not batched)."""
        return g.reshape(1 if self.runs is None else self.runs, -1)

    def per_run(self, values: torch.Tensor) -> torch.Tensor:
        """(runs, n_terms) values in the weights' shape (drops the run axis when not batched)."""
        return values.reshape(self.weights.shape).to(self.weights.dtype)

    def state_dict(self) -> dict:
        return {"name": self.name, "terms": list(self.terms), "every": self.every,
                "weights": self.weights.detach().clone(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name or tuple(state.get("terms", ())) != self.terms:
            raise ValueError(
                f"balancer state is for scheme {state.get('name')!r} with terms "
                f"{state.get('terms')}, this balancer is {self.name!r} with {list(self.terms)}")
        weights = torch.as_tensor(state["weights"])
        self.weights = weights.to(dtype=self.weights.dtype, device=self.weights.device).clone()
        self.updates = int(state["updates"])

    def to(self, device=None, dtype=None) -> "Balancer":
        self.weights = self.weights.to(device=device, dtype=dtype)
        return self

    def as_dict(self) -> dict[str, float]:
        """The weights by term name, as Python floats (synchronises: log steps only)."""
        return dict(zip(self.terms, self.weights.tolist()))


class NoBalancing(Balancer):
    """lambda_i = 1 for every term, never refreshed."""

    name = "none"

    def due(self, step: int) -> bool:
        return False

    def reweight(self, grads) -> None:
        pass


class GradNormBalancer(Balancer):
    """The paper's inverse-gradient-norm balancing (module docstring, scheme "gn")::

        lambda_i <- m lambda_i + (1 - m) mean_j(n_j) / n_i,   n_i = ||grad_theta L_i||_2
    """

    name = "gn"

    def __init__(self, terms, every: int = 1000, momentum: float = 0.9, **kwargs):
        super().__init__(terms, every, **kwargs)
        self.momentum = _fraction("momentum", momentum)

    def _global_norm(self, grad_list) -> torch.Tensor:
        """||g||_2 over all parameters, per run: sqrt(sum_p ||g_p||_2^2), shape (runs,)."""
        norms = [torch.linalg.vector_norm(self.by_run(g), dim=1) for g in grad_list]
        return torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1)

    def reweight(self, grads) -> None:
        norms = self.per_run(torch.stack([self._global_norm(g) for g in grads], dim=1))
        alive = norms > 0
        count = alive.sum(dim=-1, keepdim=True).clamp(min=1)
        nbar = torch.where(alive, norms, torch.zeros_like(norms)).sum(dim=-1, keepdim=True) / count
        # The where() keeps the division finite for dead terms; their weight is restored below.
        lhat = nbar / torch.where(alive, norms, torch.ones_like(norms))
        blended = self.momentum * self.weights + (1.0 - self.momentum) * lhat
        self.weights = torch.where(alive, blended, self.weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": self.momentum}


class LearningRateAnnealing(Balancer):
    """Learning-rate annealing of Wang, Teng & Perdikaris 2021 (module docstring, "lra")::

        lambda_i <- (1 - alpha) lambda_i + alpha max|grad L_R| / mean|grad L_i|

    for the boundary terms i; the PDE residual terms (``residuals``, L_R their sum) keep
    lambda = 1.
    """

    name = "lra"

    def __init__(self, terms, every: int = 1000, alpha: float = 0.9, **kwargs):
        super().__init__(terms, every, **kwargs)
        self.alpha = _fraction("alpha", alpha)
        if not self.residuals:
            raise ValueError("lra needs the names of the PDE residual terms (residuals=...)")

    def reweight(self, grads) -> None:
        ref_idx = [self.terms.index(name) for name in self.residuals]
        n_params = len(grads[0])
        reference_grad = [sum(grads[i][p] for i in ref_idx) for p in range(n_params)]
        # Per run: max over run r's slices, means over run r's slices (shape (runs,)).
        ref_max = torch.stack([self.by_run(g).abs().amax(dim=1) for g in reference_grad],
                              dim=1).amax(dim=1)
        numel = sum(self.by_run(g).shape[1] for g in grads[0])
        means = torch.stack([sum(self.by_run(g).abs().sum(dim=1) for g in term) / numel
                             for term in grads], dim=1)
        means = self.per_run(means)
        ref_max = ref_max.to(self.weights.dtype)
        if self.runs is not None:
            ref_max = ref_max[:, None]
        else:
            ref_max = ref_max[0]
        boundary = torch.ones(len(self.terms), dtype=torch.bool, device=means.device)
        boundary[ref_idx] = False
        alive = boundary & (means > 0)
        lhat = ref_max / torch.where(alive, means, torch.ones_like(means))
        blended = (1.0 - self.alpha) * self.weights + self.alpha * lhat
        self.weights = torch.where(alive, blended, self.weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alpha": self.alpha, "residuals": list(self.residuals)}


SCHEMES = {cls.name: cls for cls in (NoBalancing, GradNormBalancer, LearningRateAnnealing)}


def make_balancer(scheme: str, terms: Sequence[str], every: int = 1000, *,
                  residuals: Sequence[str] | None = None, dtype=torch.float32,
                  device="cpu", runs: int | None = None, **args) -> Balancer:
    """The balancer ``scheme`` for the loss ``terms``: a built-in name ("none", "gn", "lra")
    or the import path of a :class:`Balancer` subclass (``"package.module:Class"``), built
    with the keyword arguments ``args``. ``residuals`` are the PDE residual terms (LRA's
    reference); ``runs`` batches R runs."""
    from .optimizers import is_import_path, load_class

    if scheme in SCHEMES:
        cls = SCHEMES[scheme]
    elif is_import_path(scheme):
        cls = load_class(scheme, "balancing", Balancer)
    else:
        raise ValueError(f"unknown balancing scheme {scheme!r}; valid: {sorted(SCHEMES)} or "
                         "the import path of a pinn.optim.balancing.Balancer subclass "
                         "('package.module:Class')")
    try:
        return cls(terms, every, residuals=residuals, dtype=dtype, device=device, runs=runs,
                   **args)
    except TypeError as error:  # an argument the class does not take
        raise ValueError(f"balancing {scheme!r} cannot be built with arguments {args}: "
                         f"{error}") from None
