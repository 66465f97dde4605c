"""Statistics of a run that do not hinge on where its last step lands.

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

__all__ = ["tail", "TAIL_FRACTION", "TAIL_MIN"]

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
