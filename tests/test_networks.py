"""Networks: the field split, outputs, initialisation, input map and sizes."""

import math

import pytest
import torch

from pinn.training.networks import MLP, FieldNetworks, build_model
from reference.cases import get_case


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "split, groups",
    [
        ("per-field", (("phi",), ("c_plus",), ("c_minus",), ("u",), ("v",), ("p",))),
        ("paper", (("phi",), ("c_plus",), ("c_minus",), ("u", "v", "p"))),
        ("shared", (("phi", "c_plus", "c_minus", "u", "v", "p"),)),
    ],
)
def test_eof_splits_give_every_field(split, groups):
    case = get_case("eof-straight")
    model = build_model(case, width=8, depth=2, split=split)
    assert model.groups == groups
    assert len(model.nets) == len(groups)
    out = model(torch.rand(7, 2))
    assert list(out) == [f for g in groups for f in g]
    assert sorted(out) == sorted(case.fields)
    assert all(v.shape == (7,) for v in out.values())


@pytest.mark.parametrize("name", ["thermo", "rd-asymmetric", "npp"])
def test_1d_paper_split_is_per_field(name):
    case = get_case(name)
    assert build_model(case, split="paper").groups == tuple((f,) for f in case.fields)
    assert build_model(case, split="shared").groups == (case.fields,)


def test_default_sizes_and_parameter_counts():
    # 2D, 5 x 128: (2*128 + 128) + 4 (128*128 + 128) + (128 + 1) = 66561 per scalar net.
    eof = build_model(get_case("eof-straight"))
    assert len(eof.nets) == 6
    assert [n_params(net) for net in eof.nets] == [66561] * 6
    assert n_params(eof) == 399366
    paper = build_model(get_case("eof-straight"), split="paper")
    assert [n_params(net) for net in paper.nets] == [66561] * 3 + [66561 + 2 * 129]
    # 1D, 4 x 64: (64 + 64) + 3 (64*64 + 64) + 65 = 12673 per net.
    thermo = build_model(get_case("thermo"))
    assert [n_params(net) for net in thermo.nets] == [12673, 12673]
    assert len(thermo.nets[0].layers) == 5


def test_xavier_uniform_weights_and_zero_biases():
    torch.manual_seed(1)
    net = MLP(2, 1, 128, 5, ((0, 1), (0, 1)))
    hidden = net.layers[2].weight  # 128 x 128
    bound = math.sqrt(6 / (128 + 128))
    assert hidden.abs().max() <= bound
    assert hidden.abs().max() > 0.99 * bound
    # U(-a, a) has standard deviation a / sqrt(3); 16384 samples give it to ~1 %.
    assert hidden.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert abs(hidden.mean().item()) < 0.01 * bound * 3
    first = net.layers[0].weight  # 128 x 2
    assert first.abs().max() <= math.sqrt(6 / 130)
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in net.layers)


def test_input_map_sends_the_domain_to_the_unit_box():
    net = MLP(2, 1, 4, 1, ((0.0, 2.0), (-1.0, 3.0)))
    x = torch.tensor([[0.0, -1.0], [2.0, 3.0], [1.0, 1.0], [0.5, 0.0]])
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, -0.5]])
    assert torch.allclose(net.normalize(x), expected)
    # The map is part of forward: a one-layer net on z = normalize(x).
    z = expected
    manual = net.layers[1](torch.tanh(net.layers[0](z)))
    assert torch.allclose(net(x), manual)
    # It moves with the module (buffers).
    assert net.double().center.dtype == torch.float64


def test_field_networks_columns_follow_groups():
    a, b = MLP(1, 1, 4, 1, ((0, 1),)), MLP(1, 2, 4, 1, ((0, 1),))
    model = FieldNetworks([a, b], [("T",), ("u", "w")])
    x = torch.rand(5, 1)
    out = model(x)
    assert torch.equal(out["T"], a(x)[:, 0])
    assert torch.equal(out["w"], b(x)[:, 1])
    with pytest.raises(ValueError, match="one group"):
        FieldNetworks([a], [("T",), ("u",)])
    with pytest.raises(ValueError, match="each field once"):
        FieldNetworks([a, b], [("T",), ("T", "u")])


def test_bad_arguments_list_valid_values():
    case = get_case("thermo")
    with pytest.raises(ValueError, match=r"'per-field', 'paper', 'shared'"):
        build_model(case, split="blocks")
    for width in (0, -3, 2.5, "64"):
        with pytest.raises(ValueError, match="width must be a positive integer"):
            build_model(case, width=width)
    with pytest.raises(ValueError, match="depth"):
        build_model(case, depth=0)
    with pytest.raises(ValueError, match="domain"):
        MLP(2, 1, 4, 1, ((0, 1),))
    with pytest.raises(ValueError, match="lo < hi"):
        MLP(1, 1, 4, 1, ((1, 0),))


def test_output_scales_multiply_the_field_and_its_derivatives_in_both_engines():
    """A network with out_scale s is s times the same network without it, value and input
    derivatives alike, and a stack of differently scaled networks (the batched engine)
    gives each element its own scale."""
    from pinn.training.stacked import StackedMLP

    torch.manual_seed(0)
    plain = MLP(2, 3, 8, 2, ((0.0, 2.0), (0.0, 1.0))).double()
    scaled = MLP(2, 3, 8, 2, ((0.0, 2.0), (0.0, 1.0)), out_scale=[0.01, 1.0, 5.0]).double()
    scaled.load_state_dict(plain.state_dict())          # the scale is not in the state dict
    x = torch.rand(5, 2, dtype=torch.float64)
    s = scaled.out_scale     # 0.01 as the default dtype rounds it, then widened
    assert s.tolist() == pytest.approx([0.01, 1.0, 5.0], rel=1e-7)
    assert torch.allclose(scaled(x), plain(x) * s, rtol=1e-14, atol=0)
    for a, b in zip(scaled.derivatives(x), plain.derivatives(x)):
        assert torch.allclose(a, b * s, rtol=1e-14, atol=0)
    stack = StackedMLP([plain, scaled])
    xs = torch.stack([x, x])
    value, grad, second = stack.derivatives(xs)
    assert torch.allclose(stack(xs)[1], scaled(x), rtol=1e-14, atol=0)
    for ours, alone, alone_scaled in zip((value, grad, second), plain.derivatives(x),
                                         scaled.derivatives(x)):
        assert torch.allclose(ours[0], alone, rtol=1e-14, atol=0)
        assert torch.allclose(ours[1], alone_scaled, rtol=1e-14, atol=0)


def test_case_output_scales_come_from_the_case_and_bad_ones_are_refused():
    from pinn.training.config import TrainConfig
    from pinn.training.networks import model_for

    case = get_case("eof-patch", Pe=1.0)
    assert case.field_scales == pytest.approx({"u": 0.01, "v": 0.01, "p": 0.01})
    model = model_for(case, TrainConfig(case="eof-patch", width=4, depth=1,
                                        output_scales="case").validate())
    scales = {name: float(net.out_scale[j]) for net, group in zip(model.nets, model.groups)
              for j, name in enumerate(group)}
    assert scales == pytest.approx({"phi": 1, "c_plus": 1, "c_minus": 1, "u": 0.01,
                                    "v": 0.01, "p": 0.01})
    assert not any(net.scaled for net in model_for(case, {"width": 4, "depth": 1}).nets)
    with pytest.raises(ValueError, match="output_scales"):
        TrainConfig(case="eof-patch", output_scales="yes").validate()
    with pytest.raises(ValueError, match="out_scale must hold 2 positive"):
        MLP(1, 2, 4, 1, ((0.0, 1.0),), out_scale=[1.0, 0.0])
