"""Loss balancing on hand-built gradients: every expected weight is computed by hand in
the comments next to it."""

import pytest
import torch

from pinn.optim.balancing import GradNormBalancer, LearningRateAnnealing, NoBalancing, make_balancer

D = torch.float64


def t(*values):
    return torch.tensor(values, dtype=D)


# Two "parameters": a (2 entries) and b (1 entry). Per-term gradients:
#   term 0: a = (1, 2), b = (2)  -> n_0 = sqrt(1 + 4 + 4) = 3   (both parameters count)
#   term 1: a = (0, 0), b = (1)  -> n_1 = 1
#   term 2: a = (0, 5), b = (0)  -> n_2 = 5
GRADS = [[t(1, 2), t(2)], [t(0, 0), t(1)], [t(0, 5), t(0)]]


def test_gn_weights_by_hand():
    gn = GradNormBalancer(["a", "b", "c"], every=1000, dtype=D)
    assert gn.weights.tolist() == [1.0, 1.0, 1.0]
    gn.update(1, GRADS)
    # nbar = (3 + 1 + 5) / 3 = 3; lhat = (1, 3, 0.6); lambda = 0.9 * 1 + 0.1 * lhat
    torch.testing.assert_close(gn.weights, t(1.0, 1.2, 0.96), rtol=0, atol=1e-15)
    gn.update(1001, GRADS)
    # lambda = 0.9 * (1, 1.2, 0.96) + 0.1 * (1, 3, 0.6) = (1, 1.38, 0.924)
    torch.testing.assert_close(gn.weights, t(1.0, 1.38, 0.924), rtol=0, atol=1e-15)
    assert gn.updates == 2


def test_gn_zero_gradient_term_keeps_its_weight_and_is_left_out_of_the_mean():
    gn = GradNormBalancer(["a", "b", "dead"], dtype=D)
    gn.update(1, [GRADS[0], GRADS[1], [t(0, 0), t(0)]])
    # alive norms (3, 1): nbar = 2; lhat = (2/3, 2); the dead term keeps lambda = 1
    torch.testing.assert_close(gn.weights, t(0.9 + 0.2 / 3, 1.1, 1.0), rtol=0, atol=1e-15)
    assert torch.isfinite(gn.weights).all()
    everything_dead = GradNormBalancer(["a", "b"], dtype=D)
    everything_dead.update(1, [[t(0, 0), t(0)], [t(0, 0), t(0)]])
    assert everything_dead.weights.tolist() == [1.0, 1.0]


def test_refresh_schedule_starts_at_step_one():
    gn = GradNormBalancer(["a"], every=1000)
    assert [s for s in range(0, 3002) if gn.due(s)] == [1, 1001, 2001, 3001]
    assert [s for s in range(1, 8) if GradNormBalancer(["a"], every=3).due(s)] == [1, 4, 7]
    assert not any(NoBalancing(["a"]).due(s) for s in range(5000))


def test_none_keeps_unit_weights():
    none = make_balancer("none", ["a", "b", "c"], dtype=D)
    none.update(1, GRADS)
    assert none.weights.tolist() == [1.0, 1.0, 1.0]


def test_lra_weights_by_hand():
    # Reference terms pde_1, pde_2; boundary term bc.
    #   pde_1: a = (1, -4), b = (2);  pde_2: a = (0, 2), b = (0)
    #   g_R = pde_1 + pde_2 = a (1, -2), b (2): max |g_R| = 2 (not 4 + 2, not max(4, 2))
    #   bc: a = (1, 1), b = (-1): mean |g| = 3 / 3 = 1  ->  lhat = 2
    #   lambda_bc = (1 - 0.9) * 1 + 0.9 * 2 = 1.9; the pde terms stay at 1
    lra = LearningRateAnnealing(["pde_1", "pde_2", "bc"], residuals=["pde_1", "pde_2"], dtype=D)
    grads = [[t(1, -4), t(2)], [t(0, 2), t(0)], [t(1, 1), t(-1)]]
    lra.update(1, grads)
    torch.testing.assert_close(lra.weights, t(1.0, 1.0, 1.9), rtol=0, atol=1e-15)
    lra.update(1001, grads)
    # 0.1 * 1.9 + 0.9 * 2 = 1.99
    torch.testing.assert_close(lra.weights, t(1.0, 1.0, 1.99), rtol=0, atol=1e-15)


def test_state_dict_round_trip_and_mismatch():
    gn = GradNormBalancer(["a", "b", "c"], dtype=D)
    gn.update(1, GRADS)
    other = GradNormBalancer(["a", "b", "c"], dtype=D)
    other.load_state_dict(gn.state_dict())
    assert torch.equal(other.weights, gn.weights) and other.updates == 1
    with pytest.raises(ValueError, match="scheme 'gn'"):
        NoBalancing(["a", "b", "c"]).load_state_dict(gn.state_dict())
    with pytest.raises(ValueError, match="terms"):
        GradNormBalancer(["x", "y", "z"]).load_state_dict(gn.state_dict())


@pytest.mark.parametrize("call, message", [
    (lambda: make_balancer("softadapt", ["a"]), "valid: \\['gn', 'lra', 'none'\\]"),
    (lambda: make_balancer("gn", ["a"], every=0), "every must be a positive integer"),
    (lambda: make_balancer("lra", ["pde", "bc"]), "residual terms"),
    (lambda: make_balancer("lra", ["pde", "bc"], residuals=["nope"]), "among the terms"),
    (lambda: make_balancer("gn", ["a"], alpha=0.5), "cannot be built with arguments"),
    (lambda: make_balancer("nowhere.at_all:Scheme", ["a"]), "cannot import module"),
    (lambda: make_balancer("torch.optim:Adam", ["a"]), "not a subclass of pinn.optim.balancing"),
    (lambda: GradNormBalancer(["a"], momentum=1.0), "momentum must lie in"),
    (lambda: make_balancer("gn", ["a", "a"]), "distinct"),
    (lambda: make_balancer("gn", ["a", "b"]).update(1, [[t(1.0)]]), "gradients of 2 terms"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("scheme", ["gn", "lra"])
def test_batched_rows_are_the_single_run_weights(scheme):
    """runs = R: row r of the weights is what a balancer of run r alone computes. Run r's
    gradients are GRADS scaled per term (so each run has its own weights), stacked on a
    leading run axis as the engine (pinn.training.trainer) passes them."""
    terms = ["a", "b", "c"]
    scales = [(1.0, 1.0, 1.0), (2.0, 0.5, 3.0)]
    per_run = [[[s * g for g in term] for s, term in zip(scale, GRADS)] for scale in scales]
    options = dict(every=1, residuals=["a"], dtype=D)
    batched = make_balancer(scheme, terms, runs=len(scales), **options)
    singles = [make_balancer(scheme, terms, **options) for _ in scales]
    for step in (1, 2):
        batched.update(step, [[torch.stack([run[i][p] for run in per_run]) for p in range(2)]
                              for i in range(len(terms))])
        for single, grads in zip(singles, per_run):
            single.update(step, grads)
    assert not torch.equal(singles[0].weights, singles[1].weights)
    for r, single in enumerate(singles):
        torch.testing.assert_close(batched.weights[r], single.weights, rtol=1e-15, atol=0)
