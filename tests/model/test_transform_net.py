"""Tests of os2d.model.transform_net.TransformNet."""
from __future__ import annotations

import pytest
import torch

from os2d.model.transform_net import TransformNet
from os2d.ops.grid import identity_params




def _randomised(net: TransformNet, seed: int) -> TransformNet:
    """Give the (identity-initialised) last layer and the BN statistics random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.conv3.weight.copy_(0.05 * torch.randn(net.conv3.weight.shape, generator=g))
        for bn in (net.bn1, net.bn2):
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g))
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=g))
            bn.running_mean.copy_(0.1 * torch.randn(bn.running_mean.shape, generator=g))
            bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("variant,num_params", [("v1", 4), ("v2", 6)])
def test_layers_and_parameter_count(variant, num_params):
    torch.manual_seed(0)
    net = TransformNet(variant=variant)
    assert net.num_params == num_params
    assert net.conv1.in_channels == 225 and net.conv1.out_channels == 128 and net.conv1.kernel_size == (7, 7)
    assert net.conv1.padding == (3, 3)
    assert net.conv2.out_channels == 64 and net.conv2.kernel_size == (5, 5) and net.conv2.padding == (2, 2)
    assert net.conv3.out_channels == num_params and net.conv3.kernel_size == (5, 5)
    # counts given with the reference checkpoints: 1,616,576 + 6,404 (V1) / 9,606 (V2)
    expected = 1_616_576 + (6_404 if variant == "v1" else 9_606)
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_identity_initialisation(variant):
    torch.manual_seed(0)
    net = TransformNet(in_channels=9, variant=variant).eval()
    corr = torch.randn(2, 9, 4, 5)
    out = net(corr)
    assert out.shape == (2, net.num_params, 4, 5)
    expected = identity_params(variant).view(1, -1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_input_is_relu_then_l2_normalised():
    torch.manual_seed(1)
    net = _randomised(TransformNet(in_channels=9, variant="v2"), seed=1).double()
    corr = torch.randn(1, 9, 3, 4, dtype=torch.float64)
    out = net(corr)
    assert not torch.allclose(out, identity_params("v2").double().view(1, -1, 1, 1).expand_as(out))
    # negative correlations are cut by the ReLU
    torch.testing.assert_close(net(corr.clamp(min=0)), out, rtol=0, atol=0)
    # scale of the (positive) input does not matter beyond the 1e-6 eps of the normalisation
    torch.testing.assert_close(net(7.0 * corr), out, rtol=1e-6, atol=1e-6)


def test_eps_inside_the_square_root():
    """An all-zero correlation column is normalised by sqrt(0 + eps) and gives finite outputs."""
    torch.manual_seed(2)
    net = _randomised(TransformNet(in_channels=4, variant="v1", norm_eps=1e-6), seed=2).double()
    zero = torch.zeros(1, 4, 2, 2, dtype=torch.float64)
    assert torch.isfinite(net(zero)).all()
    # a tiny positive column c is mapped to c / sqrt(|c|^2 + eps), not to a unit vector
    tiny = torch.full((1, 4, 2, 2), 1e-4, dtype=torch.float64)
    ref = torch.full((1, 4, 2, 2), 1e-4 / (4 * 1e-8 + 1e-6) ** 0.5, dtype=torch.float64)
    net_after_norm = torch.nn.Sequential(net.conv1, net.bn1, torch.nn.ReLU(), net.conv2, net.bn2,
                                         torch.nn.ReLU(), net.conv3)
    torch.testing.assert_close(net(tiny), net_after_norm(ref))


def test_gradcheck_float64():
    torch.manual_seed(3)
    net = _randomised(TransformNet(in_channels=4, variant="v2"), seed=3).double()
    g = torch.Generator().manual_seed(4)
    corr = torch.rand(1, 4, 2, 3, generator=g, dtype=torch.float64).add_(0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(net, (corr,), fast_mode=True)


def test_unknown_variant():
    with pytest.raises(ValueError, match="'affine'"):
        TransformNet(variant="affine")
