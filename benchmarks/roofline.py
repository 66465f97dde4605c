"""How far a training step is from the machine's limit: FLOPs, time, and the matmul floor.

    python benchmarks/roofline.py                        # every row below, one thread
    python benchmarks/roofline.py --rows thermo-paper    # one row
    python benchmarks/roofline.py --baseline ../old-checkout --repeats 3
                                                         # also another checkout's engine,
                                                         # timed alternately (A, B, A, B ...)

Per row (system, size, optimizer, R runs trained together), on plain steps (no GN refresh):

- ``flop``: the floating-point operations of one step, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls; the elementwise work is not
  counted, so this is the matmul arithmetic of forward, input derivatives and backward);
- ``ms/step``: the median over ``--repeats`` timings of ``--steps`` steps (with
  ``--compile``: of the engine with the compiled loss, ``TrainConfig.compile``);
- ``GFLOP/s``: flop / time, what the step achieves;
- ``floor ms``: the same matmuls (every mm/bmm/addmm/baddbmm shape the step calls,
  recorded with a dispatch mode) timed alone, back to back: the time of the step if
  everything but the matmuls were free. ``share`` = floor / step time is the roofline
  share: 100 % would be a step bound by BLAS at the speed BLAS reaches on these shapes;
- ``peak GFLOP/s``: flop / floor, the sgemm (dgemm) speed this machine reaches on these
  very shapes.

Rows "paper" use the published sizes (1D 4 x 64 networks, 200/300 points; EOF 6 networks
of 5 x 128, 3000 points); rows "suite" the default profile's (suite/profiles.py).
With ``--baseline PATH`` each row is also timed with the engine of the checkout at PATH
(same configs, run in a subprocess with PYTHONPATH=PATH), alternating with this one, and
the ratio is printed: how a change of the engine moves the speed, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (case, params, width, depth, n_points, optimizer, runs)
ROWS = {
    "thermo-paper-adam": ("thermo", {"gamma": 10.0}, 64, 4, 200, "adam", 1),
    "thermo-paper-soap": ("thermo", {"gamma": 10.0}, 64, 4, 200, "soap", 1),
    "thermo-paper-adam-x16": ("thermo", {"gamma": 10.0}, 64, 4, 200, "adam", 16),
    "thermo-paper-soap-x16": ("thermo", {"gamma": 10.0}, 64, 4, 200, "soap", 16),
    "npp-paper-soap": ("npp", {"eps": 0.1}, 64, 4, 300, "soap", 1),
    "npp-paper-soap-x16": ("npp", {"eps": 0.1}, 64, 4, 300, "soap", 16),
    "eof-paper-adam": ("eof-straight", {"eps": 0.2}, 128, 5, 3000, "adam", 1),
    "eof-paper-soap": ("eof-straight", {"eps": 0.2}, 128, 5, 3000, "soap", 1),
    "thermo-suite-soap-x8": ("thermo", {"gamma": 10.0}, 32, 3, 100, "soap", 8),
    "eof-suite-soap-x4": ("eof-straight", {"eps": 0.2}, 32, 3, 400, "soap", 4),
}


def _engine(configs):
    """This checkout's engine of ``configs``, or the one before it (pinn.batched)."""
    from pinn.training import trainer

    try:
        return trainer.Trainer(configs)
    except ValueError:  # the earlier engine: one config per Trainer, batches elsewhere
        if len(configs) == 1:
            return trainer.Trainer(configs[0])
        from pinn.batched import BatchedTrainer

        return BatchedTrainer(configs)


def _configs(row: str, dtype: str, compile: bool = False):
    from pinn.training.config import TrainConfig

    case, params, width, depth, n_points, optimizer, runs = ROWS[row]
    extra = {"compile": True} if compile else {}  # (the earlier engine has no such field)
    return [TrainConfig(case=case, case_params=params, optimizer=optimizer, balancing="gn",
                        balance_every=10**6, width=width, depth=depth, n_points=n_points,
                        dtype=dtype, device="cpu", steps=10**6, progress=False, seed=seed,
                        **extra)
            for seed in range(runs)]


def time_row(row: str, dtype: str, steps: int, compile: bool = False) -> float:
    """Seconds per step of ``row`` (after 3 untimed steps: the first is the GN refresh,
    the second compiles when ``compile``)."""
    engine = _engine(_configs(row, dtype, compile))
    for _ in range(3):
        engine.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        engine.train_step()
    return (time.perf_counter() - start) / steps


def _matmuls(engine) -> list:
    """(op, shapes) of every matmul of one plain step."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    ops = {aten.mm.default, aten.bmm.default, aten.addmm.default, aten.baddbmm.default}
    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in ops:
                calls.append((func, [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]))
            return func(*args, **(kwargs or {}))

    with Record():
        engine.train_step()
    return calls


def _floor_seconds(calls, dtype) -> float:
    """The matmuls of ``calls`` timed alone (median of 5 passes over all of them)."""
    import torch

    tensors = [(func, [torch.randn(shape, dtype=dtype) for shape in shapes])
               for func, shapes in calls]
    passes = []
    for _ in range(6):
        start = time.perf_counter()
        for func, args in tensors:
            func(*args)
        passes.append(time.perf_counter() - start)
    return statistics.median(passes[1:])


def analyse(row: str, dtype: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    engine = _engine(_configs(row, dtype))
    for _ in range(3):
        engine.train_step()
    counter = FlopCounterMode(display=False)
    with counter:
        engine.train_step()
    floor = _floor_seconds(_matmuls(engine), getattr(torch, dtype))
    return {"flop": counter.get_total_flops(), "floor_seconds": floor}


def _subprocess_time(path: str, row: str, dtype: str, steps: int, compile: bool = False) -> float:
    env = dict(os.environ, PYTHONPATH=path, PINN_THREADS="1")
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import torch; torch.set_num_threads(1); import roofline; "
            f"print(roofline.time_row({row!r}, {dtype!r}, {steps}, {compile}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=path, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (median)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--baseline", default=None, metavar="PATH",
                        help="another checkout whose engine is timed alternately with this one")
    parser.add_argument("--compile", action="store_true",
                        help="time this checkout's engine with the compiled loss (config.compile)")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    if args.baseline and not any((Path(args.baseline) / "pinn" / where / "trainer.py").exists()
                                 for where in ("training", ".")):
        parser.error(f"--baseline {args.baseline}: not a checkout of this project")

    import torch

    torch.set_num_threads(1)
    print(f"one thread, {args.dtype}, {args.steps} steps x {args.repeats} repeats, "
          f"{'compiled' if args.compile else 'eager'} loss, torch {torch.__version__}")
    header = (f"{'row':<24}{'runs':>5}{'MFLOP/step':>12}{'ms/step':>10}{'GFLOP/s':>9}"
              f"{'floor ms':>10}{'share':>7}{'peak GFLOP/s':>13}")
    if args.baseline:
        header += f"{'base ms':>9}{'speedup':>9}"
    print(header)
    results = []
    for row in args.rows:
        info = analyse(row, args.dtype)
        mine, base = [], []
        for _ in range(args.repeats):
            mine.append(_subprocess_time(str(ROOT), row, args.dtype, args.steps, args.compile))
            if args.baseline:
                base.append(_subprocess_time(args.baseline, row, args.dtype, args.steps))
        seconds = statistics.median(mine)
        runs = ROWS[row][-1]
        result = {"row": row, "runs": runs, "compiled": args.compile, "flop": info["flop"], "seconds_per_step": seconds,
                  "gflops": info["flop"] / seconds / 1e9,
                  "floor_seconds": info["floor_seconds"],
                  "roofline_share": info["floor_seconds"] / seconds,
                  "peak_gflops": info["flop"] / info["floor_seconds"] / 1e9,
                  "runs_steps_per_second": runs / seconds}
        line = (f"{row:<24}{runs:>5}{info['flop'] / 1e6:>12.1f}{1e3 * seconds:>10.2f}"
                f"{result['gflops']:>9.1f}{1e3 * info['floor_seconds']:>10.2f}"
                f"{100 * result['roofline_share']:>6.0f}%{result['peak_gflops']:>13.1f}")
        if args.baseline:
            result["baseline_seconds_per_step"] = statistics.median(base)
            result["speedup"] = result["baseline_seconds_per_step"] / seconds
            line += f"{1e3 * result['baseline_seconds_per_step']:>9.2f}{result['speedup']:>8.2f}x"
        print(line, flush=True)
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
