"""Statistics that do not hinge on where a run's last step lands: a run's tail, and intervals
over seeds.

Under a constant learning rate the final error of a PINN swings from one evaluation to the
next (one EOF run, eps 0.2, SOAP+GN: 1.2e-4 to 4.6e-4 between steps 6500 and 10500), so a
run is also summarised by its **tail**: the last ``max(3, ceil(n / 10))`` of its n
evaluations with a finite L2_avg (the last 10 % of the run when it has at least 30
evaluations: ``eval_every <= steps / 30``), through

    geomean = exp(mean_k log e_k),      spread = exp(std_k log e_k)   (a factor >= 1),

and the tail's min and max. The geometric mean fits errors that vary by factors; the
spread says by how much the tail scatters around it (1.0: not at all).
"""

from __future__ import annotations

import math

__all__ = ["tail", "log_interval", "seeds_to_decide", "TAIL_FRACTION", "TAIL_MIN", "LEVEL"]

TAIL_FRACTION = 0.1
TAIL_MIN = 3


def tail(history: list[dict], key: str = "l2_avg") -> dict | None:
    """The tail statistic of ``history`` (rows with "step" and ``key``, oldest first):
    {"from_step", "evaluations", "geomean", "spread", "min", "max"}; None when fewer than
    :data:`TAIL_MIN` evaluations have a finite, positive value."""
    rows = [row for row in history
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]) and row[key] > 0]
    count = max(TAIL_MIN, math.ceil(TAIL_FRACTION * len(rows)))
    if len(rows) < count:
        return None
    rows = rows[-count:]
    logs = [math.log(row[key]) for row in rows]
    mean = sum(logs) / count
    std = math.sqrt(sum((x - mean) ** 2 for x in logs) / (count - 1))
    values = [row[key] for row in rows]
    return {"from_step": rows[0]["step"], "evaluations": count, "geomean": math.exp(mean),
            "spread": math.exp(std), "min": min(values), "max": max(values)}


# --- over seeds ---------------------------------------------------------------------------------
# A method's degradation is a ratio of errors, one per seed, and errors vary by factors, so
# the seeds' ratios r_1..r_n are summarised on the log scale: with m and s the mean and the
# sample standard deviation of log r_i, the estimate is the geometric mean exp(m) and the
# interval is the Student-t one,
#
#     exp(m -+ t_{n-1}(1 - alpha/2) s / sqrt(n)),
#
# exact when log r is normal across seeds (errors of independently seeded runs are roughly
# log-normal). With 3 seeds t_2(0.975) = 4.30: the interval is wide unless the seeds agree,
# which is the point; :func:`seeds_to_decide` says how many seeds would make it decisive.
LEVEL = 0.95


def _t(n: int, level: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


def log_interval(values, level: float = LEVEL) -> dict | None:
    """Geometric mean of the finite positive ``values`` and its ``level`` t-interval on the
    log scale: {"n", "estimate", "low", "high", "sd_log"}; one value has the unbounded
    interval (low 0, high None); None without values."""
    logs = [math.log(v) for v in values
            if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    n = len(logs)
    if n == 0:
        return None
    mean = sum(logs) / n
    if n == 1:
        return {"n": 1, "estimate": math.exp(mean), "low": 0.0, "high": None, "sd_log": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = _t(n, level) * sd / math.sqrt(n)
    return {"n": n, "estimate": math.exp(mean), "low": math.exp(mean - half),
            "high": math.exp(mean + half), "sd_log": sd}


def seeds_to_decide(interval: dict | None, threshold: float, level: float = LEVEL,
                    most: int = 1000) -> int | None:
    """The fewest seeds whose ``level`` interval would exclude ``threshold`` if the seeds'
    log-ratios kept the observed mean and spread of ``interval``; None when that takes more
    than ``most`` (the estimate sits on the threshold) or there is no spread to go by."""
    if interval is None or interval["sd_log"] is None:
        return None
    distance = abs(math.log(interval["estimate"]) - math.log(threshold))
    for n in range(2, most + 1):
        if _t(n, level) * interval["sd_log"] / math.sqrt(n) < distance:
            return n
    return None
