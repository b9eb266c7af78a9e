"""The sharing-scheme contract a plugin author relies on: generic materialisation of layers that
expose the weight they compute (grouped, dilated, strided convs and linears), refusal naming the
layers that cannot be materialised, and which layers an arch's own initialisation may touch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from restore.api import (
    NoSharing,
    RestoreError,
    SharingScheme,
    build_network,
    materialize,
    materialize_into,
    plain_layer,
    unshared_layers,
)


class HalfConv(nn.Module):
    """A conv whose kernel is half a shared kernel: it exposes `weight`, `bias` and its geometry."""

    def __init__(self, shared: nn.Conv2d) -> None:
        super().__init__()
        object.__setattr__(self, "shared", shared)
        self.stride, self.padding, self.dilation, self.groups = shared.stride, shared.padding, shared.dilation, \
            shared.groups
        self.bias = nn.Parameter(torch.randn(shared.out_channels))

    @property
    def weight(self) -> torch.Tensor:
        return 0.5 * self.shared.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class HalfLinear(nn.Module):
    def __init__(self, shared: nn.Linear) -> None:
        super().__init__()
        object.__setattr__(self, "shared", shared)

    @property
    def weight(self) -> torch.Tensor:
        return 0.5 * self.shared.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # no bias: `bias` is absent, the plain layer has none


class OpaqueConv(nn.Module):
    """Runs a shared conv without saying what weight it computes: it cannot be materialised."""

    def __init__(self, shared: nn.Conv2d) -> None:
        super().__init__()
        object.__setattr__(self, "shared", shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.shared(x)


class HalfSharing(SharingScheme):
    """One kernel per slot, halved in every layer (the layer class is a parameter of the test)."""

    def __init__(self, conv_layer: type[nn.Module] = HalfConv) -> None:
        super().__init__()
        self.conv_layer = conv_layer
        self.kernels = nn.ModuleDict()

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               dilation=1, groups=1):
        if slot not in self.kernels:
            self.kernels[slot] = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                                           groups, bias=False)
        return self.conv_layer(self.kernels[slot])

    def linear(self, slot, in_features, out_features, bias=True):
        if slot not in self.kernels:
            self.kernels[slot] = nn.Linear(in_features, out_features, bias=False)
        return HalfLinear(self.kernels[slot])


class GeometryNet(nn.Module):
    """Convs of every geometry the sharing API serves, then a linear head, all from one scheme."""

    def __init__(self, sharing: SharingScheme) -> None:
        super().__init__()
        self.sharing = sharing
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = sharing.conv2d("grouped", 8, 8, 3, 1, 2, dilation=2, groups=4)
        self.depthwise = sharing.conv2d("depthwise", 8, 8, 5, 2, 2, groups=8)
        self.rect = sharing.conv2d("rect", 8, 6, (1, 3), 1, (0, 1))
        self.head = sharing.linear("head", 6, 4, bias=False)
        sharing.finalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rect(self.depthwise(F.relu(self.grouped(self.stem(x)))))
        return self.head(h.mean((2, 3)))


def plain_geometry_net() -> GeometryNet:
    """The same arch with independent plain layers (what `sharing: none` gives)."""
    class Plain(NoSharing):
        def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                   dilation=1, groups=1):
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)

        def linear(self, slot, in_features, out_features, bias=True):
            return nn.Linear(in_features, out_features, bias=bias)

    return GeometryNet(Plain())


def test_layers_exposing_their_weight_materialise_into_plain_layers_of_the_same_geometry():
    torch.manual_seed(0)
    shared = GeometryNet(HalfSharing()).eval()
    plain = plain_geometry_net().eval()
    materialize_into(shared, plain)
    grouped, depthwise, rect = plain.grouped, plain.depthwise, plain.rect
    assert (grouped.groups, grouped.dilation, grouped.padding, tuple(grouped.weight.shape)) == (4, (2, 2), (2, 2),
                                                                                                 (8, 2, 3, 3))
    assert (depthwise.groups, depthwise.stride, tuple(depthwise.weight.shape)) == (8, (2, 2), (8, 1, 5, 5))
    assert rect.kernel_size == (1, 3) and rect.padding == (0, 1)
    assert plain.head.bias is None
    x = torch.rand(2, 3, 17, 13)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), shared(x))


def test_a_layer_that_cannot_be_materialised_is_named_and_nothing_is_loaded():
    shared = GeometryNet(HalfSharing(conv_layer=OpaqueConv))
    plain = plain_geometry_net()
    before = copy.deepcopy(plain.state_dict())
    with pytest.raises(RestoreError) as caught:
        materialize_into(shared, plain)
    message = str(caught.value)
    for name in ("grouped", "depthwise", "rect"):
        assert f"'{name}' (OpaqueConv)" in message
    assert "'head'" not in message and "as_plain_module()" in message
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())


def test_torch_layers_with_computed_weights_are_kept_as_they_are():
    # weight norm computes `weight` too, but the unshared network has the same parametrised layer
    net = nn.Sequential(parametrizations.weight_norm(nn.Conv2d(3, 4, 3)))
    assert plain_layer(net[0]) is None
    assert materialize(net).state_dict().keys() == net.state_dict().keys()


DRRN = {"type": "DRRN", "num_units": 2, "num_features": 8, "scales": [2]}


@pytest.mark.parametrize("sharing, expected", [
    ("recursive", ["entry", "exit"]),
    ({"type": "partial_filter", "num_partial_filters": 4}, ["entry", "exit"]),
    ("none", ["entry", "b1.b1_x2.conv1", "b1.b1_x2.conv2", "b2.b1_x2.conv1", "b2.b1_x2.conv2", "exit"]),
])
def test_an_arch_may_initialise_its_own_layers_and_the_unshared_ones_never_the_schemes(sharing, expected):
    net = build_network({**DRRN, "sharing": sharing})
    assert [name for name, _ in unshared_layers(net)] == expected
    touched = {id(p) for _, layer in unshared_layers(net) for p in layer.parameters()}
    unit_tensors = {id(p) for name, m in net.named_modules() if ".conv" in name for p in m.parameters()}
    unit_tensors |= {id(p) for p in net.sharing.parameters()}  # what the units compute with
    if sharing == "none":  # the unshared baseline: the arch initialises every layer
        assert unit_tensors <= touched
    else:
        assert unit_tensors and touched.isdisjoint(unit_tensors)


def test_a_deep_copy_runs_the_copied_shared_tensors():
    net = build_network({**DRRN, "sharing": "recursive"}).eval()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.sharing.parameters():
            p.zero_()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.equal(net(x, scale=2), twin(x, scale=2))
        assert all(p.abs().sum() > 0 for p in net.sharing.parameters())
