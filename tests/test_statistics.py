"""The tail statistic of a run's history (pinn.analysis.statistics), on hand-made histories."""

import math

import pytest

from pinn.analysis.statistics import tail


def history(values, every=100):
    return [{"step": every * k, "l2_avg": value} for k, value in enumerate(values)]


def test_geometric_mean_and_spread_of_the_last_tenth():
    # 40 evaluations: the tail is the last 4, errors 1e-4, 1e-2, 1e-4, 1e-2: their logs have
    # mean log(1e-3) and sample std (ln 100 / 2) * sqrt(4/3)
    values = [1.0] * 36 + [1e-4, 1e-2, 1e-4, 1e-2]
    stats = tail(history(values))
    assert stats["evaluations"] == 4 and stats["from_step"] == 3600
    assert stats["geomean"] == pytest.approx(1e-3, rel=1e-12)
    assert stats["spread"] == pytest.approx(math.exp(math.log(100) / 2 * math.sqrt(4 / 3)))
    assert (stats["min"], stats["max"]) == (1e-4, 1e-2)


def test_the_tail_disagrees_with_the_final_value_when_the_last_step_spikes():
    values = [1e-4] * 29 + [5e-3]   # a spike at the very last evaluation
    stats = tail(history(values))
    assert stats["evaluations"] == 3
    assert stats["geomean"] == pytest.approx((1e-4 * 1e-4 * 5e-3) ** (1 / 3), rel=1e-12)
    assert stats["geomean"] < 5e-3 / 10 and stats["max"] == 5e-3


def test_short_histories_and_non_finite_values():
    assert tail(history([1e-2, 1e-3])) is None                   # fewer than 3 evaluations
    stats = tail(history([1e-2, 1e-3, float("nan"), 1e-3, 1e-3]))
    assert stats["evaluations"] == 3 and stats["spread"] == pytest.approx(1.0)
    assert stats["geomean"] == pytest.approx(1e-3)
    assert tail(history([0.0, float("inf"), None, 1e-3])) is None
