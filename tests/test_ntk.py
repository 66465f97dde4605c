"""NTK analysis (pinn.analysis.ntk): the Jacobian against finite differences, K_P against kernels
with known spectra, lambda_max(K_P) = S for over-parameterised networks on every coupled
system, the gamma^2 growth of lambda_max(K) on thermo, rank-deficiency detection, the CLI."""

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pinn.analysis import ntk
from pinn.__main__ import main
from pinn.training.checkpoint import load as load_checkpoint
from pinn.training.networks import build_model
from pinn.problems import get_problem
from reference.cases import get_case

GOLDEN_KP = (5 + math.sqrt(5)) / 2  # eigenvalue of [[2, 1], [1, 3]], see test_eof_*


def tiny(name, width=3, depth=1, n_points=4, seed=0, **params):
    """A float64 model and problem of case ``name``."""
    case = get_case(name, **params)
    torch.manual_seed(seed)
    model = build_model(case, width=width, depth=depth).double()
    problem = get_problem(case, n_points=n_points, dtype=torch.float64, seed=seed)
    return case, model, problem


def flat_residual(problem, model, theta):
    """r(theta) with the model's parameters set to the flat vector ``theta``."""
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return ntk.residual_vector(problem, model)[0].detach()


# --- the Jacobian ------------------------------------------------------------------------
@pytest.mark.parametrize("name, params", [("thermo", {"gamma": 3.0}), ("npp", {"eps": 0.3})])
def test_jacobian_matches_central_differences(name, params):
    _, model, problem = tiny(name, **params)
    jac = ntk.jacobian(problem, model)
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    h = 1e-6
    columns = []
    for k in range(theta.numel()):
        step = torch.zeros_like(theta)
        step[k] = h
        columns.append((flat_residual(problem, model, theta + step)
                        - flat_residual(problem, model, theta - step)) / (2 * h))
    fd = torch.stack(columns, dim=1)
    assert jac.matrix.shape == fd.shape == (problem.n_points * len(model.nets)
                                            + 2 * len(model.nets), theta.numel())
    scale = fd.abs().max()
    assert scale > 1.0
    assert (jac.matrix - fd).abs().max() < 1e-7 * scale


def test_batched_rows_equal_the_row_loop_and_blocks_are_network_columns():
    _, model, problem = tiny("rd-asymmetric", width=4, n_points=5, k=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the batched path itself, not its fallback
        batched = ntk.jacobian(problem, model, chunk_rows=7)
    looped = ntk.jacobian(problem, model, vectorize=False)
    assert torch.allclose(batched.matrix, looped.matrix, rtol=0, atol=1e-13)
    sizes = [sum(p.numel() for p in net.parameters()) for net in model.nets]
    assert [b.stop - b.start for b in batched.blocks] == sizes
    assert batched.groups == (("c_A",), ("c_B",), ("c_C",))
    # pde_A (D1 cA'' - k1 cA + k2 cB) depends on c_C not at all, on c_A and c_B.
    rows = batched.terms["pde_c_A"]
    assert batched.block(2)[rows].abs().max() == 0
    assert batched.block(0)[rows].abs().max() > 0 and batched.block(1)[rows].abs().max() > 0


def test_squared_residual_vector_is_the_weighted_loss():
    _, model, problem = tiny("npp", n_points=6)
    terms = problem.loss_terms(model)
    r, rows = ntk.residual_vector(problem, model)
    assert list(rows) == list(terms)
    assert r.square().sum().item() == pytest.approx(sum(t.item() for t in terms.values()),
                                                    rel=1e-12)
    weights = {"poisson": 10.0, "bc_phi": 0.5}
    rw, _ = ntk.residual_vector(problem, model, weights)
    expected = sum(weights.get(k, 1.0) * t.item() for k, t in terms.items())
    assert rw.square().sum().item() == pytest.approx(expected, rel=1e-12)


def test_bad_inputs_raise_value_errors():
    _, model, problem = tiny("thermo")
    with pytest.raises(ValueError, match="float64"):
        ntk.jacobian(problem, build_model(get_case("thermo"), width=3, depth=1))
    with pytest.raises(ValueError, match="unknown loss terms"):
        ntk.residual_vector(problem, model, {"pde_X": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ntk.residual_vector(problem, model, {"pde_T": -1.0})
    with pytest.raises(ValueError, match="max_bytes"):
        ntk.jacobian(problem, model, max_bytes=100)
    with pytest.raises(ValueError, match="rtol"):
        ntk.analyze(ntk.jacobian(problem, model), rtol=0.0)
    with pytest.raises(ValueError, match="positive"):
        ntk.fit_slope([1, 2], [1, -1])
    with pytest.raises(ValueError, match="does not fit"):
        ntk.load_state(model, {"nets.0.layers.0.weight": torch.zeros(1)})
    model.nets[1] = model.nets[0]
    with pytest.raises(ValueError, match="share"):
        ntk.jacobian(problem, model)


# --- the spectra on matrices with known answers ------------------------------------------
def stacked(blocks, n_rows):
    matrix = torch.cat(blocks, dim=1)
    slices, start = [], 0
    for b in blocks:
        slices.append(slice(start, start + b.shape[1]))
        start += b.shape[1]
    return ntk.StackedJacobian(matrix, tuple(slices), {"all": slice(0, n_rows)},
                               tuple((f"f{s}",) for s in range(len(blocks))))


def test_kp_of_coordinate_blocks_counts_the_networks_per_row():
    g = torch.Generator().manual_seed(1)
    a = torch.zeros(3, 5, dtype=torch.float64)
    a[:2] = torch.randn(2, 5, generator=g, dtype=torch.float64)   # rows {0, 1}
    b = torch.zeros(3, 4, dtype=torch.float64)
    b[1:] = 1e3 * torch.randn(2, 4, generator=g, dtype=torch.float64)  # rows {1, 2}
    jac = stacked([a, b], 3)
    report = ntk.analyze(jac, spectra=True)
    # K_P = diag(1, 2, 1) whatever the scale of the blocks.
    assert report.lambda_max_KP == pytest.approx(2.0, abs=1e-12)
    np.testing.assert_allclose(report.eigenvalues_KP, [2.0, 1.0, 1.0], atol=1e-12)
    K = (jac.matrix @ jac.matrix.T).numpy()
    np.testing.assert_allclose(report.eigenvalues_K, np.linalg.eigvalsh(K)[::-1], rtol=1e-10)
    assert report.lambda_max_K == pytest.approx(np.linalg.eigvalsh(K)[-1], rel=1e-12)
    assert [(blk.rows, blk.rank) for blk in report.blocks] == [(2, 2), (2, 2)]
    for blk, rows in zip(report.blocks, (a[:2], b[1:])):  # sigma_2 / sigma_1, rows normalised
        sigma = np.linalg.svd((rows / rows.norm(dim=1, keepdim=True)).numpy(), compute_uv=False)
        assert blk.margin == pytest.approx(sigma[1] / sigma[0], rel=1e-12)
    assert report.coverage == 2 and report.expected_KP == 2 and not report.rank_deficient
    assert report.lr_max == pytest.approx(1 / report.lambda_max_K)
    assert report.max_diag_KP == pytest.approx(2.0, abs=1e-12) and report.witness == "all[1]"
    assert report.verdict() == ("lambda_max(K_P) = S = 2, certified: row all[1] lies in "
                                "every range(J_s)")


def test_repeated_rows_in_a_block_give_the_golden_value_and_are_flagged():
    # Rows (P, X): phi acts on P, u and p on X, c+ on both with the same functional.
    g = torch.Generator().manual_seed(2)
    e_P = torch.tensor([[1.0], [0.0]], dtype=torch.float64) @ torch.randn(1, 3, generator=g, dtype=torch.float64)
    e_X = torch.tensor([[0.0], [1.0]], dtype=torch.float64) @ torch.randn(1, 3, generator=g, dtype=torch.float64)
    e_PX = torch.tensor([[1.0], [1.0]], dtype=torch.float64) @ torch.randn(1, 3, generator=g, dtype=torch.float64)
    report = ntk.analyze(stacked([e_P, e_X, e_X.clone(), e_PX], 2))
    # K_P = diag(1, 2) + [[.5, .5], [.5, .5]] = [[1.5, .5], [.5, 2.5]]: lambda = 2 + 1/sqrt 2
    assert report.lambda_max_KP == pytest.approx(2 + 1 / math.sqrt(2), abs=1e-12)
    assert report.coverage == 3 and report.blocks[3].rank_deficient
    assert report.expected_KP is None and "no equality claimed" in report.verdict()


# --- lambda_max(K_P) = S on the coupled systems ------------------------------------------
SWEEPS = {
    "thermo": [0.1, 1.0, 10.0, 100.0],
    "rd-symmetric": [0.1, 1.0, 10.0, 100.0],
    "rd-asymmetric": [0.1, 1.0, 10.0, 100.0],
    "npp": [100.0, 10.0, 1.0, 0.1],
}


@pytest.mark.parametrize("name", ["thermo", "rd-symmetric", "rd-asymmetric"])
def test_preconditioned_ntk_equals_S_for_overparameterised_networks(name):
    n = 4
    entries = ntk.coupling_sweep(name, SWEEPS[name], width=32, depth=2, n_points=n)
    lam_K = [report.lambda_max_K for _, report in entries]
    for coupling, report in entries:
        assert report.n_blocks == len(get_case(name).fields)
        assert report.coverage == report.n_blocks, coupling
        assert abs(report.lambda_max_KP - report.n_blocks) < 1e-8, coupling
        assert min(block.n_params for block in report.blocks) > 20 * report.n_rows
        assert report.max_diag_KP == pytest.approx(report.n_blocks, abs=1e-8)
        assert report.witness.startswith("pde_u[" if name == "thermo" else "pde_c_B[")
        ranks = [(block.rank, block.rows) for block in report.blocks]
        if name == "thermo":  # T: T'', gamma T' and the ends; u: u'' and the ends
            assert ranks == [(2 * n + 2, 2 * n + 2), (n + 2, n + 2)], coupling
        else:  # c_B enters the A- and C-equations as the same functional k c_B(x_k)
            assert ranks == [(2 * n + 2,) * 2, (2 * n + 2, 3 * n + 2), (2 * n + 2,) * 2]
    # ... while lambda_max(K) changes by more than a factor 10 over the sweep.
    assert max(lam_K) / min(lam_K) > 10


def test_npp_equality_holds_only_at_the_odd_midpoint_of_the_initial_networks():
    # phi enters NP+, NP- and Poisson through phi' and phi'' only: at each point the phi
    # block spans 2 of those 3 rows, so e_Poisson is in its range only where
    # c+' c- - c-' c+ = 0. Freshly initialised networks (zero biases, tanh) are odd about
    # the midpoint x = 0.5, where c+- = 0: the recipe's points include it for eps >= 0.1.
    n = 4
    case = get_case("npp")
    torch.manual_seed(0)
    model = build_model(case, width=32, depth=2)
    for eps, report in ntk.coupling_sweep("npp", SWEEPS["npp"], model=model, n_points=n):
        assert abs(report.lambda_max_KP - 3) < 1e-8, eps
        assert report.witness == "poisson[2]"  # the points are 0, 0.01, 0.5, 0.99
        assert report.blocks[2].rank == 2 * n + 2 < report.blocks[2].rows == 3 * n + 2
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    for eps, report in ntk.coupling_sweep("npp", [1.0, 0.1], model=model, n_points=n):
        assert report.lambda_max_KP < 3 - 1e-3, eps
        assert "no equality claimed" in report.verdict()


@pytest.mark.parametrize("split, S, value", [("per-field", 6, GOLDEN_KP), ("paper", 4, 3.0)])
def test_eof_preconditioned_ntk_is_set_by_the_shared_rows(split, S, value):
    # Poisson (eps^2 lap phi + c+ - c-) and Stokes-x (-p_x + mu lap u + Ex (c+ - c-)) hold the
    # same functional of c+ (and of c-): on the (Poisson, Stokes-x) rows of one point
    # K_P = [[2, 1], [1, 3]] with one network per field (u and p separate), [[2, 1], [1, 2]]
    # with (u, v, p) in one network: lambda_max = (5 + sqrt 5) / 2 and 3, below S.
    entries = ntk.coupling_sweep("eof-straight", [1.0, 0.1, 0.01], width=16, depth=2,
                                 n_points=4, split=split)
    for eps, report in entries:
        assert report.n_blocks == S
        assert abs(report.lambda_max_KP - value) < 1e-8, eps
        assert report.rank_deficient and report.expected_KP is None


@settings(max_examples=6, deadline=None)
@given(name=st.sampled_from(sorted(SWEEPS)), seed=st.integers(0, 2**16),
       width=st.integers(2, 12), depth=st.integers(1, 2), n_points=st.integers(3, 12),
       log_coupling=st.floats(-2, 2))
def test_preconditioned_ntk_never_exceeds_S(name, seed, width, depth, n_points, log_coupling):
    case = get_case(name)
    case = case.replace(**{case.coupling: 10.0**log_coupling})
    report = ntk.ntk_at(case, width=width, depth=depth, n_points=n_points, seed=seed,
                        spectra=True)
    assert report.lambda_max_KP <= report.n_blocks + 1e-8
    assert report.lambda_max_KP >= 1 - 1e-8  # at least one projector's eigenvalue 1
    assert report.eigenvalues_KP.min() >= -1e-10


def test_thermo_ntk_grows_as_gamma_squared():
    gammas = [10.0, 30.0, 100.0, 300.0, 1000.0]
    entries = ntk.coupling_sweep("thermo", gammas, width=32, depth=2, n_points=16)
    lam = [report.lambda_max_K for _, report in entries]
    slope = ntk.fit_slope(gammas, lam)
    assert abs(slope - 2) < 0.1
    # the stable learning rate shrinks as 1 / gamma^2: x 1e-4 over two decades
    ratio = entries[-1][1].lr_max / entries[0][1].lr_max
    assert 0.5e-4 < ratio < 2e-4
    # the growth is in the T block (gamma T' in the u-equation), not in u's
    assert entries[-1][1].blocks[0].lambda_max / entries[0][1].blocks[0].lambda_max > 5e3
    assert entries[-1][1].blocks[1].lambda_max == pytest.approx(entries[0][1].blocks[1].lambda_max)


def test_underparameterised_networks_are_reported_rank_deficient():
    report = ntk.ntk_at(get_case("thermo", gamma=10.0), width=2, depth=1, n_points=30)
    T, u = report.blocks
    assert (T.n_params, T.rows, u.rows) == (7, 62, 32)
    assert T.rank <= 7 and u.rank <= 7
    assert T.rank_deficient and u.rank_deficient and report.rank_deficient
    assert report.expected_KP is None
    assert "rank-deficient block(s) [0, 1]: no equality claimed" in report.verdict()
    assert report.lambda_max_KP < 2 - 1e-6  # and indeed the equality fails here


# --- trained weights, the training hook, the CLI -------------------------------------------
def test_load_state_and_logger_see_the_same_kernel():
    case, model, problem = tiny("thermo", width=4, n_points=5, gamma=5.0)
    other = build_model(case, width=4, depth=1)  # other weights, float32
    loaded = ntk.load_state(other, model.state_dict())
    assert next(other.parameters()).dtype == torch.float32  # the original is untouched
    direct = ntk.analyze(ntk.jacobian(problem, model))
    via_state = ntk.ntk_at(case, other, state=model.state_dict(), n_points=5)
    assert via_state.lambda_max_K == pytest.approx(direct.lambda_max_K, rel=1e-12)
    assert ntk.analyze(ntk.jacobian(problem, loaded)).lambda_max_K == pytest.approx(
        direct.lambda_max_K, rel=1e-12)
    log = ntk.ntk_logger(problem, every=10)
    assert log(5, model) is None
    entry = log(20, model)
    assert entry["step"] == 20
    assert entry["lambda_max_K"] == pytest.approx(direct.lambda_max_K, rel=1e-12)
    assert entry["lambda_max_KP"] == pytest.approx(2.0, abs=1e-8)


def test_checkpoint_of_a_training_run(tmp_path):
    from pinn.training.config import TrainConfig
    from pinn.training.trainer import CHECKPOINT, train

    config = TrainConfig(case="thermo", case_params={"gamma": 10.0}, optimizer="adam",
                         steps=3, eval_every=3, width=8, depth=1, n_points=5,
                         device="cpu", run_dir=str(tmp_path / "run"), progress=False)
    train(config)
    path = tmp_path / "run" / CHECKPOINT
    step, case, report = ntk.checkpoint_report(path, weighted=True)
    assert step == 3 and case.coupling_value == 10.0
    assert [b.n_params for b in report.blocks] == [25, 25]
    assert abs(report.lambda_max_KP - 2) < 1e-8
    # weighted: the rows of term i scaled by sqrt(lambda_i), lambda_i the run's GN weights
    _, _, plain = ntk.checkpoint_report(path)
    state = load_checkpoint(path)
    weights = dict(zip(state["balancer"]["terms"], torch.as_tensor(state["balancer"]["weights"]).tolist()))
    assert max(abs(w - 1) for w in weights.values()) > 0.1
    problem = get_problem(case, n_points=5, dtype=torch.float64, seed=config.seed)
    model = ntk.load_state(build_model(case, width=8, depth=1), state["model"])
    jac = ntk.jacobian(problem, model)
    scale = torch.ones(jac.matrix.shape[0], dtype=torch.float64)
    for term, rows in jac.terms.items():
        scale[rows] = weights[term] ** 0.5
    expected = torch.linalg.eigvalsh((scale[:, None] * jac.matrix) @ (scale[:, None] * jac.matrix).T)[-1]
    assert report.lambda_max_K == pytest.approx(float(expected), rel=1e-10)
    assert plain.lambda_max_K != pytest.approx(report.lambda_max_K, rel=1e-3)
    code = main(["ntk", "--checkpoint", str(tmp_path / "run" / CHECKPOINT),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    with open(tmp_path / "out" / "ntk-checkpoints.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["step"] == "3" and float(row["lambda_max_K"]) > 0


def test_cli_writes_table_csv_and_figure(tmp_path, capsys):
    code = main(["ntk", "--case", "npp", "--coupling", "1,0.1", "--width", "8", "--depth",
                 "1", "--points", "4", "--out", str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert "smaller = stronger coupling" in text and "slope" in text
    with open(tmp_path / "ntk-npp.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["coupling_value"]) for r in rows] == [1.0, 0.1]
    assert all(float(r["lambda_max_KP"]) <= 3 + 1e-8 for r in rows)
    assert rows[0]["block2_fields"] == "phi"
    assert (tmp_path / "ntk-npp.png").stat().st_size > 10_000
    with pytest.raises(SystemExit) as error:
        main(["ntk", "--case", "npp", "--coupling", "1,x", "--out", str(tmp_path)])
    assert error.value.code == 2
