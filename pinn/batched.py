"""Batched training: R independent runs of one system and architecture in one process.

The runs may differ in their seed, their case parameters (the coupling) and their run
directory; everything else (optimizer, learning rate and schedule, balancing, steps,
network size, points, dtype, device, evaluation and checkpoint periods) is shared
(:func:`batch_key`). Each run ``r`` is a :class:`pinn.trainer.Trainer` of its own config:
it builds the seeded network, the problem, and keeps the history, trackers, metrics and
run directory exactly as a single run. The batch trains them together:

* the R models are stacked (:class:`pinn.stacked.StackedFieldNetworks`), and the interior
  collocation points are concatenated, x = [x_1; ...; x_R], so one batched pass of
  :func:`pinn.problems.base.field_derivatives` (the stacked networks' forward-propagated
  input derivatives, :meth:`pinn.stacked.StackedMLP.derivatives`) serves every run (row
  block r depends on run r only);
* each run's problem computes its own residuals from its row block of those fields (so each
  run has its own coupling coefficients and sources; the problems' code is unchanged) and
  its boundary terms from a view of its own network (:meth:`StackedFieldNetworks.run_view`);
* the loss is the sum over runs of each run's weighted loss,

      L = sum_r sum_i lambda_{r,i} L_{r,i},

  and since L_{r,i} depends on run r's parameters only, the slice r of dL/dtheta is exactly
  run r's own gradient sum_i lambda_{r,i} grad L_{r,i};
* GN (or LRA) refreshes take, per term i, the gradient of sum_r L_{r,i} (slice r = run r's
  gradient of its own term) and norms over each run's slices (``Balancer(runs=R)``);
* Adam is elementwise, so Adam on the stacks is R Adams; SOAP is
  :class:`pinn.soap_batched.BatchedSOAP` (per-run Kronecker factors, batched eigh/QR).

Evaluation and checkpoints copy run r's slice back into its own trainer (model, balancer
weights, optimizer state via :func:`unstack_optimizer_state`) and use the single-run code,
so ``history.csv``, ``metrics.json`` and ``checkpoint.pt`` have the single-run format (a
batched run's checkpoint can be resumed alone with ``python -m pinn train --resume``).
Time is shared: each run's ``train_seconds`` is the batch's training time divided by the
number of runs still training (its share of the machine).

A run that diverges is finished at once (its files written, status "diverged"), then stays
in the stack (its slice no longer matters: nothing mixes runs) until the others finish.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

import torch

from .balancing import make_balancer
from .config import TrainConfig
from .problems.base import Field, field_derivatives
from .stacked import StackedFieldNetworks
from .trainer import (
    Trainer,
    TrainResult,
    check_new_run_dir,
    make_optimizer,
    set_learning_rate,
    sync,
    term_gradients,
)

__all__ = ["BatchedTrainer", "train_batch", "batch_key", "PER_RUN_FIELDS",
           "stack_optimizer_state", "unstack_optimizer_state"]

# Config fields that may differ between the runs of one batch.
PER_RUN_FIELDS = ("seed", "case_params", "run_dir", "progress")


def batch_key(config: TrainConfig) -> str:
    """Runs with equal keys can be trained in one batch (everything but PER_RUN_FIELDS)."""
    data = {k: v for k, v in config.to_dict().items() if k not in PER_RUN_FIELDS}
    return json.dumps(data, sort_keys=True)


# --- optimizer state: R per-run state dicts <-> one stacked state dict ----------------
def _unstack(value, r: int):
    if isinstance(value, torch.Tensor):
        return value[r].clone() if value.dim() >= 1 else value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_unstack(v, r) for v in value)
    if isinstance(value, dict):
        return {k: _unstack(v, r) for k, v in value.items()}
    return value


def _stack(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0:  # shared scalars (Adam's step count)
            if not all(torch.equal(v, first) for v in values):
                raise ValueError("cannot stack optimizer states at different steps")
            return first.clone()
        return torch.stack(values)
    if isinstance(first, (list, tuple)):
        return type(first)(_stack([v[i] for v in values]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([v[k] for v in values]) for k in first}
    if any(v != first for v in values):
        raise ValueError(f"cannot stack optimizer states that differ in {values!r}")
    return first


def unstack_optimizer_state(state: dict, r: int) -> dict:
    """Run r's optimizer state dict (single-run layout) from a stacked one: every tensor
    with a leading run axis is sliced, scalars and step counts are shared."""
    return {"state": {k: _unstack(v, r) for k, v in state["state"].items()},
            "param_groups": state["param_groups"]}


def stack_optimizer_state(states: Sequence[dict], param_groups: list) -> dict:
    """The stacked optimizer state of R single-run state dicts (inverse of
    :func:`unstack_optimizer_state`); ``param_groups`` are the batched optimizer's."""
    keys = set(states[0]["state"])
    if any(set(s["state"]) != keys for s in states):
        raise ValueError("cannot stack optimizer states of runs at different stages")
    return {"state": {k: _stack([s["state"][k] for s in states]) for k in keys},
            "param_groups": param_groups}


def _split_field(field: Field, runs: int) -> list[Field]:
    """The row blocks of a field on the concatenated points, one Field per run."""
    def blocks(t):
        return [None] * runs if t is None else t.reshape(runs, -1, *t.shape[1:]).unbind(0)

    return [Field(v, g, s) for v, g, s in zip(blocks(field.value), blocks(field.grad),
                                                blocks(field.second))]


class BatchedTrainer:
    """Trains the runs of ``configs`` (compatible: equal :func:`batch_key`) together."""

    def __init__(self, configs: Sequence[TrainConfig], *, problems=None):
        configs = list(configs)
        if not configs or not all(isinstance(c, TrainConfig) for c in configs):
            raise ValueError("configs must be a non-empty list of TrainConfig")
        key = batch_key(configs[0])
        for config in configs[1:]:
            if batch_key(config) != key:
                diff = {k: (v, config.to_dict()[k]) for k, v in configs[0].to_dict().items()
                        if k not in PER_RUN_FIELDS and config.to_dict()[k] != v}
                raise ValueError(f"runs of one batch may differ only in {list(PER_RUN_FIELDS)}; "
                                 f"these differ: {diff}")
        dirs = [c.run_dir for c in configs if c.run_dir]
        if len(set(dirs)) != len(dirs):
            raise ValueError("the runs of a batch need distinct run_dirs")
        problems = problems or [None] * len(configs)
        self.runs = [Trainer(c, problem=p) for c, p in zip(configs, problems)]
        first = self.runs[0]
        if any(t.terms != first.terms or type(t.problem) is not type(first.problem)
               or t.problem.interior.shape != first.problem.interior.shape for t in self.runs):
            raise ValueError("the runs of a batch need the same problem, terms and point count")
        self.config = configs[0]
        self.device, self.dtype, self.terms = first.device, first.dtype, first.terms
        self.model = StackedFieldNetworks.stack([t.model for t in self.runs])
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(self.config, self.params, batched=True)
        self.balancer = make_balancer(self.config.balancing, self.terms,
                                      self.config.balance_every,
                                      reference=first.balancer.reference
                                      if hasattr(first.balancer, "reference") else None,
                                      dtype=self.dtype, device=self.device, runs=len(self.runs))
        self.points = torch.cat([t.problem.interior for t in self.runs])
        self.views = [self.model.run_view(r) for r in range(len(self.runs))]
        self.step = 0
        self._first_bad = torch.full((len(self.runs), len(self.terms)), -1, dtype=torch.long,
                                     device=self.device)

    # --- one step ---------------------------------------------------------------------
    def loss_terms(self) -> torch.Tensor:
        """L_{r,i}: (runs, terms), each run's mean squares of its own residuals."""
        runs = len(self.runs)
        orders = self.runs[0].problem.orders
        fields = field_derivatives(self.model, self.points, orders)
        per_run = [dict() for _ in range(runs)]
        for name, field in fields.items():
            for r, block in enumerate(_split_field(field, runs)):
                per_run[r][name] = block
        residuals = []
        for trainer, view, f in zip(self.runs, self.views, per_run):
            terms = trainer.problem.pde_residuals(f)
            terms.update(trainer.problem.boundary_residuals(view))
            residuals.append(terms)
        return torch.stack([torch.stack([res[name] for res in residuals]).square().mean(dim=1)
                            for name in self.terms], dim=1)

    def train_step(self) -> torch.Tensor:
        """One optimizer step of every run; returns the (runs, terms) losses, detached."""
        self.step += 1
        losses = self.loss_terms()
        if self.balancer.due(self.step):
            grads = [term_gradients(losses[:, i].sum(), self.params)
                     for i in range(len(self.terms))]
            self.balancer.update(self.step, grads)
        total = (self.balancer.weights * losses).sum()
        set_learning_rate(self.config, self.optimizer, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        detached = losses.detach()
        newly_bad = ~torch.isfinite(detached) & (self._first_bad < 0)
        self._first_bad = torch.where(newly_bad, self.step, self._first_bad)
        return detached

    # --- per-run views of the batch state ---------------------------------------------
    def sync_run(self, r: int, *, optimizer_state: dict | None = None) -> Trainer:
        """Copy run r's slice of the batch into its trainer, and its slice of
        ``optimizer_state`` (the batch optimizer's state_dict) when given."""
        trainer = self.runs[r]
        self.model.unstack_into(r, trainer.model)
        trainer.balancer.weights = self.balancer.weights[r].clone()
        trainer.balancer.updates = self.balancer.updates
        trainer.step = self.step
        trainer._first_bad = self._first_bad[r].clone()
        if optimizer_state is not None:
            trainer.optimizer.load_state_dict(unstack_optimizer_state(optimizer_state, r))
        return trainer

    def resume(self) -> None:
        """Continue every run from the checkpoint in its run_dir (all at the same step)."""
        for trainer in self.runs:
            trainer.resume()
        steps = {t.step for t in self.runs}
        if len(steps) != 1:
            raise ValueError(f"cannot batch runs resumed at different steps {sorted(steps)}")
        self.step = steps.pop()
        with torch.no_grad():
            for stacked_param, params in zip(
                    self.params, zip(*[list(t.model.parameters()) for t in self.runs])):
                stacked_param.copy_(torch.stack(params))
        self.balancer.weights = torch.stack([t.balancer.weights for t in self.runs])
        self.balancer.updates = self.runs[0].balancer.updates
        self.optimizer.load_state_dict(stack_optimizer_state(
            [t.optimizer.state_dict() for t in self.runs], self.optimizer.state_dict()["param_groups"]))

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> list[TrainResult]:
        config = self.config
        runs = self.runs
        status = ["completed"] * len(runs)
        message = [""] * len(runs)
        active = [True] * len(runs)
        session_steps, session_seconds = 0, 0.0
        for trainer in runs:
            trainer._start_run_dir()

        def finish(r: int, problem: str | None) -> None:
            if problem is None:
                return
            status[r], message[r], active[r] = "diverged", problem, False

        if self.step == 0:
            for r in range(len(runs)):
                finish(r, self.sync_run(r)._evaluate_and_check())
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=min(self.step, config.steps),
                   disable=not config.progress, dynamic_ncols=True,
                   desc=f"{runs[0].case.name} x{len(runs)}")
        try:
            sync(self.device)
            interval_start = time.perf_counter()
            while any(active) and self.step < config.steps:
                self.train_step()
                step = self.step
                session_steps += 1
                is_eval = step % config.eval_every == 0 or step == config.steps
                is_ckpt = step == config.steps or (
                    config.checkpoint_every > 0 and step % config.checkpoint_every == 0)
                if not (is_eval or is_ckpt):
                    continue
                sync(self.device)
                elapsed = time.perf_counter() - interval_start
                session_seconds += elapsed
                training = [r for r in range(len(runs)) if active[r]]
                for r in training:
                    runs[r].train_seconds += elapsed / len(training)
                stacked_state = self.optimizer.state_dict() if is_ckpt else None
                for r in training:
                    trainer = self.sync_run(
                        r, optimizer_state=stacked_state if runs[r].run_dir is not None else None)
                    problem = trainer._evaluate_and_check() if is_eval else trainer.divergence()
                    if problem is not None and not is_eval:
                        trainer._set_nan_final()
                    finish(r, problem)
                    if active[r] and is_ckpt and trainer.run_dir is not None:
                        start = time.perf_counter()
                        trainer.save_checkpoint()
                        trainer.eval_seconds += time.perf_counter() - start
                bar.update(step - bar.n)
                interval_start = time.perf_counter()
        finally:
            bar.close()

        results = []
        for r, trainer in enumerate(runs):
            # Each run's share of the batch's time: steps per second as if it ran alone on
            # 1 / R of the machine.
            result = trainer.result(status[r], message[r], session_steps,
                                    session_seconds * len(runs) if session_seconds else 0.0)
            if trainer.run_dir is not None:
                trainer._finish_run_dir(result)
            results.append(result)
        return results


def train_batch(configs: Sequence[TrainConfig], *, resume: bool = False,
                problems=None) -> list[TrainResult]:
    """Train the runs of ``configs`` together (see the module docstring); returns one
    :class:`TrainResult` per config, in order, as :func:`pinn.trainer.train` would."""
    if not resume:
        for config in configs:
            check_new_run_dir(config)
    trainer = BatchedTrainer(configs, problems=problems)
    if resume:
        trainer.resume()
    return trainer.run()
