"""The reproduction study's results page: one small JSON in, docs/results.md out.

    python -m pinn results data/results/study-cpu.json --out docs/results.md
    python -m pinn results data/results/study-cpu.json --collect runs/study-cpu --out docs/results.md

``--collect RUNS`` first gathers every finished run folder under ``RUNS/runs/`` of a sweep
(``pinn/sweep.py``) into the JSON (per run: system, coupling, method, schedule, seed,
status, steps, final / best / at-lowest-loss L2 per field and avg, steps/s; plus the
budget and the machine) and draws the EOF error fields of two runs against the stored
reference. Rendering reads only that JSON (and the NTK study's CSVs, docs/img/ntk-*.csv),
so the page regenerates identically on any machine.

Numbers on the page: mean +- sample std (ddof = 1) over seeds; degradation = final L2_avg
at the strongest coupling / at the weakest, per seed, reported as median [min, max]
(:func:`pinn.report.summarise`); success = status "completed" and final L2_avg below
:data:`SUCCESS_L2`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
from collections import defaultdict
from pathlib import Path

from reference.cases import CASES

from .ntk import fit_slope
from .report import _plot_degradation, finite, fmt, load_json, summarise

__all__ = ["collect", "render", "write_results", "SUCCESS_L2"]

SUCCESS_L2 = 0.1             # a run "succeeds" when its final L2_avg is below this
PAPER_EOF_L2 = 1.3e-3        # claim 4: SOAP+GN at eps = 0.2
EOF_ERROR_CASE = ("eof-straight", 0.2)   # the runs whose error fields are drawn
NTK_DIR = Path(__file__).resolve().parent.parent / "docs" / "img"
LINEAR = ("thermo", "rd-symmetric", "rd-asymmetric")


# --- collecting ------------------------------------------------------------------------------
def _round(value, digits=4):
    """``value`` to ``digits`` significant digits; None for missing or non-finite."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(f"{float(value):.{digits}g}")


def _l2(summary) -> dict:
    return {name: _round(value) for name, value in ((summary or {}).get("l2") or {}).items()}


def _machine() -> str:
    import torch

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()}-core CPU machine ({model}), {platform.system()}, "
            f"torch {torch.__version__}, CPU only; 2 MPI ranks x 1 thread")


def collect(runs_root, machine: str | None = None, img_dir=NTK_DIR) -> dict:
    """The study's JSON from the run folders of a sweep output folder ``runs_root``."""
    runs_root = Path(runs_root)
    runs, budget, starts, ends = [], {}, [], []
    for run_dir in sorted((runs_root / "runs").iterdir()):
        config_path, metrics_path = run_dir / "config.json", run_dir / "metrics.json"
        if not metrics_path.is_file():
            continue                      # not finished (yet)
        config = json.loads(config_path.read_text())
        metrics = json.loads(metrics_path.read_text())
        starts.append(config_path.stat().st_mtime)
        ends.append(metrics_path.stat().st_mtime)
        case = config["case"]
        coupling = CASES[case].coupling
        train_seconds = metrics.get("train_seconds") or 0.0
        runs.append({
            "id": run_dir.name, "system": case, "coupling": coupling,
            "value": config["case_params"][coupling],
            "method": f"{config['optimizer']}+{config['balancing']}",
            "schedule": config["schedule"], "seed": config["seed"],
            "status": metrics["status"], "steps": metrics.get("step"),
            "l2_final": _l2(metrics.get("final")), "l2_best": _l2(metrics.get("best")),
            "l2_lowest_loss": _l2(metrics.get("lowest_loss")),
            "l2_tail": metrics.get("tail"),
            # steps per second of this run's share of its batch's training time
            "steps_per_second": _round(metrics["step"] / train_seconds, 3)
            if train_seconds > 0 else None,
        })
        keys = ("steps", "lr", "width", "depth", "n_points", "balance_every", "warmup_steps",
                "decay_rate", "decay_every", "dtype")
        budget.setdefault(case, {key: config[key] for key in keys})
    if not runs:
        raise ValueError(f"no finished runs under {runs_root / 'runs'}")
    data = {
        "study": "sweeps/study-cpu.toml + sweeps/study-cpu-eof.toml (CPU budget, NOT the "
                 "published one: see the specs)",
        "machine": machine or _machine(),
        "wall_seconds": round(max(ends) - min(starts)),
        "budget": budget,
        "runs": runs,
        "eof_errors": _eof_errors(runs_root, runs, Path(img_dir)),
    }
    return data


def _eof_errors(runs_root: Path, runs: list[dict], img_dir: Path) -> dict:
    """Error fields of the seed-0 constant-rate SOAP+GN and Adam+GN runs of
    :data:`EOF_ERROR_CASE` against the stored DOLFINx reference; figures into ``img_dir``."""
    from reference.store import open_reference, reference_path

    from .analysis import error_fields, plot_error_fields

    system, value = EOF_ERROR_CASE
    out = {}
    for method in ("soap+gn", "adam+gn"):
        match = [r for r in runs if r["system"] == system and r["value"] == value
                 and r["method"] == method and r["schedule"] == "constant" and r["seed"] == 0]
        if not match:
            continue
        case = CASES[system](**{CASES[system].coupling: value})
        ds = error_fields(runs_root / "runs" / match[0]["id"], open_reference(reference_path(case)))
        name = f"results-eof-errors-{method.replace('+', '-')}.png"
        plot_error_fields(ds, img_dir / name)
        scored = [f for f in match[0]["l2_final"] if f != "avg"]   # v, p are 0 in the reference
        out[method] = {"run": match[0]["id"], "figure": name, "fields": {
            f: {key: _round(ds.sel(field=f)[key]) for key in
                ("l2", "max_error", "l2_band", "l2_bulk")} for f in scored}}
    return out


# --- numbers ----------------------------------------------------------------------------------
def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1; 0 for one value) of the finite values."""
    values = finite(values)
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pm(values) -> str:
    mean, std = mean_std(values)
    return "-" if mean is None else f"{mean:.2e} +- {std:.1e}"


def _succeeded(run) -> bool:
    l2 = run["l2_final"].get("avg")
    return run["status"] == "completed" and l2 is not None and l2 < SUCCESS_L2


def groups(runs: list[dict]) -> dict:
    """{(system, method, schedule, coupling value): [runs over seeds]}"""
    out = defaultdict(list)
    for run in runs:
        out[(run["system"], run["method"], run["schedule"], run["value"])].append(run)
    return out


def degradation(runs: list[dict]) -> dict:
    """{schedule: {system: {method: row}}} with the rows of :func:`pinn.report.summarise`."""
    out = {}
    for schedule in sorted({r["schedule"] for r in runs}):
        records = [{"case": r["system"], "method": r["method"], "seed": r["seed"],
                    "coupling_value": r["value"], "L2_avg": r["l2_final"].get("avg")}
                   for r in runs if r["schedule"] == schedule]
        out[schedule] = summarise(records)
    return out


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _ntk_rows() -> dict:
    """{case: [csv rows]} of the NTK study (docs/img/ntk-<case>.csv), where present."""
    return {case: rows for case in sorted(CASES) if (rows := _read_csv(NTK_DIR / f"ntk-{case}.csv"))}


def _ntk_training_text() -> tuple[str, str]:
    """Sentences for claims 1 and 2 from the NTK along training (docs/img/ntk-training.csv,
    scripts/ntk_training.py); empty when that file is absent."""
    by_system = defaultdict(list)
    for row in _read_csv(NTK_DIR / "ntk-training.csv"):
        by_system[row["system"]].append(row)
    if not by_system:
        return "", ""
    steps = max(int(r["step"]) for rows in by_system.values() for r in rows)
    growth = ", ".join(f"{system} {float(rows[-1]['lambda_max_K']) / float(rows[0]['lambda_max_K']):.1f}x"
                       for system, rows in by_system.items())
    kp = [float(r[key]) - float(r["S"]) for rows in by_system.values() for r in rows
          for key in ("lambda_max_KP", "weighted_lambda_max_KP")]
    linear = [system for system, rows in by_system.items() if system in LINEAR
              and all(abs(float(r["lambda_max_KP"]) - float(r["S"])) < 1e-9 for r in rows)]
    return (f" Along one training run per system (docs/ntk.md, \"Along training\"), "
            f"lambda_max(K) grows over {steps} steps: {growth}.",
            f" Along training the bound {'holds' if max(kp) < 1e-9 else 'FAILS'} at every "
            f"checkpoint (weighted or not), and equality persists for {', '.join(linear)}.")


def _slope(rows, low=10.0) -> float | None:
    """Log-log slope of lambda_max(K) on the coupling, couplings >= low."""
    rows = [r for r in rows if float(r["coupling_value"]) >= low]
    if len({r["coupling_value"] for r in rows}) < 2:
        return None
    return fit_slope([float(r["coupling_value"]) for r in rows],
                     [float(r["lambda_max_K"]) for r in rows])


# --- the page ---------------------------------------------------------------------------------
def render(data: dict, json_name: str = "data/results/study-cpu.json") -> str:
    """The Markdown of docs/results.md for the study JSON ``data``."""
    runs = data["runs"]
    deg = degradation(runs)
    systems = [s for s in CASES if any(r["system"] == s for r in runs)]
    lines = [
        "# Reproduction study: the paper's claims under a CPU budget",
        "",
        "Generated by",
        "",
        f"    python -m pinn results {json_name} --out docs/results.md",
        "",
        f"from `{json_name}` ({len(runs)} runs: {data['study']}). Machine: "
        f"{data['machine']}. Wall time of the sweeps: {data['wall_seconds'] / 60:.0f} min.",
        "",
        "**This is not the paper's budget.** The published runs train 4 x 64 networks (1D) "
        "for 60k steps (thermo, reaction-diffusion) or 30k (NPP), and 5 x 128 networks for "
        "50k steps (2D EOF). This study trains 3 x 32 networks for a few thousand steps at "
        "most (table below), so every accuracy here is that of a short run: a verdict "
        "\"not reproduced\" means \"not seen at this budget\", not \"refuted\". The "
        "warmup-exp schedule is scaled to the run length (warmup = steps/60, x0.9 every "
        "steps/30), so it ends at 0.9^30 = 4 % of the base rate as a 60k-step run would: a "
        "short run spends most of its few steps at a small rate.",
        "",
        "| system | steps | lr | networks | points | GN every | warmup-exp (warmup, x0.9 every) |",
        "|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        b = data["budget"][system]
        lines.append(f"| {system} | {b['steps']} | {b['lr']:g} | {b['depth']} x {b['width']} | "
                     f"{b['n_points']} | {b['balance_every']} | {b['warmup_steps']}, "
                     f"{b['decay_every']} |")
    lines += [
        "",
        "How it was run (both sweeps write to runs/study-cpu; rerunning a command resumes it):",
        "",
        "    OMP_NUM_THREADS=1 mpirun -n 2 python -m pinn sweep sweeps/study-cpu-eof.toml",
        "    OMP_NUM_THREADS=1 mpirun -n 2 python -m pinn sweep sweeps/study-cpu.toml",
        f"    python -m pinn results {json_name} --collect runs/study-cpu --out docs/results.md",
        "",
        "Definitions. L2 = relative L2 error averaged over the fields (EOF: phi, c+, c-, u), "
        "on the reference grid; *final* at the last step, *best* the lowest seen at any "
        "evaluation (an oracle), *lowest loss* at the evaluation with the lowest unweighted "
        "loss. Cells: mean +- sample std over seeds. Degradation = final L2 at the strongest "
        "coupling / at the weakest, per seed (same method, schedule and seed), reported as "
        "median [min, max]. Success = status completed and final L2 < "
        f"{SUCCESS_L2:g}. steps/s: optimizer steps per second of a run's share of its "
        "batch's training time (runs of a batch train together, one thread per MPI rank).",
        "",
    ]
    ntk = _ntk_rows()
    lines += _verdicts(data, deg, ntk)
    lines += _degradation_tables(deg)
    lines += _l2_tables(runs, systems)
    lines += _eof_section(data)
    lines += _ntk_section(ntk)
    return "\n".join(lines) + "\n"


def _claim3(deg) -> tuple[str, list[str]]:
    """Verdict and evidence lines for claim 3 (SOAP+GN <= 1.1x, Adam+GN > 100x).

    The verdict is taken on the published (constant) schedule: reproduced when both halves
    hold for every system; partly when one half holds for some system or SOAP+GN degrades
    less than Adam+GN for most systems; else not reproduced. Other schedules are evidence."""
    evidence, summaries, verdict = [], [], "not tested"
    main_schedule = "constant" if "constant" in deg else next(iter(deg), None)
    for schedule, table in deg.items():
        n = soap_ok = adam_ok = soap_less = soap_lower = 0
        for system, methods in table.items():
            soap, adam = methods.get("soap+gn"), methods.get("adam+gn")
            if not soap or not adam or soap["degradation"] is None or adam["degradation"] is None:
                continue
            n += 1
            soap_ok += soap["verdict"] == "reproduced"
            adam_ok += adam["verdict"] == "reproduced"
            soap_less += soap["degradation"] < adam["degradation"]
            strong = f"{soap['couplings'][-1]:g}"
            soap_strong, adam_strong = soap["l2_final"][strong], adam["l2_final"][strong]
            soap_lower += (soap_strong is not None and adam_strong is not None
                           and soap_strong < adam_strong)
            evidence.append(
                f"{system} ({schedule}): SOAP+GN {_ratio(soap)}, Adam+GN {_ratio(adam)}; "
                f"median final L2 at {soap['coupling']} = {strong}: SOAP+GN "
                f"{fmt(soap_strong)}, Adam+GN {fmt(adam_strong)}")
        summaries.append(
            f"`{schedule}`: SOAP+GN <= 1.1x for {soap_ok} of {n} systems, Adam+GN > 100x for "
            f"{adam_ok} of {n}, SOAP+GN degrades less than Adam+GN for {soap_less} of {n} and "
            f"ends more accurate at the strongest coupling for {soap_lower} of {n}")
        if schedule == main_schedule and n:
            if soap_ok == n and adam_ok == n:
                verdict = "reproduced"
            elif soap_ok or adam_ok or 2 * soap_less > n:
                verdict = "partly reproduced"
            else:
                verdict = "not reproduced"
    return verdict, ["; ".join(summaries)] + evidence


def _ratio(row) -> str:
    return (f"{fmt(row['degradation'], '.2f')}x [{fmt(row['degradation_min'], '.2f')}, "
            f"{fmt(row['degradation_max'], '.2f')}]")


def _claim4(data) -> tuple[str, str]:
    runs = [r for r in data["runs"] if r["system"] == "eof-straight" and r["value"] == 0.2]
    if not runs:
        return "not tested", "no eof-straight eps = 0.2 runs in the JSON"
    parts, soap_best, adam_min = [], math.inf, math.inf
    for method in ("soap+gn", "adam+gn"):
        for schedule in ("constant", "warmup-exp"):
            values = [r["l2_final"].get("avg") for r in runs
                      if r["method"] == method and r["schedule"] == schedule]
            mean, _ = mean_std(values)
            if mean is None:
                continue
            parts.append(f"{method} {schedule}: final L2 {_pm(values)}")
            if method == "soap+gn":
                soap_best = min(soap_best, mean)
            else:
                adam_min = min(adam_min, mean)
    if soap_best <= 2 * PAPER_EOF_L2 and adam_min > 0.9:
        verdict = "reproduced"
    elif soap_best < 0.5 * adam_min:
        verdict = "partly reproduced (SOAP+GN clearly ahead, far from 1.3e-3)"
    else:
        verdict = "not reproduced"
    return verdict, "; ".join(parts)


def _verdicts(data, deg, ntk) -> list[str]:
    slopes = {case: _slope(ntk[case]) for case in LINEAR if case in ntk}
    kp = {case: [float(r["lambda_max_KP"]) for r in rows] for case, rows in ntk.items()}
    s_of = {case: int(rows[0]["S"]) for case, rows in ntk.items()}
    linear_eq = [case for case in LINEAR if case in kp
                 and max(abs(v - s_of[case]) for v in kp[case]) < 1e-9]
    other = ", ".join(f"{case} {min(v):.3f}-{max(v):.3f} of S = {s_of[case]}"
                      for case, v in kp.items() if case not in LINEAR)
    c3, c3_evidence = _claim3(deg)
    train1, train2 = _ntk_training_text()
    c4, c4_evidence = _claim4(data)
    slope_text = ", ".join(f"{case} {value:.3f}" for case, value in slopes.items()
                           if value is not None)
    c1 = ("reproduced" if slopes and all(v is not None and v > 1.9 for v in slopes.values())
          else "not reproduced")
    lines = [
        "## Verdicts",
        "",
        f"Runs: {_status_counts(data['runs'])}.",
        "",
        f"1. **NTK grows as gamma^2 (linear systems): {c1}** (docs/ntk.md, measured at "
        f"initialisation, float64). Log-log slope of lambda_max(K) on couplings >= 10: "
        f"{slope_text}; lr_max = 1/lambda_max(K) falls by the same factor. For NPP and EOF "
        "(not linearly coupled in eps) lambda_max(K) hardly moves with eps (small networks "
        f"at initialisation).{train1}",
        f"2. **lambda_max(K_P) = S: partly reproduced.** Equal to S to 1e-9 at every coupling "
        f"for {', '.join(linear_eq)}; below S elsewhere: {other}. The bound <= S always "
        "holds; equality fails for structural reasons (docs/ntk.md: phi enters NPP only "
        "through phi' and phi''; no EOF residual depends on all six networks), so the "
        f"paper's \"equality in every tested case\" is not seen.{train2}",
        f"3. **SOAP+GN <= 1.1x, Adam+GN > 100x degradation: {c3}** at this budget "
        "(verdict on the published constant rate: reproduced = both halves hold for every "
        "system; partly = one half holds for some system, or SOAP+GN degrades less than "
        f"Adam+GN for most systems). {c3_evidence[0]}. Per system below. With {_steps_text(data)} the weak-coupling "
        "errors are themselves far above the published ones, which compresses or inflates "
        "ratios; the ratio of two short-run errors is not the ratio the paper measured. "
        "SOAP's ratios here are also sensitive to rounding: rerunning the study after a "
        "change that only altered the memory layout of SOAP's eigenbases (hence matmul "
        "rounding) moved SOAP medians by up to 4x (thermo SOAP+none constant 12x -> 49x, "
        "rd-symmetric SOAP+GN warmup-exp 72x -> 19x) and left every count above unchanged; "
        "Adam's ratios moved by < 1 %.",
        f"4. **EOF eps = 0.2, SOAP+GN L2 = 1.3e-3, Adam+GN > 0.9: {c4}.** {c4_evidence}. "
        f"{data['budget'].get('eof-straight', {}).get('steps', '?')} steps of 3 x 32 "
        "networks against the published 50k steps of 5 x 128: the published accuracy is out "
        "of reach of this budget by construction.",
        "",
        "Claim 3 evidence, degradation median [min, max] over seeds:",
        "",
    ]
    lines += [f"- {text}" for text in c3_evidence[1:]]
    return lines + [""]


def _status_counts(runs) -> str:
    counts = defaultdict(int)
    for run in runs:
        counts[run["status"]] += 1
    return ", ".join(f"{counts[key]} {key}" for key in sorted(counts))


def _steps_text(data) -> str:
    steps = sorted({b["steps"] for b in data["budget"].values()})
    return " / ".join(str(s) for s in steps) + " steps"


def _degradation_tables(deg) -> list[str]:
    lines = ["## Degradation (strong / weak coupling, final L2_avg)", ""]
    for schedule, table in deg.items():
        name = f"results-degradation-{schedule}.png"
        lines += [f"Schedule `{schedule}`:", "",
                  "| system | method | couplings (weak -> strong) | median final L2 per coupling "
                  "| degradation median [min, max] | seeds |",
                  "|---|---|---|---|---|---|"]
        for system, methods in table.items():
            for method, row in methods.items():
                couplings = ", ".join(f"{c:g}" for c in row["couplings"])
                l2 = ", ".join(fmt(row["l2_final"][f"{c:g}"]) for c in row["couplings"])
                lines.append(f"| {system} | {method} | {row['coupling']} = {couplings} | {l2} | "
                             f"{_ratio(row)} | {row['seeds']} |")
        lines += ["", f"![degradation, {schedule}](img/{name})", ""]
    return lines


def _l2_tables(runs, systems) -> list[str]:
    lines = ["## Final / best / at-lowest-loss L2 per system, method, schedule, coupling", ""]
    grouped = groups(runs)
    for system in systems:
        lines += [f"### {system}", "",
                  f"| method | schedule | {CASES[system].coupling} | final | best | lowest loss "
                  "| success | steps/s |", "|---|---|---|---|---|---|---|---|"]
        keys = [k for k in grouped if k[0] == system]
        values = CASES[system].weak_to_strong([k[3] for k in keys])
        for key in sorted(keys, key=lambda k: (k[1], k[2], values.index(k[3]))):
            sel = grouped[key]
            ok = sum(_succeeded(r) for r in sel)
            speed, _ = mean_std([r["steps_per_second"] for r in sel])
            statuses = sorted({r["status"] for r in sel} - {"completed"})
            note = f" ({', '.join(statuses)})" if statuses else ""
            lines.append(
                f"| {key[1]} | {key[2]} | {key[3]:g} | "
                f"{_pm([r['l2_final'].get('avg') for r in sel])} | "
                f"{_pm([r['l2_best'].get('avg') for r in sel])} | "
                f"{_pm([r['l2_lowest_loss'].get('avg') for r in sel])} | "
                f"{ok}/{len(sel)}{note} | {fmt(speed, '.0f')} |")
        lines.append("")
    return lines


def _eof_section(data) -> list[str]:
    errors = data.get("eof_errors") or {}
    if not errors:
        return []
    system, value = EOF_ERROR_CASE
    lines = [f"## EOF error fields ({system}, eps = {value:g}, seed 0, constant rate)", "",
             "Against the stored DOLFINx reference (`pinn.analysis.error_fields`), the scored "
             "fields (v and p are 0 in the reference, so their relative L2 means nothing; "
             "their maps are in the figures). Band = within 5 Debye lengths (5 eps / sqrt 2) "
             "of a wall: at eps = 0.2 that is the whole channel.", "",
             "| method | field | L2 | max error | L2 band | L2 bulk |", "|---|---|---|---|---|---|"]
    for method, entry in errors.items():
        for name, row in entry["fields"].items():
            lines.append(f"| {method} | {name} | {fmt(row['l2'])} | {fmt(row['max_error'])} | "
                         f"{fmt(row['l2_band'])} | {fmt(row['l2_bulk'])} |")
    lines.append("")
    for method, entry in errors.items():
        lines += [f"{method} (`{entry['run']}`):", "", f"![{method}](img/{entry['figure']})", ""]
    return lines


def _ntk_section(ntk) -> list[str]:
    if not ntk:
        return []
    lines = ["## The NTK study (claims 1-2; numbers from docs/img/ntk-*.csv, see docs/ntk.md)",
             "", "| system | S | coupling | lambda_max(K) | lambda_max(K_P) | lr_max |",
             "|---|---|---|---|---|---|"]
    for case, rows in ntk.items():
        for r in rows:
            lines.append(f"| {case} | {r['S']} | {r['coupling']} = {float(r['coupling_value']):g} "
                         f"| {float(r['lambda_max_K']):.4g} | {float(r['lambda_max_KP']):.6f} "
                         f"| {float(r['lr_max']):.3g} |")
    return lines + [""]


# --- files -------------------------------------------------------------------------------------
def write_results(json_path, out="docs/results.md", collect_from=None, figures=True) -> Path:
    """Write the page (and its degradation figures beside it in img/); with ``collect_from``
    first (re)write the JSON from that sweep output folder."""
    json_path, out = Path(json_path), Path(out)
    img_dir = out.parent / "img"
    if collect_from is not None:
        img_dir.mkdir(parents=True, exist_ok=True)
        data = collect(collect_from, img_dir=img_dir)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1) + "\n")
    data = load_json(json_path)
    text = render(data, json_name=json_path.as_posix())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if figures:
        img_dir.mkdir(parents=True, exist_ok=True)
        for schedule, table in degradation(data["runs"]).items():
            _plot_degradation(table, img_dir / f"results-degradation-{schedule}.png")
    return out
