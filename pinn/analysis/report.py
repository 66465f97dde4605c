"""The suite's report: the coupling-robustness summary of a benchmark JSON, as a terminal
table (:func:`format_summary`) and as Markdown with figures (``python -m pinn report
out.json``). The measure, its intervals and the verdicts are :mod:`pinn.analysis.claims`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from reference.cases import CASES

from .claims import CLAIM_RATIO, claim_of, median, summarise

__all__ = ["format_summary", "summary_of", "summary_markdown", "write_report", "fmt",
           "load_json"]



def fmt(value, spec=".2e") -> str:
    """``value`` formatted with ``spec``, "-" for None."""
    return "-" if value is None else format(value, spec)


def ratio_text(interval: dict | None, unit: str = "x") -> str:
    """"estimate<unit> [low, high]" of an interval over seeds
    (:func:`pinn.analysis.statistics.log_interval`)."""
    if interval is None:
        return "-"
    high = "inf" if interval["high"] is None else f"{interval['high']:.3g}"
    return f"{interval['estimate']:.3g}{unit} [{interval['low']:.3g}, {high}]"


def verdict_text(row: dict) -> str:
    """The tail verdict of a claimed method's row, with the seeds that would decide it."""
    if "tail_verdict" not in row:
        return ""
    more = f" ({row['seeds_needed']} seeds would decide)" if row.get("seeds_needed") else ""
    return f"{row['tail_verdict']}{more}"


def format_summary(summary: dict, deferred: dict | None = None,
                   converged_l2: float | None = None) -> str:
    """A plain-text table: one line per system and method (final-epoch L2 at the weakest and
    strongest coupling, the paper's median final-epoch degradation and its verdict, the
    tail ratio's interval over seeds and its verdict: :mod:`pinn.analysis.claims`), then each
    system's weakest-coupling error of its best method (against ``converged_l2``, the bound
    a verdict needs); ``deferred`` (system -> reason) lists the systems the profile leaves out."""
    width = max([10] + [len(method) for methods in summary.values() for method in methods])
    lines = [f"{'system':<14} {'method':<{width}} {'L2 weak':>9} {'L2 strong':>9} "
             f"{'final ratio':>11}  {'paper protocol':<24} {'tail ratio [95% interval]':<27} "
             "tail verdict"]
    for case, methods in summary.items():
        for method, row in methods.items():
            weak, strong = (row["l2_final"][f"{c:g}"] for c in
                            (row["couplings"][0], row["couplings"][-1]))
            claim = f"{row['claim']}: {row['paper_verdict']}" if "claim" in row else ""
            lines.append(f"{case:<14} {method:<{width}} {fmt(weak):>9} {fmt(strong):>9} "
                         f"{fmt(row['degradation'], '.2f') + 'x':>11}  {claim:<24} "
                         f"{ratio_text(row['tail_interval']):<27} {verdict_text(row)}")
    weakest = []
    for case, methods in summary.items():
        claimed = {m: row for m, row in methods.items() if claim_of(m)}
        if claimed:
            method = min(claimed, key=lambda m: claimed[m]["weak_l2_max"])
            weakest.append(f"{case} {method} {fmt(claimed[method]['weak_l2_max'])}")
    if weakest:
        bound = f" (a verdict needs <= {converged_l2:g})" if converged_l2 else ""
        lines.append(f"weakest coupling, best method, worst seed{bound}: " + "; ".join(weakest))
    unconverged = [case for case, methods in summary.items()
                   if not all(row.get("converged", True) for row in methods.values())]
    if unconverged:
        lines.append(f"unconverged at the weakest coupling (no verdict): {', '.join(unconverged)}")
    for case, reason in (deferred or {}).items():
        lines.append(f"not in this profile: {case}: {reason}")
    seeds = {row["seeds"] for methods in summary.values() for row in methods.values()}
    if seeds == {1}:
        lines.append("tail verdict: a 95 % interval over seeds (pinn/analysis/claims.py); with one seed "
                     "it is unbounded, so every claim is undecided")
    return "\n".join(lines)


# --- the report ----------------------------------------------------------------------------
def _records(data: dict) -> list[dict]:
    records = [run for bench in data.get("benchmarks", [])
               for run in bench.get("extra_info", {}).get("runs", [])]
    if not records:
        raise ValueError("the JSON holds no PINN benchmark records (was it written by "
                         "`pytest suite/ --benchmark-json ...`?)")
    return records


def plot_degradation(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.plotting import save_figure

    cases = list(summary)
    methods = sorted({method for case in cases for method in summary[case]})
    color = {method: f"C{i}" for i, method in enumerate(methods)}  # the same in every panel
    fig, axes = plt.subplots(1, len(cases), figsize=(3.2 * len(cases), 3.0), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for method, row in summary[case].items():
            xs = row["couplings"]
            ys = [row["l2_final"][f"{c:g}"] for c in xs]
            ax.plot(range(len(xs)), [math.nan if y is None else y for y in ys], "o-",
                    label=method, color=color[method])
            ax.set_xticks(range(len(xs)), [f"{c:g}" for c in xs])
        ax.set_yscale("log")
        ax.set_title(case)
        ax.set_xlabel(f"{summary[case][next(iter(summary[case]))]['coupling']} (weak -> strong)")
    axes[0][0].set_ylabel("final relative L2 (avg)")
    handles = [plt.Line2D([], [], color=color[m], marker="o", label=m) for m in methods]
    axes[0][-1].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _plot_fields(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.plotting import save_figure

    cases = sorted({r["case"] for r in records})
    fig, axes = plt.subplots(1, len(cases), figsize=(3.2 * len(cases), 3.0), squeeze=False)
    for ax, case in zip(axes[0], cases):
        runs = [r for r in records if r["case"] == case]
        fields = [f for f in runs[0]["l2_final"] if f != "avg"]
        methods = sorted({r["method"] for r in runs})
        width = 0.8 / len(methods)
        for i, method in enumerate(methods):
            # the strongest coupling of this case in the records
            strong = CASES[case].weak_to_strong([r["coupling_value"] for r in runs])[-1]
            sel = [r for r in runs if r["method"] == method and r["coupling_value"] == strong]
            values = [median([r["l2_final"].get(f) for r in sel]) for f in fields]
            ax.bar([j + i * width for j in range(len(fields))],
                   [math.nan if v is None else v for v in values], width, label=method)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(fields))], fields, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"{case}, strongest coupling", fontsize=9)
    axes[0][0].set_ylabel("final relative L2")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def summary_of(data: dict) -> dict:
    """:func:`pinn.analysis.claims.summarise` of a suite's benchmark JSON ``data``, with the
    claim ratio and convergence bound of the profile that wrote it."""
    meta = data.get("pinn_bench", {})
    return summarise(_records(data), claim_ratio=meta.get("claim_ratio", CLAIM_RATIO),
                     converged_l2=meta.get("converged_l2"))


def summary_markdown(data: dict) -> list[str]:
    """The coupling-robustness table of a suite's benchmark JSON ``data`` as Markdown lines:
    per system and method the final L2 per coupling, the paper protocol and the tail
    verdict, then the systems without a verdict or left out, and each batch's training time.
    The report opens with it, and the README quotes it for the committed smoke JSON
    (tests/test_docs.py checks that the two agree)."""
    meta = data.get("pinn_bench", {})
    summary = summary_of(data)
    lines = ["| system | method | coupling | final L2 per coupling (weak -> strong) "
             "| paper protocol | tail ratio | verdict | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for case, methods in summary.items():
        for method, row in methods.items():
            l2 = ", ".join(f"{c:g}: {fmt(row['l2_final'][f'{c:g}'])}" for c in row["couplings"])
            spread = (f" [{fmt(row['degradation_min'], '.2f')}, "
                      f"{fmt(row['degradation_max'], '.2f')}]" if row["seeds"] > 1 else "")
            paper = f"; {row['claim']}: {row['paper_verdict']}" if "claim" in row else ""
            lines.append(f"| {case} | {method} | {row['coupling']} | {l2} | "
                         f"{fmt(row['degradation'], '.2f')}x{spread}{paper} | "
                         f"{ratio_text(row['tail_interval'])} | **{verdict_text(row)}** | "
                         f"{row['seeds']} |")
    unconverged = [case for case, methods in summary.items()
                   if not all(row.get("converged", True) for row in methods.values())]
    if unconverged:
        lines += ["", f"No verdict where the best method's weakest-coupling L2 is above "
                      f"{meta.get('converged_l2')}: {', '.join(unconverged)}."]
    for case, reason in meta.get("deferred", {}).items():
        lines += ["", f"Not in this profile: {case}: {reason}"]
    times = [f"{bench['extra_info']['case']} {bench['extra_info']['method']} "
             f"{bench['stats']['max']:.0f} s ({len(bench['extra_info']['runs'])} runs)"
             for bench in data.get("benchmarks", []) if "runs" in bench.get("extra_info", {})]
    if times:
        lines += ["", "Training time per batch: " + ", ".join(times) + "."]
    return lines


def load_json(path: Path) -> dict:
    """The JSON document at ``path``; a missing or malformed file is a ValueError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def write_report(json_path, out_dir=None) -> Path:
    """Render ``report.md`` (+ PNG figures) from a suite's benchmark JSON; returns its path."""
    json_path = Path(json_path)
    data = load_json(json_path)
    records = _records(data)
    meta = data.get("pinn_bench", {})
    summary = summary_of(data)
    out_dir = Path(out_dir) if out_dir else json_path.with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_degradation(summary, out_dir / "degradation.png")
    _plot_fields(records, out_dir / "fields.png")

    machine = data.get("machine_info", {})
    lines = [
        f"# PINN coupling-robustness report ({meta.get('profile', 'unknown')} profile)",
        "",
        f"From `{json_path.name}`: {len(records)} runs on {machine.get('node', '?')} "
        f"({machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}), "
        f"device {sorted({r['device'] for r in records})}.",
        "",
        "Degradation = L2_avg at the strongest coupling / at the weakest, per seed. The paper "
        "claims <= 1.1x for SOAP+GN and > 100x for Adam+GN. *Paper protocol*: final-epoch "
        "L2, median over seeds [range]. *Tail*: each run's tail statistic (geometric mean of "
        "its last 10 % of evaluations), geometric mean over seeds [95 % interval]; the "
        "verdict is reproduced / not reproduced only when the whole interval lies on one "
        "side (pinn/analysis/claims.py). A verdict holds for this profile's budget only.",
        "",
    ]
    lines += summary_markdown(data)
    lines += ["", "![degradation](degradation.png)", "",
              "Final relative L2 per field at the strongest coupling:", "",
              "![fields](fields.png)", "", "## Runs", "",
              "| run | status | steps | steps/s | L2_avg final | best | at lowest loss | reference |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["case"], r["coupling_value"], r["method"], r["seed"])):
        lines.append(
            f"| {r['case']} {r['coupling']}={r['coupling_value']:g} {r['method']} s{r['seed']} "
            f"| {r['status']} | {r['steps']} | {fmt(r['steps_per_second'], '.1f')} "
            f"| {fmt(r['L2_avg'])} | {fmt(r['l2_best'].get('avg'))} "
            f"| {fmt(r['l2_lowest_loss'].get('avg'))} | {r['reference']} |")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
