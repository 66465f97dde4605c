"""Per-step time of the trainer against a naive implementation of the same recipe.

    python benchmarks/trainer_speed.py                     # EOF, 6 nets x 5 x 128, 3000 points
    python benchmarks/trainer_speed.py --case thermo --steps 100
    python benchmarks/trainer_speed.py --paths analytic autograd --repeats 5   # old vs new

Variants, each on the same model (same seed, so the same initial weights) and the same
collocation points, GN refreshed every 1000 steps:

- ``trainer``: :meth:`pinn.training.trainer.Trainer.train_step`. Per-term gradients only on refresh
  steps; otherwise one backward pass of sum_i lambda_i L_i.
- ``naive``: what the public scripts do: every step, back-propagate every loss term
  separately (``zero_grad``; ``L_i.backward(retain_graph=True)``; keep a copy of the
  gradient), refresh the weights from those gradients when due, set the gradient to
  sum_i lambda_i g_i and step. Same result, S backward passes per step instead of one.
- the trainer with SOAP vs the trainer with Adam (the price of the preconditioner).

Each variant runs on the derivative paths ``--paths``: "analytic" (the default: input
derivatives propagated forward through the MLPs, :meth:`pinn.training.networks.MLP.derivatives`)
and/or "autograd" (nested autograd, inside :func:`pinn.problems.base.autograd_derivatives`).
With ``--repeats R`` every (variant, path) is timed R times in turn, so that the variants
share the machine's load alike, and the median is reported.

Each variant first runs ``--warmup`` steps (they include the step-1 GN refresh and SOAP's
first call, which only seeds its factors), then ``--steps`` timed steps; the device is
synchronised before and after the timed loop only. Times are wall-clock per step.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinn.training.config import DEVICES, DTYPES, TrainConfig  # noqa: E402
from pinn.problems.base import autograd_derivatives  # noqa: E402
from pinn.training.trainer import Trainer, sync  # noqa: E402

PATHS = {"analytic": contextlib.nullcontext, "autograd": autograd_derivatives}


def naive_step(trainer: Trainer) -> None:
    """One step of the recipe with every term back-propagated separately."""
    trainer.step += 1
    terms = [loss.sum() for loss in trainer.problem.loss_terms(trainer.model).values()]  # one run
    grads = []
    for loss in terms:
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for p in trainer.params])
    if trainer.balancer.due(trainer.step):
        trainer.balancer.update(trainer.step, grads)
    weights = trainer.balancer.weights[0]
    with torch.no_grad():
        for k, p in enumerate(trainer.params):
            p.grad = sum(w * term[k] for w, term in zip(weights, grads))
    trainer.optimizer.step()


def time_steps(trainer: Trainer, step, warmup: int, steps: int) -> float:
    """Seconds per step of ``step(trainer)`` after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step(trainer)
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(trainer)
    sync(trainer.device)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default="eof-straight")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--n-points", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--variants", nargs="+", default=["trainer", "naive", "soap"],
                        choices=["trainer", "naive", "soap"])
    parser.add_argument("--paths", nargs="+", default=["analytic"], choices=list(PATHS),
                        help="derivative paths to time (both: old vs new side by side)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time every (variant, path) this many times in turn; report medians")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 gives steadier numbers on a shared machine)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 2 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1 and --warmup >= 2 "
                     "(step 1 is the GN refresh)")

    def trainer(optimizer: str) -> Trainer:
        try:
            config = TrainConfig(case=args.case, optimizer=optimizer, balancing="gn",
                                 balance_every=1000, width=args.width, depth=args.depth,
                                 n_points=args.n_points, device=args.device, dtype=args.dtype,
                                 steps=args.warmup + args.repeats * args.steps,
                                 progress=False, seed=0)
            return Trainer(config)
        except ValueError as error:
            parser.error(str(error))

    variants = {"trainer": ("trainer (adam)", "adam", Trainer.train_step),
                "naive": ("naive (adam)", "adam", naive_step),
                "soap": ("trainer (soap)", "soap", Trainer.train_step)}
    runs = {(label, path): (trainer(optimizer), step)
            for label, optimizer, step in (variants[v] for v in args.variants)
            for path in args.paths}
    times = {key: [] for key in runs}
    for repeat in range(args.repeats):
        for (label, path), (run, step) in runs.items():
            with PATHS[path]():
                warmup = args.warmup if repeat == 0 else 0
                times[label, path].append(time_steps(run, step, warmup, args.steps))
    results = {key: statistics.median(values) for key, values in times.items()}

    probe = trainer("adam")
    print(f"case {args.case}: {len(probe.model.groups)} nets x {args.depth} x {args.width}, "
          f"{args.n_points} interior points, {len(probe.terms)} loss terms, "
          f"{probe.runs[0].n_parameters} parameters, {probe.device} {args.dtype}, "
          f"{args.steps} timed steps after {args.warmup}, median of {args.repeats}, "
          f"{torch.get_num_threads()} threads")
    for (label, path), seconds in results.items():
        print(f"  {label:<16} {path:<9} {1e3 * seconds:9.2f} ms/step")
    for path in args.paths:
        adam, naive, soap = (results.get((label, path))
                             for label in ("trainer (adam)", "naive (adam)", "trainer (soap)"))
        if adam and naive:
            print(f"  {path:<9} naive / trainer  {naive / adam:6.2f}x")
        if adam and soap:
            print(f"  {path:<9} soap / adam      {soap / adam:6.2f}x")
    if {"analytic", "autograd"} <= set(args.paths):
        for label in (variants[v][0] for v in args.variants):
            speedup = results[label, "autograd"] / results[label, "analytic"]
            print(f"  {label:<16} autograd / analytic {speedup:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
