"""Command line: ``python -m reference generate CASE [--eps 0.1 --Pe 10 ...] [--all] [--out FOLDER]``.

Generates finite-element reference files (serial, or in parallel under ``mpirun -n N``).
``--all`` generates every case of every sweep that has a finite-element reference.
Bad input (an unknown case, a parameter the case lacks, an invalid value) prints a message
that lists the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from reference.cases import CASES, FE_CASES, get_case, sweep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reference",
                                     description="Finite-element reference solutions.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser(
        "generate", help="solve, verify and store reference files",
        description="Parameters are given as --NAME VALUE, e.g. --eps 0.1 or --Pe 10; "
                    "--coupling VALUE sets the case's coupling parameter (as in "
                    "`python -m pinn train`).")
    gen.add_argument("case", nargs="?", help=f"one of {list(FE_CASES)}")
    gen.add_argument("--all", action="store_true",
                     help="every case of every sweep with a finite-element reference")
    gen.add_argument("--out", default=None, help="output folder (default: the project's data/)")
    gen.add_argument("--quiet", action="store_true", help="no log line per Newton step")
    return parser


def _parse_params(parser, case_name: str, extra: list[str]) -> dict:
    """--NAME VALUE pairs into a dict of floats (or strings for text parameters)."""
    import dataclasses

    valid = [f.name for f in dataclasses.fields(CASES[case_name])]
    params, items = {}, list(extra)
    while items:
        key = items.pop(0)
        if not key.startswith("--") or not items:
            parser.error(f"expected --NAME VALUE pairs, got {key!r}; parameters of "
                         f"{case_name!r}: {valid}")
        name, value = key[2:], items.pop(0)
        if name == "coupling":    # the spelling of `pinn train`: the case's coupling parameter
            name = CASES[case_name].coupling
        if name not in valid:
            parser.error(f"unknown parameter --{name} for case {case_name!r}; valid: {valid}")
        try:
            params[name] = float(value)
        except ValueError:
            params[name] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.all == bool(args.case):
        parser.error(f"give exactly one of CASE or --all; cases: {list(FE_CASES)}")
    if args.all:
        if extra:
            parser.error(f"--all takes no parameters, got {extra}")
        cases = [case for name in FE_CASES for case in sweep(name)]
    else:
        if args.case not in FE_CASES:
            parser.error(f"no finite-element reference for case {args.case!r}; "
                         f"valid cases: {list(FE_CASES)}")
        params = _parse_params(parser, args.case, extra)
        try:
            cases = [get_case(args.case, **params)]
        except (TypeError, ValueError) as error:
            parser.error(str(error))

    from reference.store import check_writable, reference_path

    try:  # before any solve: its result must have somewhere to go
        check_writable(reference_path(cases[0], args.out).parent)
    except ValueError as error:
        parser.error(str(error))

    # Deferred: DOLFINx only when there is something to solve.
    try:
        from mpi4py import MPI

        from reference.fem.generate import generate
    except ImportError as error:
        parser.error(f"generating a reference needs DOLFINx and mpi4py ({error}); see the "
                     "README's set-up. Training and scoring against the stored references "
                     "in data/ need neither.")

    comm = MPI.COMM_WORLD
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level if comm.rank == 0 else logging.ERROR,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from reference.store import full_disk_exits

    for case in cases:
        with full_disk_exits(parser.prog):
            path, _ = generate(case, args.out, comm)
        if comm.rank == 0:
            print(f"{case.label}: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
