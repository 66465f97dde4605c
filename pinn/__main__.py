"""Command line of the PINN package: ``python -m pinn <command> [options]``.

    python -m pinn train --case thermo --coupling 10 --optimizer soap --balancing gn \\
        --steps 60000 --lr 1e-3 --device cuda --run-dir runs/thermo-g10
    python -m pinn train --run-dir runs/thermo-g10 --resume      # continue it

Each command is one function ``<name>_command(subparsers)`` that adds its parser and sets
``run`` (a function of the parsed arguments returning the exit status); add it to
:data:`COMMANDS`. The commands' work lives in the package (training, sweeps, analysis);
here are only their command lines and what they write where (``pinn errors``: the NetCDF
file and the plot). Bad arguments exit with status 2 and a message.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def train_command(subparsers) -> None:
    from .training import config as cfg

    parser = subparsers.add_parser(
        "train", help="train one PINN",
        description="Train one PINN on a benchmark case (options default to the recipe).")
    cfg.add_arguments(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its checkpoint")

    def run(args) -> int:
        from reference.store import ReferenceFileError, check_writable

        from .optim.optimizers import is_import_path, load_class
        from .training.checkpoint import CheckpointError
        from .training.trainer import CONFIG, train

        try:
            base = None
            if args.resume:
                if getattr(args, "run_dir", None) is None:
                    raise ValueError("--resume needs --run-dir (the folder of the run to continue)")
                stored = Path(args.run_dir) / CONFIG
                if stored.is_file():
                    for name in ("optimizer", "balancing"):   # named here: imported
                        if is_import_path(getattr(args, name, None)):
                            load_class(getattr(args, name), name)
                    try:
                        base = cfg.TrainConfig.from_stored(json.loads(stored.read_text()), stored)
                    except (ValueError, TypeError) as error:
                        raise ValueError(f"cannot resume from {stored}: {error}") from None
            config = cfg.from_args(args, base)
            if config.run_dir is not None:
                check_writable(config.run_dir)
            result = train(config, resume=args.resume)
        except (ValueError, CheckpointError, ReferenceFileError) as error:
            parser.error(str(error))
        final, best, lowest = result.final, result.best, result.lowest_loss
        print(f"{result.status} after {result.step} steps on {result.device} "
              f"({result.steps_per_second:.1f} steps/s, {result.n_parameters} parameters)")
        for label, summary in (("final", final), ("best", best), ("lowest loss", lowest)):
            if summary:
                fields = " ".join(f"{k}={v:.3e}" for k, v in summary["l2"].items())
                print(f"  {label:>11} (step {summary['step']}): L2 {fields}")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if result.diverged:
            print(result.message, file=sys.stderr)
            return 3
        return 0

    parser.set_defaults(run=run)


def ntk_command(subparsers) -> None:
    from .analysis.ntk_command import add_ntk_parser

    add_ntk_parser(subparsers)


def report_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="Markdown report from a benchmark JSON",
        description="Render report.md and figures from `pytest suite/ --benchmark-json OUT`.")
    parser.add_argument("json", help="the benchmark JSON written by the suite")
    parser.add_argument("--out", default=None, help="output folder (default: next to the JSON)")

    def run(args) -> int:
        from .analysis.report import write_report

        try:
            path = write_report(args.json, args.out)
        except ValueError as error:
            parser.error(str(error))
        print(f"wrote {path}")
        return 0

    parser.set_defaults(run=run)


def errors_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "errors", help="error fields of a trained run against a stored reference",
        description="Evaluate a run's networks on a reference grid; write the error fields "
                    "(NetCDF) and their maps (PNG).")
    parser.add_argument("run_dir", help="a run directory of `python -m pinn train`")
    parser.add_argument("--reference", default=None,
                        help="reference HDF5 file (default: the run's case in data/)")
    parser.add_argument("--out", default=None, help="output folder (default: the run directory)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="score against a reference of another case or parameters on purpose")

    def run(args) -> int:
        from reference import store

        from .analysis.errors import check_reference, error_fields, load_model, plot_error_fields

        from reference.cases import FE_CASES

        try:
            model, case, scored = load_model(args.run_dir)
            if args.reference is None and case.name not in FE_CASES:
                raise ValueError(f"{case.name} has no stored reference (its exact solution "
                                 "scores the run during training: see its metrics.json); "
                                 f"stored references exist for {list(FE_CASES)}")
            reference = store.open_reference(args.reference or store.reference_path(case))
            if not args.allow_mismatch:
                check_reference(case, reference)
        except (ValueError, RuntimeError) as error:
            parser.error(str(error))
        ds = error_fields(model, reference, case=case, allow_mismatch=args.allow_mismatch)
        ds.attrs.update(scored)
        print(f"scored the checkpoint of step {scored['checkpoint_step']}: {scored['run_note']}")
        out = Path(args.out or args.run_dir)
        out.mkdir(parents=True, exist_ok=True)
        store.atomic_write(out / "errors.nc", ds.to_netcdf)
        plot_error_fields(ds, out / "errors.png")
        for name in ds["field"].values:
            row = ds.sel(field=name)
            print(f"{name:>8}: L2 {float(row['l2']):.3e}  |e| {float(row['abs_l2']):.3e}  "
                  f"max {float(row['max_error']):.3e}  band {float(row['l2_band']):.3e}  "
                  f"bulk {float(row['l2_bulk']):.3e}")
        print(f"wrote {out / 'errors.nc'} and {out / 'errors.png'}")
        return 0

    parser.set_defaults(run=run)


def sweep_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a sweep of many PINNs from a TOML spec (batched, resumable, MPI)",
        description="Train every run of a sweep spec (see docs/sweeps.md); finished runs are "
                    "skipped, so rerunning the command resumes an interrupted sweep. Under "
                    "`mpirun -n K` each rank trains its share.")
    parser.add_argument("spec", help="the sweep spec (TOML), e.g. sweeps/cpu.toml")
    parser.add_argument("--output", default=None, help="output folder (default: the spec's)")
    parser.add_argument("--systems", nargs="+", default=None, help="only these systems")
    parser.add_argument("--methods", nargs="+", default=None, metavar="OPT+BAL",
                        help="e.g. soap+gn adam+gn")
    parser.add_argument("--schedules", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="override the budget's steps")
    parser.add_argument("--batch-size", type=int, default=None, help="runs trained together")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda")
    parser.add_argument("--compile", action="store_const", const=True, default=None,
                        help="compile the loss (TrainConfig.compile; a resumable change)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--index-only", action="store_true",
                        help="write the index of the runs finished so far and exit (trains "
                             "nothing; safe while the sweep runs)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")

    def run(args) -> int:
        from reference.store import check_writable

        from .training.sweep import index_finished, load_spec, plan, run_sweep

        budget = {key: value for key, value in (("steps", args.steps), ("device", args.device),
                                                ("compile", args.compile)) if value is not None}
        try:
            spec = load_spec(args.spec, output=args.output, systems=args.systems,
                             methods=args.methods, schedules=args.schedules, seeds=args.seeds,
                             batch_size=args.batch_size, budget=budget)
            if args.dry_run:
                for item in plan(spec):
                    print(item.id)
                return 0
            if args.index_only:
                rows = index_finished(spec)
                done = sum(row["status"] != "pending" for row in rows)
                print(f"{done} of {len(rows)} runs finished; index in {spec.output}")
                return 0
            check_writable(spec.output)   # before any batch: every result goes there
            rows = run_sweep(spec, progress=args.progress)
        except ValueError as error:
            parser.error(str(error))
        # runs another process held are its to report
        own = [row for row in rows if row["status"] != "busy"]
        done = sum(row["status"] == "completed" for row in rows)
        busy = f", {len(rows) - len(own)} held by another process" if len(own) < len(rows) else ""
        print(f"{done} of {len(rows)} runs completed{busy}; index in {spec.output}")
        # a diverged run is a result, but a sweep without one completed run measured nothing
        failed = any(row["status"] == "failed" for row in own)
        return 1 if failed or (own and not any(row["status"] == "completed" for row in own)) else 0

    parser.set_defaults(run=run)


def results_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "results", help="the reproduction study: collect a sweep into a JSON, render the page",
        description="collect: gather a sweep's finished run folders into a study JSON (one "
                    "per budget); render: write docs/results.md (and its figures in docs/img/) "
                    "from study JSONs.")
    actions = parser.add_subparsers(dest="action", required=True)
    collect = actions.add_parser("collect", help="a sweep's finished runs -> a study JSON")
    collect.add_argument("runs", help="the sweep's output folder, e.g. runs/paper-1d")
    collect.add_argument("json", help="the study JSON to write, e.g. data/results/paper-1d.json")
    collect.add_argument("--study", default=None,
                         help="what these runs are, in words (heads their section of the "
                              "page); default: the existing JSON's")
    collect.add_argument("--img", default="docs/img", help="where the EOF error figures go")
    render = actions.add_parser("render", help="study JSONs -> docs/results.md")
    render.add_argument("json", nargs="+", help="study JSONs, one section each, in this order")
    render.add_argument("--out", default="docs/results.md", help="the Markdown page to write")

    def run(args) -> int:
        from .analysis.results import write_json, write_page

        try:
            if args.action == "collect":
                path = write_json(args.runs, args.json, args.study, img_dir=args.img)
            else:
                path = write_page(args.json, args.out)
        except ValueError as error:
            parser.error(str(error))
        print(f"wrote {path}")
        return 0

    parser.set_defaults(run=run)


def compare_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="result files side by side (suite or study JSONs)",
        description="One table per system: final L2 per method and coupling, steps/s, "
                    "degradation and verdicts, one column per file (pinn/analysis/compare.py).")
    parser.add_argument("json", nargs="+", help="suite JSONs (pytest --benchmark-json) or "
                                                "study JSONs (pinn results collect)")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) here")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare files of different profiles or references")

    def run(args) -> int:
        from .analysis.compare import compare

        try:
            text = compare(args.json, allow_mismatch=args.allow_mismatch)
        except ValueError as error:
            parser.error(str(error))
        print(text, end="")
        if args.out:
            Path(args.out).write_text(text)
        return 0

    parser.set_defaults(run=run)


COMMANDS = [train_command, ntk_command, report_command, errors_command, sweep_command,
            results_command, compare_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pinn", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        command(subparsers)
    return parser


_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _negative_values(argv: list[str]) -> list[str]:
    """``--lr -1e-3`` as ``--lr=-1e-3``: argparse before Python 3.13 reads "-1e-3" as an
    option and says "expected one argument"; joined, the value reaches the validation,
    which gives the real reason."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NUMBER.fullmatch(token):
            out[-1] += "=" + token
        else:
            out.append(token)
    return out


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(_negative_values(sys.argv[1:] if argv is None else list(argv)))
    from .training.threads import apply_thread_policy

    try:
        apply_thread_policy()  # one thread per process (pinn.training.threads)
    except ValueError as error:
        parser.error(str(error))
    from reference.store import full_disk_exits

    with full_disk_exits(parser.prog):
        return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
