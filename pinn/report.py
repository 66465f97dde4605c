"""Coupling robustness from benchmark results: degradation tables, verdicts, a report.

The paper's measure (paper notes, claim 3): for one system and one method,

    degradation = final L2_avg at the strongest coupling / final L2_avg at the weakest,

and its claim: SOAP+GN degrades <= 1.1x while Adam+GN degrades > 100x. :func:`summarise`
computes it per seed (the median is reported, with the spread) from the runs' records (the
``extra_info["runs"]`` of the suite's benchmarks); ``python -m pinn report out.json``
renders the Markdown report with figures.

A ratio of two unconverged errors says nothing about the claim, so a verdict needs a
converged weak coupling: with ``converged_l2`` set, a system gets verdicts only when every
seed of its best claimed method (lowest median final L2 at the weakest coupling) ends
there at or below ``converged_l2``; otherwise its claims read "unconverged".
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from reference.cases import CASES

__all__ = ["summarise", "format_summary", "write_report", "CLAIMS"]

# method -> (description of the published claim, test on the degradation ratio)
CLAIMS = {
    "soap+gn": ("<= {ratio:g}x", lambda d, ratio: d <= ratio),
    "adam+gn": ("> 100x", lambda d, ratio: d > 100.0),
}


def summarise(records: list[dict], claim_ratio: float = 1.1,
              converged_l2: float | None = None) -> dict:
    """{case: {method: row}} with row = couplings (weak -> strong), final L2_avg per
    coupling (median over seeds), the worst seed's at the weakest (``weak_l2_max``),
    degradation (median over seeds, and min/max), and, for the methods the paper speaks of,
    its claim with a verdict (see the module docstring for ``converged_l2``); ``converged``
    says whether the system's best claimed method met ``converged_l2``."""
    grouped = defaultdict(lambda: defaultdict(dict))   # (case, method) -> seed -> {c: l2}
    for rec in records:
        l2 = rec.get("L2_avg")
        key = (rec["case"], rec["method"])
        grouped[key][rec["seed"]][rec["coupling_value"]] = l2 if l2 is not None else math.nan

    summary: dict = defaultdict(dict)
    for (case, method), by_seed in sorted(grouped.items()):
        couplings = CASES[case].weak_to_strong([c for runs in by_seed.values() for c in runs])
        l2 = {f"{c:g}": _median([runs.get(c, math.nan) for runs in by_seed.values()])
              for c in couplings}
        ratios = [runs[couplings[-1]] / runs[couplings[0]] for runs in by_seed.values()
                  if len(couplings) > 1 and couplings[0] in runs and couplings[-1] in runs]
        ratios = [r for r in ratios if math.isfinite(r)]
        weak = [runs.get(couplings[0], math.nan) for runs in by_seed.values()]
        row = {
            "coupling": CASES[case].coupling,
            "couplings": couplings,
            "l2_final": l2,
            "weak_l2_max": max(weak) if finite(weak) == weak else math.inf,
            "degradation": _median(ratios) if ratios else None,
            "degradation_min": min(ratios) if ratios else None,
            "degradation_max": max(ratios) if ratios else None,
            "seeds": len(by_seed),
        }
        if method in CLAIMS and row["degradation"] is not None:
            text, holds = CLAIMS[method]
            row["claim"] = text.format(ratio=claim_ratio)
            row["verdict"] = ("reproduced" if holds(row["degradation"], claim_ratio)
                              else "not reproduced")
        summary[case][method] = row
    for methods in summary.values():
        claimed = [row for method, row in methods.items() if method in CLAIMS]
        weak = [(row["l2_final"][f"{row['couplings'][0]:g}"], row["weak_l2_max"])
                for row in claimed if row["l2_final"][f"{row['couplings'][0]:g}"] is not None]
        best = min(weak, default=(None, math.inf))[1]
        converged = converged_l2 is None or best <= converged_l2
        for row in methods.values():
            row["converged"] = converged
            if "verdict" in row and not converged:
                row["verdict"] = "unconverged"
    return dict(summary)


def finite(values) -> list:
    """The values that are neither None nor NaN/Inf."""
    return [v for v in values if v is not None and math.isfinite(v)]


def _median(values):
    values = finite(values)
    return statistics.median(values) if values else None


def fmt(value, spec=".2e") -> str:
    """``value`` formatted with ``spec``, "-" for None."""
    return "-" if value is None else format(value, spec)


def format_summary(summary: dict, deferred: dict | None = None,
                   converged_l2: float | None = None) -> str:
    """A plain-text table: one line per system and method, then each system's weakest-
    coupling error of its best method (against ``converged_l2``, the bound a verdict
    needs); ``deferred`` (system -> reason) lists the systems the profile leaves out."""
    lines = [f"{'system':<14} {'method':<10} {'L2 weak':>9} {'L2 strong':>9} "
             f"{'degradation':>11}  claim"]
    for case, methods in summary.items():
        for method, row in methods.items():
            weak, strong = (row["l2_final"][f"{c:g}"] for c in
                            (row["couplings"][0], row["couplings"][-1]))
            claim = f"{row['claim']}: {row['verdict']}" if "claim" in row else ""
            lines.append(f"{case:<14} {method:<10} {fmt(weak):>9} {fmt(strong):>9} "
                         f"{fmt(row['degradation'], '.2f') + 'x':>11}  {claim}")
    weakest = []
    for case, methods in summary.items():
        claimed = {m: row for m, row in methods.items() if m in CLAIMS}
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
    return "\n".join(lines)


# --- the report ----------------------------------------------------------------------------
def _records(data: dict) -> list[dict]:
    records = [run for bench in data.get("benchmarks", [])
               for run in bench.get("extra_info", {}).get("runs", [])]
    if not records:
        raise ValueError("the JSON holds no PINN benchmark records (was it written by "
                         "`pytest suite/ --benchmark-json ...`?)")
    return records


def _plot_degradation(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_fields(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            values = [_median([r["l2_final"].get(f) for r in sel]) for f in fields]
            ax.bar([j + i * width for j in range(len(fields))],
                   [math.nan if v is None else v for v in values], width, label=method)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(fields))], fields, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"{case}, strongest coupling", fontsize=9)
    axes[0][0].set_ylabel("final relative L2")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    claim_ratio = meta.get("claim_ratio", 1.1)
    summary = summarise(records, claim_ratio=claim_ratio, converged_l2=meta.get("converged_l2"))
    out_dir = Path(out_dir) if out_dir else json_path.with_suffix("")
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_degradation(summary, out_dir / "degradation.png")
    _plot_fields(records, out_dir / "fields.png")

    machine = data.get("machine_info", {})
    lines = [
        f"# PINN coupling-robustness report ({meta.get('profile', 'unknown')} profile)",
        "",
        f"From `{json_path.name}`: {len(records)} runs on {machine.get('node', '?')} "
        f"({machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}), "
        f"device {sorted({r['device'] for r in records})}.",
        "",
        "Degradation = final L2_avg at the strongest coupling / at the weakest (median "
        "over seeds; range in brackets). The paper claims <= 1.1x for SOAP+GN and > 100x for "
        "Adam+GN; a verdict holds for this profile's budget only.",
        "",
        "| system | method | coupling | L2 per coupling (weak -> strong) | degradation | claim |",
        "|---|---|---|---|---|---|",
    ]
    for case, methods in summary.items():
        for method, row in methods.items():
            l2 = ", ".join(f"{c:g}: {fmt(row['l2_final'][f'{c:g}'])}" for c in row["couplings"])
            spread = (f" [{fmt(row['degradation_min'], '.2f')}, "
                      f"{fmt(row['degradation_max'], '.2f')}]" if row["seeds"] > 1 else "")
            claim = f"{row['claim']}: **{row['verdict']}**" if "claim" in row else ""
            lines.append(f"| {case} | {method} | {row['coupling']} | {l2} | "
                         f"{fmt(row['degradation'], '.2f')}x{spread} | {claim} |")
    unconverged = [case for case, methods in summary.items()
                   if not all(row.get("converged", True) for row in methods.values())]
    if unconverged:
        lines += ["", f"No verdict where the best method's weakest-coupling L2 is above "
                      f"{meta.get('converged_l2')}: {', '.join(unconverged)}."]
    for case, reason in meta.get("deferred", {}).items():
        lines += ["", f"Not in this profile: {case}: {reason}"]
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
