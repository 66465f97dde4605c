"""The training engine: full-batch PINN training with loss balancing, of R >= 1 runs at once.

One step ``t`` (counted from 1) of runs r = 1..R with loss terms L_{r,i} and balancing
weights lambda_{r,i}::

    if the balancer is due at t:   g_i = grad_theta sum_r L_{r,i}  (one autograd.grad per term)
                                   lambda <- update(lambda, g_1..g_S)   (per run)
    L = sum_r sum_i lambda_{r,i} L_{r,i};  L.backward();  optimizer.step()

A single run is the case R = 1; the runs of a batch may differ in seed, coupling and run
directory only (:func:`batch_key`). Their networks are stacked
(:class:`pinn.training.stacked.StackedNetworks`: one batched matmul per layer for all networks of all
runs) and their problems too (:func:`pinn.problems.base.stack_problems`: one residual pass,
each run with its own coupling and points). Since L_{r,i} depends on run r's parameters
only, block r of dL/dtheta is exactly run r's own gradient sum_i lambda_{r,i} grad L_{r,i};
the balancer norms each run's blocks (``Balancer(runs=R)``), Adam is elementwise and SOAP
is :class:`pinn.optim.soap_batched.BatchedSOAP` (one Kronecker factorisation per network and
run). Nothing mixes runs: a batch gives each run what it gives alone, up to the rounding
of batched matmuls (tests/test_trainer.py measures how much).

Between refreshes the lambda are constants, so the single backward pass of the weighted
sum gives exactly the gradient sum_i lambda_i g_i: the per-term gradients are computed
only on refresh steps (GN: every 1000 steps), not on every step as in the public scripts.

Nothing in a plain step reads a value back to the host (no ``.item()``): a non-finite loss
is recorded on the device (the first step at which each run's terms became non-finite).
The host looks at it only on evaluation and checkpoint steps. A run that **diverges** (a
non-finite loss term, weight or parameter, or an unweighted loss above :data:`BLOWUP` times
its value at step 0: finite but meaningless, e.g. Adam at a learning rate of 1e3) is
finished there: its :class:`TrainResult` has ``status == "diverged"`` and a message naming
the step and the terms, no further
checkpoint is written (the last one on disk is its last good state) and its metrics are
recorded; the other runs go on (its NaNs stay in its own rows). A run that completes with
its loss never below :data:`STALL` x its step-0 value (e.g. Adam at lr 1e3 on thermo's
4 x 64 networks: tanh units saturated, finite, no blow-up, nothing learned) stays
"completed", a result, with a "stalled" warning in ``TrainResult.warnings`` and metrics.json.

Evaluation, every ``eval_every`` steps, at step 0 and at the last step, on the parameters
after that step: the unweighted loss terms, the relative L2 error per field on the
problem's evaluation grid and their mean L2_avg. Three summaries are tracked: ``best``
(lowest L2_avg, an oracle), ``lowest_loss`` (the evaluation with the lowest unweighted loss
sum_i L_i, what a practitioner can select without the reference) and ``final``.

Runs are reproducible: the seed sets the network initialisation (torch's global RNG) and
the collocation points (their own seeded generator); training draws no random numbers after
that. Each run's checkpoint (in its own run directory) stores its model, its rows of the
optimizer state, its balancer weights, the step, the history and the trackers, so a resumed
run - alone or in any batch of the same size - continues exactly as an uninterrupted one
(bitwise on the same device).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from reference.cases import get_case
from reference.store import atomic_write

from . import checkpoint as ckpt
from ..optim.balancing import make_balancer
from .config import TrainConfig
from .networks import model_for
from ..optim.optimizers import PerRunOptimizer, describe, load_class
from ..problems.base import stack_problems
from .schedules import lr_factor
from .stacked import StackedNetworks, nets_per_stack
from ..analysis.statistics import tail

__all__ = ["train", "train_batch", "Trainer", "TrainResult", "TrainConfig", "make_optimizer",
           "resolve_device", "batch_key", "json_safe", "PER_RUN_FIELDS"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
# An unweighted loss this many times its step-0 value is a divergence. In every run of the
# studies (data/results: the CPU budget, the published 1D budget, the EOF claim) the loss
# never rose above its step-0 value; Adam at lr 1e3 on thermo reaches 6.5e4 x within 5 steps.
BLOWUP = 1e3
# A completed run whose unweighted loss never fell below this fraction of its step-0 value
# has barely trained: its result carries a "stalled" warning. Measured on thermo (4 x 64,
# float32, lr 1e-3): Adam is at 0.15 x by step 20, SOAP at 0.96 x by step 20 and 0.49 x by
# step 200 (so very short runs are warned about too); Adam at lr 1e3 (its loss 4e3 x at step
# 50, between the default evaluations, then flat, tanh units saturated, L2 of u 1.0) ends
# 300 steps at 0.95 x.
STALL = 0.5
METRICS = "metrics.json"
FORMAT = 2  # checkpoint layout version (2: optimizer rows of the stacked engine)

# Config fields that may differ between the runs of one batch.
PER_RUN_FIELDS = ("seed", "case_params", "run_dir", "progress")


@dataclass
class TrainResult:
    """What a run produced.

    status             "completed" or "diverged" (``message`` says where and which terms)
    warnings           what a completed run should be read with: "stalled: ..." when its
                       loss never fell below :data:`STALL` x its initial value
    best, lowest_loss, final   {"step": int, "loss": unweighted sum, "l2": {field: e, "avg": e}}
                       (best: lowest L2_avg; lowest_loss: lowest unweighted loss, both over
                       the evaluations; final: the last evaluation, NaN when diverged)
    history            one row per evaluation: step, loss (unweighted sum), weighted_loss,
                       loss_<term>, weight_<term>, l2_<field>, l2_avg, train_seconds
    optimizer          the optimizer as run (:func:`pinn.optim.optimizers.describe`: its name,
                       class, the version of its package, its arguments)
    tail               L2_avg over the last evaluations (:func:`pinn.analysis.statistics.tail`:
                       geomean, spread, min, max); None for a run with too few of them or
                       a diverged one
    steps_per_second   optimizer steps per second of this run's share of the training time
                       (a batch of R runs: the batch's time times R), which excludes the
                       evaluations and checkpoints (measured in this session only when
                       resumed; a session that trained no step, e.g. resuming a finished
                       run, reports the whole run's rate)
    """

    config: dict
    status: str
    message: str
    step: int
    best: dict
    lowest_loss: dict
    final: dict
    history: list
    steps_per_second: float
    train_seconds: float
    eval_seconds: float
    n_parameters: int
    device: str
    run_dir: str | None = None
    tail: dict | None = None
    optimizer: dict | None = None
    warnings: tuple = ()

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def metrics(self) -> dict:
        """Everything but the history and config, as JSON-able values."""
        return {key: getattr(self, key) for key in (
            "status", "message", "step", "best", "lowest_loss", "final", "tail", "steps_per_second",
            "train_seconds", "eval_seconds", "n_parameters", "device", "run_dir", "optimizer",
            "warnings")}


class _Stopped(Exception):
    """Raised inside a step that cannot continue (the optimizer failed on a non-finite loss)."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available here; "
                         "use device 'cpu' or 'auto'")
    return torch.device(name)


def make_optimizer(config: TrainConfig, model: StackedNetworks):
    """The optimizer of the engine's stacked parameters (a leading axis of independent
    tensors, :mod:`pinn.training.stacked`): Adam (PyTorch defaults unless set; elementwise, so the
    stacks need no change; the fused kernel), SOAP as
    :class:`pinn.optim.soap_batched.BatchedSOAP`, one :class:`pinn.optim.soap.SOAP` per network and run
    (the recipe: betas (0.99, 0.999), shampoo_beta = beta2, precondition_frequency 2, no
    preconditioning of 1-D tensors), or the class at an import path as a
    :class:`pinn.optim.optimizers.PerRunOptimizer` (one instance per run, on the run's own
    tensors)."""
    params = list(model.parameters())
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas or (0.9, 0.999),
                                eps=config.eps, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "soap":
        from ..optim.soap_batched import BatchedSOAP

        return BatchedSOAP(params, lr=config.lr, betas=config.betas or (0.99, 0.999),
                           shampoo_beta=config.shampoo_beta, eps=config.eps,
                           weight_decay=config.weight_decay,
                           precondition_frequency=config.precondition_frequency,
                           # The trainer checks for divergence itself at evaluation steps;
                           # SOAP's own check would read a value back on every step.
                           check_finite=False)
    return PerRunOptimizer(load_class(config.optimizer), params,
                           [model.run_parameters(r) for r in range(model.runs)],
                           lr=config.lr, **config.optimizer_args)


def set_learning_rate(config: TrainConfig, optimizer, step: int) -> None:
    """lr of every parameter group at ``step``: config.lr times the schedule's factor."""
    if config.schedule == "constant":
        return
    factor = lr_factor(config.schedule, step, warmup_steps=config.warmup_steps,
                       decay_rate=config.decay_rate, decay_every=config.decay_every)
    for group in optimizer.param_groups:
        group["lr"] = config.lr * factor


def json_safe(value):
    """``value`` as strict JSON takes it: NaN and infinities (a diverged run's errors) as
    None, numpy and torch scalars as Python numbers, tuples as lists."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _write_json(path: Path, data) -> None:
    """``data`` as strict JSON at ``path``, written atomically (never half a file)."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def batch_key(config: TrainConfig) -> str:
    """Runs with equal keys can be trained in one batch (everything but PER_RUN_FIELDS)."""
    data = {k: v for k, v in config.to_dict().items() if k not in PER_RUN_FIELDS}
    return json.dumps(data, sort_keys=True)


# --- optimizer state: a run's part of the stacked state, and back ----------------------
def _row(value, k: int):
    if isinstance(value, torch.Tensor):
        return value[k:k + 1].clone() if value.dim() >= 1 else value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_row(v, k) for v in value)
    if isinstance(value, dict):
        return {key: _row(v, k) for key, v in value.items()}
    return value


def _concat(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0:  # shared scalars (the step count)
            if not all(torch.equal(v, first) for v in values):
                raise ValueError("cannot stack optimizer states at different steps")
            return first.clone()
        return torch.cat(values)
    if isinstance(first, (list, tuple)):
        return type(first)(_concat([v[i] for v in values]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _concat([v[k] for v in values]) for k in first}
    if any(v != first for v in values):
        raise ValueError(f"cannot stack optimizer states that differ in {values!r}")
    return first


def run_optimizer_state(state: dict, places: Sequence[tuple[int, int]]) -> dict:
    """One run's part of a stacked optimizer state dict, keyed like the run's own model's
    parameters: entry i is row ``places[i][1]`` of stacked parameter ``places[i][0]``
    (:meth:`pinn.training.stacked.StackedNetworks.run_parameters`), every tensor keeping a leading
    axis of 1; scalars and step counts are shared. The layout does not depend on how the
    networks were stacked, so the run resumes alone or in any batch."""
    return {"state": {i: _row(state["state"][p], k) for i, (p, k) in enumerate(places)
                      if p in state["state"]}}


def stacked_optimizer_state(states: Sequence[dict], places: Sequence[Sequence[tuple[int, int]]],
                            param_groups: list) -> dict:
    """The stacked optimizer state of R runs' parts (inverse of
    :func:`run_optimizer_state`; ``places[r]`` is run r's)."""
    sources: dict[int, dict[int, tuple[int, int]]] = {}
    for r, run_places in enumerate(places):
        for i, (p, k) in enumerate(run_places):
            sources.setdefault(p, {})[k] = (r, i)
    stacked = {}
    for p, rows in sources.items():
        parts = [states[r]["state"].get(i) for r, i in (rows[k] for k in sorted(rows))]
        if all(part is None for part in parts):
            continue
        if any(part is None for part in parts):
            raise ValueError("cannot stack optimizer states of runs at different stages")
        stacked[p] = _concat(parts)
    return {"state": stacked, "param_groups": param_groups}


# --- one run's record -------------------------------------------------------------------
class RunRecord:
    """One run of the engine: its config, case, seeded model and problem, and its record
    (history, the three trackers, times, run directory files).

    ``model`` is the run's own :class:`~pinn.training.networks.FieldNetworks`; the engine trains the
    stacked copy and writes run r's weights back into it for scoring and checkpoints.
    """

    def __init__(self, config: TrainConfig, problem=None):
        self.config = config.validate()
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        self.case = get_case(config.case, **config.case_params)
        torch.manual_seed(config.seed)
        self.model = model_for(self.case, config)
        self.model.to(device=self.device, dtype=self.dtype)
        if problem is None:
            from ..problems import get_problem

            problem = get_problem(self.case, n_points=config.n_points, dtype=self.dtype,
                                  device=self.device, seed=config.seed)
        problem.reference()  # a missing or corrupted reference fails here, before any file
        self.problem = problem
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        self.run_dir = Path(config.run_dir) if config.run_dir else None
        self.history: list[dict] = []
        self.best: dict = {}
        self.lowest_loss: dict = {}
        self.final: dict = {}
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.status, self.message = "completed", ""
        self.stopped_at: int | None = None  # the step at which a diverged run was finished

    @property
    def active(self) -> bool:
        return self.status == "completed"

    @staticmethod
    def _summary(row: dict) -> dict:
        l2 = {key[3:]: value for key, value in row.items() if key.startswith("l2_")}
        return {"step": row["step"], "loss": row["loss"], "l2": l2}

    def record(self, row: dict) -> None:
        self.history.append(row)
        if not self.best or row["l2_avg"] < self.best["l2"]["avg"]:
            self.best = self._summary(row)
        if not self.lowest_loss or row["loss"] < self.lowest_loss["loss"]:
            self.lowest_loss = self._summary(row)
        self.final = self._summary(row)
        if self.run_dir is not None:
            self._write_history()

    def stop(self, message: str, step: int, row: dict | None = None) -> None:
        """Finish the run as diverged at ``step``; ``final`` holds NaN errors."""
        self.status, self.message, self.stopped_at = "diverged", message, step
        last = row or (self.history[-1] if self.history else {"step": 0, "loss": math.nan})
        nan_row = {key: (math.nan if key.startswith("l2_") else value)
                   for key, value in last.items()}
        self.final = {**self._summary(nan_row), "step": step,
                      "loss": row["loss"] if row else math.nan}

    def _write_history(self) -> None:
        columns = list(self.history[0])
        for row in self.history[1:]:
            columns += [key for key in row if key not in columns]

        def write(tmp):
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.history)

        atomic_write(self.run_dir / HISTORY, write)

    def start_run_dir(self) -> None:
        """Create the run directory and write config.json."""
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.run_dir / CONFIG, self.config.to_dict())

    def result(self, step: int, session_steps: int, session_seconds: float) -> TrainResult:
        return TrainResult(
            config=self.config.to_dict(), status=self.status, message=self.message,
            step=step if self.stopped_at is None else self.stopped_at, best=self.best,
            lowest_loss=self.lowest_loss, final=self.final, history=self.history,
            steps_per_second=(session_steps / session_seconds if session_seconds > 0 else
                              step / self.train_seconds if self.train_seconds > 0 else math.nan),
            train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
            n_parameters=self.n_parameters, device=str(self.device),
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            tail=tail(self.history) if self.active else None,
            optimizer=describe(self.config.optimizer, self.config.optimizer_args),
            warnings=self._warnings(),
        )

    def _warnings(self) -> tuple:
        if not self.active or len(self.history) < 2:
            return ()
        first, lowest = self.history[0]["loss"], self.lowest_loss
        if lowest["loss"] < STALL * first:
            return ()
        return (f"stalled: the loss never fell below {STALL:g} x its initial {first:.3e} "
                f"(lowest {lowest['loss']:.3e}, at step {lowest['step']}): the run has barely "
                "trained (too few steps, or a learning rate too small, or too large: "
                "saturated units)",)

    def finish_run_dir(self, result: TrainResult) -> None:
        from .plotting import plot_history

        _write_json(self.run_dir / METRICS, json_safe(result.metrics()))
        plot_history(self.history, self.run_dir, title=f"{self.case.label} {self.config.optimizer}"
                     f"+{self.config.balancing}")

    def load(self) -> dict:
        """This run's checkpoint: the model weights and record are restored here; returns
        the state (the engine takes the optimizer rows and balancer weights)."""
        if self.run_dir is None:
            raise ValueError("resume needs a run_dir holding a checkpoint")
        # Loaded on the CPU: the engine moves the optimizer and balancer state to the device.
        state = ckpt.load(self.run_dir / CHECKPOINT, map_location="cpu")
        if state.get("format") != FORMAT:
            raise ckpt.CheckpointError(
                f"{self.run_dir / CHECKPOINT} has checkpoint format {state.get('format')}, this "
                f"version reads format {FORMAT}; train the run again from the start")
        stored = TrainConfig.from_stored(state["config"], self.run_dir / CHECKPOINT)
        changed = self.config.trajectory_differences(stored)
        if changed:
            details = ", ".join(f"{k}: checkpoint {v[1]!r}, now {v[0]!r}"
                                for k, v in changed.items())
            raise ValueError(f"cannot resume {self.run_dir}: the config differs from the "
                             f"checkpoint's ({details})")
        if int(state["step"]) > self.config.steps:
            # it would train nothing, and its files would then say fewer steps than it has
            raise ValueError(f"cannot resume {self.run_dir} with steps {self.config.steps}: the "
                             f"run has {state['step']} steps already; a run is not shortened "
                             f"(ask for steps >= {state['step']})")
        try:
            self.model.load_state_dict(state["model"])
            self.history = list(state["history"])
            self.best, self.lowest_loss = state["best"], state["lowest_loss"]
            self.final = state["final"]
            self.train_seconds = float(state["train_seconds"])
            self.eval_seconds = float(state["eval_seconds"])
            missing = [key for key in ("optimizer", "balancer") if key not in state]
            if missing:
                raise KeyError(f"no {missing}")
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ckpt.CheckpointError(
                f"{self.run_dir / CHECKPOINT} does not hold this run's state "
                f"({type(error).__name__}: {reason}); move it away and train the run again"
            ) from None
        return state


# --- the engine -------------------------------------------------------------------------
class Trainer:
    """Trains the runs of ``configs`` (one config, or several with equal :func:`batch_key`)
    together; ``resume`` continues each from the checkpoint in its run_dir (all at one
    step). ``problems`` replace the problems :func:`pinn.problems.get_problem` would build
    (tests use small ones). ``run()`` returns one :class:`TrainResult` per config.
    """

    def __init__(self, configs: TrainConfig | Sequence[TrainConfig], *, problems=None,
                 resume: bool = False):
        configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
        if not configs or not all(isinstance(c, TrainConfig) for c in configs):
            raise ValueError("configs must be a TrainConfig or a non-empty list of them")
        _check_batch(configs)
        if configs[0].compile and "dolfinx" in sys.modules:
            # Seen with DOLFINx 0.5.2 and torch 2.13: the compiled kernels crash (SIGSEGV)
            # in a process that has imported DOLFINx.
            raise ValueError("compile=True cannot run in a process that has imported DOLFINx "
                             "(torch.compile's kernels crash there); train in a separate "
                             "process, e.g. `python -m pinn train --compile ...`")
        problems = list(problems) if problems is not None else [None] * len(configs)
        self.runs = [RunRecord(c, p) for c, p in zip(configs, problems)]
        first = self.runs[0]
        if any(type(r.problem) is not type(first.problem)
               or r.problem.interior.shape != first.problem.interior.shape for r in self.runs):
            raise ValueError("the runs of a batch need the same problem and point count")
        self.config, self.device, self.dtype = first.config, first.device, first.dtype
        states = [run.load() for run in self.runs] if resume else None

        self.model = StackedNetworks.stack(
            [run.model for run in self.runs],
            nets_per_stack(len(self.runs), first.problem.interior.shape[-2], first.case.dim,
                           first.model.nets[0].width))
        self.params = list(self.model.parameters())
        self.problem = stack_problems([run.problem for run in self.runs])
        with torch.no_grad():
            self.terms = tuple(self.problem.loss_terms(self.model))
        self.optimizer = make_optimizer(self.config, self.model)
        # The PDE residual terms (LRA's reference): every term but the boundary ones.
        residuals = [name for name in self.terms if not name.startswith("bc_")]
        self.balancer = make_balancer(self.config.balancing, self.terms,
                                      self.config.balance_every, residuals=residuals or None,
                                      dtype=self.dtype, device=self.device, runs=len(self.runs),
                                      **self.config.balancing_args)
        # The loss of a plain step, compiled on request (config.compile): one fused graph of
        # the networks, their input derivatives, the residuals and its backward.
        self._plain_loss = self._weighted_loss
        if self.config.compile:
            from torch._inductor import config as inductor

            # Compile in this process, without a pool of forked workers (forking a process
            # that runs MPI, as sweeps under mpirun do, is not safe).
            inductor.compile_threads = 1
            if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
                # ATen's unvectorised kernels (ATEN_CPU_CAPABILITY=default): inductor (torch
                # 2.13) still emits at::vec code for some loops without its headers, and the
                # C++ does not build; scalar code (simdlen 1) does.
                inductor.cpp.simdlen = 1
            self._plain_loss = torch.compile(self._weighted_loss)
        self.step = 0
        # First step at which each run's term was non-finite (-1: never), on the device.
        self._first_bad = torch.full((len(self.runs), len(self.terms)), -1, dtype=torch.long,
                                     device=self.device)
        if states is not None:
            self._restore(states)

    def _restore(self, states: list[dict]) -> None:
        steps = {int(s["step"]) for s in states}
        if len(steps) != 1:
            raise ValueError(f"cannot batch runs resumed at different steps {sorted(steps)}")
        self.step = steps.pop()
        if isinstance(self.optimizer, PerRunOptimizer):
            self.optimizer.load_run_states([s["optimizer"] for s in states])
        else:
            self.optimizer.load_state_dict(stacked_optimizer_state(
                [s["optimizer"] for s in states],
                [self.model.run_parameters(r) for r in range(len(self.runs))],
                self.optimizer.state_dict()["param_groups"]))
        balancers = [s["balancer"] for s in states]
        self.balancer.load_state_dict({**balancers[0], "weights": torch.stack(
            [torch.as_tensor(b["weights"]) for b in balancers])})

    # --- one step ---------------------------------------------------------------------
    def loss_terms(self) -> torch.Tensor:
        """L_{r,i}: (runs, terms), each run's mean squares of its own residuals."""
        terms = self.problem.loss_terms(self.model)
        return torch.stack([terms[name] for name in self.terms], dim=1)

    def _weighted_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_r sum_i lambda_ri L_ri, the losses L (runs, terms))."""
        losses = self.loss_terms()
        return (self.balancer.weights * losses).sum(), losses

    def _reevaluate(self) -> torch.Tensor:
        """The closure of an optimizer that re-evaluates the loss (L-BFGS): each run's
        weighted loss at the current parameters, (runs,), its sum back-propagated."""
        losses = self.loss_terms()
        per_run = (self.balancer.weights * losses).sum(dim=1)
        per_run.sum().backward()
        return per_run

    def train_step(self) -> torch.Tensor:
        """One optimizer step of every run; returns the (runs, terms) losses, detached
        (nothing is read back to the host)."""
        self.step += 1
        if self.balancer.due(self.step):  # eager: the per-term gradients need each term's graph
            losses = self.loss_terms()
            self.balancer.update(self.step, [term_gradients(losses[:, i].sum(), self.params)
                                             for i in range(len(self.terms))])
            total = (self.balancer.weights * losses).sum()
        else:
            total, losses = self._plain_loss()
        set_learning_rate(self.config, self.optimizer, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        detached = losses.detach()
        try:
            if isinstance(self.optimizer, PerRunOptimizer):
                self.optimizer.step(self._reevaluate, (self.balancer.weights * detached).sum(dim=1))
            else:
                self.optimizer.step()
        except (RuntimeError, FloatingPointError) as error:
            # e.g. a linear-algebra failure on non-finite optimizer state: a divergence
            # when a loss is no longer finite, a bug otherwise.
            if bool(torch.isfinite(detached).all()):
                raise
            raise _Stopped(f"the optimizer failed at step {self.step} on a non-finite loss "
                           f"({error})") from error
        newly_bad = ~torch.isfinite(detached) & (self._first_bad < 0)
        self._first_bad = torch.where(newly_bad, self.step, self._first_bad)
        return detached

    # --- evaluation and divergence -----------------------------------------------------
    def sync_run(self, r: int) -> RunRecord:
        """Copy run r's weights from the stack into its own model."""
        run = self.runs[r]
        self.model.unstack_into(r, run.model)
        return run

    def evaluate(self) -> list[dict]:
        """The history row of every run at the current parameters (synchronises)."""
        with torch.no_grad():
            losses = self.loss_terms()
        weights = self.balancer.weights
        values = torch.cat([losses, weights, (weights * losses).sum(dim=1, keepdim=True)],
                           dim=1).tolist()
        n = len(self.terms)
        rows = []
        for r, row_values in enumerate(values):
            run = self.sync_run(r)
            row = {"step": self.step, "loss": math.fsum(row_values[:n]),
                   "weighted_loss": row_values[-1]}
            row.update({f"loss_{name}": v for name, v in zip(self.terms, row_values[:n])})
            row.update({f"weight_{name}": v for name, v in zip(self.terms, row_values[n:2 * n])})
            if run.active:
                row.update({f"l2_{name}": float(v) for name, v in run.problem.score(run.model).items()})
            row["train_seconds"] = run.train_seconds
            rows.append(row)
        return rows

    def divergence(self, rows: list[dict] | None = None) -> list[str | None]:
        """Per run, a message when it has diverged, else None (synchronises)."""
        first_bad = self._first_bad.tolist()
        weights_ok = torch.isfinite(self.balancer.weights).all(dim=1).tolist()
        params_ok = torch.stack([
            torch.isfinite(p.reshape(self.model.runs, -1)).all(dim=1) for p in self.params
        ]).all(dim=0).tolist()
        messages = []
        for r, bad in enumerate(first_bad):
            steps = [s for s in bad if s >= 0]
            message = None
            if steps:
                names = [name for name, s in zip(self.terms, bad) if s == min(steps)]
                message = (f"diverged: loss term(s) {names} became non-finite at step "
                           f"{min(steps)} (noticed at step {self.step})")
            elif rows is not None and any(not math.isfinite(rows[r][f"loss_{name}"])
                                          for name in self.terms):
                names = [name for name in self.terms if not math.isfinite(rows[r][f"loss_{name}"])]
                message = f"diverged: loss term(s) {names} non-finite after step {self.step}"
            elif rows is not None and self.runs[r].history and (
                    rows[r]["loss"] > BLOWUP * self.runs[r].history[0]["loss"]):
                message = (f"diverged: loss {rows[r]['loss']:.3e} after step {self.step} is "
                           f"more than {BLOWUP:g} x its initial {self.runs[r].history[0]['loss']:.3e}")
            elif not weights_ok[r]:
                message = (f"diverged: balancing weights non-finite at step {self.step}: "
                           f"{self.balancer.weights[r].tolist()}")
            elif not params_ok[r]:
                message = f"diverged: non-finite network parameters after step {self.step}"
            messages.append(message)
        return messages

    def _check(self, evaluate: bool, bar=None) -> None:
        """Evaluate (or only check for divergence) and record, finishing diverged runs."""
        rows = self.evaluate() if evaluate else None
        for r, message in enumerate(self.divergence(rows)):
            run = self.runs[r]
            if not run.active:
                continue
            if message is not None:
                run.stop(message, self.step, rows[r] if rows else None)
                if bar is not None:
                    bar.write(f"{run.case.label}: {message}"
                              + ("; its last good checkpoint is kept"
                                 if run.run_dir and (run.run_dir / CHECKPOINT).exists() else ""))
            elif rows is not None:
                run.record(rows[r])
        if bar is not None and rows is not None and len(self.runs) == 1 and self.runs[0].active:
            bar.set_postfix(loss=f"{rows[0]['loss']:.3e}", L2=f"{rows[0]['l2_avg']:.3e}")

    # --- state ------------------------------------------------------------------------
    def run_state(self, r: int, optimizer_state: dict | None) -> dict:
        """Run r's checkpoint (``optimizer_state``: the stacked optimizer's state_dict; None
        for a :class:`~pinn.optim.optimizers.PerRunOptimizer`, which keeps one per run)."""
        run = self.sync_run(r)
        balancer = self.balancer.state_dict()
        balancer["weights"] = balancer["weights"][r].clone()
        return {
            "format": FORMAT,
            "config": run.config.to_dict(),
            "step": self.step,
            "model": run.model.state_dict(),
            "optimizer": (self.optimizer.run_state(r) if optimizer_state is None else
                          run_optimizer_state(optimizer_state, self.model.run_parameters(r))),
            "balancer": balancer,
            "history": run.history,
            "best": run.best,
            "lowest_loss": run.lowest_loss,
            "final": run.final,
            "train_seconds": run.train_seconds,
            "eval_seconds": run.eval_seconds,
        }

    def save_checkpoints(self) -> None:
        stacked = (None if isinstance(self.optimizer, PerRunOptimizer)
                   else self.optimizer.state_dict())
        for r, run in enumerate(self.runs):
            if run.active and run.run_dir is not None:
                start = time.perf_counter()
                ckpt.save(self.run_state(r, stacked), run.run_dir / CHECKPOINT)
                run.eval_seconds += time.perf_counter() - start

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> list[TrainResult]:
        config, runs = self.config, self.runs
        for run in runs:
            run.start_run_dir()
        from tqdm.auto import tqdm

        label = runs[0].case.label if len(runs) == 1 else f"{runs[0].case.name} x{len(runs)}"
        bar = tqdm(total=config.steps, initial=min(self.step, config.steps),
                   disable=not config.progress, desc=label, dynamic_ncols=True)
        session_steps, session_seconds = 0, 0.0
        try:
            if self.step == 0:
                start = time.perf_counter()
                self._check(evaluate=True, bar=bar)
                self._share(time.perf_counter() - start, "eval_seconds")
            # Time whole intervals between evaluations: the device is synchronised only at
            # their ends, never inside a plain step.
            sync(self.device)
            interval_start = time.perf_counter()
            while any(run.active for run in runs) and self.step < config.steps:
                try:
                    self.train_step()
                except _Stopped as error:
                    for run in runs:
                        if run.active:
                            run.stop(f"stopped: {error}", self.step)
                    bar.write(f"{label}: {error}")
                    break
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
                self._share(elapsed, "train_seconds")
                start = time.perf_counter()
                self._check(evaluate=is_eval, bar=bar)
                self._share(time.perf_counter() - start, "eval_seconds")
                if is_ckpt:
                    self.save_checkpoints()
                bar.update(step - bar.n)
                interval_start = time.perf_counter()
        finally:
            bar.close()

        results = []
        for run in runs:
            # Each run's share of the batch's time: steps per second as if it ran alone on
            # 1 / R of the machine.
            result = run.result(self.step, session_steps, session_seconds * len(runs))
            if run.run_dir is not None:
                run.finish_run_dir(result)
            results.append(result)
        return results

    def _share(self, seconds: float, attribute: str) -> None:
        """Split ``seconds`` of batch time evenly over the runs still training."""
        active = [run for run in self.runs if run.active] or self.runs
        for run in active:
            setattr(run, attribute, getattr(run, attribute) + seconds / len(active))


def _check_batch(configs: list[TrainConfig]) -> None:
    key = batch_key(configs[0])
    for config in configs[1:]:
        if batch_key(config) != key:
            first = configs[0].to_dict()
            diff = {k: (v, config.to_dict()[k]) for k, v in first.items()
                    if k not in PER_RUN_FIELDS and config.to_dict()[k] != v}
            raise ValueError(f"runs of one batch may differ only in {list(PER_RUN_FIELDS)}; "
                             f"these differ: {diff}")
    dirs = [c.run_dir for c in configs if c.run_dir]
    if len(set(dirs)) != len(dirs):
        raise ValueError("the runs of a batch need distinct run_dirs")


def train_batch(configs: Sequence[TrainConfig], *, resume: bool = False,
                problems=None) -> list[TrainResult]:
    """Train the runs of ``configs`` together; returns one :class:`TrainResult` per config,
    in order. A divergence is reported as ``status == "diverged"`` (not an exception), so
    that sweeps record it as a result. Bad config values raise ``ValueError`` before
    anything is built. Every run_dir is locked first (:func:`pinn.training.checkpoint.writer_lock`:
    one writer per run folder), so a run another process trains is refused
    (:class:`~pinn.training.checkpoint.RunDirBusy`) before anything is read or written."""
    with ckpt.writer_lock(config.run_dir for config in configs if config.run_dir):
        if not resume:
            for config in configs:
                check_new_run_dir(config)
        return Trainer(configs, problems=problems, resume=resume).run()


def train(config: TrainConfig, *, resume: bool = False, problem=None) -> TrainResult:
    """Train one PINN as ``config`` says (a batch of one); ``resume`` continues from
    ``run_dir``'s checkpoint."""
    problems = None if problem is None else [problem]
    return train_batch([config], resume=resume, problems=problems)[0]


def check_new_run_dir(config: TrainConfig) -> None:
    """A fresh run must not overwrite another run's checkpoint."""
    if config.run_dir and (Path(config.run_dir) / CHECKPOINT).exists():
        raise ValueError(f"{config.run_dir} already holds a run (its {CHECKPOINT}); resume it "
                         "or choose another run_dir")


def term_gradients(loss: torch.Tensor, params: list) -> list[torch.Tensor]:
    """grad_theta of one loss term, one tensor per parameter (zeros where unused)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings); nothing to do on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
