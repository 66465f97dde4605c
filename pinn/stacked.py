"""R independent copies of a model's networks, evaluated in one batched computation.

:class:`StackedMLP` holds the layers of R perceptrons of the same shape as stacked tensors,
weight (R, out, in) and bias (R, out). Its input is the concatenation of the R runs' point
sets, x = [x_1; ...; x_R] of shape (R N, in), and row block r goes through run r's weights::

    h_0 = z(x) viewed as (R, N, in),   h_l = tanh(h_{l-1} W_l^T + b_l)   (batched matmul)

so the output row k depends on one run only. That is what lets the problems' residual code
run unchanged on the concatenated points: the input derivatives of row k (forward-propagated
by :meth:`StackedMLP.derivatives`, or autograd.grad of the summed outputs with respect to the
points) are run r's, and the gradient of sum_r L_r with respect to the stacked weights holds,
in slice r, the gradient of run r's own loss L_r.

:class:`StackedFieldNetworks` is the stacked :class:`~pinn.networks.FieldNetworks`: same
``nets``/``groups``/``fields`` and forward contract, built from R models of one architecture
(:meth:`StackedFieldNetworks.stack`) and copied back into them (:meth:`unstack_into`).
:meth:`StackedFieldNetworks.run_view` is a module computing run r alone (row blocks need not
be concatenated), for code that calls the model on its own points.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .networks import MLP, FieldNetworks, tanh_channels

__all__ = ["StackedMLP", "StackedFieldNetworks"]


class _StackedLinear(nn.Module):
    """R affine maps: weight (R, out, in), bias (R, out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())


class StackedMLP(nn.Module):
    """R tanh perceptrons of one shape (see :class:`~pinn.networks.MLP`), stacked.

    Parameters ``layers[l].weight`` (R, out_l, in_l) and ``layers[l].bias`` (R, out_l), in
    the order of an MLP's parameters (so parameter k of the stack is parameter k of every
    run); the input map (center, half_width) is shared and must agree in every stacked MLP.
    """

    def __init__(self, mlps: Sequence[MLP]):
        super().__init__()
        if not mlps:
            raise ValueError("need at least one MLP to stack")
        first = mlps[0]
        for mlp in mlps[1:]:
            if (mlp.in_dim, mlp.out_dim, mlp.width, mlp.depth) != (
                    first.in_dim, first.out_dim, first.width, first.depth):
                raise ValueError(f"cannot stack MLPs of different shapes: {first} and {mlp}")
            if not (torch.equal(mlp.center, first.center)
                    and torch.equal(mlp.half_width, first.half_width)):
                raise ValueError("cannot stack MLPs with different input domains")
        self.runs = len(mlps)
        self.register_buffer("center", first.center.detach().clone())
        self.register_buffer("half_width", first.half_width.detach().clone())
        self.layers = nn.ModuleList(
            _StackedLinear(torch.stack([m.layers[k].weight.detach() for m in mlps]),
                           torch.stack([m.layers[k].bias.detach() for m in mlps]))
            for k in range(len(first.layers)))
        self.in_dim, self.out_dim = first.in_dim, first.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (R N, in_dim), row block r for run r -> (R N, out_dim)."""
        if x.shape[0] % self.runs:
            raise ValueError(f"{x.shape[0]} rows do not split into {self.runs} equal run blocks")
        h = self.normalize(x).reshape(self.runs, -1, self.in_dim)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = torch.baddbmm(layer.bias.unsqueeze(1), h, layer.weight.transpose(1, 2))
            if k < last:
                h = torch.tanh(h)
        return h.reshape(-1, self.out_dim)

    def derivatives(self, x: torch.Tensor, order: int = 2):
        """:meth:`pinn.networks.MLP.derivatives` of every run on its row block of ``x``.

        The same forward propagation of value and input-derivative channels per hidden layer
        (t = tanh(W h + b), t' = 1 - t^2):

            h_new = t,   h_new' = t' (W h'),   h_new'' = t' (W h'' - 2 t (W h')^2),

        with the channels of run r kept as a (C N, features) block, so that each layer is one
        batched matmul over the runs. Returns value (R N, out), grad and second
        (R N, in_dim, out_dim) (None below ``order``), row block r from run r.
        """
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        runs, dim = self.runs, self.in_dim
        n = x.shape[0] // runs
        channels = [self.normalize(x).reshape(runs, 1, n, dim)]  # (R, C, N, features)
        if order >= 1:
            eye = torch.diag(1 / self.half_width)[:, None, :]  # dz/dx_i = e_i / half_width_i
            channels.append(eye.expand(runs, dim, n, dim))
        if order >= 2:
            channels.append(x.new_zeros(runs, dim, n, dim))
        h = torch.cat(channels, dim=1)
        sizes = [1] + [dim] * order

        def affine(layer, h):  # W h per run and channel, (R, C, N, out)
            flat = h.reshape(runs, -1, h.shape[-1])
            return torch.bmm(flat, layer.weight.transpose(1, 2)).reshape(runs, -1, n,
                                                                          layer.weight.shape[1])

        for layer in self.layers[:-1]:
            a = affine(layer, h).split(sizes, dim=1)
            h = torch.cat(tanh_channels(a[0] + layer.bias[:, None, None, :], a[1:]), dim=1)
        last = self.layers[-1]
        out = affine(last, h).split(sizes, dim=1)
        value = (out[0][:, 0] + last.bias[:, None, :]).reshape(runs * n, -1)

        def per_point(d):  # (R, dim, N, out) -> (R N, dim, out)
            return d.permute(0, 2, 1, 3).reshape(runs * n, dim, -1)

        grad = per_point(out[1]) if order >= 1 else None
        second = per_point(out[2]) if order >= 2 else None
        return value, grad, second

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The affine input map of the domain onto [-1, 1] (shared by all runs)."""
        return (x - self.center) / self.half_width

    def forward_run(self, r: int, x: torch.Tensor) -> torch.Tensor:
        """Run r alone on ``x`` (N, in_dim) -> (N, out_dim)."""
        h = self.normalize(x)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = torch.nn.functional.linear(h, layer.weight[r], layer.bias[r])
            if k < last:
                h = torch.tanh(h)
        return h

    @torch.no_grad()
    def unstack_into(self, r: int, mlp: MLP) -> None:
        """Copy run r's weights into ``mlp``."""
        for layer, stacked in zip(mlp.layers, self.layers):
            layer.weight.copy_(stacked.weight[r])
            layer.bias.copy_(stacked.bias[r])


class _RunNet(nn.Module):
    """One run of a :class:`StackedMLP`, called like an :class:`MLP` (no parameters of its own)."""

    def __init__(self, stacked: StackedMLP, r: int):
        super().__init__()
        self._stacked = [stacked]  # a list: not registered as a submodule
        self.r = r

    def forward(self, x):
        return self._stacked[0].forward_run(self.r, x)


class _RunView(FieldNetworks):
    """Run r of a :class:`StackedFieldNetworks`, with the FieldNetworks contract."""

    def __init__(self, stacked: "StackedFieldNetworks", r: int):
        nn.Module.__init__(self)
        self.nets = [_RunNet(net, r) for net in stacked.nets]  # plain list: no parameters
        self.groups, self.fields = stacked.groups, stacked.fields

    def parameters(self, recurse=True):  # the stacked model owns them
        return iter(())


class StackedFieldNetworks(FieldNetworks):
    """R models of one architecture, stacked network by network.

    ``forward(x)`` takes the R runs' point sets concatenated, (R N, dim), and returns
    {field: (R N,)}, row block r from run r (see the module docstring).
    """

    def __init__(self, nets: Sequence[StackedMLP], groups, runs: int):
        super().__init__(nets, groups)
        self.runs = runs

    @classmethod
    def stack(cls, models: Sequence[FieldNetworks]) -> "StackedFieldNetworks":
        """Stack R models built alike (same groups; every network an :class:`MLP`)."""
        if not models:
            raise ValueError("need at least one model to stack")
        groups = models[0].groups
        for model in models:
            if model.groups != groups:
                raise ValueError(f"cannot stack models with different field groups: "
                                 f"{groups} and {model.groups}")
            if not all(isinstance(net, MLP) for net in model.nets):
                raise ValueError("only models made of pinn.networks.MLP can be stacked")
        nets = [StackedMLP([model.nets[s] for model in models]) for s in range(len(groups))]
        weight = models[0].nets[0].layers[0].weight
        return cls(nets, groups, len(models)).to(device=weight.device, dtype=weight.dtype)

    def unstack_into(self, r: int, model: FieldNetworks) -> None:
        """Copy run r's parameters into ``model`` (built like the stacked ones)."""
        for stacked, net in zip(self.nets, model.nets):
            stacked.unstack_into(r, net)

    def run_view(self, r: int) -> FieldNetworks:
        """A module computing run r alone on its own points (gradients reach the stack)."""
        if not 0 <= r < self.runs:
            raise ValueError(f"run index {r} outside 0..{self.runs - 1}")
        return _RunView(self, r)
