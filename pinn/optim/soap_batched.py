r"""SOAP vectorised over a leading run axis: R independent SOAP optimizers in one.

Every parameter is a stack p[r] of R independent tensors (weight (R, m, n), bias (R, n), as
in :class:`pinn.training.stacked.StackedMLP`, where r counts networks of runs), and run r must be optimised exactly as
:class:`pinn.optim.soap.SOAP` would optimise p[r] alone. The equations of the module docstring of
:mod:`pinn.optim.soap` are applied per run; nothing mixes runs:

* Kronecker factors and eigenbases per (run, axis): L[r] = sum beta_s^k G[r] G[r]^T,
  R[r] = sum beta_s^k G[r]^T G[r], kept as (R, m, m) and (R, n, n) and updated with batched
  matmuls (``baddbmm``);
* the first call's eigendecompositions run on the whole stack at once
  (``torch.linalg.eigh`` accepts batches; each matrix of the batch is factored by the same
  LAPACK routine as alone), and each refresh's power step and QR on every factor of one
  size at once, over runs and tensors (:func:`pinn.optim.soap._refresh_together`);
* the refresh's sort of the eigenvalue estimates d[r] and the permutation of V[r] is per run
  (``argsort`` along the last axis, ``gather``);
* the Adam moments are elementwise and the step size depends on the step count only, which
  all runs share (they step together), so they need no change;
* ``normalize_grads`` divides by the RMS of each run's own direction.

Per-run tensors of rank 1 and 2 are supported (what MLPs have). If the batched ``eigh``
fails or returns non-finite vectors, each run is retried alone with the fallbacks of
:func:`pinn.optim.soap._eigenbasis`; a run whose retries all fail gets the identity basis (the
single-run optimizer would instead keep no basis on that axis; the identity then evolves
with the refreshes). ``state_dict`` has the layout of :class:`pinn.optim.soap.SOAP` with a
leading run axis on every tensor; :func:`pinn.training.trainer.run_optimizer_state` slices
out a run's rows.
"""

from __future__ import annotations

import torch

from .soap import SOAP, _accumulate_runs, _eigenbasis, _rotate_matrix, _solver_dtype

__all__ = ["BatchedSOAP"]


def _rotate_runs(x: torch.Tensor, bases: list, forward: bool) -> torch.Tensor:
    """Per run: x[r] -> x[r] x_k Q_k[r]^T on every axis (forward) or x_k Q_k[r] (backward)."""
    if x.dim() == 2:  # one vector per run
        (q,) = bases
        if q is None:
            return x
        return ((q.mT if forward else q) @ x.unsqueeze(-1)).squeeze(-1)
    return _rotate_matrix(x, *bases, forward)


def _eigenbasis_runs(factors: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of each factor (R, n, n), columns by descending eigenvalue."""
    try:
        _, vecs = torch.linalg.eigh(factors.to(_solver_dtype(factors.dtype)))
        if bool(torch.isfinite(vecs).all()):  # first call only: a sync here is fine
            return torch.flip(vecs, dims=(-1,)).to(factors.dtype).contiguous()
    except (torch.linalg.LinAlgError, RuntimeError):
        pass
    eye = torch.eye(factors.shape[-1], dtype=factors.dtype, device=factors.device)
    bases = [_eigenbasis(f) for f in factors]
    return torch.stack([eye if q is None else q for q in bases])


class BatchedSOAP(SOAP):
    """R independent SOAP optimizers over stacked parameters (leading axis = run).

    Same arguments as :class:`pinn.optim.soap.SOAP`; ``merge_dims`` has no effect (per-run tensors
    have rank <= 2).
    """

    _run_axes = 1
    _rotate = staticmethod(_rotate_runs)
    _accumulate_factors = staticmethod(_accumulate_runs)
    _eigenbasis = staticmethod(_eigenbasis_runs)

    @staticmethod
    def _work_shape(p: torch.Tensor, group: dict) -> tuple[int, ...]:
        if not 2 <= p.dim() <= 3:
            raise ValueError(f"BatchedSOAP needs (runs, n) or (runs, m, n) parameters, got "
                             f"shape {tuple(p.shape)}")
        return tuple(p.shape)
