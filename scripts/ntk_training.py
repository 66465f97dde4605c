"""Does lambda_max(K_P) <= S hold along training, and how does lambda_max(K) move?

For each coupled system, trains one SOAP+GN run (networks of the NTK study, 32 x 2 per
field) and evaluates the NTK of its checkpoint after each stage (the run is resumed to the
next stage, so the stages are points of one run), unweighted and with the run's GN weights
lambda_i on the rows (the kernel of the loss actually minimised at that step):

    python scripts/ntk_training.py [--stages 1,1000,5000,10000] [--out docs/img/ntk-training.csv]

Prints a Markdown table (docs/ntk.md, "Along training") and writes every number as CSV.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pinn.training.config import TrainConfig
from pinn.analysis.ntk import checkpoint_report
from pinn.analysis.ntk_command import write_csv
from pinn.training.trainer import CHECKPOINT, train

# system -> (coupling parameter value, lr, training points)
RUNS = {
    "thermo": ({"gamma": 10.0}, 1e-3, 100),
    "rd-symmetric": ({"k": 10.0}, 1e-3, 100),
    "rd-asymmetric": ({"k": 10.0}, 1e-3, 100),
    "npp": ({"eps": 0.1}, 3e-4, 150),
    "eof-straight": ({"eps": 0.2}, 3e-4, 400),
}
NTK_POINTS = 4   # as the initialisation study: over-parameterised blocks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="1,1000,5000,10000",
                        help="training steps at which the NTK is evaluated (increasing)")
    parser.add_argument("--systems", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="docs/img/ntk-training.csv")
    args = parser.parse_args(argv)
    stages = [int(s) for s in args.stages.split(",")]
    if not stages or stages[0] < 1 or any(b <= a for a, b in zip(stages, stages[1:])):
        parser.error(f"--stages must be increasing positive step counts, got {args.stages!r}")

    rows = []
    print("| system | step | L2_avg | lambda_max(K) | lambda_max(K_P) | weighted lambda_max(K) "
          "| weighted lambda_max(K_P) | S | rank-deficient |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems:
            params, lr, points = RUNS[system]
            run_dir = Path(tmp) / system
            for i, steps in enumerate(stages):
                config = TrainConfig(case=system, case_params=params, optimizer="soap",
                                     balancing="gn", balance_every=100, lr=lr, steps=steps,
                                     width=32, depth=2, n_points=points, eval_every=100,
                                     checkpoint_every=0, seed=0, dtype="float64",
                                     device="cpu", run_dir=str(run_dir), progress=False)
                start = time.perf_counter()
                result = train(config, resume=i > 0)
                trained = time.perf_counter() - start
                ckpt = run_dir / f"step{steps}.pt"
                shutil.copy(run_dir / CHECKPOINT, ckpt)
                step, case, plain = checkpoint_report(ckpt, n_points=NTK_POINTS)
                _, _, weighted = checkpoint_report(ckpt, n_points=NTK_POINTS, weighted=True)
                row = {"system": system, "coupling": case.coupling,
                       "value": case.coupling_value, "step": step,
                       "l2_avg": result.final["l2"]["avg"],
                       "lambda_max_K": plain.lambda_max_K, "lambda_max_KP": plain.lambda_max_KP,
                       "weighted_lambda_max_K": weighted.lambda_max_K,
                       "weighted_lambda_max_KP": weighted.lambda_max_KP,
                       "S": plain.n_blocks, "rank_deficient": plain.rank_deficient,
                       "train_s": round(trained, 1)}
                rows.append(row)
                print(f"| {system} ({case.coupling} = {row['value']:g}) | {step} | "
                      f"{row['l2_avg']:.2e} | {plain.lambda_max_K:.4g} | "
                      f"{plain.lambda_max_KP:.6f} | {weighted.lambda_max_K:.4g} | "
                      f"{weighted.lambda_max_KP:.6f} | {plain.n_blocks} | "
                      f"{'yes' if plain.rank_deficient else 'no'} |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
