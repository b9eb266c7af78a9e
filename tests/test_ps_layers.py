"""The partial_filter sharing scheme and PS convolutions: kernel layout, sizes, eval cache,
gradients, materialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from restore_ps import PSConv2d
from torch import nn

from restore.api import OptionError, build_network, build_sharing, count_parameters, materialize


class TwoSlotNet(nn.Module):
    """A small recursive-style net: slots a and b, each used `repeats` times, plus a stride-2 conv."""

    def __init__(self, sharing, channels: int = 4, repeats: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.sharing = build_sharing(sharing)
        self.body = nn.ModuleList(
            self.sharing.conv2d(slot, channels, channels, 3, 1, 1, bias=bias) for _ in range(repeats) for slot in "ab"
        )
        self.down = self.sharing.conv2d("down", channels, channels, 4, 2, 1, bias=False)
        self.sharing.finalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.body:
            x = F.relu(conv(x))
        return self.down(x)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random coefficients and biases (released init makes every tap equal, hiding layout bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return net


def ps_layers(net: nn.Module) -> list[PSConv2d]:
    return [m for m in net.modules() if isinstance(m, PSConv2d)]


def test_tap_partition_kernel_is_bank_rows_laid_out_ci_co_at_row_major_taps():
    scheme = build_sharing({"type": "partial_filter", "num_partial_filters": 5})
    conv = scheme.conv2d("s", 3, 2, 3, 1, 1, bias=False)
    scheme.finalize()
    randomise(scheme), randomise(conv, 1)
    e, p = conv.element.detach(), scheme.banks[conv.group].detach()
    expected = torch.zeros(2, 3, 3, 3)
    for co in range(2):
        for ci in range(3):
            for a in range(3):
                for b in range(3):
                    expected[co, ci, a, b] = sum(e[a * 3 + b, n] * p[n, ci * 2 + co] for n in range(5))
    torch.testing.assert_close(conv.kernel(), expected)


def test_filter_partition_kernel_is_one_bank_combination_per_output_filter():
    scheme = build_sharing({"type": "partial_filter", "num_partial_filters": 4})
    conv = scheme.conv2d("s", 3, 2, 4, stride=2, padding=1, bias=False)
    scheme.finalize()
    randomise(scheme), randomise(conv, 1)
    e, p = conv.element.detach(), scheme.banks[conv.group].detach()
    assert conv.partition == "filter" and e.shape == (2, 4) and p.shape == (4, 3 * 16)
    expected = torch.stack([(e[co] @ p).view(3, 4, 4) for co in range(2)])
    torch.testing.assert_close(conv.kernel(), expected)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, expected, stride=2, padding=1))


def test_one_bank_per_shape_group_sized_by_ratio_of_distinct_slots():
    net = TwoSlotNet({"type": "partial_filter", "ratio": "2/3"}, channels=4, repeats=3)
    banks = dict(net.sharing.banks.items())
    # 3x3 stride-1 group: 2 distinct slots x 9 taps = 18 -> N_p 12; 4x4 stride-2 group: 1 slot x 4 filters -> 3
    assert {k: tuple(v.shape) for k, v in banks.items()} == {"tap_4x4_k3": (12, 16), "filter_4x4_k4": (3, 64)}
    described = net.sharing.describe()["banks"]
    assert described["tap_4x4_k3"] == {"slots": 2, "layers": 6, "N_total": 18, "N_p": 12, "ratio": "2/3"}


def test_bank_is_stored_once_and_layers_hold_coefficients():
    net = TwoSlotNet({"type": "partial_filter", "num_partial_filters": 7})
    keys = list(net.state_dict())
    assert [k for k in keys if "banks" in k] == ["sharing.banks.tap_4x4_k3", "sharing.banks.filter_4x4_k4"]
    assert "body.0.element" in keys and "body.0.bias" in keys and "down.bias" not in keys
    # formula: N_p*C^2 + L*(9*N_p + C) for the tap group, N_p*C*k^2 + C*N_p for the filter group
    assert count_parameters(net) == (7 * 16 + 6 * (9 * 7 + 4)) + (7 * 4 * 16 + 4 * 7)


def test_partition_option_forces_one_partitioning_for_every_layer():
    net = TwoSlotNet({"type": "partial_filter", "num_partial_filters": 3, "partition": "filter"})
    assert set(net.sharing.banks) == {"filter_4x4_k3", "filter_4x4_k4"}
    assert net.body[0].element.shape == (4, 3)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_partial_filters": 4, "ratio": 0.5}, "either num_partial_filters or ratio"),
        ({"ratio": "two thirds"}, "network_g.sharing.ratio"),
        ({"ratio": -0.5}, "must be positive"),
        ({"partition": "channel"}, "network_g.sharing.partition"),
        ({"num_partial_filter": 4}, "Did you mean 'num_partial_filters'"),
    ],
)
def test_bad_sharing_options_are_named(options, message):
    with pytest.raises(OptionError, match=message):
        build_sharing({"type": "partial_filter", **options})


def test_eval_cache_equals_training_mode_output():
    net = randomise(TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5}))
    x = torch.randn(2, 4, 12, 12)
    train_out = net.train()(x)
    net.eval()
    with torch.no_grad():
        first, second = net(x), net(x)
    torch.testing.assert_close(first, train_out.detach(), rtol=0, atol=0)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_kernels_are_cached_without_grad_and_rebuilt_with_grad():
    net = TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5}).eval()
    conv = net.body[0]
    with torch.no_grad():
        assert conv.kernel() is conv.kernel()
    assert conv.kernel() is not conv.kernel()
    assert conv.kernel().requires_grad


@pytest.mark.parametrize("foreach", [False, True])
def test_cache_is_invalidated_by_an_optimizer_step(foreach):
    net = randomise(TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5}))
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        before = net(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, foreach=foreach)
    net(x).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = net(x)
    fresh = net(x).detach()  # grad enabled: rebuilt from the updated parameters
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


def test_cache_is_invalidated_by_load_state_dict():
    options = {"type": "partial_filter", "num_partial_filters": 5}
    net, other = randomise(TwoSlotNet(options), 0).eval(), randomise(TwoSlotNet(options), 1).eval()
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        net(x)  # fill the cache
        net.load_state_dict(other.state_dict())
        torch.testing.assert_close(net(x), other(x), rtol=0, atol=0)


def test_cache_can_be_switched_off():
    net = TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5, "cache_kernels": False})
    with torch.no_grad():
        assert net.body[0].kernel() is not net.body[0].kernel()


def test_gradients_reach_bank_and_every_layers_coefficients():
    net = randomise(TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5}))
    net(torch.randn(2, 4, 10, 10)).abs().mean().backward()
    for name, bank in net.sharing.banks.items():
        assert bank.grad is not None and bank.grad.abs().sum() > 0, name
    for layer in ps_layers(net):
        assert layer.element.grad.abs().sum() > 0


def test_released_initialisation_coefficients_one_over_np_kaiming_tap_bank_normal_filter_bank():
    torch.manual_seed(0)
    net = build_network({"type": "CARN_PS"})
    conv = net.b1.b1_x2.conv1
    assert torch.all(conv.element == 1 / 144) and torch.all(conv.bias == 0)
    assert net.sharing.banks["tap_64x64_k3"].std().item() == pytest.approx(2**0.5 / 64, rel=0.02)
    srfbn = build_network({"type": "SRFBN_S_PS"}, scale=2)
    assert srfbn.sharing.banks["filter_32x32_k6"].std().item() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    "options, scale",
    [
        ({"type": "DRRN_PS", "num_features": 8, "num_units": 2}, None),
        ({"type": "DRRN", "num_features": 8, "num_units": 2}, None),  # recursive: SharedRef slots
        ({"type": "SRFBN_S_PS", "num_features": 8}, 3),
        ({"type": "SRFBN_S", "num_features": 8}, 3),  # recursive, with companion PReLUs
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else str(v),
)
def test_materialized_network_matches_and_loads_into_the_unshared_arch(options, scale):
    net = randomise(build_network(options, scale=scale), 3).eval()
    plain = materialize(net).eval()
    assert not ps_layers(plain) and not list(plain.sharing.parameters())
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        for s in (2, 3, 4) if scale is None else (None,):
            outputs = [m(x) if s is None else m(x, s) for m in (plain, net)]
            torch.testing.assert_close(*outputs, rtol=0, atol=1e-5)
    unshared = build_network({**options, "sharing": "none"}, scale=scale)
    unshared.load_state_dict(plain.state_dict(), strict=True)


def test_deep_copies_use_their_own_bank():
    import copy

    net = randomise(TwoSlotNet({"type": "partial_filter", "num_partial_filters": 5})).eval()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.sharing.banks["tap_4x4_k3"].zero_()
        x = torch.randn(1, 4, 8, 8)
        assert not torch.allclose(twin(x), net(x))
        assert twin.body[0]._scheme is twin.sharing
