"""The GPU check: the CUDA tests, the EOF step speed, batched throughput and as much of the
EOF paper run as fits, in one command of at most 6 minutes on one H100 / H200.

    scripts/gpu-check.sh OUT                          # CUDA, the paper's sizes
    scripts/gpu-check.sh OUT --device cpu --small     # reduced sizes: 1-2 min on 2 CPU cores

(the shell script runs ``python benchmarks/gpu_check.py OUT ...`` from the source tree with
PYTHONPATH set). It needs PyTorch, h5py, xarray, scipy, pytest, pytest-benchmark, tqdm and
matplotlib, not DOLFINx, and installs nothing. It writes OUT/gpu-check.json (every number),
OUT/gpu-check.log (everything printed, and the test output) and prints a short table last.

Parts, in this order, each within its time budget (seconds: full run / ``--small``):

(a) ``pytest -m cuda tests/test_cuda.py``: passed / failed / errors / skipped (timeout
    150 / 60; it took 77-81 s on an H200). On a machine without CUDA every test is
    skipped ("CUDA not available").
(b) Steps/s of the EOF paper configuration (eof-straight eps = 0.2; 6 networks 5 x 128;
    3000 interior + 800 edge points; float32; GN every 1000 steps), SOAP+GN and Adam+GN,
    each three ways: the engine eager (``Trainer.train_step``), the engine with
    ``compile=True`` (the loss and its backward compiled by torch.compile; its compilation
    time is reported apart), and the naive baseline, every loss term back-propagated
    separately on every step (``naive_step`` of benchmarks/trainer_speed.py: what the
    public scripts do). Each is timed over ~3 s (1 s) after 3 warm-up steps, the device
    synchronised at both ends only.
(c) Batched throughput, SOAP+GN, thermo and npp at the paper size (4 x 64; 200 and 300
    points): R = 1, 8, 32, 128 runs trained together (--small: 1, 4 of 2 x 16 networks),
    runs x steps / s over ~2 s (0.5 s) each, and the ratio to R runs trained one after
    another. That sequential time is not measured but extrapolated from R = 1: R runs in
    sequence take R times the time of one.
(d) The rest of the budget (at least 120 s; --small: 10 s): the paper recipe for
    eof-straight eps = 0.2, SOAP+GN, 5 x 128, 3000 points, lr and GN period of
    suite/profiles.py PAPER, compiled when (b) found the compiled step faster, scored
    against the stored DOLFINx reference data/eof-straight-eps0.2.h5 every 500 steps
    (--small: 2 x 16 networks, 200 points): the L2 trajectory and the projected time of
    the paper's 50 000 steps
    (time per step after the first 500 steps x 50 000, plus 100 evaluations).

The whole budget is 340 s (--small 75 s; ``--budget`` changes it); parts (a)-(c) have
fixed budgets, so (d) gets what is left, but never less than its minimum. A part that
fails is recorded with its error and the others still run; the exit status is 1 when a
part failed or a test did not pass. The JSON is rewritten after every part, so a run
stopped from outside keeps the parts it finished (and the log every line printed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pinn.training.config import TrainConfig  # noqa: E402
from pinn.problems import get_problem  # noqa: E402
from pinn.training.threads import apply_thread_policy  # noqa: E402
from pinn.training.trainer import Trainer, sync  # noqa: E402
from reference.cases import get_case  # noqa: E402
from suite.profiles import PAPER  # noqa: E402
from trainer_speed import naive_step  # noqa: E402  (benchmarks/: the naive baseline)

PAPER_STEPS = 50_000  # the paper's EOF budget (suite/profiles.py PAPER)


@dataclass(frozen=True)
class Sizes:
    """What each part does: the full check or the --small one."""

    eof_width: int = 128
    eof_depth: int = 5
    eof_points: int = 3000
    speed_seconds: float = 3.0      # (b) timed window per variant
    batch_width: int = 64
    batch_depth: int = 4
    batch_runs: tuple = (1, 8, 32, 128)
    batch_seconds: float = 2.0      # (c) timed window per (case, R)
    eval_every: int = 500           # (d)
    paper_min_seconds: float = 120.0
    test_timeout: float = 150.0     # (a)
    budget: float = 340.0           # everything


FULL = Sizes()
SMALL = Sizes(eof_width=16, eof_depth=2, eof_points=200, speed_seconds=1.0, batch_width=16,
              batch_depth=2, batch_runs=(1, 4), batch_seconds=0.5, paper_min_seconds=10.0,
              test_timeout=60.0, budget=75.0)
WARMUP = 3  # untimed steps: step 1 refreshes GN and seeds SOAP; step 2 compiles


class Log:
    """Prints and appends to OUT/gpu-check.log."""

    def __init__(self, path: Path):
        self.handle = open(path, "w")

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.handle.write(text + "\n")
        self.handle.flush()


# --- (a) the CUDA tests -------------------------------------------------------------------
def cuda_tests(out: Path, sizes: Sizes, log: Log) -> dict:
    """``pytest -m cuda tests/test_cuda.py`` in a subprocess; counts from its JUnit XML."""
    report = out / "cuda-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs",
               "-p", "no:cacheprovider", f"--junitxml={report}"]
    log(f"$ {' '.join(command[1:])}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    start = time.perf_counter()
    try:
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=sizes.test_timeout)
        output, status = run.stdout + run.stderr, run.returncode
    except subprocess.TimeoutExpired as error:
        partial = error.stdout or ""
        output = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        output += f"\n(timed out after {sizes.test_timeout:.0f} s)"
        status = None
    seconds = time.perf_counter() - start
    log(output.rstrip())
    result = {"seconds": seconds, "exit_status": status, "timed_out": status is None}
    if status is not None and report.is_file():
        suites = ElementTree.parse(report).getroot()
        suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        result.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"]
                      - counts["skipped"])
        reasons = {element.get("message", "") for element in suite.iter("skipped")}
        result["skip_reasons"] = sorted(reason for reason in reasons if reason)
    return result


# --- (b) the EOF step speed -------------------------------------------------------------------
def eof_config(sizes: Sizes, device: str, optimizer: str, **changes) -> TrainConfig:
    budget = PAPER.budgets["eof-straight"]
    options = dict(case="eof-straight", case_params={"eps": 0.2}, optimizer=optimizer,
                   balancing="gn", lr=budget.lr, balance_every=budget.balance_every,
                   width=sizes.eof_width, depth=sizes.eof_depth, n_points=sizes.eof_points,
                   steps=10**7, eval_every=10**7, dtype=PAPER.dtype, device=device,
                   seed=PAPER.seeds[0], progress=False)
    return TrainConfig(**{**options, **changes})


def steps_per_second(trainer: Trainer, step, seconds: float) -> tuple[float, int]:
    """Steps/s of ``step(trainer)`` over about ``seconds`` (at least 3 steps); the device is
    synchronised before and after the timed steps only."""
    sync(trainer.device)
    start = time.perf_counter()
    count = 0
    while count < 3 or time.perf_counter() - start < seconds:
        step(trainer)
        count += 1
    sync(trainer.device)
    return count / (time.perf_counter() - start), count


def eof_speed(sizes: Sizes, device: str, log: Log) -> dict:
    result = {"case": "eof-straight eps=0.2", "width": sizes.eof_width,
              "depth": sizes.eof_depth, "n_points": sizes.eof_points, "methods": {}}
    for optimizer in ("soap", "adam"):
        rows = {}
        for variant in ("eager", "compiled", "naive"):
            trainer = Trainer(eof_config(sizes, device, optimizer, compile=variant == "compiled"))
            step = naive_step if variant == "naive" else Trainer.train_step
            start = time.perf_counter()
            marks = []
            for _ in range(WARMUP):
                step(trainer)
                sync(trainer.device)
                marks.append(time.perf_counter())
            warmup = marks[-1] - start
            rate, count = steps_per_second(trainer, step, sizes.speed_seconds)
            rows[variant] = {"steps_per_second": rate, "timed_steps": count,
                             "warmup_seconds": warmup}
            if variant == "compiled":  # step 2, the first plain one, compiled the loss
                rows[variant]["compile_seconds"] = max(0.0, marks[1] - marks[0] - 1.0 / rate)
            log(f"  {optimizer}+gn {variant:<9} {rate:9.2f} steps/s ({count} steps; "
                f"warm-up {warmup:.1f} s)")
            if variant == "eager":
                result.setdefault("terms", len(trainer.terms))
                result.setdefault("parameters", trainer.runs[0].n_parameters)
                result.setdefault("edge_points", sum(
                    int(points.shape[-2]) for points in trainer.runs[0].problem.boundary.values()))
            del trainer
        rows["compiled_over_eager"] = rows["compiled"]["steps_per_second"] / rows["eager"]["steps_per_second"]
        rows["eager_over_naive"] = rows["eager"]["steps_per_second"] / rows["naive"]["steps_per_second"]
        rows["compiled_over_naive"] = rows["compiled"]["steps_per_second"] / rows["naive"]["steps_per_second"]
        result["methods"][f"{optimizer}+gn"] = rows
    return result


# --- (c) batched throughput ---------------------------------------------------------------------
def batched(sizes: Sizes, device: str, log: Log) -> dict:
    result = {"optimizer": "soap+gn", "width": sizes.batch_width, "depth": sizes.batch_depth,
              "sequential": "extrapolated from R = 1: R runs one after another take R times "
                            "the time of one", "cases": {}}
    for case in ("thermo", "npp"):
        rows = {}
        for runs in sizes.batch_runs:
            base = TrainConfig(case=case, optimizer="soap", balancing="gn", width=sizes.batch_width,
                               depth=sizes.batch_depth, steps=10**7, eval_every=10**7,
                               dtype=PAPER.dtype, device=device, progress=False)
            start = time.perf_counter()
            trainer = Trainer([base.replace(seed=seed) for seed in range(runs)])
            built = time.perf_counter() - start
            for _ in range(WARMUP):
                trainer.train_step()
            rate, count = steps_per_second(trainer, Trainer.train_step, sizes.batch_seconds)
            rows[runs] = {"steps_per_second": rate, "runs_steps_per_second": runs * rate,
                          "timed_steps": count, "build_seconds": built}
            rows[runs]["over_sequential"] = rate * runs / rows[sizes.batch_runs[0]]["steps_per_second"]
            log(f"  {case:<7} R = {runs:<4} {runs * rate:10.1f} runs x steps/s "
                f"({rows[runs]['over_sequential']:.1f}x R sequential runs)")
            n_points = trainer.runs[0].problem.n_points
            del trainer
        result["cases"][case] = {"n_points": n_points, "runs": rows}
    return result


# --- (d) the paper run ----------------------------------------------------------------------
def paper_run(sizes: Sizes, device: str, seconds: float, compiled: bool, log: Log) -> dict:
    config = eof_config(sizes, device, "soap", compile=compiled, eval_every=sizes.eval_every)
    case = get_case("eof-straight", eps=0.2)
    problem = get_problem(case, n_points=config.n_points, dtype=getattr(torch, config.dtype),
                          device=config.device, seed=config.seed, reference="stored")
    trainer = Trainer(config, problems=[problem])
    reference = "data/eof-straight-eps0.2.h5 (stored DOLFINx reference)"
    start = time.perf_counter()
    deadline = start + seconds

    def evaluate():
        begin = time.perf_counter()
        row = trainer.evaluate()[0]
        return row, time.perf_counter() - begin

    row, _ = evaluate()
    trajectory = [{"step": 0, "l2_avg": row["l2_avg"], "loss": row["loss"],
                   "l2": {k[3:]: v for k, v in row.items() if k.startswith("l2_")}}]
    log(f"  step {0:>6}  L2_avg {row['l2_avg']:.3e}  loss {row['loss']:.3e}")
    train_seconds = eval_seconds = 0.0
    interval, intervals = 0.0, []
    while trainer.step == 0 or time.perf_counter() + interval < deadline:
        sync(trainer.device)
        begin = time.perf_counter()
        for _ in range(sizes.eval_every):
            trainer.train_step()
        sync(trainer.device)
        spent = time.perf_counter() - begin
        train_seconds += spent
        intervals.append(spent)
        row, took = evaluate()
        eval_seconds += took
        interval = spent + took
        trajectory.append({"step": trainer.step, "l2_avg": row["l2_avg"], "loss": row["loss"],
                           "l2": {k[3:]: v for k, v in row.items() if k.startswith("l2_")}})
        log(f"  step {trainer.step:>6}  L2_avg {row['l2_avg']:.3e}  loss {row['loss']:.3e}  "
            f"({sizes.eval_every / spent:.1f} steps/s)")
        if not math.isfinite(row["loss"]):
            break
    # The first interval holds the set-up (SOAP's eigendecompositions, a compilation not
    # cached by part (b)); the later ones, with a GN refresh every 1000 steps, are the run's
    # pace.
    steady = intervals[1:] or intervals
    per_step = sum(steady) / (len(steady) * sizes.eval_every)
    evaluations = PAPER_STEPS // sizes.eval_every
    per_evaluation = eval_seconds / (len(trajectory) - 1)
    return {"config": config.to_dict(), "reference": reference, "compiled": compiled,
            "steps": trainer.step, "seconds": time.perf_counter() - start,
            "train_seconds": train_seconds, "eval_seconds": eval_seconds,
            "steps_per_second": 1.0 / per_step, "first_interval_seconds": intervals[0],
            "trajectory": trajectory,
            "projected_50k": {"steps": PAPER_STEPS, "train_seconds": per_step * PAPER_STEPS,
                              "with_evaluations_seconds": per_step * PAPER_STEPS
                              + per_evaluation * evaluations,
                              "evaluations": evaluations}}


# --- the table --------------------------------------------------------------------------------
def table(data: dict) -> str:
    parts, lines = data["parts"], []
    lines.append(f"gpu-check: {data['device_name']}, torch {data['torch']}, "
                 f"float32 matmul precision {data['float32_matmul_precision']} (TF32 "
                 f"{'on' if data['allow_tf32'] else 'off'}), {data['date']}, "
                 f"{data['wall_seconds']:.0f} s{' (--small sizes)' if data['small'] else ''}")
    tests = parts.get("tests", {})
    if "tests" in tests:
        lines.append(f"(a) pytest -m cuda tests/test_cuda.py: {tests['passed']} passed, "
                     f"{tests['failures']} failed, {tests['errors']} errors, {tests['skipped']} "
                     f"skipped ({tests['seconds']:.0f} s)"
                     + (f"; skipped: {'; '.join(tests['skip_reasons'])}" if tests.get("skip_reasons") else ""))
    else:
        lines.append(f"(a) CUDA tests: {tests.get('error') or 'timed out'}")
    speed = parts.get("eof_speed", {})
    if "methods" in speed:
        lines.append(f"(b) EOF {speed['case']}, 6 nets {speed['depth']} x {speed['width']}, "
                     f"{speed['n_points']} + {speed['edge_points']} points, steps/s (naive: "
                     f"each of the {speed['terms']} terms back-propagated alone; compile s: "
                     "the first compiled step's extra time, the second method reusing the "
                     "first's kernels):")
        lines.append(f"    {'method':<9}{'eager':>9}{'compiled':>10}{'naive':>9}"
                     f"{'compiled/eager':>16}{'eager/naive':>13}{'compile s':>11}")
        for method, rows in speed["methods"].items():
            lines.append(f"    {method:<9}{rows['eager']['steps_per_second']:9.2f}"
                         f"{rows['compiled']['steps_per_second']:10.2f}"
                         f"{rows['naive']['steps_per_second']:9.2f}"
                         f"{rows['compiled_over_eager']:15.2f}x{rows['eager_over_naive']:12.2f}x"
                         f"{rows['compiled']['compile_seconds']:11.1f}")
    else:
        lines.append(f"(b) EOF speed: {speed.get('error')}")
    batch = parts.get("batched", {})
    if "cases" in batch:
        runs = list(next(iter(batch["cases"].values()))["runs"])
        lines.append(f"(c) batched SOAP+GN, {batch['depth']} x {batch['width']}: runs x steps/s "
                     f"(x: over R sequential runs, extrapolated from R = 1)")
        lines.append("    " + f"{'case':<8}" + "".join(f"{f'R = {r}':>18}" for r in runs))
        for case, entry in batch["cases"].items():
            cells = "".join(f"{row['runs_steps_per_second']:>11.1f} ({row['over_sequential']:4.1f}x)"
                            for row in entry["runs"].values())
            lines.append(f"    {case:<8}{cells}")
    else:
        lines.append(f"(c) batched: {batch.get('error')}")
    paper = parts.get("paper_run", {})
    if "trajectory" in paper:
        first, last = paper["trajectory"][0], paper["trajectory"][-1]
        projected = paper["projected_50k"]
        lines.append(f"(d) eof-straight eps 0.2, SOAP+GN {paper['config']['depth']} x "
                     f"{paper['config']['width']}, {paper['config']['n_points']} points, lr "
                     f"{paper['config']['lr']:g}{', compiled' if paper['compiled'] else ''}: "
                     f"{paper['steps']} steps in {paper['train_seconds']:.0f} s of training "
                     f"({paper['steps_per_second']:.1f} steps/s after the first 500); L2_avg vs the stored "
                     f"reference {first['l2_avg']:.2e} -> {last['l2_avg']:.2e}; "
                     f"{projected['steps']} steps: {projected['train_seconds'] / 60:.1f} min "
                     f"({projected['with_evaluations_seconds'] / 60:.1f} min with "
                     f"{projected['evaluations']} evaluations)")
        trajectory = paper["trajectory"]  # at most ~12 of the evaluations, and the last
        shown = trajectory[::math.ceil(len(trajectory) / 12)]
        shown += [] if shown[-1] is trajectory[-1] else [trajectory[-1]]
        lines.append("    L2_avg: " + "  ".join(f"{row['step']}: {row['l2_avg']:.2e}" for row in shown))
    else:
        lines.append(f"(d) paper run: {paper.get('error')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder for gpu-check.json and gpu-check.log")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--small", action="store_true",
                        help="reduced sizes (checks the script; minutes on a CPU)")
    parser.add_argument("--budget", type=float, default=None,
                        help="total seconds (default 340; --small 75); part (d) gets the rest")
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else FULL
    if args.budget is not None:
        sizes = Sizes(**{**asdict(sizes), "budget": args.budget})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu-check.log")
    if args.device == "cuda" and not torch.cuda.is_available():
        log("gpu-check: --device cuda, but CUDA is not available here (no GPU, or a CPU-only "
            "PyTorch); use --device cpu --small to check the script")
        return 2
    start = time.perf_counter()
    threads = apply_thread_policy()
    data = {"device": args.device, "small": args.small, "sizes": asdict(sizes),
            "device_name": (torch.cuda.get_device_name() if args.device == "cuda"
                            else f"CPU ({platform.processor() or platform.machine()}, "
                                 f"{os.cpu_count()} cores, {threads} thread)"),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "date": datetime.date.today().isoformat(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "allow_tf32": torch.backends.cuda.matmul.allow_tf32, "parts": {}}
    log(f"gpu-check on {data['device_name']}: torch {data['torch']}, CUDA {data['cuda']}, "
        f"Python {data['python']}, budget {sizes.budget:.0f} s")

    def part(name: str, title: str, function, *args) -> dict:
        log(f"\n{title}")
        begin = time.perf_counter()
        try:
            result = function(*args)
        except Exception as error:  # one failing part should not hide the others
            log(traceback.format_exc().rstrip())
            result = {"error": f"{type(error).__name__}: {error}"}
        result["part_seconds"] = time.perf_counter() - begin
        data["parts"][name] = result
        save()
        return result

    def save() -> None:  # after every part: a run killed later keeps the parts it finished
        data["wall_seconds"] = time.perf_counter() - start
        (out / "gpu-check.json").write_text(json.dumps(data, indent=1) + "\n")

    part("tests", "(a) CUDA tests", cuda_tests, out, sizes, log)
    speed = part("eof_speed", "(b) EOF step speed", eof_speed, sizes, args.device, log)
    part("batched", "(c) batched throughput", batched, sizes, args.device, log)
    compiled = "methods" in speed and speed["methods"]["soap+gn"]["compiled_over_eager"] > 1.0
    left = max(sizes.paper_min_seconds, sizes.budget - (time.perf_counter() - start) - 5.0)
    part("paper_run", f"(d) the paper recipe for {left:.0f} s", paper_run, sizes, args.device,
         left, compiled, log)
    save()
    log("")
    log(table(data))
    tests = data["parts"]["tests"]
    failed = any("error" in result for result in data["parts"].values()) or tests.get(
        "timed_out") or tests.get("failures", 1) or tests.get("errors", 1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
