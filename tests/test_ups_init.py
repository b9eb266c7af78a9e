"""UPS's initialisation options: what `proj_init` and `conv_init` set, and what they leave alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restore.api import build_network, count_parameters


def _ups_s(**options) -> nn.Module:
    """UPS-S with the reference layer (one full 3x3 conv each, no MLP), whose convs these options set."""
    torch.manual_seed(0)
    return build_network({"type": "UPS_S", "variant": "ref", **options}, in_chans=3, scale=2)


def _projections(net: nn.Module) -> list[nn.Linear]:
    layers = [layer for group in net.groups for layer in group.layers]
    shared = (getattr(layer.projection, "target", layer.projection) for layer in layers)  # SharedRef -> U
    return list({id(m): m for m in shared}.values())


def _feature_convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for group in net.groups for layer in group.layers for m in layer.feature.modules()
            if isinstance(m, nn.Conv2d)]


def test_defaults_are_swinir_truncated_normal_projection_and_pytorch_convs():
    net = _ups_s()
    (u,) = _projections(net)
    assert 0.018 < u.weight.std() < 0.022  # normal with std 0.02 (torch truncates at +-2, not at 2 std)
    bound = 1 / (44 * 9) ** 0.5  # PyTorch's kaiming_uniform(a=sqrt(5)) bound for a 3x3 conv of 44 channels
    for conv in _feature_convs(net):
        assert conv.weight.abs().max() <= bound


@pytest.mark.parametrize("sharing", [None, "none"])
def test_orthogonal_projection_has_orthonormal_rows_for_shared_and_layer_specific_u(sharing):
    net = _ups_s(proj_init="orthogonal", **({"sharing": sharing} if sharing else {}))
    projections = _projections(net)
    assert len(projections) == (24 if sharing == "none" else 1)
    for u in projections:
        torch.testing.assert_close(u.weight @ u.weight.T, torch.eye(32), atol=1e-5, rtol=0)


def test_conv_init_changes_only_the_layer_convs_and_never_the_parameter_count():
    reference = _ups_s()
    for how, check in (("trunc_normal", lambda w: 0.019 < w.std() < 0.021),
                       ("zeros", lambda w: not w.any())):
        net = _ups_s(conv_init=how)
        assert count_parameters(net) == count_parameters(reference) == 451_792
        assert all(check(conv.weight) and not conv.bias.any() for conv in _feature_convs(net))
        torch.testing.assert_close(net.conv_first.weight, reference.conv_first.weight)
        torch.testing.assert_close(_projections(net)[0].weight, _projections(reference)[0].weight)


def test_zero_layer_convs_make_every_attention_layer_start_as_the_identity():
    net = _ups_s(conv_init="zeros").eval()
    layer = net.groups[0].layers[1]  # a shifted layer
    x = torch.randn(1, 16, 16, 44)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x)


def test_a_zero_initialised_ups_trains():
    net = _ups_s(conv_init="zeros")
    x = torch.rand(2, 3, 16, 16)
    target = nn.functional.interpolate(x, scale_factor=2, mode="bicubic")
    optimizer = torch.optim.Adam(net.parameters(), 5e-4)
    for _ in range(3):
        loss = (net(x) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(conv.weight.any() for conv in _feature_convs(net))  # the layers left the identity
    assert torch.isfinite(loss)


def test_unknown_initialisation_is_an_option_error_naming_the_key():
    from restore.api import OptionError

    with pytest.raises(OptionError, match="conv_init"):
        build_network({"type": "UPS_S", "conv_init": "xavier"}, in_chans=3, scale=2)
