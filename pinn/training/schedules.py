"""Learning-rate schedules, as a factor of the base learning rate at step t (from 1).

    constant:    f(t) = 1                                           (the published runs)
    warmup-exp:  f(t) = t / W                         for t <= W    (linear warmup)
                 f(t) = r ** floor((t - W) / D)       after         (x r every D steps)

"warmup-exp" is the schedule used with SOAP by Wang et al. (jaxpi): W = warmup_steps,
r = decay_rate (0.9), D = decay_every. The factor depends on the step alone, so a resumed
run follows the same schedule with no extra state in the checkpoint.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "warmup-exp")


def lr_factor(schedule: str, step: int, *, warmup_steps: int = 0, decay_rate: float = 0.9,
              decay_every: int = 2000) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (1, 2, ...)."""
    if schedule == "constant":
        return 1.0
    if schedule == "warmup-exp":
        if step <= warmup_steps:
            return step / warmup_steps
        return decay_rate ** math.floor((step - warmup_steps) / decay_every)
    raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
