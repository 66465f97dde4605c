"""Per-step time of the trainer against a naive implementation of the same recipe.

    python benchmarks/trainer_speed.py                     # EOF, 6 nets x 5 x 128, 3000 points
    python benchmarks/trainer_speed.py --case thermo --steps 100

Variants, each on the same model (same seed, so the same initial weights) and the same
collocation points, GN refreshed every 1000 steps:

- ``trainer``: :meth:`pinn.trainer.Trainer.train_step`. Per-term gradients only on refresh
  steps; otherwise one backward pass of sum_i lambda_i L_i.
- ``naive``: what the public scripts do: every step, back-propagate every loss term
  separately (``zero_grad``; ``L_i.backward(retain_graph=True)``; keep a copy of the
  gradient), refresh the weights from those gradients when due, set the gradient to
  sum_i lambda_i g_i and step. Same result, S backward passes per step instead of one.
- the trainer with SOAP vs the trainer with Adam (the price of the preconditioner).

Each variant first runs ``--warmup`` steps (they include the step-1 GN refresh and SOAP's
first call, which only seeds its factors), then ``--steps`` timed steps; the device is
synchronised before and after the timed loop only. Times are wall-clock per step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinn.config import DEVICES, DTYPES, TrainConfig  # noqa: E402
from pinn.trainer import Trainer  # noqa: E402


def naive_step(trainer: Trainer) -> None:
    """One step of the recipe with every term back-propagated separately."""
    trainer.step += 1
    terms = list(trainer.problem.loss_terms(trainer.model).values())
    grads = []
    for loss in terms:
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for p in trainer.params])
    if trainer.balancer.due(trainer.step):
        trainer.balancer.update(trainer.step, grads)
    weights = trainer.balancer.weights
    with torch.no_grad():
        for k, p in enumerate(trainer.params):
            p.grad = sum(w * term[k] for w, term in zip(weights, grads))
    trainer.optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, step, warmup: int, steps: int) -> float:
    """Seconds per step of ``step(trainer)`` after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step(trainer)
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(trainer)
    _sync(trainer.device)
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
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 2:
        parser.error("--steps must be >= 1 and --warmup >= 2 (step 1 is the GN refresh)")

    def trainer(optimizer: str) -> Trainer:
        try:
            config = TrainConfig(case=args.case, optimizer=optimizer, balancing="gn",
                                 balance_every=1000, width=args.width, depth=args.depth,
                                 n_points=args.n_points, device=args.device, dtype=args.dtype,
                                 steps=args.warmup + args.steps, progress=False, seed=0)
            return Trainer(config)
        except ValueError as error:
            parser.error(str(error))

    results = {}
    if "trainer" in args.variants:
        results["trainer (adam)"] = time_steps(trainer("adam"), Trainer.train_step,
                                               args.warmup, args.steps)
    if "naive" in args.variants:
        results["naive (adam)"] = time_steps(trainer("adam"), naive_step, args.warmup, args.steps)
    if "soap" in args.variants:
        results["trainer (soap)"] = time_steps(trainer("soap"), Trainer.train_step,
                                               args.warmup, args.steps)

    probe = trainer("adam")
    print(f"case {args.case}: {len(probe.model.nets)} nets x {args.depth} x {args.width}, "
          f"{args.n_points} interior points, {len(probe.terms)} loss terms, "
          f"{probe.n_parameters} parameters, {probe.device} {args.dtype}, "
          f"{args.steps} timed steps after {args.warmup}")
    for name, seconds in results.items():
        print(f"  {name:<16} {1e3 * seconds:9.2f} ms/step")
    if "trainer (adam)" in results and "naive (adam)" in results:
        print(f"  naive / trainer   {results['naive (adam)'] / results['trainer (adam)']:6.2f}x "
              "(target >= 4)")
    if "trainer (adam)" in results and "trainer (soap)" in results:
        print(f"  soap / adam       {results['trainer (soap)'] / results['trainer (adam)']:6.2f}x "
              "(target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
