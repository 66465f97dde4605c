"""Throughput of batched training (runs x steps per second) against runs one after another.

    python benchmarks/sweep_throughput.py                         # thermo and rd, R = 1..64
    python benchmarks/sweep_throughput.py --cases thermo --runs 1 16 --steps 10

For each case and optimizer (with GN balancing, the recipe's 4 x 64 networks and 200
points), side by side in one process:

- ``sequential``: the engine with one run (:class:`pinn.training.trainer.Trainer`); R runs one after another do R x steps
  in R times its time, so its throughput is 1 / (seconds per step) whatever R is.
- ``batched R``: the engine with R runs (seeds 0..R-1); its
  throughput is R / (seconds per batched step).

Each variant first runs ``--warmup`` steps (they include step 1's GN refresh and SOAP's
first call), then ``--repeats`` timed blocks, alternating a sequential block (R x ``--steps`` steps) and
a batched one (``--steps`` steps of R runs), so that both do the same work. Reported: the fastest block of each (on a shared machine the slower
ones measure the other processes) and the median over the repeats of the batched /
sequential ratio (the speedup). Only ``train_step`` is timed: evaluations cost the same
per run either way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pinn.training.config import TrainConfig  # noqa: E402
from pinn.training.trainer import Trainer  # noqa: E402


def block_seconds(trainer, steps: int) -> float:
    """Seconds per step over ``steps`` training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return (time.perf_counter() - start) / steps


def compare(sequential, batched, runs: int, steps: int, warmup: int, repeats: int):
    """(sequential, batched) throughput in runs x steps / s, the fastest of ``repeats``
    blocks each, and the median of the per-repeat speedups. The blocks alternate, so that
    load from other processes on a shared machine hits both variants alike."""
    for _ in range(warmup):
        sequential.train_step()
        batched.train_step()
    seq, bat, ratios = [], [], []
    for _ in range(repeats):
        seq.append(1.0 / block_seconds(sequential, steps * runs))  # as long as the batch's
        bat.append(runs / block_seconds(batched, steps))
        ratios.append(bat[-1] / seq[-1])
    return max(seq), max(bat), statistics.median(ratios)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["thermo", "rd-symmetric"])
    parser.add_argument("--optimizers", nargs="+", default=["adam", "soap"])
    parser.add_argument("--runs", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed blocks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, "
          f"{args.repeats} alternating blocks of {args.steps} steps after {args.warmup}")
    print(f"{'case':<14}{'optimizer':<10}{'R':>4}{'sequential':>14}{'batched':>12}{'speedup':>9}"
          "   (runs x steps / s, best block; speedup: median)")
    for case in args.cases:
        for optimizer in args.optimizers:
            base = TrainConfig(case=case, optimizer=optimizer, balancing="gn", width=64, depth=4,
                               n_points=200, dtype=args.dtype, device="cpu", progress=False,
                               steps=10**6)
            for runs in args.runs:
                batch = Trainer([base.replace(seed=seed) for seed in range(runs)])
                sequential, batched, speedup = compare(Trainer(base), batch, runs, args.steps,
                                                       args.warmup, args.repeats)
                print(f"{case:<14}{optimizer:<10}{runs:>4}{sequential:>14.1f}{batched:>12.1f}"
                      f"{speedup:>8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
