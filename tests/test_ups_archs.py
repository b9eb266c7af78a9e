"""UPS / UPS-S / UPS-alt and the SwinIR-light baselines: sizes, shapes for every task, any input size."""

from __future__ import annotations

import itertools

import pytest
import torch
from basicsr.archs.swinir_arch import SwinIR

from restore.api import OptionError, build_network, count_parameters, pad_to_multiple
from restore.checkpoint import load_weights, save_weights
from restore.inference import run_network

TINY = {"embed_dim": 12, "depths": (2, 2), "window_size": 4, "proj_dim": 8}


def build(arch="UPS", in_chans=3, scale=2, **options):
    torch.manual_seed(0)
    return build_network({"type": arch, **options}, in_chans=in_chans, scale=scale).eval()


# -- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,paper", [("UPS", 824_000), ("UPS_S", 453_000)])
def test_x2_parameter_count_is_within_one_percent_of_the_paper(arch, paper):
    params = count_parameters(build(arch))
    assert abs(params - paper) / paper < 0.01, f"{arch}: {params:,} vs the paper's {paper:,}"


REF = {"variant": "ref"}  # the design note's reference reading of the poster


@pytest.mark.parametrize("arch,options,scale,expected", [
    ("UPS", REF, 2, 830_112), ("UPS", REF, 3, 838_227), ("UPS", REF, 4, 849_588),
    ("UPS_S", REF, 2, 451_792), ("UPS_S", REF, 3, 457_747), ("UPS_S", REF, 4, 466_084),
    ("UPS", {}, 2, 822_792), ("UPS_S", {}, 2, 452_088),  # the default, variant: alt
    ("SwinIR_light", {}, 2, 910_152), ("SwinIR_S", {}, 2, 498_440),
])
def test_parameter_counts_match_the_design_note(arch, options, scale, expected):
    assert count_parameters(build(arch, scale=scale, **options)) == expected


@pytest.mark.parametrize("in_chans,scale,expected", [(3, 1, 825_243), (1, 4, 831_196), (1, 16, 961_036)])
def test_restoration_and_depth_configurations_match_the_design_note(in_chans, scale, expected):
    assert count_parameters(build("UPS", in_chans=in_chans, scale=scale, **REF)) == expected


# -- shapes and tasks ------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["UPS", "UPS_S"])
@pytest.mark.parametrize("in_chans,scale", [(3, 2), (3, 3), (3, 4), (3, 1), (1, 1), (1, 4), (1, 16)])
def test_output_shape_for_every_scale_and_task(arch, in_chans, scale):
    net = build(arch, in_chans=in_chans, scale=scale, **TINY)
    with torch.no_grad():
        out = net(torch.rand(2, in_chans, 8, 12))
    assert out.shape == (2, in_chans, 8 * scale, 12 * scale)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_restoration_output_is_the_input_plus_a_learned_residual(in_chans):
    net = build(in_chans=in_chans, scale=1, **TINY)
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.zero_()
        x = torch.rand(1, in_chans, 8, 8)
        torch.testing.assert_close(net(x), x)


@pytest.mark.parametrize("size", [(13, 21), (3, 5), (4, 4)])
def test_eval_on_input_not_divisible_by_the_window_works_and_matches_core_padding(size):
    net = build(**TINY)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        direct = net(x)
        through_core = run_network(net, x, scale=2)
    assert direct.shape == (1, 3, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(direct, through_core)


def test_padding_then_cropping_round_trips():
    x = torch.rand(1, 3, 13, 21)
    padded = pad_to_multiple(x, 8, "symmetric")
    assert padded.shape[-2:] == (16, 24)
    torch.testing.assert_close(padded[..., :13, :21], x)
    # the official SwinIR mirror: the rows after the image are the image's last rows, flipped
    torch.testing.assert_close(padded[..., 13:16, :21], x.flip(2)[..., :3, :])


def test_large_image_through_tiled_inference_has_the_full_size():
    from restore.inference import run_tiled

    net = build(**TINY)
    x = torch.rand(1, 3, 70, 90)
    out = run_tiled(net, x, scale=2, tile=32, overlap=8)
    assert out.shape == (1, 3, 140, 180)
    assert torch.isfinite(out).all()


def test_every_second_layer_of_each_group_is_shifted_by_half_a_window():
    net = build(embed_dim=12, depths=(3, 2), window_size=4)
    assert [[layer.shift for layer in group.layers] for group in net.groups] == [[0, 2, 0], [0, 2]]


# -- ablation switches -----------------------------------------------------------------------------

@pytest.mark.parametrize("similarity,activation", list(itertools.product(["cosine", "dot"], ["relu", "softmax"])))
def test_every_similarity_and_activation_builds_and_trains(similarity, activation):
    net = build(similarity=similarity, activation=activation, **TINY).train()
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    assert net.sharing.projections[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layer_conv", ["conv3x3", "conv1x1", "grouped3x3", "depthwise3x3", "dwsep3x3"])
def test_every_layer_conv_type_builds(layer_conv):
    net = build(layer_conv=layer_conv, **TINY)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_alt_variant_keeps_swinir_mlp_output_projection_and_group_conv():
    net = build(variant="alt", **TINY)
    layer = net.groups[0].layers[0]
    assert net.config == {"variant": "alt", "proj_groups": 2, "layer_conv": "grouped3x3", "out_proj": True,
                          "mlp_ratio": 2.0, "group_conv": True}
    assert layer.mlp is not None and layer.out is not None and net.groups[0].conv is not None
    assert build(variant="alt", mlp_ratio=0, **TINY).groups[0].layers[0].mlp is None  # each choice overridable


def test_value_projection_ablation_adds_one_linear_per_layer():
    c = TINY["embed_dim"]
    extra = count_parameters(build(value_proj=True, **TINY)) - count_parameters(build(**TINY))
    assert extra == 4 * (c * c + c)


def test_bad_option_values_are_option_errors_naming_the_key():
    with pytest.raises(OptionError, match=r"network_g\.similarity"):
        build(similarity="euclid")
    with pytest.raises(OptionError, match=r"network_g\.simlarity.*Did you mean 'similarity'"):
        build(simlarity="dot")


# -- checkpoints -------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"variant": "alt"}, {"sharing": {"type": "unified_projection", "n_share": 2}}])
def test_state_dict_round_trip_through_safetensors(tmp_path, options):
    net = build(**TINY, **options)
    path = tmp_path / "ups.safetensors"
    save_weights(path, net.state_dict(), network={"type": "UPS", **TINY, **options})
    fresh = build(**TINY, **options)
    torch.manual_seed(1)
    fresh.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    state, _ = load_weights(path)
    fresh.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))


def test_x3_initialised_from_x2_weights_takes_everything_but_the_upsampler(tmp_path, caplog):
    from restore.build import load_pretrained

    x2 = build(**TINY)
    save_weights(tmp_path / "x2.safetensors", x2.state_dict(), network={"type": "UPS", **TINY})
    x3 = build(scale=3, **TINY)
    meta = load_pretrained(x3, tmp_path / "x2.safetensors", strict=False)  # options/ups_sr_x3.yml: strict_load_g false
    assert sorted(meta["skipped_shape_mismatch"]) == ["tail.0.bias", "tail.0.weight"]
    assert "skipped keys of another shape" in caplog.text and "tail.0.weight" in caplog.text
    loaded = {k: v for k, v in x3.state_dict().items() if not k.startswith("tail.")}
    assert all(torch.equal(v, x2.state_dict()[k]) for k, v in loaded.items())


# -- SwinIR baselines --------------------------------------------------------------------------------

def test_swinir_light_pads_like_the_official_test_code_and_keeps_basicsr_parameter_names():
    net = build("SwinIR_light", depths=(2,), num_heads=(2,), embed_dim=12)
    plain = SwinIR(upscale=2, img_size=64, window_size=8, embed_dim=12, depths=[2], num_heads=[2], mlp_ratio=2,
                   upsampler="pixelshuffledirect").eval()
    plain.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        expected = plain(pad_to_multiple(x, 8, "symmetric"))[..., :26, :42]
        torch.testing.assert_close(net(x), expected)


def test_swinir_at_scale_one_uses_the_restoration_tail():
    net = build("SwinIR_S", in_chans=1, scale=1, depths=(2,), num_heads=(2,), embed_dim=8)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 10, 10)).shape == (1, 1, 10, 10)
    assert net.upsampler == ""
