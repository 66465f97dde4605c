"""The ``python -m pinn ntk`` command: the NTK study's sweeps, tables, figures and CSVs.

The analysis itself (the Jacobian, K and K_P, their spectra) is :mod:`pinn.analysis.ntk`; this
module runs it over a coupling sweep or a run's checkpoints and writes what docs/ntk.md
shows.
"""

from __future__ import annotations

import math

import numpy as np

from reference.cases import CASES, get_case

from .ntk import (DEFAULT_RTOL, BlockReport, NTKReport, checkpoint_report, coupling_sweep,
                  fit_slope)

__all__ = ["add_ntk_parser", "report_row", "format_table", "plot_sweep", "write_csv"]


def _block_label(block: BlockReport) -> str:
    return "+".join(block.fields)


def report_row(report: NTKReport) -> dict:
    """The scalar results of a report as a flat dict (one CSV row)."""
    row = {
        "lambda_max_K": report.lambda_max_K,
        "lambda_max_KP": report.lambda_max_KP,
        "S": report.n_blocks,
        "coverage": report.coverage,
        "rows": report.n_rows,
        "lr_max": report.lr_max,
        "rank_deficient": report.rank_deficient,
        "max_diag_KP": report.max_diag_KP,
        "witness_row": report.witness,
    }
    for s, block in enumerate(report.blocks):
        row.update({f"block{s}_fields": _block_label(block), f"block{s}_params": block.n_params,
                    f"block{s}_rows": block.rows, f"block{s}_rank": block.rank,
                    f"block{s}_lambda_max": block.lambda_max})
    return row


def format_table(label: str, entries, coupling_note: str = "") -> str:
    """A text table of ``entries`` = [(first column value, NTKReport)]."""
    lines = []
    if coupling_note:
        lines.append(coupling_note)
    blocks = entries[0][1].blocks
    head = (f"{label:>10} {'lam_max(K)':>12} {'lam_max(K_P)':>16} {'S':>2} {'cov':>3} "
            f"{'lr_max=1/lam(K)':>15}  rank/rows: " + " ".join(_block_label(b) for b in blocks))
    lines.append(head)
    for value, report in entries:
        ranks = " ".join(f"{b.rank}/{b.rows}{'*' if b.rank_deficient else ''}"
                         for b in report.blocks)
        lines.append(f"{value:>10} {report.lambda_max_K:12.5g} {report.lambda_max_KP:16.12f} "
                     f"{report.n_blocks:>2} {report.coverage:>3} {report.lr_max:15.4g}  {ranks}")
    lines.append("cov: the most networks any residual row depends on; "
                 "* rank(J_s) < rows it influences (rank-deficient: no equality claimed)")
    for value, report in entries:
        lines.append(f"  {value}: {report.verdict()}")
    return "\n".join(lines)


def plot_sweep(case_name: str, coupling: str, entries, path, fit_range=None) -> float:
    """Log-log figure of lambda_max(K), lambda_max(K_P), lambda_max(J_s J_s^T) and S
    against the coupling, with the fitted slope of lambda_max(K); returns the slope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.plotting import save_figure

    values = np.array([c for c, _ in entries], dtype=float)
    lam_K = np.array([r.lambda_max_K for _, r in entries])
    lam_P = np.array([r.lambda_max_KP for _, r in entries])
    lo, hi = fit_range if fit_range else (values.min(), values.max())
    chosen = (values >= lo) & (values <= hi)
    slope = fit_slope(values[chosen], lam_K[chosen]) if chosen.sum() >= 2 else math.nan

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.loglog(values, lam_K, "o-", color="C0", label=r"$\lambda_{max}(K)$")
    if math.isfinite(slope):
        fitted = lam_K[chosen][0] * (values[chosen] / values[chosen][0]) ** slope
        ax.loglog(values[chosen], fitted, "--", color="C0", alpha=0.6,
                  label=f"fit: slope {slope:.3f}")
    for s, block in enumerate(entries[0][1].blocks):
        ax.loglog(values, [r.blocks[s].lambda_max for _, r in entries], ":", color=f"C{s + 3}",
                  label=rf"$\lambda_{{max}}(J_s J_s^T)$, {_block_label(block)}")
    S = entries[0][1].n_blocks
    ax.loglog(values, lam_P, "s-", color="C1", label=r"$\lambda_{max}(K_P)$")
    ax.axhline(S, color="C1", lw=0.8, ls="--", label=f"S = {S}")
    xlabel = coupling
    if CASES[case_name].smaller_is_stronger():
        xlabel += " (smaller = stronger coupling)"
        ax.invert_xaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("largest eigenvalue")
    ax.set_title(f"NTK of {case_name} at initialisation")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return slope


def write_csv(path, rows) -> None:
    """``rows`` (dicts) as CSV at ``path``, the columns in order of first appearance."""
    import csv

    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def add_ntk_parser(subparsers):
    """Register ``ntk`` on an argparse ``subparsers`` object (the :mod:`pinn.__main__`
    convention: ``run(args)`` returns the exit status; bad input exits with status 2)."""
    p = subparsers.add_parser(
        "ntk", help="NTK and preconditioned-NTK spectra over a coupling sweep or checkpoints",
        description="lambda_max(K = J J^T) and lambda_max(K_P = sum_s P_s) (pinn.analysis.ntk) at "
                    "initialisation over a coupling sweep, or at training checkpoints.")
    p.add_argument("--case", default="thermo", help="case name (reference.cases)")
    p.add_argument("--coupling", default=None,
                   help="comma-separated values of the case's coupling parameter "
                        "(default: the case's sweep)")
    p.add_argument("--width", type=int, default=None, help="hidden width (default: recipe)")
    p.add_argument("--depth", type=int, default=None, help="hidden layers (default: recipe)")
    p.add_argument("--split", default="per-field", help="networks: per-field | paper | shared")
    p.add_argument("--points", type=int, default=None,
                   help="interior collocation points (default: recipe; J is rows x params)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and points")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help="relative singular-value cutoff of rank(J_s)")
    p.add_argument("--fit-range", default=None,
                   help="LO,HI: fit the slope of lambda_max(K) on these couplings only")
    p.add_argument("--out", default="ntk-results", help="folder of the CSV and the figure")
    p.add_argument("--checkpoint", nargs="+", default=None, metavar="PATH",
                   help="training checkpoints (pinn.training.trainer) to analyse instead of a sweep")
    p.add_argument("--weighted", action="store_true",
                   help="with --checkpoint: apply the run's balancing weights to the rows")

    def run(args) -> int:
        from ..training.checkpoint import CheckpointError

        try:
            return main_ntk(args)
        except (ValueError, CheckpointError) as error:
            p.error(str(error))

    p.set_defaults(run=run)
    return p


def main_ntk(args) -> int:
    """Run the ``ntk`` subcommand: print the table, write CSV (and the figure)."""
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        entries, rows = [], []
        for path in args.checkpoint:
            step, case, report = checkpoint_report(path, n_points=args.points,
                                                   weighted=args.weighted, rtol=args.rtol)
            entries.append((step, report))
            rows.append({"checkpoint": str(path), "case": case.name, "coupling": case.coupling,
                         "coupling_value": case.coupling_value, "step": step,
                         **report_row(report)})
        print(format_table("step", entries))
        write_csv(out / "ntk-checkpoints.csv", rows)
        print(f"wrote {out / 'ntk-checkpoints.csv'}")
        return 0

    case = get_case(args.case)
    couplings = _floats(args.coupling) if args.coupling else list(case.sweep_values)
    fit_range = _floats(args.fit_range) if args.fit_range else None
    if fit_range is not None and len(fit_range) != 2:
        raise ValueError(f"--fit-range takes LO,HI, got {args.fit_range!r}")
    entries = coupling_sweep(args.case, couplings, width=args.width, depth=args.depth,
                             split=args.split, n_points=args.points, seed=args.seed,
                             rtol=args.rtol)
    note = (f"coupling = {case.coupling}: smaller = stronger coupling" if case.smaller_is_stronger()
            else f"coupling = {case.coupling}: larger = stronger")
    print(f"{args.case}: NTK at initialisation (seed {args.seed}, float64, rtol {args.rtol:g})")
    print(format_table(case.coupling, entries, note))
    rows = [{"case": args.case, "coupling": case.coupling, "coupling_value": c, **report_row(r)}
            for c, r in entries]
    write_csv(out / f"ntk-{args.case}.csv", rows)
    if len(entries) >= 2:
        slope = plot_sweep(args.case, case.coupling, entries, out / f"ntk-{args.case}.png",
                           fit_range)
        span = f" on [{fit_range[0]:g}, {fit_range[1]:g}]" if fit_range else ""
        print(f"slope of log lambda_max(K) vs log {case.coupling}{span}: {slope:.4f}")
        print(f"wrote {out / f'ntk-{args.case}.csv'}, {out / f'ntk-{args.case}.png'}")
    else:
        print(f"wrote {out / f'ntk-{args.case}.csv'}")
    return 0
