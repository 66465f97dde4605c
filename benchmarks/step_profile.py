"""Where one training step's time goes: torch.profiler over a few steps of the EOF paper
configuration of benchmarks/gpu_check.py part (b) (6 networks 5 x 128, 3000 + 800 points,
float32, SOAP+GN and Adam+GN, eager).

    python benchmarks/step_profile.py OUT [--device cuda|cpu] [--small] [--steps 20]

Writes OUT/step-profile.txt: per method the wall time per step (timed without the
profiler, then again under it), the operators by self host time and, on a GPU, the
kernels by device time, the kernel launches and device time per step and the share of
the step's wall time the device is busy. A small busy share with many launches says
the step is bound by launching work, not by the device's arithmetic: the remedy is fewer,
larger kernels (compilation, CUDA graphs, batching runs), not faster ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import FULL, SMALL, WARMUP, eof_config  # noqa: E402
from pinn.training.trainer import Trainer, sync  # noqa: E402


def profile_method(optimizer: str, sizes, device: str, steps: int) -> str:
    """The step's wall time without the profiler, then the profiled steps' tables."""
    trainer = Trainer(eof_config(sizes, device, optimizer))
    for _ in range(WARMUP):
        trainer.train_step()
    wall = seconds_per_step(trainer, steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as profiler:
        profiled = seconds_per_step(trainer, steps)
    averages = profiler.key_averages()
    lines = [f"== {optimizer}+gn: {wall * 1e3:.2f} ms per step over {steps} steps "
             f"({profiled * 1e3:.2f} ms under the profiler)"]
    # Kernels: device events, less the ranges user annotations (the optimizer step) span.
    kernels = [event for event in averages if event.device_type == DeviceType.CUDA
               and not getattr(event, "is_user_annotation", False)]
    if kernels:
        busy = sum(event.self_device_time_total for event in kernels) / 1e6 / steps  # us -> s
        launches = sum(event.count for event in kernels) / steps
        lines.append(f"   per step: {launches:.0f} kernels, {busy * 1e3:.2f} ms of device time "
                     f"({busy / launches * 1e6:.1f} us per kernel): the device is busy "
                     f"{busy / wall:.1%} of the step's wall time")
        lines.append(averages.table(sort_by="self_device_time_total", row_limit=20))
    lines.append(averages.table(sort_by="self_cpu_time_total", row_limit=20))
    return "\n".join(lines)


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync(trainer.device)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder for step-profile.txt")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--small", action="store_true", help="gpu_check's reduced sizes")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = SMALL if args.small else FULL
    report = "\n\n".join(profile_method(optimizer, sizes, args.device, args.steps)
                         for optimizer in ("soap", "adam"))
    (out / "step-profile.txt").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
