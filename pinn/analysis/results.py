"""The reproduction study's page: one small JSON per budget in, docs/results.md out.

    python -m pinn results collect runs/paper-1d data/results/paper-1d.json [--study TEXT]
    python -m pinn results render STUDY.json [STUDY.json ...] --out docs/results.md

``collect`` gathers the finished run folders of one sweep (``pinn/training/sweep.py``, its
``<output>/runs/``) into a JSON: per run system, coupling, method, schedule, seed, status,
steps, final / best / at-lowest-loss L2 per field and avg, the tail statistic (from the
run's history.csv: :func:`pinn.analysis.statistics.tail`), the L2_avg trajectory, steps/s, and
for a finished EOF run whose double-layer band is thinner than the channel where its error
sits (``band``: l2_band and l2_bulk per field, :func:`pinn.analysis.errors.error_fields`);
plus the budget, the machine and the error fields of the EOF runs of :data:`EOF_ERROR_CASE`
and of the best SOAP+GN seed at the thinnest double layer against the stored reference
(figures into docs/img/). ``render`` reads only the JSONs (and the NTK study's CSVs,
docs/img/ntk-*.csv), so the page regenerates identically on any machine.

The claims and their verdicts are :mod:`pinn.analysis.claims` (claim 3: the paper's protocol and the
tail verdict with intervals over seeds); this module adds claims 1-2 (the NTK study),
claim 4 (the EOF accuracy), what GN buys (each run without balancing against its twin
with GN, :func:`balancing_gain`) and the section on the 2D flow across its coupling range
(the study :data:`COUPLING_RANGE` step by step, with the studies of its budget with another
network split or more steps beside it, :func:`_coupling_section`), and writes the tables.
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

from .claims import (CLAIM_RATIO, CONVERGED_L2, conjunction, finite, judge, median, overall,
                     summarise, system_verdicts)
from .ntk import fit_slope
from ..training.config import TrainConfig
from ..training.recipe import recipe
from ..training.trainer import CONFIG, HISTORY, METRICS
from .report import plot_degradation, fmt, load_json, ratio_text, verdict_text
from .statistics import log_interval, seeds_to_decide, tail

__all__ = ["collect", "render", "write_page", "write_json", "balancing_gain", "SUCCESS_L2"]

SUCCESS_L2 = 0.1             # a run "succeeds" when its final L2_avg is below this
PAPER_EOF_L2 = 1.3e-3        # claim 4: SOAP+GN at eps = 0.2 (reached: within 2x)
PAPER_EOF_ADAM = 0.9         # claim 4: Adam+GN above this
EOF_ERROR_CASE = ("eof-straight", 0.2)   # the runs whose error fields are drawn
THIN_METHOD = "soap+gn"      # whose best seed's error fields are drawn at the thinnest layer
COUPLING_RANGE = "eof-coupling"   # the study (JSON stem) of the section on the 2D coupling range
THIN_TARGET_L2 = 1e-3        # issue 26's goal: THIN_METHOD at the thinnest layer, median over seeds
# The authors' own public thermo script at the published recipe (60k steps, lr 1e-3, 4 x 64,
# seed 42): final L2_avg per method and gamma. Source: the measurement quoted in this
# project's issue 14 (2026-11-28), which named neither the script's file nor the command
# line; nobody here has rerun it at 60k steps (the authors' script was run at 2000 steps on
# 2026-12-05 for speed only). Ours is compared with it where a budget has that recipe, and
# the page says where the figures come from.
AUTHORS_THERMO = {"recipe": {"steps": 60000, "lr": 1e-3, "width": 64, "depth": 4},
                  "final": {"soap+gn": {1: 3.3e-5, 50: 9.5e-5}, "adam+gn": {1: 5.0e-4, 50: 2.4e-3}}}
NTK_DIR = Path(__file__).resolve().parents[2] / "docs" / "img"
LINEAR = ("thermo", "rd-symmetric", "rd-asymmetric")
BUDGET_KEYS = ("steps", "lr", "width", "depth", "split", "n_points", "eval_every",
               "balance_every", "warmup_steps", "decay_rate", "decay_every", "dtype")


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
            f"torch {torch.__version__}")


def _history(run_dir: Path) -> list[dict]:
    """The run's evaluations as [{"step", "l2_avg"}] from its history.csv."""
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return [{"step": int(row["step"]), "l2_avg": float(row["l2_avg"])} for row in rows
            if row.get("l2_avg") not in (None, "")]


def collect(runs_root, study: str, machine: str | None = None, img_dir=NTK_DIR,
            figure_prefix: str = "results") -> dict:
    """The JSON of the finished runs under ``runs_root``/runs (a sweep's output folder);
    ``study`` says in words what these runs are (it heads their section of the page)."""
    runs_root = Path(runs_root)
    if not (runs_root / "runs").is_dir():
        raise ValueError(f"no sweep output at {runs_root} (expected {runs_root / 'runs'})")
    runs, budget, starts, ends = [], {}, [], []
    for run_dir in sorted((runs_root / "runs").iterdir()):
        config_path, metrics_path = run_dir / CONFIG, run_dir / METRICS
        if not metrics_path.is_file():
            continue                      # not finished (yet)
        config = json.loads(config_path.read_text())
        metrics = json.loads(metrics_path.read_text())
        starts.append(config_path.stat().st_mtime)
        ends.append(metrics_path.stat().st_mtime)
        case = config["case"]
        coupling = CASES[case].coupling
        train_seconds = metrics.get("train_seconds") or 0.0
        history = _history(run_dir)
        runs.append({
            "id": run_dir.name, "system": case, "coupling": coupling,
            "value": config["case_params"][coupling],
            "method": f"{config['optimizer']}+{config['balancing']}",
            "schedule": config["schedule"], "seed": config["seed"],
            "status": metrics["status"], "steps": metrics.get("step"),
            "l2_final": _l2(metrics.get("final")), "l2_best": _l2(metrics.get("best")),
            "l2_lowest_loss": _l2(metrics.get("lowest_loss")),
            "l2_tail": ({key: _round(value) if isinstance(value, float) else value
                         for key, value in stats.items()}
                        if (stats := tail(history)) and metrics["status"] == "completed" else None),
            "trajectory": [[row["step"], _round(row["l2_avg"], 3)] for row in history],
            # steps per second of this run's share of its batch's training time
            "steps_per_second": _round(metrics["step"] / train_seconds, 3)
            if train_seconds > 0 else None,
            "band": None,
        })
        budget.setdefault(case, {key: config.get(key) for key in BUDGET_KEYS})
    if not runs:
        raise ValueError(f"no finished runs under {runs_root / 'runs'}")
    for run in runs:
        if run["system"] == EOF_ERROR_CASE[0] and run["status"] == "completed":
            run["band"] = _band(_error_fields(runs_root, run), run)
    img_dir = Path(img_dir)
    return {
        "study": study,
        "machine": machine or _machine(),
        "wall_seconds": round(max(ends) - min(starts)),
        "budget": budget,
        "runs": runs,
        "eof_errors": _eof_errors(runs_root, runs, img_dir, figure_prefix),
        "eof_thin_errors": _thin_errors(runs_root, runs, img_dir, figure_prefix),
    }


def _error_fields(runs_root: Path, run: dict):
    """The error fields of a run (:func:`pinn.analysis.errors.error_fields`) against the
    stored DOLFINx reference of its case."""
    from reference.store import open_reference, reference_path

    from .errors import error_fields

    case = CASES[run["system"]](**{CASES[run["system"]].coupling: run["value"]})
    return error_fields(runs_root / "runs" / run["id"], open_reference(reference_path(case)))


def _scored(run: dict) -> list[str]:
    """The fields a run's relative L2 scores (v, p are 0 in the EOF reference)."""
    return [f for f in run["l2_final"] if f != "avg"]


def _band(ds, run: dict) -> dict | None:
    """Where a run's error sits: the band's share of the channel (by quadrature weight) and
    l2_band, l2_bulk per scored field; None where the band covers the whole channel."""
    if ds.attrs["band_covers_channel"]:
        return None
    return {"fraction": _round(float((ds["weight"] * ds["in_band"]).sum() / ds["weight"].sum())),
            **{key: {f: _round(ds[key].sel(field=f)) for f in _scored(run)}
               for key in ("l2_band", "l2_bulk")}}


def _error_map(runs_root: Path, run: dict, img_dir: Path, name: str) -> dict:
    """Draw the error fields of ``run`` into ``img_dir``/``name``: {"run", "figure", "fields":
    per scored field its l2, max_error, l2_band, l2_bulk}."""
    from .errors import plot_error_fields

    ds = _error_fields(runs_root, run)
    img_dir.mkdir(parents=True, exist_ok=True)
    plot_error_fields(ds, img_dir / name)
    return {"run": run["id"], "figure": name, "fields": {
        f: {key: _round(ds.sel(field=f)[key]) for key in
            ("l2", "max_error", "l2_band", "l2_bulk")} for f in _scored(run)}}


def _eof_errors(runs_root: Path, runs: list[dict], img_dir: Path, prefix: str) -> dict:
    """Error fields of the seed-0 constant-rate SOAP+GN and Adam+GN runs of
    :data:`EOF_ERROR_CASE` against the stored DOLFINx reference; figures into ``img_dir``."""
    system, value = EOF_ERROR_CASE
    out = {}
    for method in ("soap+gn", "adam+gn"):
        match = [r for r in runs if r["system"] == system and r["value"] == value
                 and r["method"] == method and r["schedule"] == "constant" and r["seed"] == 0]
        if match:
            out[method] = _error_map(runs_root, match[0], img_dir,
                                     f"{prefix}-eof-errors-{method.replace('+', '-')}.png")
    return out


def _thin_errors(runs_root: Path, runs: list[dict], img_dir: Path, prefix: str) -> dict:
    """Error fields of the best seed (lowest final L2_avg) of the constant-rate
    :data:`THIN_METHOD` runs at the thinnest double layer whose band is thinner than the
    channel, with its coupling value and seed ({} without such runs); figure into ``img_dir``."""
    thin = [r for r in runs if r["band"] and r["method"] == THIN_METHOD
            and r["schedule"] == "constant" and r["l2_final"].get("avg") is not None]
    if not thin:
        return {}
    system = thin[0]["system"]
    value = CASES[system].weak_to_strong([r["value"] for r in thin])[-1]
    best = min((r for r in thin if r["value"] == value), key=lambda r: r["l2_final"]["avg"])
    name = (f"{prefix}-eof-errors-{CASES[system].coupling}{value:g}-"
            f"{THIN_METHOD.replace('+', '-')}.png")
    return {"value": value, "seed": best["seed"], "method": THIN_METHOD,
            **_error_map(runs_root, best, img_dir, name)}


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


def _tail_geomean(run):
    return (run.get("l2_tail") or {}).get("geomean")


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
    """{schedule: {system: {method: row}}} with the rows of :func:`pinn.analysis.claims.summarise`
    (a verdict needs the weak coupling converged to :data:`pinn.analysis.claims.CONVERGED_L2`)."""
    out = {}
    for schedule in sorted({r["schedule"] for r in runs}):
        records = [{"case": r["system"], "method": r["method"], "seed": r["seed"],
                    "coupling_value": r["value"], "L2_avg": r["l2_final"].get("avg"),
                    "l2_tail": r.get("l2_tail")}
                   for r in runs if r["schedule"] == schedule]
        out[schedule] = summarise(records, converged_l2=CONVERGED_L2)
    return out


def claim4(runs: list[dict]) -> dict | None:
    """Claim 4 on the constant-rate eof-straight eps = 0.2 runs: SOAP+GN reaches the
    published L2 (<= 2 x 1.3e-3) and Adam+GN stays above 0.9. Per half: the paper's protocol
    (mean final L2 over seeds) and the tail verdict (geometric mean of the runs' tail
    statistics with its interval over seeds, :mod:`pinn.analysis.claims`)."""
    system, value = EOF_ERROR_CASE
    halves = {"soap+gn": ("<=", 2 * PAPER_EOF_L2), "adam+gn": (">", PAPER_EOF_ADAM)}
    out = {}
    for method, (side, threshold) in halves.items():
        sel = [r for r in runs if r["system"] == system and r["value"] == value
               and r["method"] == method and r["schedule"] == "constant"]
        if not sel:
            return None
        mean, _ = mean_std([r["l2_final"].get("avg") for r in sel])
        interval = log_interval([_tail_geomean(r) for r in sel])
        verdict = "no tail" if interval is None else judge(interval, side, threshold)
        out[method] = {
            "claim": f"{side} {threshold:g}", "runs": sel, "final_mean": mean,
            "paper_verdict": "no data" if mean is None else judge(
                {"low": mean, "high": mean}, side, threshold),
            "tail_interval": interval, "tail_verdict": verdict,
            "seeds_needed": seeds_to_decide(interval, threshold) if verdict == "undecided"
            else None}
    return {"halves": out, **{key: conjunction([half[key] for half in out.values()])
                              for key in ("paper_verdict", "tail_verdict")}}


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
def render(studies: list[tuple[str, dict]]) -> str:
    """The Markdown of docs/results.md for the studies [(JSON path as named on the page,
    its data)], one section per budget."""
    names = " ".join(name for name, _ in studies)
    lines = [
        "# Reproduction study: the paper's claims on this project's budgets",
        "",
        "Generated by",
        "",
        f"    python -m pinn results render {names} --out docs/results.md",
        "",
        "from the committed JSONs, one per budget (each written by `python -m pinn results "
        "collect` from a sweep's run folders; the sweep spec named in each section says how "
        "its runs were trained). A verdict holds for its budget only: a claim \"not "
        "reproduced\" on a budget far below the published one means \"not seen at this "
        "budget\".",
        "",
        "Definitions. L2 = relative L2 error averaged over the fields (EOF: phi, c+, c-, u), "
        "on the reference grid; *final* at the last step, *best* the lowest seen at any "
        "evaluation (an oracle), *lowest loss* at the evaluation with the lowest unweighted "
        "loss, *tail* the geometric mean of the last 10 % of a run's evaluations (at least 3; "
        "pinn/analysis/statistics.py). Degradation = L2 at the strongest coupling / at the weakest, "
        "per seed (same method, schedule and seed). Two verdicts per claim (pinn/analysis/claims.py): "
        "the **paper's protocol** compares the median final-epoch degradation over seeds with "
        "the threshold; the **tail verdict** takes the seeds' tail degradations, their "
        "geometric mean and 95 % t-interval on the log scale, and says *reproduced* or *not "
        "reproduced* only when the whole interval lies on one side of the threshold, "
        "*undecided* otherwise (with the number of seeds that would decide it at the observed "
        "spread). No verdict (*unconverged*) where the best claimed method's worst seed ends "
        f"the weakest coupling above L2 = {CONVERGED_L2:g}: a ratio of unconverged errors "
        "compares noise. Cells: mean +- sample std over seeds. Success = status completed and "
        f"final L2 < {SUCCESS_L2:g}. steps/s: optimizer steps per second of a run's share of "
        "its batch's training time.",
        "",
    ]
    ntk = _ntk_rows()
    lines += _verdicts(studies, ntk)
    for name, data in studies:
        lines += _study_section(name, data)
    lines += _coupling_section(studies)
    if len(studies) > 1:
        lines += _comparison(studies)
    lines += _balancing_section(studies)
    lines += _ntk_section(ntk)
    return "\n".join(lines) + "\n"


def _claims_12(ntk) -> list[str]:
    slopes = {case: _slope(ntk[case]) for case in LINEAR if case in ntk}
    kp = {case: [float(r["lambda_max_KP"]) for r in rows] for case, rows in ntk.items()}
    s_of = {case: int(rows[0]["S"]) for case, rows in ntk.items()}
    equal = [case for case in kp if max(abs(v - s_of[case]) for v in kp[case]) < 1e-9]
    bound = all(max(v) <= s_of[case] + 1e-9 for case, v in kp.items())
    other = ", ".join(f"{case} {min(v):.3f}-{max(v):.3f} of S = {s_of[case]}"
                      for case, v in kp.items() if case not in equal)
    train1, train2 = _ntk_training_text()
    slope_text = ", ".join(f"{case} {value:.3f}" for case, value in slopes.items()
                           if value is not None)
    c1 = ("reproduced" if slopes and all(v is not None and v > 1.9 for v in slopes.values())
          else "not reproduced")
    c2 = ("not reproduced" if not bound or not equal else
          "reproduced" if len(equal) == len(kp) else "partly reproduced")
    return [
        f"1. **NTK grows as gamma^2 (linear systems): {c1}** (docs/ntk.md, measured at "
        f"initialisation, float64; reproduced when every log-log slope of lambda_max(K) on "
        f"couplings >= 10 exceeds 1.9). Slopes: {slope_text}; lr_max = 1/lambda_max(K) falls "
        "by the same factor. For NPP and EOF (not linearly coupled in eps) lambda_max(K) "
        f"hardly moves with eps (small networks at initialisation).{train1}",
        f"2. **lambda_max(K_P) = S: {c2}** (reproduced: equal to S to 1e-9 for every "
        "system; partly: for some, the bound <= S holding for all), measured where the "
        "networks are over-parameterised for their collocation rows (docs/ntk.md: 32 x 2 "
        "networks, 4 points), so that each field's Jacobian block has full row rank. At the "
        "recipe's size (64 x 4, 200 points) the blocks are numerically rank-deficient and "
        "thermo's lambda_max(K_P) lies below S, nearest it at the strongest coupling "
        "(docs/ntk.md, \"At the recipe's size\"). The bound <= S "
        f"{'holds' if bound else 'FAILS'}; equal for {', '.join(equal) or 'none'}"
        + (f"; below S: {other} (docs/ntk.md: phi enters NPP only through phi' and phi''; no "
           "EOF residual depends on all six networks)" if other else "") + f".{train2}",
    ]


def _verdicts(studies, ntk) -> list[str]:
    lines = ["## Verdicts", ""]
    lines += _claims_12(ntk) if ntk else ["1-2. (no NTK study CSVs in docs/img)"]
    lines += ["", "Claims 3 and 4 per budget (published constant rate; claim 3 counts systems, "
              "both halves per system):", "",
              "| budget | claim | paper's protocol | tail verdict |", "|---|---|---|---|"]
    for name, data in studies:
        deg = degradation(data["runs"]).get("constant", {})
        cells = []
        for key in ("paper_verdict", "tail_verdict"):
            per_system = system_verdicts(deg, key)
            counts = ", ".join(f"{v} {list(per_system.values()).count(v)}"
                               for v in sorted(set(per_system.values())))
            cells.append(f"**{overall(list(per_system.values()))}** ({counts})"
                         if per_system else "-")
        if _has_claim3(deg):
            lines.append(f"| `{_stem(name)}` | 3: SOAP+GN <= 1.1x, Adam+GN > 100x | "
                         f"{cells[0]} | {cells[1]} |")
        c4 = claim4(data["runs"])
        if c4:
            cells = [f"**{c4[key]}** (" + ", ".join(f"{_label(method)} {half[key]}"
                                                     for method, half in c4["halves"].items())
                     + ")" for key in ("paper_verdict", "tail_verdict")]
            lines.append(f"| `{_stem(name)}` | 4: EOF eps 0.2, SOAP+GN <= "
                         f"{2 * PAPER_EOF_L2:g}, Adam+GN > {PAPER_EOF_ADAM:g} | "
                         f"{cells[0]} | {cells[1]} |")
    return lines + [""]


def _has_claim3(table) -> bool:
    """Whether a {system: {method: row}} degradation table has a row of a claimed method."""
    return any("claim" in row for methods in table.values() for row in methods.values())


def _budget_table(data) -> list[str]:
    warmup = any(r["schedule"] == "warmup-exp" for r in data["runs"])
    lines = ["| system | steps | lr | networks | points | eval every | GN every "
             + ("| warmup-exp (warmup, x0.9 every) |" if warmup else "|"),
             "|---|---|---|---|---|---|---|" + ("---|" if warmup else "")]
    for system in [s for s in CASES if s in data["budget"]]:
        b = data["budget"][system]
        split = (f", split {b['split']}" if b.get("split") not in (None, TrainConfig.split)
                 else "")
        lines.append(f"| {system} | {b['steps']} | {b['lr']:g} | "
                     f"{b['depth']} x {b['width']}{split} | "
                     f"{b['n_points'] or recipe(system).n_points} | "
                     f"{b.get('eval_every') or '-'} | {b['balance_every']} |"
                     + (f" {b['warmup_steps']}, {b['decay_every']} |" if warmup else ""))
    return lines + [""]


def _study_section(name, data) -> list[str]:
    runs = data["runs"]
    deg = degradation(runs)
    systems = [s for s in CASES if any(r["system"] == s for r in runs)]
    lines = [f"## Budget `{_stem(name)}`", "", data["study"], "",
             f"`{name}`: {len(runs)} runs ({_status_counts(runs)}). Machine: "
             f"{data['machine']}. Wall time from the first run's start to the last run's "
             f"end: {data['wall_seconds'] / 3600:.1f} h.", ""]
    lines += _budget_table(data)
    lines += _degradation_tables(deg, _stem(name))
    c4 = claim4(runs)
    if c4:
        lines += _claim4_section(c4, _stem(name))
    lines += _authors_check(data)
    lines += _l2_tables(runs, systems)
    lines += _eof_section(data)
    return lines


def _label(method: str) -> str:
    """"soap+gn" -> "SOAP+GN", "adam+none" -> "Adam+none", "soap" -> "SOAP"."""
    optimizer, plus, balancing = method.partition("+")
    return f"{'SOAP' if optimizer == 'soap' else optimizer.capitalize()}{plus}" + (
        balancing.upper() if balancing in ("gn", "lra") else balancing)


def _stem(name) -> str:
    return Path(name).stem


def _status_counts(runs) -> str:
    counts = defaultdict(int)
    for run in runs:
        counts[run["status"]] += 1
    return ", ".join(f"{counts[key]} {key}" for key in sorted(counts))


def _range(row) -> str:
    return (f"{fmt(row['degradation'], '.3g')}x [{fmt(row['degradation_min'], '.3g')}, "
            f"{fmt(row['degradation_max'], '.3g')}]")


def _degradation_tables(deg, stem) -> list[str]:
    lines = []
    for schedule, table in deg.items():
        table = {system: {m: row for m, row in methods.items() if len(row["couplings"]) > 1}
                 for system, methods in table.items()}
        table = {system: methods for system, methods in table.items() if methods}
        if not table:
            continue        # one coupling per system: no degradation to speak of
        lines += [f"Degradation, schedule `{schedule}`:", ""] + _degradation_header("system")
        for system, methods in table.items():
            for method, row in methods.items():
                lines.append(_degradation_row(system, method, row))
        lines += ["", f"![degradation, {schedule}](img/{stem}-degradation-{schedule}.png)", ""]
    return lines


def _degradation_header(first: str) -> list[str]:
    """The head of a degradation table whose first column is ``first``."""
    return [f"| {first} | method | couplings (weak -> strong) | median final L2 per coupling "
            "| final-epoch degradation, median [min, max] | paper's protocol "
            "| tail degradation [95 % interval] | tail verdict | seeds |",
            "|---|---|---|---|---|---|---|---|---|"]


def _degradation_row(first: str, method: str, row: dict) -> str:
    """A row of :func:`pinn.analysis.claims.summarise` under :func:`_degradation_header`."""
    couplings = ", ".join(f"{c:g}" for c in row["couplings"])
    l2 = ", ".join(fmt(row["l2_final"][f"{c:g}"]) for c in row["couplings"])
    paper = f"{row['claim']}: {row['paper_verdict']}" if "claim" in row else ""
    return (f"| {first} | {method} | {row['coupling']} = {couplings} | {l2} | {_range(row)} | "
            f"{paper} | {ratio_text(row['tail_interval'])} | {verdict_text(row)} | "
            f"{row['seeds']} |")


def _trajectories(c4) -> list[tuple[str, dict]]:
    """(method, run) of claim 4's runs that record their L2 trajectory, by seed."""
    return [(method, r) for method, half in c4["halves"].items()
            for r in sorted(half["runs"], key=lambda r: r["seed"]) if r.get("trajectory")]


def plot_trajectories(c4, path: Path) -> None:
    """L2_avg against the step, one line per claim-4 run, and the published 1.3e-3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.plotting import save_figure

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    colors = {}
    for method, r in _trajectories(c4):
        first = method not in colors            # one legend entry per method
        color = colors.setdefault(method, f"C{len(colors)}")
        steps, values = zip(*r["trajectory"])
        ax.plot(steps, values, color=color, lw=1, label=f"{method} (seeds)" if first else None)
    ax.axhline(PAPER_EOF_L2, color="k", ls=":", lw=1, label="published SOAP+GN")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("L2_avg (eof-straight, eps 0.2)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _claim4_section(c4, stem) -> list[str]:
    system, value = EOF_ERROR_CASE
    lines = [f"Claim 4 ({system}, eps = {value:g}, constant rate): paper's protocol "
             f"**{c4['paper_verdict']}**, tail verdict **{c4['tail_verdict']}**.", "",
             "| method | claim | seed | final | best | lowest loss | tail [spread] |",
             "|---|---|---|---|---|---|---|"]
    for method, half in c4["halves"].items():
        for r in sorted(half["runs"], key=lambda r: r["seed"]):
            t = r.get("l2_tail") or {}
            lines.append(f"| {method} | {half['claim']} | {r['seed']} | "
                         f"{fmt(r['l2_final'].get('avg'))} | {fmt(r['l2_best'].get('avg'))} | "
                         f"{fmt(r['l2_lowest_loss'].get('avg'))} | {fmt(t.get('geomean'))} "
                         f"[{fmt(t.get('spread'), '.2f')}] |")
        interval = half["tail_interval"]
        lines.append(f"| {method} | | all | mean {fmt(half['final_mean'])}: "
                     f"{half['paper_verdict']} | | | {ratio_text(interval, unit='')}: "
                     f"{verdict_text(half)} |")
    runs = _trajectories(c4)
    if runs:
        steps = sorted({step for _, r in runs for step, _ in r["trajectory"]})
        values = [dict(map(tuple, r["trajectory"])) for _, r in runs]
        lines += ["", f"![L2 trajectories](img/{stem}-eof-trajectory.png)", "",
                  "L2_avg at every evaluation:", "",
                  "| step | " + " | ".join(f"{m} s{r['seed']}" for m, r in runs) + " |",
                  "|---|" + "---|" * len(runs)]
        lines += [f"| {step} | " + " | ".join(fmt(v.get(step), ".1e") for v in values) + " |"
                  for step in steps]
    return lines + [""]


def _authors_check(data) -> list[str]:
    """Our thermo runs against the authors' script at the same recipe (AUTHORS_THERMO): the
    authors' final value against our seeds' final values, and against the range our runs'
    L2_avg sweeps over their tails (the last 10 % of evaluations), where a final value
    may land."""
    budget = data["budget"].get("thermo", {})
    if any(budget.get(key) != value for key, value in AUTHORS_THERMO["recipe"].items()):
        return []
    lines = ["Cross-check: thermo at the published recipe against a measurement of the "
             "authors' own public script quoted in this project's issue 14 (seed 42, final "
             "L2_avg; the script's file and command line were not recorded, and it has not "
             "been rerun here at this budget). *Tails*: the range our runs' "
             "L2_avg covers over their last 10 % of evaluations, where any one final value "
             "may land.", "",
             "| method | gamma | authors | ours: final, median [min, max] over seeds | ours: "
             "tails [min, max] | authors within | degradation 1 -> 50: authors; ours final, "
             "median [min, max]; ours tail |", "|---|---|---|---|---|---|---|"]
    for method, theirs in AUTHORS_THERMO["final"].items():
        ours = {g: [r for r in data["runs"] if r["system"] == "thermo" and r["value"] == g
                    and r["method"] == method and r["schedule"] == "constant"] for g in theirs}
        by_seed = {g: {r["seed"]: r for r in runs} for g, runs in ours.items()}
        seeds = [s for s in by_seed[1] if s in by_seed[50]]
        ratios = finite([by_seed[50][s]["l2_final"].get("avg") / by_seed[1][s]["l2_final"]["avg"]
                         for s in seeds if by_seed[1][s]["l2_final"].get("avg")
                         and by_seed[50][s]["l2_final"].get("avg") is not None])
        tail_ratio = log_interval([_tail_geomean(by_seed[50][s]) / _tail_geomean(by_seed[1][s])
                                   for s in seeds if _tail_geomean(by_seed[1][s])
                                   and _tail_geomean(by_seed[50][s])])
        for g, value in theirs.items():
            finals = finite([r["l2_final"].get("avg") for r in ours[g]])
            tails = [r["l2_tail"] for r in ours[g] if r.get("l2_tail")]
            if not finals:
                continue
            low, high = (min(t["min"] for t in tails), max(t["max"] for t in tails)) if tails \
                else (min(finals), max(finals))
            within = ("final range" if min(finals) <= value <= max(finals) else
                      "tails" if low <= value <= high else "no")
            degradation = (f"{theirs[50] / theirs[1]:.3g}x; {statistics.median(ratios):.3g}x "
                           f"[{min(ratios):.3g}, {max(ratios):.3g}]; {ratio_text(tail_ratio)}"
                           if ratios and g == 50 else "")
            lines.append(f"| {method} | {g:g} | {value:.2g} | {statistics.median(finals):.2g} "
                         f"[{min(finals):.2g}, {max(finals):.2g}] | [{low:.2g}, {high:.2g}] | "
                         f"{within} | {degradation} |")
    return lines + [""] if len(lines) > 4 else []


def _l2_tables(runs, systems) -> list[str]:
    lines = []
    grouped = groups(runs)
    for system in systems:
        lines += [f"{system}: final / best / at-lowest-loss / tail L2_avg", "",
                  f"| method | schedule | {CASES[system].coupling} | final | best | lowest loss "
                  "| tail | success | steps/s |", "|---|---|---|---|---|---|---|---|---|"]
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
                f"{_pm([_tail_geomean(r) for r in sel])} | "
                f"{ok}/{len(sel)}{note} | {fmt(speed, '.0f')} |")
        lines.append("")
    return lines


def _eof_section(data) -> list[str]:
    errors = data.get("eof_errors") or {}
    if not errors:
        return []
    system, value = EOF_ERROR_CASE
    lines = [f"EOF error fields ({system}, eps = {value:g}, seed 0, constant rate) against the "
             "stored DOLFINx reference (`pinn.analysis.errors.error_fields`), the scored fields (v and "
             "p are 0 in the reference, so their relative L2 means nothing; their maps are in "
             "the figures). Band = within 5 Debye lengths (5 eps / sqrt 2) of a wall: at eps = "
             "0.2 that is the whole channel.", "",
             "| method | field | L2 | max error | L2 band | L2 bulk |", "|---|---|---|---|---|---|"]
    for method, entry in errors.items():
        for name, row in entry["fields"].items():
            lines.append(f"| {method} | {name} | {fmt(row['l2'])} | {fmt(row['max_error'])} | "
                         f"{fmt(row['l2_band'])} | {fmt(row['l2_bulk'])} |")
    lines.append("")
    for method, entry in errors.items():
        lines += [f"{method} (`{entry['run']}`):", "", f"![{method}](img/{entry['figure']})", ""]
    return lines


def _eof_budget(data) -> dict | None:
    """A study's budget of the EOF system; a JSON collected before the split was recorded
    trained the default split."""
    budget = data["budget"].get(EOF_ERROR_CASE[0])
    return budget and {**budget, "split": budget.get("split") or TrainConfig.split}


def _coupling_studies(studies):
    """(base, splits, longer) for the section on the 2D coupling range, each study as
    {"name", "budget", "runs" (its constant-rate EOF runs), "thin" (its eof_thin_errors)}:
    the study :data:`COUPLING_RANGE`, the studies of its budget with another network split,
    and those of its budget with more steps; base None when it is not among ``studies``."""
    def entry(name, data):
        return {"name": name, "budget": _eof_budget(data), "thin": data.get("eof_thin_errors"),
                "runs": [r for r in data["runs"] if r["system"] == EOF_ERROR_CASE[0]
                         and r["schedule"] == "constant"]}

    named = [entry(name, data) for name, data in studies if _eof_budget(data)]
    base = next((s for s in named if _stem(s["name"]) == COUPLING_RANGE), None)
    if base is None:
        return None, [], []

    def differs(study):
        return {key for key in BUDGET_KEYS if study["budget"].get(key) != base["budget"].get(key)}

    return (base, [s for s in named if differs(s) == {"split"}],
            [s for s in named if differs(s) == {"steps"}
             and s["budget"]["steps"] > base["budget"]["steps"]])


def _select(runs, method, value) -> list[dict]:
    """The runs of ``method`` at the coupling ``value``."""
    return [r for r in runs if r["method"] == method and r["value"] == value]


def _median_range(values, spec=".2e") -> str:
    """"median [min, max]" of the finite values."""
    values = finite(values)
    if not values:
        return "-"
    return (f"{fmt(statistics.median(values), spec)} [{fmt(min(values), spec)}, "
            f"{fmt(max(values), spec)}]")


def _band_share(run, field) -> float | None:
    """The share of a run's squared error of ``field`` that lies in the double-layer band."""
    band, bulk = (run["band"][key].get(field) for key in ("l2_band", "l2_bulk"))
    if band is None or bulk is None or band == bulk == 0:
        return None
    return band**2 / (band**2 + bulk**2)


def _pair_table(runs, pair) -> dict:
    """{method: row} of :func:`degradation` on the runs at the two couplings ``pair``."""
    return degradation([r for r in runs if r["value"] in pair]).get("constant", {}).get(
        EOF_ERROR_CASE[0], {})


def _targets(base, others, longer, values, tables) -> list[str]:
    """Issue 26's targets (goals, not tests) against the measured numbers of ``base`` (and
    of the ``longer`` runs, the runs above 0.9 of ``others`` too), with the measured reason
    where one is missed; ``tables``: {(weak, strong): {method: row}} of :func:`_pair_table`."""
    system = EOF_ERROR_CASE[0]
    coupling = CASES[system].coupling
    runs = base["runs"]
    weak, thin = values[0], values[-1]
    soap, adam = THIN_METHOD, "adam+gn"
    sel = _select(runs, soap, thin)
    value = median([r["l2_final"].get("avg") for r in sel])
    lines = ["Against the targets of issue 26 (goals, not tests):", ""]
    text = (f"- {_label(soap)} at {coupling} = {thin:g}, median final L2_avg over {len(sel)} "
            f"seeds <= {THIN_TARGET_L2:g}: **{_met(value)}**, {fmt(value)}")
    for study in longer:
        more = median([r["l2_final"].get("avg") for r in _select(study["runs"], soap, thin)])
        if more is not None:
            text += (f"; after {study['budget']['steps']} steps (`{_stem(study['name'])}`) "
                     f"{fmt(more)}, **{_met(more)}**")
    if value is not None and value > THIN_TARGET_L2:
        fields = _scored(sel[0])
        medians = {f: median([r["l2_final"].get(f) for r in sel]) for f in fields}
        worst = max(medians, key=lambda f: medians[f] or 0.0)
        share = median([r["l2_final"][worst] / (len(fields) * r["l2_final"]["avg"])
                        for r in sel if r["l2_final"].get(worst) is not None
                        and r["l2_final"].get("avg")])
        text += (f". Measured reason: {worst} carries {share:.0%} of L2_avg (median L2 per "
                 "field: " + ", ".join(f"{f} {fmt(v)}" for f, v in medians.items()) + ")")
        banded = [r for r in sel if r.get("band")]
        if banded:
            in_band = median([_band_share(r, worst) for r in banded])
            fraction = median([r["band"]["fraction"] for r in banded])
            text += (f"; of {worst}'s squared error {in_band:.0%} lies in the band within 5 "
                     f"Debye lengths of a wall, {fraction:.0%} of the channel, and "
                     f"{1 - in_band:.0%} in the bulk beyond it")
            if in_band < 1:
                density = in_band / fraction / ((1 - in_band) / (1 - fraction))
                text += (f": per unit of channel {density:.2g}x as much in the band as in the "
                         "bulk")
            text += " (table and map below)"
    lines.append(text + ".")
    row = tables.get((weak, thin), {}).get(soap, {})
    if "tail_verdict" in row:
        text = (f"- {_label(soap)}'s degradation {coupling} {weak:g} -> {thin:g} <= "
                f"{CLAIM_RATIO:g}x by the tail interval: **{verdict_text(row)}**, tail "
                f"{ratio_text(row['tail_interval'])} (paper's protocol: "
                f"{fmt(row['degradation'], '.3g')}x, {row['paper_verdict']})")
        steps = [(a, b) for a, b in zip(values, values[1:])
                 if (tables[(a, b)].get(soap) or {}).get("tail_interval")]
        if row["tail_verdict"] != "reproduced" and steps:
            largest = max(steps, key=lambda ab: tables[ab][soap]["tail_interval"]["estimate"])
            text += (". Step by step, tail ratio [95 % interval]: " + "; ".join(
                f"{a:g} -> {b:g}: {ratio_text(tables[(a, b)][soap]['tail_interval'])}"
                for a, b in steps) + f"; the largest step is {largest[0]:g} -> {largest[1]:g}")
        lines.append(text + ".")
    medians = {v: median([r["l2_final"].get("avg") for r in _select(runs, adam, v)])
               for v in values}
    above = [f"{v:g}" for v, m in medians.items() if m is not None and m > PAPER_EOF_ADAM]
    single = [f"`{_stem(s['name'])}` {coupling} {r['value']:g} seed {r['seed']} "
              f"({fmt(r['l2_final']['avg'], '.3g')})" for s in [base] + others
              for r in s["runs"] if r["method"] == adam
              and (r["l2_final"].get("avg") or 0.0) > PAPER_EOF_ADAM]
    lines.append(f"- {_label(adam)} above {PAPER_EOF_ADAM:g} (the paper's \"fails entirely\"): "
                 "median final L2_avg " + ", ".join(f"{coupling} {v:g}: {fmt(m)}"
                                                    for v, m in medians.items())
                 + f"; the median ends above {PAPER_EOF_ADAM:g} at "
                 + (f"{coupling} = {', '.join(above)}" if above else "no coupling")
                 + "; single runs above it: " + ("; ".join(single) if single else "none") + ".")
    return lines + [""]


def _met(value) -> str:
    """Whether a median final L2_avg meets :data:`THIN_TARGET_L2`."""
    return "no data" if value is None else "met" if value <= THIN_TARGET_L2 else "missed"


def _coupling_section(studies) -> list[str]:
    """The 2D flow across its coupling range: the study :data:`COUPLING_RANGE` step by step
    and over the whole range with the verdicts of :mod:`pinn.analysis.claims`, its errors per
    field and where they sit, beside the same budget with another split and with more steps
    (:func:`_coupling_studies`), and issue 26's targets."""
    base, splits, longer = _coupling_studies(studies)
    if base is None or not base["runs"]:
        return []
    system = EOF_ERROR_CASE[0]
    coupling = CASES[system].coupling
    values = CASES[system].weak_to_strong([r["value"] for r in base["runs"]])
    steps = list(zip(values, values[1:]))
    whole = [(values[0], values[-1])] if len(steps) > 1 else []
    tables = {pair: _pair_table(base["runs"], pair) for pair in steps + whole}
    everything = [base] + splits + longer
    b = base["budget"]
    methods = sorted({r["method"] for r in base["runs"]}, key=_first)
    lines = [f"## The 2D flow across its coupling range: {system}, {coupling} {values[0]:g} -> "
             f"{values[-1]:g}", "",
             f"`{base['name']}` ({len(base['runs'])} runs): {system} at {coupling} = "
             f"{', '.join(f'{v:g}' for v in values)} (weak -> strong: the Debye length eps / "
             "sqrt 2 thins toward the walls), "
             f"{' and '.join(_label(m) for m in methods)}, "
             f"{len({r['seed'] for r in base['runs']})} seeds, its budget section above "
             f"({b['steps']} steps, {_networks(b['split'])} networks of {b['depth']} x "
             f"{b['width']}: split {b['split']})."
             + "".join(f" `{s['name']}`: the same budget with split {s['budget']['split']}, "
                       f"{_networks(s['budget']['split'])} networks ({len(s['runs'])} runs)."
                       for s in splits)
             + "".join(f" `{s['name']}`: the same budget continued to {s['budget']['steps']} "
                       f"steps ({len(s['runs'])} runs)." for s in longer)
             + " The verdicts are those of the top of the page (pinn/analysis/claims.py), taken "
             "over each step and over the whole range.", ""]
    lines += _targets(base, splits + longer, longer, values, tables)
    lines += ["Degradation step by step and over the whole range (constant rate). A step whose "
              "weaker coupling the better claimed method does not end below L2 = "
              f"{CONVERGED_L2:g} in every seed gets no verdict (unconverged, as at the top of "
              "the page); its ratios still say how much the error grows.", ""]
    lines += _degradation_header("step")
    for method in methods:
        for pair, table in tables.items():
            if method in table:
                label = "whole range" if pair in whole else f"{pair[0]:g} -> {pair[1]:g}"
                lines.append(_degradation_row(label, method, table[method]))
    lines += [""] + _field_table(everything) + _band_table(everything)
    for study in everything:
        thin = study["thin"]
        if thin:
            lines += [f"{_label(thin['method'])} at {coupling} = {thin['value']:g}, its best seed "
                      f"({thin['seed']}) in `{study['name']}` ({study['budget']['steps']} steps, "
                      f"{_networks(study['budget']['split'])} networks; `{thin['run']}`), error "
                      "per field:", "",
                      f"![errors at {coupling} {thin['value']:g}](img/{thin['figure']})", ""]
    for study in splits:
        lines += _split_comparison(base, study)
    for study in longer:
        lines += _continuation(base, study)
    return lines


def _first(method) -> tuple:
    """Sort key of methods: :data:`THIN_METHOD` first."""
    return method != THIN_METHOD, method


def _networks(split) -> int:
    """How many networks the EOF system has with ``split``."""
    from ..training.networks import build_model

    return len(build_model(CASES[EOF_ERROR_CASE[0]](), 1, 1, split).groups)


def _by_method(runs) -> list[tuple[str, float, list[dict]]]:
    """(method, coupling value, runs over seeds) of EOF runs: methods by :func:`_first`, each
    weak -> strong."""
    grouped = groups(runs)
    values = CASES[EOF_ERROR_CASE[0]].weak_to_strong([key[3] for key in grouped])
    return [(key[1], key[3], sel) for key, sel in
            sorted(grouped.items(), key=lambda kv: (_first(kv[0][1]), values.index(kv[0][3])))]


def _field_table(studies) -> list[str]:
    """Median final L2 per field over seeds, per study, method and coupling."""
    fields = _scored(studies[0]["runs"][0]) + ["avg"]
    lines = ["Final L2 per field, median over seeds:", "",
             f"| JSON | method | {CASES[EOF_ERROR_CASE[0]].coupling} | seeds | "
             + " | ".join(fields) + " |", "|---|---|---|---|" + "---|" * len(fields)]
    for study in studies:
        for method, value, sel in _by_method(study["runs"]):
            lines.append(f"| `{_stem(study['name'])}` | {method} | {value:g} | {len(sel)} | "
                         + " | ".join(fmt(median([r["l2_final"].get(f) for r in sel]))
                                      for f in fields) + " |")
    return lines + [""]


def _band_table(studies) -> list[str]:
    """Where the error sits: l2_band / l2_bulk per field, medians over seeds, and the share
    of the squared error in the band, where the band is thinner than the channel."""
    rows = [(study, method, value, sel) for study in studies for method, value, sel in
            _by_method([r for r in study["runs"] if r.get("band")])]
    if not rows:
        return []
    fields = _scored(rows[0][3][0])
    lines = ["Where the error sits, at the couplings whose band is thinner than the channel: "
             "l2_band / l2_bulk per field (`pinn.analysis.errors.error_fields`: the relative L2 "
             "within 5 Debye lengths, 5 eps / sqrt 2, of a wall and beyond it, both over the "
             "whole reference norm, so band^2 + bulk^2 = L2^2), medians over seeds; in brackets "
             "the share of the field's squared error that lies in the band, against the band's "
             "share of the channel.", "",
             f"| JSON | method | {CASES[EOF_ERROR_CASE[0]].coupling} | seeds | band share of "
             "the channel | " + " | ".join(f"{f}: band / bulk (in band)" for f in fields) + " |",
             "|---|---|---|---|---|" + "---|" * len(fields)]
    for study, method, value, sel in rows:
        cells = [f"{fmt(median([r['band']['l2_band'].get(f) for r in sel]))} / "
                 f"{fmt(median([r['band']['l2_bulk'].get(f) for r in sel]))} "
                 f"({fmt(median([_band_share(r, f) for r in sel]), '.0%')})" for f in fields]
        lines.append(f"| `{_stem(study['name'])}` | {method} | {value:g} | {len(sel)} | "
                     f"{fmt(median([r['band']['fraction'] for r in sel]), '.0%')} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def _split_comparison(base, study) -> list[str]:
    """``study`` (another network split) beside ``base`` at ``study``'s couplings: the
    degradation between its weakest and strongest with both verdicts, per split, and whether
    the split changes the answer (a verdict, or seed ranges of the final L2_avg that do not
    overlap)."""
    coupling = CASES[EOF_ERROR_CASE[0]].coupling
    values = CASES[EOF_ERROR_CASE[0]].weak_to_strong([r["value"] for r in study["runs"]])
    pair = (values[0], values[-1])
    tables = [(s, _pair_table([r for r in s["runs"] if r["value"] in values], pair))
              for s in (base, study)]
    lines = [f"Does the split change the answer? `{study['name']}` "
             f"({_networks(study['budget']['split'])} networks, split "
             f"{study['budget']['split']}) beside `{base['name']}` "
             f"({_networks(base['budget']['split'])} networks) at {coupling} = "
             f"{', '.join(f'{v:g}' for v in values)}:", ""] + _degradation_header("JSON")
    methods = sorted({m for _, table in tables for m in table}, key=_first)
    for method in methods:
        for s, table in tables:
            if method in table:
                lines.append(_degradation_row(f"`{_stem(s['name'])}`", method, table[method]))
    changes = [f"{_label(m)} {key.replace('_', ' ')}: {tables[0][1][m][key]} -> "
               f"{tables[1][1][m][key]}" for m in methods for key in ("paper_verdict", "tail_verdict")
               if all(key in t.get(m, {}) for _, t in tables)
               and tables[0][1][m][key] != tables[1][1][m][key]]
    ranges = []
    for method in methods:
        for value in values:
            finals = [finite([r["l2_final"].get("avg") for r in _select(s["runs"], method, value)])
                      for s in (base, study)]
            if all(finals):
                apart = max(map(min, finals)) > min(map(max, finals))
                ranges.append((f"{_label(method)} {value:g}: {fmt(statistics.median(finals[0]))} "
                               f"-> {fmt(statistics.median(finals[1]))}", apart))
    changes += [f"{text} (the seeds' ranges do not overlap)" for text, apart in ranges if apart]
    lines += ["", (f"**{'Yes' if changes else 'No'}**: " + (
        "; ".join(changes) if changes else "every verdict is the same with either split, and "
        "at every method and coupling the seeds' ranges of the final L2_avg overlap")
        + ". Median final L2_avg, ours -> the authors' split: "
        + "; ".join(text for text, _ in ranges) + "."), ""]
    return lines


def _continuation(base, study) -> list[str]:
    """``study``'s runs (``base``'s runs continued to more steps) against the same runs
    (method, coupling, seed) at ``base``'s end, and how far the thinnest layer stays from
    :data:`THIN_TARGET_L2`."""
    coupling = CASES[EOF_ERROR_CASE[0]].coupling
    before, after = base["budget"]["steps"], study["budget"]["steps"]
    thinnest = CASES[EOF_ERROR_CASE[0]].weak_to_strong([r["value"] for r in base["runs"]])[-1]
    lines = [f"The same runs continued from step {before} to {after} (`{study['name']}`): "
             "does a larger budget close the gap, or does the method stall?", "",
             f"| method | {coupling} | seeds | final L2_avg at {before}, median [min, max] | "
             f"at {after} | at {after} / at {before}, per seed | tail at {after} |",
             "|---|---|---|---|---|---|---|"]
    factors = []
    for method, value, sel in _by_method(study["runs"]):
        earlier = {r["seed"]: r["l2_final"].get("avg") for r in _select(base["runs"], method,
                                                                         value)}
        ratios = [r["l2_final"]["avg"] / earlier[r["seed"]] for r in sel
                  if earlier.get(r["seed"]) and r["l2_final"].get("avg") is not None]
        lines.append(f"| {method} | {value:g} | {len(sel)} | "
                     f"{_median_range(earlier.get(r['seed']) for r in sel)} | "
                     f"{_median_range(r['l2_final'].get('avg') for r in sel)} | "
                     f"{_median_range(ratios, '.3g')} | "
                     f"{_median_range(_tail_geomean(r) for r in sel)} |")
        if ratios:
            final = median([r["l2_final"].get("avg") for r in sel])
            goal = (f", {final / THIN_TARGET_L2:.3g}x the goal of {THIN_TARGET_L2:g}"
                    if method == THIN_METHOD and value == thinnest else "")
            factors.append(f"{_label(method)} at {coupling} = {value:g}: "
                           f"{statistics.median(ratios):.3g}x, ending at {fmt(final)}{goal}")
    if factors:
        lines += ["", f"Final L2_avg at step {after} over that at {before}, median over seeds: "
                  + "; ".join(factors) + "."]
    return lines + [""]


def _comparison(studies) -> list[str]:
    """Which verdicts change with the budget: per system and claimed method, each budget's
    paper-protocol / tail verdict (constant rate)."""
    tables = {name: degradation(data["runs"]).get("constant", {}) for name, data in studies}
    studies = [(name, data) for name, data in studies if _has_claim3(tables[name])]
    if len(studies) < 2:
        return []
    rows = sorted({(system, method) for table in tables.values() for system, methods in
                   table.items() for method, row in methods.items() if "claim" in row},
                  key=lambda k: (list(CASES).index(k[0]), k[1]))
    lines = ["## How the verdicts change from one budget (or rerun) to the next", "",
             "Claim 3 per system and method, constant rate: paper's protocol / tail verdict "
             "(\"-\": not in that JSON; JSONs with no claim-3 row left out).", "",
             "| system | method | " + " | ".join(f"`{_stem(n)}`" for n, _ in studies) + " |",
             "|---|---|" + "---|" * len(studies)]
    for system, method in rows:
        cells = []
        for name, _ in studies:
            row = tables[name].get(system, {}).get(method)
            cells.append("-" if not row or "claim" not in row else
                         f"{row['paper_verdict']} / {row['tail_verdict']}")
        lines.append(f"| {system} | {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def balancing_gain(studies) -> list[dict]:
    """GN against no balancing, seed by seed: every run with balancing "none" paired with the
    run that differs only by GN (same system, coupling, optimizer, schedule, seed and budget),
    each the first such run in the order of ``studies``. One row per (budget, system,
    optimizer, schedule): the studies it drew on, per coupling (weak -> strong) the median
    final L2_avg of either half and the gain = final L2 without / with GN (median over the
    seeds); the number of pairs and of those in which GN helped (gain > 1)."""
    order = [_stem(name) for name, _ in studies]
    first = {}
    for name, data in studies:
        for r in data["runs"]:
            optimizer, _, balancing = r["method"].partition("+")
            budget = tuple(data["budget"][r["system"]].get(k) for k in BUDGET_KEYS)
            key = (budget, r["system"], optimizer, r["schedule"], r["value"], r["seed"])
            first.setdefault((key, balancing), (_stem(name), r["l2_final"].get("avg")))
    pairs = defaultdict(lambda: defaultdict(list))
    for (key, balancing), (name, none) in first.items():
        gn_name, gn = first.get((key, "gn"), (None, None))
        if balancing == "none" and none is not None and gn is not None:
            pairs[key[:4]][key[4]].append((name, gn_name, none, gn))
    out = []
    for (_, system, optimizer, schedule), by_value in pairs.items():
        values = CASES[system].weak_to_strong(by_value)
        every = [p for v in values for p in by_value[v]]
        out.append({"studies": sorted({n for p in every for n in p[:2]}, key=order.index),
                    "system": system, "optimizer": optimizer, "schedule": schedule,
                    "couplings": values,
                    **{half: [statistics.median(p[i] for p in by_value[v]) for v in values]
                       for half, i in (("none", 2), ("gn", 3))},
                    "gain": [statistics.median(p[2] / p[3] for p in by_value[v]) for v in values],
                    "pairs": len(every), "helped": sum(p[2] > p[3] for p in every)})
    return sorted(out, key=lambda r: (order.index(r["studies"][0]), list(CASES).index(r["system"]),
                                      r["optimizer"], r["schedule"]))


def _balancing_section(studies) -> list[str]:
    rows = balancing_gain(studies)
    if not rows:
        return []
    lines = ["## What GN buys: the same runs without loss balancing", "",
             "Each run trained without balancing (\"+none\") against its twin with GN (same "
             "system, coupling, optimizer, schedule, seed and budget; from the JSONs named). "
             "Gain = final L2_avg without GN / with GN, per seed: above 1, GN helped.", "",
             "| JSONs | system | optimizer | schedule | couplings (weak -> strong) "
             "| median final L2, none | median final L2, GN | median gain | GN helped |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {', '.join(f'`{n}`' for n in r['studies'])} | {r['system']} | "
                     f"{_label(r['optimizer'])} | {r['schedule']} | "
                     f"{CASES[r['system']].coupling} = "
                     f"{', '.join(f'{v:g}' for v in r['couplings'])} | "
                     f"{', '.join(fmt(v) for v in r['none'])} | "
                     f"{', '.join(fmt(v) for v in r['gn'])} | "
                     f"{', '.join(fmt(v, '.3g') + 'x' for v in r['gain'])} | "
                     f"{r['helped']} of {r['pairs']} |")
    return lines + [""]


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
def write_json(runs_root, json_path, study: str | None = None, img_dir="docs/img") -> Path:
    """Collect the sweep output folder ``runs_root`` into ``json_path`` (EOF error figures
    into ``img_dir``, named after the JSON); ``study`` None keeps the existing JSON's."""
    json_path = Path(json_path)
    if study is None:
        if not json_path.is_file():
            raise ValueError(f"{json_path} does not exist yet: say what its runs are with --study")
        study = load_json(json_path).get("study")
        if not study:
            raise ValueError(f"{json_path} holds no study text: give one with --study")
    data = collect(runs_root, study, img_dir=Path(img_dir), figure_prefix=json_path.stem)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(json_path)
    return json_path


def write_page(json_paths, out="docs/results.md", figures=True) -> Path:
    """Write the page for the study JSONs (and their degradation figures beside it in
    img/, named after each JSON)."""
    out = Path(out)
    studies = [(Path(p).as_posix(), load_json(Path(p))) for p in json_paths]
    for name, data in studies:
        if not isinstance(data, dict) or "runs" not in data or "budget" not in data:
            raise ValueError(f"{name} is not a study JSON (write one with `pinn results collect`)")
    text = render(studies)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if figures:
        img_dir = out.parent / "img"
        img_dir.mkdir(parents=True, exist_ok=True)
        for name, data in studies:
            for schedule, table in degradation(data["runs"]).items():
                if any(len(row["couplings"]) > 1 for methods in table.values()
                       for row in methods.values()):
                    plot_degradation(table, img_dir / f"{_stem(name)}-degradation-{schedule}.png")
            c4 = claim4(data["runs"])
            if c4 and _trajectories(c4):
                plot_trajectories(c4, img_dir / f"{_stem(name)}-eof-trajectory.png")
    return out
