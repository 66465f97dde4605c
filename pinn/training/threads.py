"""The CPU thread policy: one intra-op thread per training process.

A training step of these networks is hundreds of small operations (matmuls of a few
hundred rows, elementwise channels); with two OpenMP threads each of them ends in a barrier.
Measured on the 2-core CPU machine (2026-11-28, eof-patch Pe 10, SOAP+GN, 6 x 3 x 32
networks, 400 points): alone, 1 and 2 threads both run ~45 steps/s; with one other busy
process on the machine, 1 thread still runs 42-52 steps/s while 2 threads fall to
10-14 steps/s, because a thread waits at every barrier for its descheduled peer. That is
the 3-12 steps/s seen in a suite run sharing the machine. So every entry point (the CLI,
the suite, sweeps) trains with one thread per process, and uses more cores by training
runs together (batched: :mod:`pinn.training.trainer`) and in more processes (``mpirun -n``).

``PINN_THREADS`` overrides the count (e.g. a GPU run's host side, or a machine of one
large job), up to the cores this process may run on: more threads than cores only wait
for each other at those barriers.
"""

from __future__ import annotations

import os

import torch

__all__ = ["apply_thread_policy"]


def apply_thread_policy(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default ``$PINN_THREADS`` or 1);
    returns the count."""
    name = "threads"
    if threads is None:
        name, text = "PINN_THREADS", os.environ.get("PINN_THREADS", "1")
        try:
            threads = int(text)
        except ValueError:
            raise ValueError(f"PINN_THREADS must be a positive integer, got {text!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name} must be a positive integer, got {threads!r}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and threads > cores:
        raise ValueError(f"{name} must be at most the {cores} CPU cores this process may run "
                         f"on, got {threads}")
    torch.set_num_threads(threads)
    return threads
