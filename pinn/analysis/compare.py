"""Result files side by side: ``python -m pinn compare a.json b.json ... [--out table.md]``.

Each file is a suite JSON (``pytest suite/ --benchmark-json``) or a study JSON
(``python -m pinn results collect``), from any machine, method or budget. For every system
(and schedule) one table: per method and coupling the median final L2_avg over seeds and
the median steps/s of each file; per claimed method its degradation under the paper's
protocol and the tail verdict with its interval (:mod:`pinn.analysis.claims`; no verdict where the
weak coupling is unconverged: the suite profile's bound, the results page's for study
files). The files' machines and profiles head the output.

Two files scored against different references (another sha256 for the same case and
coupling) or run under different suite profiles measure different things: that is refused
unless ``allow_mismatch`` (``--allow-mismatch``); so are study files whose budgets differ
for a system both hold.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from reference.cases import CASES

from .claims import CONVERGED_L2, median, summarise
from .report import fmt, load_json, ratio_text

__all__ = ["load_records", "compare"]


def load_records(path) -> tuple[dict, list[dict]]:
    """({"name", "machine", "profile"}, records) of a suite or study JSON; a record has
    case, method, schedule, seed, coupling_value, L2_avg, l2_tail, steps_per_second and
    reference_sha256 (None where the file does not record it)."""
    data = load_json(Path(path))
    name = Path(path).name
    if isinstance(data, dict) and "benchmarks" in data:
        records = [{**run, "schedule": run.get("schedule", "constant")}
                   for bench in data["benchmarks"] for run in bench.get("extra_info", {}).get("runs", [])]
        info = data.get("machine_info", {})
        bench = data.get("pinn_bench", {})
        meta = {"name": name, "profile": bench.get("profile", "?"),
                "converged_l2": bench.get("converged_l2"),
                "machine": f"{info.get('node', '?')} "
                           f"({info.get('cpu', {}).get('brand_raw', info.get('processor', '?'))})"}
    elif isinstance(data, dict) and "runs" in data and "budget" in data:
        records = [{"case": r["system"], "method": r["method"], "schedule": r["schedule"],
                    "seed": r["seed"], "coupling_value": r["value"],
                    "L2_avg": r["l2_final"].get("avg"), "l2_tail": r.get("l2_tail"),
                    "steps_per_second": r.get("steps_per_second"), "reference_sha256": None}
                   for r in data["runs"]]
        meta = {"name": name, "profile": "study", "machine": data["machine"],
                "budget": data["budget"], "converged_l2": CONVERGED_L2}
    else:
        raise ValueError(f"{path} is neither a suite JSON nor a study JSON")
    if not records:
        raise ValueError(f"{path} holds no runs")
    return meta, records


def _check(files: list[tuple[dict, list[dict]]]) -> None:
    profiles = {meta["profile"] for meta, _ in files}
    if len(profiles) > 1:
        raise ValueError(f"the files come from different profiles {sorted(profiles)}: their "
                         "budgets differ (compare them anyway with --allow-mismatch)")
    budgets = [(meta["name"], meta["budget"]) for meta, _ in files if "budget" in meta]
    for name, budget in budgets[1:]:
        first_name, first = budgets[0]
        differ = sorted(case for case in set(budget) & set(first)
                        if any(budget[case][key] != first[case][key]
                               for key in set(budget[case]) & set(first[case])))
        if differ:
            raise ValueError(f"{name} and {first_name} train {differ} on different budgets "
                             "(compare them anyway with --allow-mismatch)")
    seen: dict = {}
    for meta, records in files:
        for r in records:
            sha = r.get("reference_sha256")
            if sha is None:
                continue
            key = (r["case"], r["coupling_value"])
            other = seen.setdefault(key, (sha, meta["name"]))
            if other[0] != sha:
                raise ValueError(
                    f"{meta['name']} scores {key[0]} at {key[1]:g} against another reference "
                    f"than {other[1]} (sha256 {sha[:12]}... vs {other[0][:12]}...): regenerate "
                    "one side's references, or compare anyway with --allow-mismatch")



def compare(paths, allow_mismatch: bool = False) -> str:
    """The Markdown side-by-side table of the files ``paths`` (module docstring)."""
    files = [load_records(path) for path in paths]
    if not allow_mismatch:
        _check(files)
    names = [meta["name"] for meta, _ in files]
    lines = ["Files:", ""] + [f"- `{meta['name']}`: profile {meta['profile']}, "
                              f"{meta['machine']}, {len(records)} runs" for meta, records in files]
    keys = sorted({(r["case"], r["schedule"]) for _, records in files for r in records},
                  key=lambda k: (list(CASES).index(k[0]), k[1]))
    for case, schedule in keys:
        selected = [[r for r in records if r["case"] == case and r["schedule"] == schedule]
                    for _, records in files]
        header = "| method | " + CASES[case].coupling + " | " + " | ".join(
            f"`{n}` final L2 | steps/s" for n in names) + " |"
        lines += ["", f"## {case} ({schedule})", "", header,
                  "|---|---|" + "---|---|" * len(names)]
        cells = defaultdict(dict)
        for i, records in enumerate(selected):
            for r in records:
                cells[(r["method"], r["coupling_value"])].setdefault(i, []).append(r)
        values = CASES[case].weak_to_strong(list({c for _, c in cells}))
        for method, value in sorted(cells, key=lambda k: (k[0], values.index(k[1]))):
            row = []
            for i in range(len(files)):
                runs = cells[(method, value)].get(i, [])
                row += [fmt(median([r["L2_avg"] for r in runs])),
                        fmt(median([r["steps_per_second"] for r in runs]), ".1f")]
            lines.append(f"| {method} | {value:g} | " + " | ".join(row) + " |")
        summaries = [summarise(records, converged_l2=meta["converged_l2"]).get(case, {})
                     for (meta, _), records in zip(files, selected)]
        methods = sorted({m for s in summaries for m in s})
        lines += ["", "| method | " + " | ".join(f"`{n}` degradation (paper) | tail ratio, "
                                                  "tail verdict" for n in names) + " |",
                  "|---|" + "---|---|" * len(names)]
        for method in methods:
            row = []
            for s in summaries:
                r = s.get(method)
                if r is None:
                    row += ["-", "-"]
                    continue
                paper = fmt(r["degradation"], ".3g") + "x"
                if "paper_verdict" in r:
                    paper += f" {r['paper_verdict']}"
                row += [paper, f"{ratio_text(r['tail_interval'])} {r.get('tail_verdict', '')}".strip()]
            lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
