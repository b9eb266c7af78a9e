"""The sharing API's conv2d covers grouped, depthwise and dilated convs in every scheme."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restore.api import NoSharing, OptionError, RecursiveSharing, build_network, build_sharing

GROUPED_DILATED = {"kernel_size": 3, "padding": 2, "dilation": 2, "groups": 4}


@pytest.mark.parametrize("scheme", ["none", "recursive", "unified_projection"])
def test_grouped_dilated_conv_has_the_requested_geometry(scheme):
    conv = build_sharing(scheme).conv2d("body.conv", 8, 16, **GROUPED_DILATED)
    plain = getattr(conv, "target", conv)
    assert (plain.groups, plain.dilation, plain.weight.shape) == (4, (2, 2), (16, 2, 3, 3))
    x = torch.rand(1, 8, 10, 10)
    reference = nn.functional.conv2d(x, plain.weight, plain.bias, padding=2, dilation=2, groups=4)
    assert torch.equal(conv(x), reference)


def test_recursive_slot_recurs_only_with_the_same_groups_and_dilation():
    scheme = RecursiveSharing()
    first = scheme.conv2d("dw", 8, 8, 3, padding=1, groups=8)
    assert scheme.conv2d("dw", 8, 8, 3, padding=1, groups=8).target is first.target
    with pytest.raises(ValueError, match="slot 'dw' was requested as .* and as"):
        scheme.conv2d("dw", 8, 8, 3, padding=1, groups=4)


@pytest.mark.parametrize("geometry", [{"groups": 2}, {"dilation": 2}])
def test_partial_filter_refuses_convs_its_partitions_cannot_express_naming_the_slot(geometry):
    scheme = build_sharing({"type": "partial_filter"})
    with pytest.raises(OptionError, match=r"cannot rebuild slot 'block3\.conv'.*compose"):
        scheme.conv2d("block3.conv", 8, 8, 3, padding=1, **geometry)


class Recording(NoSharing):
    """`none`, noting each conv request (a real scheme: the arch builds and runs with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs: list[tuple[str, int]] = []

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               dilation=1, groups=1):
        self.convs.append((slot, groups))
        return super().conv2d(slot, in_channels, out_channels, kernel_size, stride, padding, bias, dilation, groups)

    def module(self, slot, factory):
        raise AssertionError(f"slot {slot} requested as an opaque module")


@pytest.mark.parametrize("layer_conv,expected", [
    ("grouped3x3", [("layer0.feature", 4)]),
    ("depthwise3x3", [("layer0.feature", 12)]),
    ("dwsep3x3", [("layer0.feature.depthwise", 12), ("layer0.feature.pointwise", 1)]),
    ("conv3x3", [("layer0.feature", 1)]),
])
def test_every_ups_layer_conv_is_requested_through_conv2d(layer_conv, expected):
    scheme = Recording()
    net = build_network({"type": "UPS", "embed_dim": 12, "depths": (2,), "window_size": 4, "proj_dim": 8,
                         "layer_conv": layer_conv, "sharing": scheme}, in_chans=3, scale=2)
    assert scheme.convs[: len(expected)] == expected
    assert len(scheme.convs) == 2 * len(expected)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_grouped_layer_conv_whose_groups_do_not_divide_the_width_is_an_option_error():
    with pytest.raises(OptionError, match=r"network_g\.conv_groups: .*width \(12\).* 5 groups"):
        build_network({"type": "UPS", "embed_dim": 12, "depths": (2,), "window_size": 4, "proj_dim": 8,
                       "layer_conv": "grouped3x3", "conv_groups": 5}, in_chans=3, scale=2)
