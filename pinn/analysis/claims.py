"""The paper's coupling claim as a test on runs: degradation ratios, intervals, verdicts.

For one system and one method the paper's measure (its claim 3) is

    degradation = L2_avg at the strongest coupling / L2_avg at the weakest,

and the claim: SOAP+GN degrades <= 1.1x while Adam+GN degrades > 100x. :func:`summarise`
takes it per seed (same method and seed at both couplings) and judges each claimed method
twice:

- **the paper's protocol** (``paper_verdict``): final-epoch L2, the median ratio over seeds
  against the threshold: "reproduced" or "not reproduced";
- **the tail verdict** (``tail_verdict``): each run's tail statistic
  (:func:`pinn.analysis.statistics.tail`, which does not hinge on where the last step lands), the
  seeds' ratios as a geometric mean with a 95 % t-interval on the log scale
  (:func:`pinn.analysis.statistics.log_interval`), and a three-way answer: "reproduced" when the
  whole interval lies on the claimed side of the threshold, "not reproduced" when it lies
  on the other side, "undecided" otherwise (with ``seeds_needed``: how many seeds would
  decide it at the observed spread). Records without a tail get "no tail".

A ratio of two unconverged errors says nothing about the claim, so with ``converged_l2`` a
system gets verdicts only when every seed of its best claimed method (lowest median final
L2 at the weakest coupling) ends there at or below ``converged_l2``; otherwise both read
"unconverged".

A record is a dict with "case", "method", "seed", "coupling_value", "L2_avg" (final) and
optionally "l2_tail" (the :func:`~pinn.analysis.statistics.tail` dict): the suite's per-run
``extra_info`` and the results page's runs both give these.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from reference.cases import CASES

from .statistics import log_interval, seeds_to_decide

__all__ = ["summarise", "system_verdicts", "claim_of", "judge", "conjunction", "overall",
           "finite", "median", "CLAIM_RATIO", "ADAM_RATIO", "CONVERGED_L2"]

CLAIM_RATIO = 1.1     # SOAP+GN degrades at most this much
ADAM_RATIO = 100.0    # Adam+GN degrades more than this
CONVERGED_L2 = 1e-2   # the weak-coupling error a verdict needs (see the module docstring)


def claim_of(method: str, claim_ratio: float = CLAIM_RATIO) -> tuple[str, float] | None:
    """The published claim on ``method``'s degradation as (side, threshold), side "<=" or
    ">"; None for methods the claim does not speak of."""
    return {"soap+gn": ("<=", claim_ratio), "adam+gn": (">", ADAM_RATIO)}.get(method)


def judge(interval: dict | None, side: str, threshold: float) -> str:
    """Three-way verdict of an interval (:func:`pinn.analysis.statistics.log_interval`; high None is
    unbounded) on the claim "value ``side`` ``threshold``"."""
    if interval is None:
        return "no data"
    ends = (interval["low"], math.inf if interval["high"] is None else interval["high"])
    holds = [end <= threshold if side == "<=" else end > threshold for end in ends]
    if all(holds):
        return "reproduced"
    return "undecided" if any(holds) else "not reproduced"


def _point(value: float) -> dict:
    """A point estimate as an interval of zero width (the paper's protocol)."""
    return {"low": value, "high": value}


def conjunction(halves: list[str]) -> str:
    """The verdict of a claim whose parts must all hold (SOAP+GN's half and Adam+GN's):
    "unconverged" if a part is, "reproduced" when every part is, "not reproduced" when a
    part is not, else "undecided"."""
    if "unconverged" in halves:
        return "unconverged"
    if all(h == "reproduced" for h in halves):
        return "reproduced"
    return "not reproduced" if "not reproduced" in halves else "undecided"


def overall(verdicts: list[str]) -> str:
    """One word for a claim over systems: "reproduced" when every system reproduces it,
    "not reproduced" when none does and some do not, "partly reproduced" when some do and
    some do not, else "undecided" (or "unconverged" when no system could be judged)."""
    counts = {v: verdicts.count(v) for v in set(verdicts)}
    yes, no = counts.get("reproduced", 0), counts.get("not reproduced", 0)
    if verdicts and yes == len(verdicts):
        return "reproduced"
    if yes and no:
        return "partly reproduced"
    if no and not yes:
        return "not reproduced"
    if verdicts and counts.get("unconverged", 0) == len(verdicts):
        return "unconverged"
    return "undecided"


def finite(values) -> list:
    """The values that are neither None nor NaN/Inf."""
    return [v for v in values if v is not None and math.isfinite(v)]


def median(values):
    """The median of the finite values; None when there are none."""
    values = finite(values)
    return statistics.median(values) if values else None


def _tail_value(record) -> float:
    tail = record.get("l2_tail") or {}
    return tail.get("geomean") if tail.get("geomean") is not None else math.nan


def summarise(records: list[dict], claim_ratio: float = CLAIM_RATIO,
              converged_l2: float | None = None) -> dict:
    """{case: {method: row}}. A row: ``coupling``, ``couplings`` (weak -> strong),
    ``seeds``, median final and tail L2_avg per coupling (``l2_final``, ``l2_tail``), the
    worst seed's final at the weakest (``weak_l2_max``), the final-epoch degradation per seed
    as median [min, max] (``degradation``, ``degradation_min``, ``degradation_max``), the
    seeds' intervals of the final and tail ratios (``final_interval``, ``tail_interval``),
    ``converged``; for claimed methods also ``claim`` (text), ``paper_verdict``,
    ``tail_verdict`` and ``seeds_needed`` (module docstring)."""
    grouped = defaultdict(lambda: defaultdict(dict))   # (case, method) -> seed -> {c: record}
    for rec in records:
        grouped[(rec["case"], rec["method"])][rec["seed"]][rec["coupling_value"]] = rec

    def final(rec):
        return rec["L2_avg"] if rec.get("L2_avg") is not None else math.nan

    summary: dict = defaultdict(dict)
    for (case, method), by_seed in sorted(grouped.items()):
        couplings = CASES[case].weak_to_strong([c for runs in by_seed.values() for c in runs])
        weak_c, strong_c = couplings[0], couplings[-1]
        pairs = [(runs[weak_c], runs[strong_c]) for runs in by_seed.values()
                 if len(couplings) > 1 and weak_c in runs and strong_c in runs]
        ratios = finite([final(s) / final(w) for w, s in pairs])
        weak = [final(runs[weak_c]) if weak_c in runs else math.nan for runs in by_seed.values()]
        row = {
            "coupling": CASES[case].coupling,
            "couplings": couplings,
            "seeds": len(by_seed),
            "l2_final": {f"{c:g}": median([final(runs[c]) for runs in by_seed.values()
                                             if c in runs]) for c in couplings},
            "l2_tail": {f"{c:g}": median([_tail_value(runs[c]) for runs in by_seed.values()
                                            if c in runs]) for c in couplings},
            "weak_l2_max": max(weak) if finite(weak) == weak else math.inf,
            "degradation": median(ratios),
            "degradation_min": min(ratios) if ratios else None,
            "degradation_max": max(ratios) if ratios else None,
            "final_interval": log_interval(ratios),
            "tail_interval": log_interval([_tail_value(s) / _tail_value(w) for w, s in pairs]),
        }
        claim = claim_of(method, claim_ratio)
        if claim and row["degradation"] is not None:
            side, threshold = claim
            row["claim"] = f"{side} {threshold:g}x"
            row["paper_verdict"] = judge(_point(row["degradation"]), side, threshold)
            row["tail_verdict"] = ("no tail" if row["tail_interval"] is None
                                   else judge(row["tail_interval"], side, threshold))
            row["seeds_needed"] = (seeds_to_decide(row["tail_interval"], threshold)
                                   if row["tail_verdict"] == "undecided" else None)
        summary[case][method] = row
    for methods in summary.values():
        claimed = [row for method, row in methods.items() if claim_of(method)]
        weak = [(row["l2_final"][f"{row['couplings'][0]:g}"], row["weak_l2_max"])
                for row in claimed if row["l2_final"][f"{row['couplings'][0]:g}"] is not None]
        best = min(weak, default=(None, math.inf))[1]
        converged = converged_l2 is None or best <= converged_l2
        for row in methods.values():
            row["converged"] = converged
            if "tail_verdict" in row and not converged:
                row["tail_verdict"] = row["paper_verdict"] = "unconverged"
                row["seeds_needed"] = None
    return dict(summary)


def system_verdicts(summary: dict, key: str = "tail_verdict") -> dict:
    """{case: verdict} of the whole claim per system (:func:`conjunction` of SOAP+GN's
    half and Adam+GN's), from the rows' ``key`` ("tail_verdict" or "paper_verdict")."""
    out = {}
    for case, methods in summary.items():
        halves = [methods[m][key] for m in ("soap+gn", "adam+gn") if key in methods.get(m, {})]
        if len(halves) == 2:
            out[case] = conjunction(halves)
    return out
