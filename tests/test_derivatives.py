"""Input derivatives by forward propagation (MLP.derivatives) against autograd: the
derivatives themselves, every problem's residuals, loss terms and parameter gradients, the
NTK Jacobian, and the fallback to autograd for networks without a ``derivatives`` method."""

import pytest
import torch
from torch import nn

from pinn.analysis import ntk
from pinn.training.networks import MLP, FieldNetworks, build_model
from pinn.problems import PROBLEMS, get_problem
from pinn.problems.base import autograd_derivatives, field_derivatives
from reference.cases import get_case

TOL = dict(rtol=1e-12, atol=1e-12)


def random_mlp(in_dim, out_dim, domain, seed=0):
    """A float64 MLP with random (nonzero) biases, so that no derivative vanishes by symmetry."""
    torch.manual_seed(seed)
    net = MLP(in_dim, out_dim, 16, 3, domain).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.normal_()
    return net


def autograd_reference(net, x):
    """(value, grad, second) of ``net`` at ``x`` by nested autograd, shaped like
    MLP.derivatives: (N, out), (N, dim, out), (N, dim, out)."""
    x = x.clone().requires_grad_(True)
    value = net(x)
    grads, seconds = [], []
    for j in range(value.shape[1]):
        (g,) = torch.autograd.grad(value[:, j].sum(), x, create_graph=True)
        grads.append(g)
        seconds.append(torch.stack([torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i]
                                    for i in range(x.shape[1])], dim=1))
    return value, torch.stack(grads, dim=2), torch.stack(seconds, dim=2)


@pytest.mark.parametrize("domain", [((-1.0, 3.0),), ((0.0, 2.0), (0.0, 1.0)),
                                    ((-0.5, 0.5), (1.0, 4.0))])
def test_mlp_derivatives_equal_autograd(domain):
    dim = len(domain)
    net = random_mlp(dim, 3, domain)
    lo, hi = torch.tensor(domain, dtype=torch.float64).T
    x = lo + (hi - lo) * torch.rand(40, dim, dtype=torch.float64)
    value, grad, second = autograd_reference(net, x)
    for order in (0, 1, 2):
        v, g, s = net.derivatives(x, order)
        torch.testing.assert_close(v, value, **TOL)
        assert (g is None) == (order < 1) and (s is None) == (order < 2)
        if order >= 1:
            torch.testing.assert_close(g, grad, **TOL)
        if order == 2:
            torch.testing.assert_close(s, second, **TOL)


def test_order_is_checked():
    with pytest.raises(ValueError, match="order"):
        random_mlp(1, 1, ((0, 1),)).derivatives(torch.zeros(2, 1, dtype=torch.float64), 3)


def model_and_problem(name, split, seed=0, width=12, n_points=30):
    case = get_case(name)
    torch.manual_seed(seed)
    model = build_model(case, width=width, depth=3, split=split).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(std=0.5)
    return model, get_problem(case, n_points=n_points, dtype=torch.float64, seed=seed)


@pytest.mark.parametrize("split", ["per-field", "paper", "shared"])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_residuals_losses_and_gradients_equal_the_autograd_path(name, split):
    model, problem = model_and_problem(name, split)
    fast = field_derivatives(model, problem.interior, problem.orders)
    with autograd_derivatives():
        slow = field_derivatives(model, problem.interior, problem.orders)
    for field in problem.fields:
        for part in ("value", "grad", "second"):
            a, b = getattr(fast[field], part), getattr(slow[field], part)
            assert (a is None) == (b is None), (field, part)
            if a is not None:
                torch.testing.assert_close(a, b, **TOL)

    def residuals_and_gradient():
        residuals = problem.residuals(model)
        total = sum(r.square().mean() for r in residuals.values())
        return residuals, torch.autograd.grad(total, list(model.parameters()))

    residuals, gradient = residuals_and_gradient()
    with autograd_derivatives():
        expected, expected_gradient = residuals_and_gradient()
    assert list(residuals) == list(expected)
    for term in expected:
        torch.testing.assert_close(residuals[term], expected[term], rtol=1e-10, atol=1e-10)
    for g, e in zip(gradient, expected_gradient):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_networks_without_derivatives_use_autograd():
    """A FieldNetworks mixing an MLP and a plain module: each network takes its own path."""
    class Square(nn.Module):
        def forward(self, x):
            return (x**2).sum(dim=1, keepdim=True)

    mlp = random_mlp(2, 1, ((0.0, 2.0), (0.0, 1.0)))
    model = FieldNetworks([mlp, Square()], [("a",), ("b",)])
    x = torch.rand(10, 2, dtype=torch.float64)
    fields = field_derivatives(model, x, {"a": 2, "b": 2})
    torch.testing.assert_close(fields["b"].grad, 2 * x, **TOL)
    torch.testing.assert_close(fields["b"].second, torch.full_like(x, 2.0), **TOL)
    _, grad, second = autograd_reference(mlp, x)
    torch.testing.assert_close(fields["a"].grad, grad[:, :, 0], **TOL)
    torch.testing.assert_close(fields["a"].second, second[:, :, 0], **TOL)


@pytest.mark.parametrize("name", ["thermo", "eof-patch"])
def test_ntk_jacobian_is_the_same_on_both_paths(name, monkeypatch):
    """The fast path's graph has a batching rule for every op: the rows are computed by the
    vectorised backward (no fallback to the row loop)."""
    model, problem = model_and_problem(name, "paper", width=6, n_points=10)
    calls, grad = [], torch.autograd.grad

    def recording_grad(*args, **kwargs):
        calls.append(kwargs.get("is_grads_batched", False))
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    fast = ntk.jacobian(problem, model).matrix
    assert calls and all(calls)
    monkeypatch.undo()
    with autograd_derivatives():
        slow = ntk.jacobian(problem, model).matrix
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
