"""Tests of pinn.optim.soap.SOAP.

(a) step-by-step agreement with pytorch-optimizer's SOAP (a test-only oracle),
(b) equality with torch.optim.Adam when no axis is preconditioned,
(c) eigh failure path and non-finite gradients,
(d) state_dict round trip and parameter groups, plus validation and float32.

How the oracle lines up (pytorch-optimizer 4.1.0, read and checked by experiment):
both implementations spend the first step() call on seeding the Kronecker factors and
leave the parameters untouched. The oracle keeps one counter per group,
group["step"], that also counts that skipped call; it bias-corrects with
group["step"] - 1 and refreshes the bases when (group["step"] - 1) % frequency == 0.
Our per-tensor state["step"] counts updates only (the reference's t). So the offset
is entirely inside the oracle's own counter: oracle group["step"] == our
state["step"] + 1 after every call (asserted below), and call k of one equals call k
of the other with no shift of data or of step() calls. Shifting our t by one (bias
correction t+1, or a refresh one update late) makes these tests fail at 1e-3.

Two things in the oracle are not comparable to round-off, and the tests avoid them:
* It runs its QR refresh in float32 whatever the parameter dtype (x.to(torch.float32)),
  so a float64 comparison drifts to ~3e-7 after the first refresh. The fixture
  `oracle` points that module's name `torch.float32` to float64 (everything else is
  the real torch), which makes the oracle a float64 algorithm; agreement is then ~1e-13.
* The eigenvectors of a Kronecker factor whose null space has dimension >= 2 are
  arbitrary (any orthonormal basis of that null space is valid), and the first
  factor G1 G1^T of an m x n gradient has rank <= min(m, n). Different round-off picks
  different bases and the two trajectories then differ at O(1) although both are
  correct SOAP. The comparison problems therefore use shapes whose first factors
  have null spaces of dimension <= 1 (unique up to a sign, which cancels exactly):
  square or |m - n| = 1 matrices, a side beyond max_precond_dim (identity), and
  length-2 vectors for precondition_1d.
* normalize_grads: the reference divides by (1e-30 + rms) and so do we; the oracle
  divides by (rms + eps). With eps = 1e-8 and rms ~ 1 that differs by ~1e-8 relative.
"""

from __future__ import annotations

import copy
import io
import math
import types

import pytest
import pytorch_optimizer.optimizer.soap as osoap  # the test oracle (set-up installs it)
import torch

from pinn.optim.soap import SOAP

F64 = torch.float64


# ----------------------------------------------------------------------------- helpers
class _Float64QR(types.ModuleType):
    """Stands in for `torch` inside the oracle module: float32 means float64."""

    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture
def oracle(monkeypatch):
    monkeypatch.setattr(osoap, "torch", _Float64QR("torch_float64_qr"))
    return osoap.SOAP


def _oracle_kwargs(kw: dict) -> dict:
    """Our argument names -> the oracle's."""
    out = dict(lr=kw.get("lr", 1e-3), betas=kw.get("betas", (0.99, 0.999)),
               weight_decay=kw.get("weight_decay", 0.0), eps=kw.get("eps", 1e-8),
               precondition_frequency=kw.get("precondition_frequency", 2),
               max_precondition_dim=kw.get("max_precond_dim", 10000),
               merge_dims=kw.get("merge_dims", False),
               precondition_1d=kw.get("precondition_1d", False),
               normalize_gradient=kw.get("normalize_grads", False),
               correct_bias=kw.get("correct_bias", True))
    sb = kw.get("shampoo_beta", -1.0)
    out["shampoo_beta"] = None if sb < 0 else sb
    return out


def _rand(gen, *shape, scale=1.0, dtype=F64):
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


def mlp_problem(dtype=F64):
    """2-layer tanh MLP 5 -> 6 -> 5 plus A (4x12) and B (12x4) with max_precond_dim=10:
    A is preconditioned on its left side only, B on its right side only."""
    gen = torch.Generator().manual_seed(1)
    init = [_rand(gen, 6, 5, scale=0.5), _rand(gen, 6, scale=0.1),
            _rand(gen, 5, 6, scale=0.5), _rand(gen, 5, scale=0.1),
            _rand(gen, 4, 12, scale=0.3), _rand(gen, 12, 4, scale=0.3)]

    def loss(ps, k):
        w1, b1, w2, b2, a, b = ps
        g = torch.Generator().manual_seed(100 + k)
        x, y, z, c, w, d = (_rand(g, *s).to(dtype) for s in
                            ((32, 5), (32, 5), (12, 6), (4, 6), (4, 6), (12, 6)))
        h = torch.tanh(x @ w1.T + b1)
        return (((h @ w2.T + b2 - y) ** 2).mean() + ((a @ z - c) ** 2).mean()
                + ((b @ w - d) ** 2).mean())

    return [t.to(dtype) for t in init], loss


def tiny_problem():
    """2 -> 2 -> 2 MLP: length-2 biases keep precondition_1d well posed (see top)."""
    gen = torch.Generator().manual_seed(2)
    init = [_rand(gen, 2, 2), _rand(gen, 2, scale=0.3), _rand(gen, 2, 2), _rand(gen, 2, scale=0.3)]

    def loss(ps, k):
        w1, b1, w2, b2 = ps
        g = torch.Generator().manual_seed(200 + k)
        x, y = _rand(g, 16, 2), _rand(g, 16, 2)
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()

    return init, loss


def tensor3_problem(bias=True):
    """A rank-3 weight (2, 3, 5) and a bias; with max_precond_dim=6, merge_dims gives (6, 5).
    The oracle's merge_dims cannot take a 1-D tensor (it reshapes it to [1]), so its
    merge_dims comparison runs without the bias."""
    gen = torch.Generator().manual_seed(3)
    init = [_rand(gen, 2, 3, 5, scale=0.5), _rand(gen, 3, scale=0.1)][: 2 if bias else 1]

    def loss(ps, k):
        t, b = (ps[0], ps[1]) if bias else (ps[0], torch.zeros(3, dtype=F64))
        g = torch.Generator().manual_seed(300 + k)
        x, y = _rand(g, 5, 8), _rand(g, 2, 3, 8)
        return (((torch.einsum("ijk,kn->ijn", t, x) + b[None, :, None] - y) ** 2).mean())

    return init, loss


def run(opt_factory, problem, steps, groups=None):
    """Run `steps` step() calls; return parameter snapshots after each call and the optimizer."""
    init, loss = problem
    ps = [torch.nn.Parameter(t.clone()) for t in init]
    opt = opt_factory(ps if groups is None else groups(ps))
    hist = []
    for k in range(steps):
        opt.zero_grad()
        loss(ps, k).backward()
        opt.step()
        hist.append([p.detach().clone() for p in ps])
    return hist, opt, ps


def max_rel_diff(hist_a, hist_b, init):
    """max over calls and tensors of ||a - b|| / ||b - init|| (0 where both never moved)."""
    worst = 0.0
    for snap_a, snap_b in zip(hist_a, hist_b):
        for a, b, p0 in zip(snap_a, snap_b, init):
            moved = float((b - p0).norm())
            diff = float((a - b).norm())
            if moved == 0.0:
                assert diff == 0.0
                continue
            worst = max(worst, diff / moved)
    return worst


# ----------------------------------------------------------------------------- (a) oracle
ORACLE_CASES = {
    "pinn_recipe_f2": (mlp_problem, dict(lr=1e-2, max_precond_dim=10), 13, 1e-10),
    "reference_like_f3": (mlp_problem, dict(lr=3e-3, betas=(0.95, 0.95), weight_decay=0.01,
                                            precondition_frequency=3, max_precond_dim=10), 13, 1e-10),
    "shampoo_beta_f1": (mlp_problem, dict(lr=1e-2, betas=(0.9, 0.99), shampoo_beta=0.8,
                                          precondition_frequency=1, max_precond_dim=10), 10, 1e-10),
    "no_bias_correction": (mlp_problem, dict(lr=1e-3, correct_bias=False, precondition_frequency=3,
                                             max_precond_dim=10), 8, 1e-10),
    "normalize_grads": (mlp_problem, dict(lr=1e-2, normalize_grads=True, max_precond_dim=10), 8, 1e-6),
    "precondition_1d": (tiny_problem, dict(lr=2e-2, betas=(0.9, 0.99), precondition_1d=True), 13, 1e-9),
    "rank3_tensordot": (tensor3_problem, dict(lr=1e-2, precondition_frequency=2), 11, 1e-10),
    "rank3_merge_dims": (lambda: tensor3_problem(bias=False), dict(lr=1e-2, merge_dims=True, max_precond_dim=6), 11, 1e-10),
}


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_matches_oracle_step_by_step(case, oracle):
    make, kw, steps, tol = ORACLE_CASES[case]
    problem = make()
    ours, opt, _ = run(lambda ps: SOAP(ps, **kw), problem, steps)
    theirs, oopt, _ = run(lambda ps: oracle(ps, **_oracle_kwargs(kw)), problem, steps)

    # The parameters must be untouched by the first call, and move afterwards.
    for a, p0 in zip(ours[0], problem[0]):
        assert torch.equal(a, p0)
    assert all(not torch.equal(a, p0) for a, p0 in zip(ours[-1], problem[0]))
    # The counter offset documented at the top of this file.
    for p in opt.param_groups[0]["params"]:
        assert opt.state[p]["step"] == steps - 1
    assert oopt.param_groups[0]["step"] == steps
    assert max_rel_diff(ours, theirs, problem[0]) < tol


def test_oracle_disagrees_if_bias_correction_is_shifted(oracle):
    """Sanity check that the comparison resolves a one-step offset: feeding the oracle's
    counter (calls, t + 1) into the bias correction would be visible."""
    problem = mlp_problem()
    kw = dict(lr=1e-2, max_precond_dim=10, precondition_frequency=1000)
    theirs, _, _ = run(lambda ps: oracle(ps, **_oracle_kwargs(kw)), problem, 4)

    class Shifted(SOAP):
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state.get(p)
                    if st and "Q" in st and st["step"] == 0:
                        st["step"] = 1  # as if the skipped call were counted
            return super().step(closure)

    shifted, _, _ = run(lambda ps: Shifted(ps, **kw), problem, 4)
    ours, _, _ = run(lambda ps: SOAP(ps, **kw), problem, 4)
    assert max_rel_diff(ours, theirs, problem[0]) < 1e-10
    assert max_rel_diff(shifted, theirs, problem[0]) > 1e-2


def test_second_moment_permutation_matters(oracle, monkeypatch):
    """The refresh reorders the basis by estimated eigenvalue and must permute V with it;
    the oracle comparison must catch an implementation that forgets the permutation."""
    import pinn.optim.soap as soap_mod

    problem = mlp_problem()
    kw = dict(lr=5e-2, betas=(0.9, 0.99), shampoo_beta=0.5, precondition_frequency=1,
              max_precond_dim=10)
    theirs, _, _ = run(lambda ps: oracle(ps, **_oracle_kwargs(kw)), problem, 13)
    ours, _, _ = run(lambda ps: SOAP(ps, **kw), problem, 13)
    assert max_rel_diff(ours, theirs, problem[0]) < 1e-10

    real_refresh = soap_mod._refresh_together
    calls = {"n": 0}

    def refresh_without_permuting(states, run_axes):
        kept = [state["exp_avg_sq"] for state in states]
        real_refresh(states, run_axes)
        calls["n"] += 1
        for state, v in zip(states, kept):
            state["exp_avg_sq"] = v  # forget the permutation

    monkeypatch.setattr(soap_mod, "_refresh_together", refresh_without_permuting)
    broken, _, _ = run(lambda ps: SOAP(ps, **kw), problem, 13)
    assert calls["n"] > 0
    assert max_rel_diff(broken, theirs, problem[0]) > 1e-6


@pytest.mark.parametrize("batched", [False, True], ids=["SOAP", "BatchedSOAP"])
def test_refresh_of_all_factors_of_a_size_at_once_equals_one_at_a_time(batched, monkeypatch):
    """One power step and QR per factor size over every tensor (and run) against the same
    optimizer refreshing tensor by tensor: float64 trajectories equal to 1e-10, with fewer
    QR calls (mlp_problem has factors of sizes 6, 5 and 4, two of each)."""
    from pinn.optim.soap_batched import BatchedSOAP

    init, loss = mlp_problem()
    if batched:   # three runs: each run's tensors scaled differently, losses summed
        scales = (1.0, 0.7, 1.3)
        init = [torch.stack([t * c for c in scales]) for t in init]
        one_loss = loss
        loss = lambda ps, k: sum(one_loss([p[r] for p in ps], k) for r in range(len(scales)))
    cls = BatchedSOAP if batched else SOAP

    class OneAtATime(cls):
        def _refresh(self, states):
            for state in states:
                super()._refresh([state])

    qr_calls = {"n": 0}
    real_qr = torch.linalg.qr

    def counting_qr(*args, **kwargs):
        qr_calls["n"] += 1
        return real_qr(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "qr", counting_qr)
    kw = dict(lr=5e-2, betas=(0.9, 0.99), precondition_frequency=1, max_precond_dim=10)
    counts = []
    histories = []
    for factory in (cls, OneAtATime):
        qr_calls["n"] = 0
        hist, _, _ = run(lambda ps: factory(ps, **kw), (init, loss), 12)
        histories.append(hist)
        counts.append(qr_calls["n"])
    assert max_rel_diff(histories[0], histories[1], init) < 1e-10
    assert counts[0] == 3 * 11 and counts[1] == 6 * 11   # 11 refreshes after the first call


# ----------------------------------------------------------------------------- (b) Adam
def test_equals_adam_without_preconditioning():
    """Every axis longer than max_precond_dim and precondition_1d=False: SOAP is Adam.

    Precisely: with batches b_1, ..., b_{K+1}, SOAP's call 1 (on b_1) only seeds factors
    and leaves the parameters unchanged; its call k+1 (on b_{k+1}) equals Adam's step k
    (on b_{k+1}), started from the same initial parameters. Both use bias correction.
    torch.optim.Adam adds eps to sqrt(v / (1 - beta2^t)), SOAP (reference) to sqrt(v);
    they coincide when Adam's eps at step t is eps / sqrt(1 - beta2^t), which we set
    before every Adam step. eps is large (1e-3) so that this placement matters."""
    gen = torch.Generator().manual_seed(5)
    init = [_rand(gen, 5, 7), _rand(gen, 7), _rand(gen, 3, 4, 5), _rand(gen, 1, 6)]

    def loss(ps, k):
        w, b, t, r = ps
        g = torch.Generator().manual_seed(500 + k)
        x, y = _rand(g, 9, 5), _rand(g, 9, 7)
        u = _rand(g, 3, 4, 5)
        return (((torch.sin(x @ w + b) - y) ** 2).mean() + (t * u).sum() ** 2 / 50
                + ((r - 0.3) ** 4).sum())

    eps, betas, lr, K = 1e-3, (0.9, 0.99), 1e-2, 12
    soap_hist, opt, _ = run(lambda ps: SOAP(ps, lr=lr, betas=betas, eps=eps, max_precond_dim=0),
                            (init, loss), K + 1)
    assert all(q is None for s in opt.state.values() for q in s["Q"])

    ps = [torch.nn.Parameter(t.clone()) for t in init]
    adam = torch.optim.Adam(ps, lr=lr, betas=betas, eps=eps)
    worst = 0.0
    for a, p0 in zip(soap_hist[0], init):
        assert torch.equal(a, p0)
    for t in range(1, K + 1):
        adam.param_groups[0]["eps"] = eps / math.sqrt(1.0 - betas[1] ** t)
        adam.zero_grad()
        loss(ps, t).backward()
        adam.step()
        for a, p, p0 in zip(soap_hist[t], ps, init):
            worst = max(worst, float((a - p.detach()).norm() / (p.detach() - p0).norm()))
    assert worst < 1e-12


def test_decoupled_weight_decay_after_the_update():
    """W <- (W - step * N) * (1 - lr * wd): compare one update with and without decay."""
    init, loss = mlp_problem()
    lr, wd = 1e-2, 0.1
    with_wd, _, _ = run(lambda ps: SOAP(ps, lr=lr, weight_decay=wd), (init, loss), 2)
    no_wd, _, _ = run(lambda ps: SOAP(ps, lr=lr), (init, loss), 2)
    for a, b in zip(with_wd[1], no_wd[1]):
        torch.testing.assert_close(a, b * (1.0 - lr * wd), rtol=1e-14, atol=1e-15)
    for a, p0 in zip(with_wd[0], init):  # no decay on the seeding call either
        assert torch.equal(a, p0)


# ----------------------------------------------------------------------------- (c) robustness
def test_eigh_failure_retries_in_float64_then_with_jitter(monkeypatch):
    real_eigh = torch.linalg.eigh
    seen = []

    def flaky(mat, *a, **k):
        seen.append(mat.dtype)
        if len(seen) == 1:
            raise torch.linalg.LinAlgError("simulated: failed to converge")
        if len(seen) == 2:
            vals, vecs = real_eigh(mat, *a, **k)
            return vals, vecs * float("nan")
        if len(seen) == 3:
            raise torch.linalg.LinAlgError("simulated: still failing")
        return real_eigh(mat, *a, **k)

    problem = mlp_problem(dtype=torch.float32)
    init32 = [t.float() for t in problem[0]]
    ps = [torch.nn.Parameter(t.clone()) for t in init32]
    opt = SOAP(ps[:1], lr=1e-2)  # W1 only: its two factors are 6x6 and 5x5
    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    opt.zero_grad()
    problem[1](ps, 0).backward()
    opt.step()
    monkeypatch.setattr(torch.linalg, "eigh", real_eigh)
    # left factor: float32 raise -> float64 NaN -> float64 + jitter raise -> float64 + jitter ok;
    # right factor: float32 ok.
    assert seen == [torch.float32, torch.float64, torch.float64, torch.float64, torch.float32]
    st = opt.state[ps[0]]
    assert all(q.dtype == torch.float32 for q in st["Q"])
    q, f = st["Q"][0].double(), st["GG"][0].double()
    torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=F64), rtol=0, atol=1e-6)
    d = q.T @ f @ q
    assert float((d - torch.diag(torch.diagonal(d))).abs().max()) < 1e-5 * float(f.abs().max())
    # ... and training goes on with finite, moving parameters.
    for k in range(1, 5):
        opt.zero_grad()
        problem[1](ps, k).backward()
        opt.step()
    assert bool(torch.isfinite(ps[0]).all()) and not torch.equal(ps[0].detach(), init32[0])


def test_eigh_retry_gives_the_same_trajectory_in_float64(monkeypatch):
    """A float64 problem whose first eigh raises once: the float64 retry is the same
    computation, so the whole trajectory is identical to an undisturbed run."""
    problem = mlp_problem()
    clean, _, _ = run(lambda ps: SOAP(ps, lr=1e-2, max_precond_dim=10), problem, 6)
    real_eigh = torch.linalg.eigh
    count = {"n": 0}

    def once(mat, *a, **k):
        count["n"] += 1
        if count["n"] == 1:
            raise torch.linalg.LinAlgError("simulated")
        return real_eigh(mat, *a, **k)

    monkeypatch.setattr(torch.linalg, "eigh", once)
    retried, _, _ = run(lambda ps: SOAP(ps, lr=1e-2, max_precond_dim=10), problem, 6)
    assert count["n"] == 7  # 6 factors (W1: 2, W2: 2, A: 1, B: 1) + 1 retry, all on call 1
    assert max_rel_diff(retried, clean, problem[0]) == 0.0


def test_eigh_total_failure_falls_back_to_identity(monkeypatch):
    def broken(mat, *a, **k):
        raise torch.linalg.LinAlgError("simulated")

    p = torch.nn.Parameter(torch.randn(4, 3, dtype=F64))
    opt = SOAP([p], lr=1e-2)
    monkeypatch.setattr(torch.linalg, "eigh", broken)
    p.grad = torch.randn(4, 3, dtype=F64)
    with pytest.warns(RuntimeWarning, match="identity basis"):
        opt.step()
    assert opt.state[p]["Q"] == [None, None]


def test_ill_conditioned_factor_gives_a_valid_basis():
    """A float32 gradient spanning 1e-4 .. 1e4: factor eigenvalues span 16 decades."""
    scales = torch.tensor([1e4, 1.0, 1e-4], dtype=torch.float32)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(9)))
    g = (q.float() * scales) @ q.float().T
    p = torch.nn.Parameter(torch.zeros(3, 3))
    opt = SOAP([p])
    p.grad = g
    opt.step()
    basis = opt.state[p]["Q"][0]
    assert bool(torch.isfinite(basis).all())
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), rtol=0, atol=1e-5)
    # The dominant direction is recovered up to sign.
    assert abs(float(basis[:, 0].double() @ q[:, 0])) > 1 - 1e-5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("at_call", [0, 3])
def test_non_finite_gradient_raises_and_changes_nothing(bad, at_call):
    init, loss = mlp_problem()
    ps = [torch.nn.Parameter(t.clone()) for t in init]
    opt = SOAP(ps, lr=1e-2, max_precond_dim=10)
    for k in range(at_call):
        opt.zero_grad()
        loss(ps, k).backward()
        opt.step()
    before_params = [p.detach().clone() for p in ps]
    before_state = copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    loss(ps, at_call).backward()
    ps[2].grad[1, 3] = bad
    with pytest.raises(FloatingPointError, match=r"parameter 2 .*shape \(5, 6\)") as info:
        opt.step()
    expected = "first call" if at_call == 0 else f"update {at_call}"
    assert expected in str(info.value)
    for p, b in zip(ps, before_params):
        assert torch.equal(p.detach(), b) and bool(torch.isfinite(p).all())
    after_state = opt.state_dict()
    assert before_state["state"].keys() == after_state["state"].keys()
    for i, st in before_state["state"].items():
        for key, val in st.items():
            other = after_state["state"][i][key]
            if isinstance(val, torch.Tensor):
                assert torch.equal(val, other)
            elif isinstance(val, list):
                assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(val, other))
            else:
                assert val == other
    # A later finite gradient is used normally.
    opt.zero_grad()
    loss(ps, at_call).backward()
    opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in ps)


# ----------------------------------------------------------------------------- (d) state
def _groups(ps):
    return [{"params": ps[:2], "lr": 2e-2}, {"params": ps[2:], "lr": 5e-3, "weight_decay": 0.01}]


def test_state_dict_round_trip_mid_run():
    init, loss = mlp_problem()
    make = lambda groups: SOAP(groups, max_precond_dim=10, precondition_frequency=2)  # noqa: E731
    full, _, _ = run(make, (init, loss), 12, groups=_groups)

    # 5 calls (4 updates, two refreshes), checkpoint through bytes, fresh objects, 7 more calls.
    first, opt, ps = run(make, (init, loss), 5, groups=_groups)
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in ps], "opt": opt.state_dict()}, buf)
    del opt, ps
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    st = ckpt["opt"]["state"]
    assert set(st[0]) == {"step", "exp_avg", "exp_avg_sq", "GG", "Q"}
    assert st[0]["step"] == 4 and len(st[0]["Q"]) == 2 and st[1]["Q"] == [None]
    assert [g["lr"] for g in ckpt["opt"]["param_groups"]] == [2e-2, 5e-3]

    ps2 = [torch.nn.Parameter(t.clone()) for t in ckpt["params"]]
    opt2 = make(_groups(ps2))
    opt2.load_state_dict(ckpt["opt"])
    resumed = []
    for k in range(5, 12):
        opt2.zero_grad()
        loss(ps2, k).backward()
        opt2.step()
        resumed.append([p.detach().clone() for p in ps2])
    for a_snap, b_snap in zip(first + resumed, full):
        for a, b in zip(a_snap, b_snap):
            assert torch.equal(a, b)


def test_param_groups_with_different_lr_are_independent(oracle):
    """Two groups == two separate optimizers (no coupling), and == the oracle with groups."""
    init, loss = mlp_problem()
    both, _, _ = run(lambda g: SOAP(g, max_precond_dim=10), (init, loss), 9, groups=_groups)

    ps = [torch.nn.Parameter(t.clone()) for t in init]
    opt_a = SOAP(ps[:2], lr=2e-2, max_precond_dim=10)
    opt_b = SOAP(ps[2:], lr=5e-3, weight_decay=0.01, max_precond_dim=10)
    for k in range(9):
        opt_a.zero_grad()
        opt_b.zero_grad()
        loss(ps, k).backward()
        opt_a.step()
        opt_b.step()
        for p, b in zip(ps, both[k]):
            assert torch.equal(p.detach(), b)

    ok = _oracle_kwargs(dict(max_precond_dim=10))
    theirs, _, _ = run(lambda g: oracle(g, **ok), (init, loss), 9, groups=_groups)
    assert max_rel_diff(both, theirs, init) < 1e-10
    # the two learning rates really differ in effect
    d0 = float((both[-1][0] - init[0]).norm())
    assert d0 > 0.0 and not math.isclose(d0, float((both[-1][2] - init[2]).norm()))


# ----------------------------------------------------------------------------- misc
@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), "learning rate"),
    (dict(betas=(1.0, 0.999)), "beta1"),
    (dict(betas=(0.9, -0.1)), "beta2"),
    (dict(betas=(0.9,)), "pair"),
    (dict(shampoo_beta=1.0), "shampoo_beta"),
    (dict(eps=0.0), "eps"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(precondition_frequency=0), "precondition_frequency"),
    (dict(precondition_frequency=2.5), "precondition_frequency"),
    (dict(max_precond_dim=-1), "max_precond_dim"),
    (dict(merge_dims=1), "merge_dims"),
    (dict(lr=float("nan")), "lr"),
])
def test_bad_hyperparameters_raise(kwargs, match):
    p = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=match):
        SOAP([p], **kwargs)
    good = SOAP([p])
    with pytest.raises(ValueError, match=match):
        good.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], **kwargs})


def test_defaults_are_the_pinn_recipe():
    opt = SOAP([torch.nn.Parameter(torch.zeros(2, 2))])
    d = opt.defaults
    assert d["betas"] == (0.99, 0.999) and d["shampoo_beta"] < 0 and d["eps"] == 1e-8
    assert d["weight_decay"] == 0.0 and d["precondition_frequency"] == 2
    assert d["max_precond_dim"] == 10000 and d["precondition_1d"] is False
    assert d["correct_bias"] is True and d["merge_dims"] is False and d["normalize_grads"] is False


def test_float32_tracks_float64():
    init, loss = mlp_problem()
    init = [t.float().double() for t in init]  # the same start in both precisions
    h64, _, _ = run(lambda ps: SOAP(ps, lr=1e-2, max_precond_dim=10), (init, loss), 10)
    init32 = [t.float() for t in init]
    problem32 = mlp_problem(dtype=torch.float32)
    h32, opt, _ = run(lambda ps: SOAP(ps, lr=1e-2, max_precond_dim=10), (init32, problem32[1]), 10)
    for st in opt.state.values():
        assert st["exp_avg"].dtype == torch.float32
        assert all(q is None or q.dtype == torch.float32 for q in st["Q"])
    h32 = [[t.double() for t in snap] for snap in h32]
    assert max_rel_diff(h32, h64, init) < 1e-4  # measured 2e-5


def test_closure_and_missing_gradients():
    p = torch.nn.Parameter(torch.ones(3, 2, dtype=F64))
    q = torch.nn.Parameter(torch.ones(4, dtype=F64))  # never receives a gradient
    opt = SOAP([p, q], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = ((p - 2.0) ** 2).sum()
        loss.backward()
        return loss

    losses = [float(opt.step(closure).detach()) for _ in range(30)]
    assert losses[0] == losses[1] == 6.0  # the first call does not move p
    assert losses[-1] < 0.5 * losses[1]
    assert q not in opt.state or len(opt.state[q]) == 0
    assert torch.equal(q.detach(), torch.ones(4, dtype=F64))
