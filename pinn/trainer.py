"""Training loop of the benchmark: full-batch PINN training with loss balancing.

One step ``t`` (counted from 1) with loss terms L_i and balancing weights lambda_i::

    if the balancer is due at t:   g_i = grad_theta L_i  (one autograd.grad per term)
                                   lambda <- update(lambda, g_1..g_S)
    L = sum_i lambda_i L_i;  L.backward();  optimizer.step()

Between refreshes the lambda_i are constants, so the single backward pass of the weighted
sum gives exactly the gradient sum_i lambda_i g_i: the per-term gradients are computed
only on refresh steps (GN: every 1000 steps), not on every step as in the public
scripts, which back-propagate every term separately every step.

Nothing in a plain step reads a value back to the host (no ``.item()``): the loss terms
stay tensors, and a non-finite loss is recorded on the device (the first step at which
each term became non-finite). The host looks at it only on evaluation and checkpoint
steps. On a **divergence** (a non-finite loss term, weight or parameter) the run stops at
the next of those steps: :func:`train` returns a :class:`TrainResult` with
``status == "diverged"`` and a message naming the step and the terms, writes no further
checkpoint (the last one on disk is the last good state) and records the metrics.

Evaluation, every ``eval_every`` steps, at step 0 and at the last step, on the parameters
after that step: the unweighted loss terms (one extra forward pass), the relative L2 error
per field on the problem's evaluation grid and their mean L2_avg. Three summaries are
tracked: ``best`` (lowest L2_avg, an oracle), ``lowest_loss`` (the evaluation with the
lowest unweighted loss sum_i L_i, what a practitioner can select without the reference)
and ``final`` (the last step).

Runs are reproducible: the seed sets the network initialisation (torch's global RNG) and
the collocation points (their own seeded generator); training draws no random numbers
after that. A checkpoint stores the model, the optimizer (SOAP's state included), the
balancer, the step, the history and the trackers, so a resumed run continues exactly as
an uninterrupted one (bitwise on the same device).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reference.cases import get_case
from reference.store import atomic_write

from . import checkpoint as ckpt
from .balancing import make_balancer
from .config import TrainConfig
from .networks import build_model
from .schedules import lr_factor

__all__ = ["train", "Trainer", "TrainResult", "TrainConfig", "make_optimizer", "resolve_device"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
FORMAT = 1  # checkpoint layout version


@dataclass
class TrainResult:
    """What a run produced.

    status             "completed" or "diverged" (``message`` says where and which terms)
    best, lowest_loss, final   {"step": int, "loss": unweighted sum, "l2": {field: e, "avg": e}}
                       (best: lowest L2_avg; lowest_loss: lowest unweighted loss, both over
                       the evaluations; final: the last evaluation, NaN when diverged)
    history            one row per evaluation: step, loss (unweighted sum), weighted_loss,
                       loss_<term>, weight_<term>, l2_<field>, l2_avg, train_seconds
    steps_per_second   optimizer steps per second of training time, which excludes the
                       evaluations and checkpoints (and is measured in this session only
                       when resumed)
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

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def metrics(self) -> dict:
        """Everything but the history and config, as JSON-able values."""
        return {key: getattr(self, key) for key in (
            "status", "message", "step", "best", "lowest_loss", "final", "steps_per_second",
            "train_seconds", "eval_seconds", "n_parameters", "device", "run_dir")}


class _Diverged(Exception):
    """Raised inside a step that cannot continue because the run diverged."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available here; "
                         "use device 'cpu' or 'auto'")
    return torch.device(name)


def make_optimizer(config: TrainConfig, params, *, batched: bool = False) -> torch.optim.Optimizer:
    """Adam (PyTorch defaults unless set) or SOAP (the recipe: betas (0.99, 0.999),
    shampoo_beta = beta2, precondition_frequency 2, no preconditioning of 1-D tensors).

    ``batched``: the parameters are stacks of runs (leading axis); Adam is elementwise and
    needs no change, SOAP becomes :class:`pinn.soap_batched.BatchedSOAP`."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas or (0.9, 0.999),
                                eps=config.eps, weight_decay=config.weight_decay)
    from .soap import SOAP
    from .soap_batched import BatchedSOAP

    soap = BatchedSOAP if batched else SOAP
    return soap(params, lr=config.lr, betas=config.betas or (0.99, 0.999),
                shampoo_beta=config.shampoo_beta, eps=config.eps,
                weight_decay=config.weight_decay,
                precondition_frequency=config.precondition_frequency,
                # The trainer checks for divergence itself at evaluation steps; SOAP's own
                # check would read a value back from the device on every step.
                check_finite=False)


def set_learning_rate(config: TrainConfig, optimizer, step: int) -> None:
    """lr of every parameter group at ``step``: config.lr times the schedule's factor."""
    if config.schedule == "constant":
        return
    factor = lr_factor(config.schedule, step, warmup_steps=config.warmup_steps,
                       decay_rate=config.decay_rate, decay_every=config.decay_every)
    for group in optimizer.param_groups:
        group["lr"] = config.lr * factor


def _json_safe(value):
    """NaN and infinities (a diverged run's errors) as None: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


class Trainer:
    """Builds the case, model, problem, optimizer and balancer of a config and trains.

    ``problem`` replaces the problem :func:`pinn.problems.get_problem` would build (tests
    use small ones); it must follow the same interface (``loss_terms``,
    ``evaluation_points``, ``relative_l2``).
    """

    def __init__(self, config: TrainConfig, *, problem=None):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config.validate()
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        self.case = get_case(config.case, **config.case_params)

        torch.manual_seed(config.seed)
        self.model = build_model(self.case, config.width, config.depth, config.split)
        self.model.to(device=self.device, dtype=self.dtype)
        if problem is None:
            from .problems import get_problem

            problem = get_problem(self.case, n_points=config.n_points, dtype=self.dtype,
                                  device=self.device, seed=config.seed)
        self.problem = problem
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.n_parameters = sum(p.numel() for p in self.params)
        self.optimizer = make_optimizer(config, self.params)

        self.terms = tuple(self.problem.loss_terms(self.model))
        # The PDE residual terms (LRA's reference): every term but the boundary ones.
        reference = [name for name in self.terms if not name.startswith("bc_")]
        self.balancer = make_balancer(config.balancing, self.terms, config.balance_every,
                                      reference=reference or None, dtype=self.dtype,
                                      device=self.device)

        self.step = 0
        self.history: list[dict] = []
        self.best: dict = {}
        self.lowest_loss: dict = {}
        self.final: dict = {}
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        # First step at which each term's loss was non-finite (-1: never), on the device.
        self._first_bad = torch.full((len(self.terms),), -1, dtype=torch.long,
                                     device=self.device)
        self.run_dir = Path(config.run_dir) if config.run_dir else None

    # --- one step ---------------------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        """One optimizer step; returns the loss terms (a tensor, not read back)."""
        self.step += 1
        terms = self.problem.loss_terms(self.model)
        losses = torch.stack(list(terms.values()))
        if self.balancer.due(self.step):
            self.balancer.update(self.step, [term_gradients(loss, self.params)
                                             for loss in terms.values()])
        total = torch.dot(self.balancer.weights, losses)
        set_learning_rate(self.config, self.optimizer, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        detached = losses.detach()
        try:
            self.optimizer.step()
        except (RuntimeError, FloatingPointError) as error:
            # e.g. a linear-algebra failure on non-finite optimizer state: a divergence
            # when the loss is no longer finite, a bug otherwise.
            if bool(torch.isfinite(detached).all()):
                raise
            raise _Diverged(f"diverged: the optimizer failed at step {self.step} on a "
                            f"non-finite loss ({error})") from error
        newly_bad = ~torch.isfinite(detached) & (self._first_bad < 0)
        self._first_bad = torch.where(newly_bad, self.step, self._first_bad)
        return detached

    # --- evaluation -------------------------------------------------------------------
    def evaluate(self) -> dict:
        """The history row of the current parameters (synchronises with the device)."""
        terms = self.problem.loss_terms(self.model)
        losses = torch.stack([value.detach() for value in terms.values()])
        weights = self.balancer.weights
        values = torch.cat([losses, weights, torch.dot(weights, losses)[None]]).tolist()
        l2 = self.problem.score(self.model)
        n = len(self.terms)
        row = {"step": self.step, "loss": math.fsum(values[:n]), "weighted_loss": values[-1]}
        row.update({f"loss_{name}": v for name, v in zip(self.terms, values[:n])})
        row.update({f"weight_{name}": v for name, v in zip(self.terms, values[n:2 * n])})
        row.update({f"l2_{name}": float(v) for name, v in l2.items()})
        row["train_seconds"] = self.train_seconds
        return row

    @staticmethod
    def _summary(row: dict) -> dict:
        l2 = {key[3:]: value for key, value in row.items() if key.startswith("l2_")}
        return {"step": row["step"], "loss": row["loss"], "l2": l2}

    def _record(self, row: dict) -> None:
        self.history.append(row)
        if not self.best or row["l2_avg"] < self.best["l2"]["avg"]:
            self.best = self._summary(row)
        if not self.lowest_loss or row["loss"] < self.lowest_loss["loss"]:
            self.lowest_loss = self._summary(row)
        self.final = self._summary(row)

    def _set_nan_final(self) -> None:
        """``final`` of a run that diverged between evaluations: its errors are NaN."""
        last = self.history[-1] if self.history else {"step": 0, "loss": math.nan}
        nan_row = {key: (math.nan if key.startswith("l2_") else value)
                   for key, value in last.items()}
        self.final = {**self._summary(nan_row), "step": self.step, "loss": math.nan}

    def divergence(self, row: dict | None = None) -> str | None:
        """A message when the run has diverged, else None (synchronises)."""
        first_bad = self._first_bad.tolist()
        bad_steps = [s for s in first_bad if s >= 0]
        if bad_steps:
            step = min(bad_steps)
            names = [name for name, s in zip(self.terms, first_bad) if s == step]
            return (f"diverged: loss term(s) {names} became non-finite at step {step} "
                    f"(noticed at step {self.step})")
        if row is not None:
            names = [name for name in self.terms if not math.isfinite(row[f"loss_{name}"])]
            if names:
                return f"diverged: loss term(s) {names} non-finite after step {self.step}"
        weights = self.balancer.weights
        if not bool(torch.isfinite(weights).all()):
            return f"diverged: balancing weights non-finite at step {self.step}: {weights.tolist()}"
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):
            return f"diverged: non-finite network parameters after step {self.step}"
        return None

    # --- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "balancer": self.balancer.state_dict(),
            "history": self.history,
            "best": self.best,
            "lowest_loss": self.lowest_loss,
            "final": self.final,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            raise ckpt.CheckpointError(f"checkpoint format {state.get('format')} is not {FORMAT}")
        stored = TrainConfig.from_dict(state["config"])
        changed = self.config.trajectory_differences(stored)
        if changed:
            details = ", ".join(f"{k}: checkpoint {v[1]!r}, now {v[0]!r}"
                                for k, v in changed.items())
            raise ValueError(f"cannot resume: the config differs from the checkpoint's ({details})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.balancer.load_state_dict(state["balancer"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.best, self.lowest_loss = state["best"], state["lowest_loss"]
        self.final = state["final"]
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state["eval_seconds"])
        self._first_bad.fill_(-1)

    def save_checkpoint(self) -> Path:
        return ckpt.save(self.state_dict(), self.run_dir / CHECKPOINT)

    def resume(self) -> None:
        """Continue from the checkpoint in ``run_dir``."""
        if self.run_dir is None:
            raise ValueError("resume needs a run_dir holding a checkpoint")
        # Loaded on the CPU: load_state_dict moves the model, optimizer and balancer state to
        # the run's device.
        self.load_state_dict(ckpt.load(self.run_dir / CHECKPOINT, map_location="cpu"))

    # --- run directory ----------------------------------------------------------------
    def _write_history(self) -> None:
        if not self.history:
            return
        columns = list(self.history[0])
        for row in self.history[1:]:
            columns += [key for key in row if key not in columns]

        def write(tmp):
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.history)

        atomic_write(self.run_dir / HISTORY, write)

    def _start_run_dir(self) -> None:
        """Create the run directory and write config.json."""
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    def _evaluate_and_check(self, bar=None) -> str | None:
        """Evaluate, then record the row (and write the history) unless the run diverged;
        returns the divergence message or None."""
        start = time.perf_counter()
        row = self.evaluate()
        problem = self.divergence(row)
        if problem is None:
            self._record(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3e}", L2=f"{row['l2_avg']:.3e}")
            if self.run_dir is not None:
                self._write_history()
        else:
            self.final = self._summary(row)
        self.eval_seconds += time.perf_counter() - start
        return problem

    def result(self, status: str, message: str, session_steps: int,
               session_seconds: float) -> TrainResult:
        """The :class:`TrainResult` of the run as it stands."""
        return TrainResult(
            config=self.config.to_dict(), status=status, message=message, step=self.step,
            best=self.best, lowest_loss=self.lowest_loss, final=self.final,
            history=self.history,
            steps_per_second=session_steps / session_seconds if session_seconds > 0 else math.nan,
            train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
            n_parameters=self.n_parameters, device=str(self.device),
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
        )

    def _finish_run_dir(self, result: TrainResult) -> None:
        from .plotting import plot_history

        metrics = json.dumps(_json_safe(result.metrics()), indent=2, allow_nan=False)
        (self.run_dir / METRICS).write_text(metrics + "\n")
        plot_history(self.history, self.run_dir, title=f"{self.case.label} {self.config.optimizer}"
                     f"+{self.config.balancing}")

    # --- the loop ---------------------------------------------------------------------
    def run(self) -> TrainResult:
        config = self.config
        self._start_run_dir()
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=min(self.step, config.steps),
                   disable=not config.progress, desc=self.case.label, dynamic_ncols=True)
        status, message = "completed", ""
        session_steps, session_seconds = 0, 0.0

        if self.step == 0:
            message = self._evaluate_and_check(bar) or ""
            status = "diverged" if message else status
        try:
            # Time whole intervals between evaluations: the device is synchronised only at
            # their ends, never inside a plain step.
            sync(self.device)
            interval_start = time.perf_counter()
            while status == "completed" and self.step < config.steps:
                try:
                    self.train_step()
                except _Diverged as error:
                    status, message = "diverged", str(error)
                    self._set_nan_final()
                    bar.write(f"{self.case.label}: {error}; the last good checkpoint is kept")
                    break
                step = self.step
                session_steps += 1
                is_eval = step % config.eval_every == 0 or step == config.steps
                is_ckpt = self.run_dir is not None and (
                    step == config.steps
                    or (config.checkpoint_every > 0 and step % config.checkpoint_every == 0))
                if not (is_eval or is_ckpt):
                    continue
                sync(self.device)
                elapsed = time.perf_counter() - interval_start
                self.train_seconds += elapsed
                session_seconds += elapsed
                if is_eval:
                    problem = self._evaluate_and_check(bar)
                    bar.update(step - bar.n)
                else:
                    problem = self.divergence()
                    if problem is not None:
                        self._set_nan_final()
                if problem is not None:
                    status, message = "diverged", problem
                    bar.write(f"{self.case.label}: {problem}; the last good checkpoint is kept")
                    break
                if is_ckpt:
                    start = time.perf_counter()
                    self.save_checkpoint()
                    self.eval_seconds += time.perf_counter() - start
                interval_start = time.perf_counter()
        finally:
            bar.close()

        result = self.result(status, message, session_steps, session_seconds)
        if self.run_dir is not None:
            self._finish_run_dir(result)
        return result


def train(config: TrainConfig, *, resume: bool = False, problem=None) -> TrainResult:
    """Train one PINN as ``config`` says; ``resume`` continues from ``run_dir``'s checkpoint.

    Returns a :class:`TrainResult`; a divergence is reported as ``status == "diverged"``
    (not an exception), so that sweeps record it as a result. Bad config values raise
    ``ValueError`` before anything is built.
    """
    if not resume:
        check_new_run_dir(config)
    trainer = Trainer(config, problem=problem)
    if resume:
        trainer.resume()
    return trainer.run()


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
