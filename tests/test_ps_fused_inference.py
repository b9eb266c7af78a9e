"""The fused CPU inference path of the PS networks: the same outputs as plain PyTorch ops (to float
rounding), taken only where it applies, and never during training, tracing or on other dtypes."""

from __future__ import annotations

import pytest
import torch
from restore_ps.common import can_fuse, conv_act, fused_inference

from restore.api import build_network, materialize
from restore.profile import count_flops

NETWORKS = [  # small widths, every sharing scheme the archs are written for
    ({"type": "DRRN_PS", "num_features": 16, "num_units": 3}, None),
    ({"type": "DRRN", "num_features": 16, "num_units": 3}, None),  # recursive: SharedRef convs
    ({"type": "DRRN", "num_features": 16, "num_units": 2, "sharing": "none"}, None),
    ({"type": "CARN_PS", "num_features": 16}, None),
    ({"type": "CARN", "num_features": 16}, None),
    ({"type": "SRFBN_S_PS", "num_features": 8}, 2),
    ({"type": "SRFBN_S_PS", "num_features": 8}, 3),
    ({"type": "SRFBN_S", "num_features": 8}, 4),  # recursive, with companion PReLUs
]


def randomised(options: dict, scale: int | None) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network(options, scale=scale)
    with torch.no_grad():  # off the released initialisation, where every PS tap is the same
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def outputs(net: torch.nn.Module, x: torch.Tensor, scale: int | None) -> list[torch.Tensor]:
    scales = (2, 3, 4) if scale is None else (None,)
    return [net(x) if s is None else net(x, s) for s in scales]


def onednn_calls(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("mkldnn::_convolution"))


@pytest.mark.parametrize("options, scale", NETWORKS,
                         ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict) else str(v))
def test_fused_inference_equals_plain_ops(options, scale):
    net = randomised(options, scale)
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        with fused_inference(False):
            plain = outputs(net, x, scale)
        fused = outputs(net, x, scale)
        assert onednn_calls(lambda: outputs(net, x, scale)) > 0, "the fused path was not taken"
        with fused_inference(False):
            assert onednn_calls(lambda: outputs(net, x, scale)) == 0
    for a, b in zip(plain, fused, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_materialised_network_takes_the_fused_path_too():
    net = randomised({"type": "DRRN_PS", "num_features": 16, "num_units": 2}, None)
    plain = materialize(net).eval()
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert onednn_calls(lambda: plain(x, 2)) > 0
        torch.testing.assert_close(plain(x, 2), net(x, 2), rtol=0, atol=1e-5)


def test_training_uses_plain_ops_and_gradients_reach_the_bank():
    net = randomised({"type": "DRRN_PS", "num_features": 16, "num_units": 2}, None).train()
    x = torch.rand(1, 3, 10, 10)
    assert onednn_calls(lambda: net(x, 2)) == 0
    net(x, 2).mean().backward()
    assert net.sharing.banks["tap_16x16_k3"].grad.abs().sum() > 0


def test_only_cpu_float32_without_autograd_fuses():
    x = torch.rand(1, 4, 6, 6)
    assert can_fuse(x) is False  # autograd on
    with torch.no_grad():
        assert can_fuse(x)
        assert not can_fuse(x.double()) and not can_fuse(x.bfloat16()) and not can_fuse(x[0])
        with fused_inference(False):
            assert not can_fuse(x)
    with torch.inference_mode():
        assert can_fuse(x)


def test_bfloat16_inference_falls_back_to_plain_ops():
    net = randomised({"type": "CARN_PS", "num_features": 16}, None).bfloat16()
    x = torch.rand(1, 3, 8, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        assert onednn_calls(lambda: net(x, 2)) == 0  # (plain convs show as aten::mkldnn_convolution)
        out = net(x, 2)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 3, 16, 16)


def test_flop_counts_trace_the_plain_ops():
    net = randomised({"type": "DRRN_PS", "num_features": 16, "num_units": 2}, None)
    total, by_operator = count_flops(net, torch.rand(1, 3, 8, 8), scale=2)
    # 2 units x 2 convs of 16x16x3x3 plus entry (1->16) and exit (16->1), at 16x16 output pixels
    assert by_operator["conv"] == 16 * 16 * 9 * (4 * 16 * 16 + 16 + 16)
    assert total >= by_operator["conv"]


@pytest.mark.parametrize("act, reference", [
    ("relu", torch.relu),
    (torch.nn.PReLU(init=0.3), lambda y: torch.nn.functional.leaky_relu(y, 0.3)),
    (None, lambda y: y),
])
def test_conv_act_with_residual_matches_the_unfused_formula(act, reference):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(6, 6, 3, 1, 1)
    x, residual = torch.randn(2, 6, 9, 7), torch.randn(2, 6, 9, 7)
    with torch.no_grad():
        expected = reference(conv(x) + residual)
        got = conv_act(x, conv, act, residual=residual)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_transposed_conv_with_prelu_fuses_with_unequal_channels():
    torch.manual_seed(2)
    deconv = torch.nn.ConvTranspose2d(5, 7, 6, 2, 2)
    act = torch.nn.PReLU(init=0.2)
    x = torch.randn(1, 5, 8, 9)
    with torch.no_grad():
        expected = act(deconv(x))
        assert onednn_calls(lambda: conv_act(x, deconv, act)) == 1
        torch.testing.assert_close(conv_act(x, deconv, act), expected, rtol=0, atol=1e-5)
