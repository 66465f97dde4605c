"""The networks of R runs, stacked so that each layer of all of them is one batched matmul.

Every network of a model (:class:`pinn.training.networks.FieldNetworks`) is a tanh perceptron; the
networks of one shape - all of them for the per-field split - form one stack
:class:`StackedMLP` of K = R S perceptrons, weight (K, out, in) and bias (K, out), in
run-major order: element k = r S + s is network s of run r. One step of training then
costs the operations of ONE network, whatever the number of networks and runs (large
networks on many points are split into several stacks: ``nets_per_stack``):

    h_0 = z(x) as (K, N, in),   h_l = tanh(h_{l-1} W_l^T + b_l)   (one baddbmm per layer)

with x_k the points of element k's run. Slice k of every tensor (parameters, gradients,
optimizer state) belongs to one network of one run, and the block [r S, (r + 1) S) of a
stack to run r (:meth:`StackedNetworks.rows`): that is what lets the gradient of
sum_r L_r hold, in block r, the gradient of run r's own loss, and the balancer and the
optimizer treat the runs (and SOAP each network) independently.

:class:`StackedNetworks` is the stacked model: it gives every field of every run with its
input derivatives (:meth:`StackedNetworks.field_derivatives`, value (R, N), grad and
second (R, N, dim)), is built from R models (:meth:`StackedNetworks.stack`) and copies run
r back into a model (:meth:`StackedNetworks.unstack_into`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .networks import MLP, FieldNetworks, tanh_channels

__all__ = ["StackedMLP", "StackedNetworks", "nets_per_stack"]

# The largest hidden-layer block of a stack, in floats (runs x networks x channels x points
# x width): above it the elementwise work on the block falls out of cache and one network
# at a time is faster. Measured (2-core CPU machine, 2026-11-28, Adam, ms per step, one
# stack against one per network): thermo 4 x 64 R = 1 (77k floats) 6.2 vs 8.3, npp 3 x 32
# R = 3 (86k) 7.0 vs 7.4, eof 3 x 32 400 points (384k) 19.1 vs 18.4, thermo 4 x 64 R = 16
# (1.2M) 75-77 vs 72-74, eof 3 x 32 800 points R = 2 (1.5M) 60 vs 52, eof 4 x 64 1000 points
# (1.9M) 119-121 vs 106-112, eof 5 x 128 3000 points (11.5M) 1058 vs 858-912.
STACK_FLOATS = 2**18


def nets_per_stack(runs: int, points: int, dim: int, width: int) -> int:
    """How many networks per run one stack holds so that its hidden-layer blocks
    (runs x networks x (1 + 2 dim) channels x points x width floats) stay within
    :data:`STACK_FLOATS` (at least one)."""
    per_network = (1 + 2 * dim) * points * width
    return max(1, STACK_FLOATS // (runs * per_network))


class _StackedLinear(nn.Module):
    """K affine maps: weight (K, out, in), bias (K, out)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())


class StackedMLP(nn.Module):
    """K tanh perceptrons of one shape (see :class:`~pinn.training.networks.MLP`), stacked.

    Parameters ``layers[l].weight`` (K, out_l, in_l) and ``layers[l].bias`` (K, out_l), in
    the order of an MLP's parameters; the input map (center, half_width) is shared and must
    agree in every stacked MLP, while each element keeps its own output scale (``out_scale``).
    Inputs are (K, N, in_dim): element k on its own points.
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
        self.size = len(mlps)
        self.register_buffer("center", first.center.detach().clone())
        self.register_buffer("half_width", first.half_width.detach().clone())
        self.layers = nn.ModuleList(
            _StackedLinear(torch.stack([m.layers[k].weight.detach() for m in mlps]),
                           torch.stack([m.layers[k].bias.detach() for m in mlps]))
            for k in range(len(first.layers)))
        self.in_dim, self.out_dim = first.in_dim, first.out_dim
        self.scaled = any(m.scaled for m in mlps)   # out_scale per element, (K, 1, out)
        self.register_buffer("out_scale", torch.stack([m.out_scale for m in mlps])[:, None],
                             persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The affine input map of the domain onto [-1, 1] (shared by all elements)."""
        return (x - self.center) / self.half_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (K, N, in_dim) -> (K, N, out_dim)."""
        h = self.normalize(x)
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            h = torch.baddbmm(layer.bias.unsqueeze(1), h, layer.weight.transpose(1, 2))
            if k < last:
                h = torch.tanh(h)
        return h * self.out_scale if self.scaled else h

    def derivatives(self, x: torch.Tensor, order: int = 2):
        """:meth:`pinn.training.networks.MLP.derivatives` of every element on its points ``x``
        (K, N, in_dim): the same forward propagation of the value and input-derivative
        channels (t = tanh(W h + b), t' = 1 - t^2),

            h_new = t,   h_new' = t' (W h'),   h_new'' = t' (W h'' - 2 t (W h')^2),

        with the C = 1 + order * in_dim channels of element k kept as one (C N, features)
        block, so that each layer is one batched matmul. Returns value (K, N, out), grad
        and second (K, N, in_dim, out) (None below ``order``).
        """
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        size, n, dim = x.shape
        channels = [self.normalize(x)[:, None]]  # (K, C, N, features)
        if order >= 1:
            eye = torch.diag(1 / self.half_width)[:, None, :]  # dz/dx_i = e_i / half_width_i
            channels.append(eye.expand(size, dim, n, dim))
        if order >= 2:
            channels.append(x.new_zeros(size, dim, n, dim))
        h = torch.cat(channels, dim=1)
        sizes = [1] + [dim] * order

        def affine(layer, h):  # W h per element and channel, (K, C, N, out)
            flat = h.reshape(size, -1, h.shape[-1])
            out = torch.bmm(flat, layer.weight.transpose(1, 2))
            return out.reshape(size, -1, n, layer.weight.shape[1])

        for layer in self.layers[:-1]:
            a = affine(layer, h).split(sizes, dim=1)
            h = torch.cat(tanh_channels(a[0] + layer.bias[:, None, None, :], a[1:]), dim=1)
        last = self.layers[-1]
        out = affine(last, h).split(sizes, dim=1)
        value = out[0][:, 0] + last.bias[:, None, :]
        grad = out[1].transpose(1, 2) if order >= 1 else None    # (K, N, dim, out)
        second = out[2].transpose(1, 2) if order >= 2 else None
        if self.scaled:
            scale = self.out_scale   # (K, 1, out); derivatives (K, N, dim, out) need (K, 1, 1, out)
            value = value * scale
            grad, second = (None if t is None else t * scale[:, None] for t in (grad, second))
        return value, grad, second

    @torch.no_grad()
    def unstack_into(self, k: int, mlp: MLP) -> None:
        """Copy element k's weights into ``mlp``."""
        for layer, stacked in zip(mlp.layers, self.layers):
            layer.weight.copy_(stacked.weight[k])
            layer.bias.copy_(stacked.bias[k])


def _shape(net: nn.Module) -> tuple:
    return (net.in_dim, net.out_dim, net.width, net.depth)


class StackedNetworks(nn.Module):
    """The networks of R models of one architecture, in :class:`StackedMLP` s of one shape
    each (all networks of a shape, or chunks of them: :meth:`stack`).

    ``stacks[g]`` holds, run-major, the networks ``members[g]`` (indices into the model's
    ``nets``) of every run: element r S_g + j is network members[g][j] of run r.
    ``groups``/``fields`` are the model's (one run's), so problems see the same contract
    as with a :class:`~pinn.training.networks.FieldNetworks`, with a leading run axis on every field.
    """

    def __init__(self, stacks: Sequence[StackedMLP], members: Sequence[Sequence[int]],
                 groups: Sequence[Sequence[str]], runs: int):
        super().__init__()
        self.stacks = nn.ModuleList(stacks)
        self.members = tuple(tuple(m) for m in members)
        self.groups = tuple(tuple(g) for g in groups)
        self.fields = tuple(name for group in self.groups for name in group)
        self.runs = runs

    @classmethod
    def stack(cls, models: Sequence[FieldNetworks],
              nets_per_stack: int | None = None) -> "StackedNetworks":
        """Stack R models built alike (same groups; every network an :class:`MLP`): the
        networks of one shape in one stack, or in stacks of at most ``nets_per_stack``
        networks per run."""
        if not models:
            raise ValueError("need at least one model to stack")
        groups = models[0].groups
        for model in models:
            if model.groups != groups:
                raise ValueError(f"cannot stack models with different field groups: "
                                 f"{groups} and {model.groups}")
            if not all(isinstance(net, MLP) for net in model.nets):
                raise ValueError("only models made of pinn.training.networks.MLP can be stacked")
        shapes: dict[tuple, list[int]] = {}
        for s, net in enumerate(models[0].nets):
            shapes.setdefault(_shape(net), []).append(s)
        chunk = nets_per_stack or len(models[0].nets)
        members = [group[i:i + chunk] for group in shapes.values()
                   for i in range(0, len(group), chunk)]
        stacks = [StackedMLP([model.nets[s] for model in models for s in group])
                  for group in members]
        weight = models[0].nets[0].layers[0].weight
        return cls(stacks, members, groups, len(models)).to(device=weight.device,
                                                            dtype=weight.dtype)

    def rows(self, g: int, r: int) -> slice:
        """The elements of stack g that belong to run r."""
        size = len(self.members[g])
        return slice(r * size, (r + 1) * size)

    def run_parameters(self, r: int) -> list[tuple[int, int]]:
        """Where run r's own parameters live: for each parameter of its model, in
        ``FieldNetworks.parameters()`` order (network by network, layer by layer, weight
        then bias), the pair (index of the stacked parameter in ``parameters()``, row)."""
        offsets, where = [0], {}
        for stack in self.stacks:
            offsets.append(offsets[-1] + len(list(stack.parameters())))
        for g, members in enumerate(self.members):
            for j, s in enumerate(members):
                where[s] = (g, self.rows(g, r).start + j)
        pairs = []
        for s in range(len(self.groups)):
            g, k = where[s]
            pairs += [(offsets[g] + i, k) for i in range(offsets[g + 1] - offsets[g])]
        return pairs

    def _inputs(self, g: int, x: torch.Tensor) -> torch.Tensor:
        """Points (N, dim) shared by the runs, or (R, N, dim) one set per run, as the
        (K, N, dim) input of stack g."""
        size = self.runs * len(self.members[g])
        if x.dim() == 2:
            return x.expand(size, *x.shape)
        return x.repeat_interleave(len(self.members[g]), dim=0)

    def field_derivatives(self, x: torch.Tensor, orders: dict[str, int]) -> dict:
        """Every field with its input derivatives up to ``orders[name]`` at ``x``
        ((N, dim) for all runs or (R, N, dim)): {name: Field} with value (R, N) and
        grad/second (R, N, dim)."""
        from ..problems.base import Field

        fields = {}
        for g, (stack, members) in enumerate(zip(self.stacks, self.members)):
            order = max(orders.get(name, 0) for s in members for name in self.groups[s])
            value, grad, second = stack.derivatives(self._inputs(g, x), order)
            size = len(members)

            def per_run(t):  # (K, N, ...) -> (R, S_g, N, ...)
                return None if t is None else t.reshape(self.runs, size, *t.shape[1:])

            value, grad, second = per_run(value), per_run(grad), per_run(second)
            for j, s in enumerate(members):
                for c, name in enumerate(self.groups[s]):
                    k = orders.get(name, 0)
                    fields[name] = Field(value[:, j, :, c],
                                         grad[:, j, ..., c] if k >= 1 else None,
                                         second[:, j, ..., c] if k >= 2 else None)
        return fields

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every field of every run at ``x`` ((N, dim) or (R, N, dim)): {name: (R, N)}."""
        out = {}
        for g, (stack, members) in enumerate(zip(self.stacks, self.members)):
            values = stack(self._inputs(g, x))
            values = values.reshape(self.runs, len(members), *values.shape[1:])
            for j, s in enumerate(members):
                for c, name in enumerate(self.groups[s]):
                    out[name] = values[:, j, :, c]
        return out

    @torch.no_grad()
    def unstack_into(self, r: int, model: FieldNetworks) -> None:
        """Copy run r's parameters into ``model`` (built like the stacked ones)."""
        for g, (stack, members) in enumerate(zip(self.stacks, self.members)):
            for j, s in enumerate(members):
                stack.unstack_into(self.rows(g, r).start + j, model.nets[s])
