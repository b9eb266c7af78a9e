"""SwinIR-light / SwinIR-S on the sharing API: basicsr's (= the official) SwinIR exactly with
``sharing: none``, and a baseline every sharing scheme applies to."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from basicsr.archs.swinir_arch import SwinIR

from restore.api import build_network, count_parameters, materialize, pad_to_multiple

LIGHT = {"embed_dim": 60, "depths": [6, 6, 6, 6], "num_heads": [6, 6, 6, 6]}
SMALL = {"embed_dim": 12, "depths": [2, 2], "num_heads": [2, 2], "img_size": 16}


def basicsr_swinir(scale: int, in_chans: int = 3, **config) -> SwinIR:
    """basicsr's SwinIR in SwinIR-light's configuration (overridable), with random non-trivial weights."""
    config = {"img_size": 64, "window_size": 8, "mlp_ratio": 2, "upsampler": "pixelshuffledirect", **LIGHT, **config}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # basicsr calls torch.meshgrid without `indexing`
        net = SwinIR(upscale=scale, in_chans=in_chans, **config).eval()
    with torch.no_grad():  # trained-looking weights: nothing at its initial 0 or 1
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def ours(arch: str = "SwinIR_light", scale: int = 2, in_chans: int = 3, **options) -> torch.nn.Module:
    return build_network({"type": arch, **options}, in_chans=in_chans, scale=scale).eval()


def official_output(net: SwinIR, x: torch.Tensor, scale: int) -> torch.Tensor:
    """The official test code: mirror-pad to the window, run, crop."""
    h, w = x.shape[-2:]
    return net(pad_to_multiple(x, 8, "symmetric"))[..., : h * scale, : w * scale]


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(13, 21), (16, 24)], ids=["needs-padding", "window-multiple"])
def test_swinir_light_loads_basicsr_weights_strictly_and_gives_identical_outputs(scale, size):
    reference = basicsr_swinir(scale)
    net = ours(scale=scale)
    net.load_state_dict(reference.state_dict(), strict=True)  # buffers (attn_mask, index) included
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = official_output(reference, x, scale), net(x)
    assert got.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert torch.equal(got, expected), (got - expected).abs().max()


def test_swinir_s_matches_basicsr_at_width_44_with_4_heads():
    reference = basicsr_swinir(2, embed_dim=44, num_heads=[4, 4, 4, 4])
    net = ours("SwinIR_S")
    net.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(1, 3, 11, 19)
    with torch.no_grad():
        assert torch.equal(net(x), official_output(reference, x, 2))


def test_inputs_of_the_training_size_use_the_stored_mask_and_match_basicsr():
    reference = basicsr_swinir(2, **SMALL)
    net = ours(**SMALL)
    net.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 16, 16)  # img_size: the stored attn_mask buffer serves this size
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))


@pytest.mark.parametrize("upsampler,scale,in_chans", [
    ("pixelshuffle", 2, 3), ("pixelshuffle", 3, 3), ("nearest+conv", 4, 3), ("", 1, 1), ("", 1, 3),
])
@pytest.mark.parametrize("resi_connection", ["1conv", "3conv"])
def test_every_tail_and_residual_connection_matches_basicsr(upsampler, scale, in_chans, resi_connection):
    config = {**SMALL, "upsampler": upsampler, "resi_connection": resi_connection}
    reference = basicsr_swinir(scale, in_chans, **config)
    net = ours(scale=scale, in_chans=in_chans, **config)
    net.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(1, in_chans, 9, 14)
    with torch.no_grad():
        assert torch.equal(net(x), official_output(reference, x, scale))


@pytest.mark.parametrize("arch,scale,expected", [
    ("SwinIR_light", 2, 910_152), ("SwinIR_light", 3, 918_267), ("SwinIR_light", 4, 929_628),
    ("SwinIR_S", 2, 498_440),
])
def test_registered_names_keep_basicsr_parameter_counts(arch, scale, expected):
    reference = basicsr_swinir(scale, **({"embed_dim": 44, "num_heads": [4] * 4} if arch == "SwinIR_S" else {}))
    assert count_parameters(ours(arch, scale=scale)) == count_parameters(reference) == expected


# -- the sharing API -------------------------------------------------------------------------------

def slots_requested(**options) -> list[tuple[str, str]]:
    from restore.api import NoSharing

    class Recording(NoSharing):
        """`none`, noting every request (a real scheme: the arch builds and runs with it)."""

        def __init__(self) -> None:
            super().__init__()
            self.requests: list[tuple[str, str]] = []

        def conv2d(self, slot, *args, **kwargs):
            self.requests.append(("conv2d", slot))
            return super().conv2d(slot, *args, **kwargs)

        def linear(self, slot, *args, **kwargs):
            self.requests.append(("linear", slot))
            return super().linear(slot, *args, **kwargs)

    scheme = Recording()
    ours(sharing=scheme, **options)
    return scheme.requests


def test_body_layers_are_requested_under_meaningful_slots():
    requests = slots_requested(**SMALL)
    layer = [("linear", f"layer1.{name}") for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    assert requests[4:8] == layer
    assert ("conv2d", "group0.conv") in requests and ("conv2d", "group1.conv") in requests
    assert len(requests) == 4 * 4 + 2  # 4 Swin layers x 4 linears, 2 group convs; head and tail are plain


def test_unified_qkv_shares_one_projection_across_every_layer_and_materializes_to_basicsr_layout():
    net = ours(sharing={"type": "unified_projection", "slot": "*.attn.qkv"})
    qkv = 60 * 180 + 180
    assert count_parameters(net) == 910_152 - 23 * qkv
    targets = {id(block.attn.qkv.target) for group in net.layers for block in group.residual_group.blocks}
    assert targets == {id(net.sharing.projections[0])}
    net.train()(torch.rand(1, 3, 8, 8)).mean().backward()
    assert net.sharing.projections[0].weight.grad.abs().sum() > 0

    plain = materialize(net.eval())
    reference = basicsr_swinir(2)
    reference.load_state_dict(plain.state_dict(), strict=True)  # the unshared form is official SwinIR
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.equal(official_output(reference, x, 2), net(x))


def test_partial_filter_rebuilds_the_group_convs_from_one_bank():
    net = ours(sharing={"type": "partial_filter", "ratio": "1/2"})
    bank = net.sharing.describe()["banks"]["tap_60x60_k3"]
    assert bank == {"slots": 4, "layers": 4, "N_total": 36, "N_p": 18, "ratio": "1/2"}
    conv = 60 * 60 * 9 + 60
    assert count_parameters(net) == 910_152 - 4 * conv + 18 * 60 * 60 + 4 * (9 * 18 + 60)


def test_recursive_is_the_unshared_network_because_no_swinir_slot_recurs():
    assert count_parameters(ours(sharing="recursive")) == 910_152


def test_compose_mixes_schemes_on_swinir_and_deep_copies_with_them():
    sharing = {"type": "compose", "rules": [
        {"slots": "*.attn.qkv", "scheme": {"type": "unified_projection", "slot": "*", "n_share": 2}},
        {"slots": "group*.conv", "scheme": {"type": "partial_filter", "num_partial_filters": 9}},
    ]}
    net = ours(**SMALL, sharing=sharing)
    twin = copy.deepcopy(net)  # what EMA keeps
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        for p in twin.sharing.parameters():
            p.zero_()
        assert torch.equal(net(x), before)
        assert not torch.equal(twin(x), before)
    plain = materialize(net)
    unshared = ours(**SMALL)
    unshared.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(unshared(x), before)


def test_profile_counts_the_flops_of_basicsrs_swinir_operator_by_operator():
    scale = 3  # a 48x64 output: LR 16x22, padded to 16x24 by both
    from restore.profile import profile_arch

    basicsr_options = {"type": "SwinIR", "img_size": 64, "window_size": 8, "mlp_ratio": 2,
                       "upsampler": "pixelshuffledirect", **LIGHT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = profile_arch(basicsr_options, scale=scale, output_size=(48, 64))
    mine = profile_arch({"type": "SwinIR_light"}, scale=scale, output_size=(48, 64))
    assert (mine.params, mine.lr_size, mine.by_operator) == (theirs.params, theirs.lr_size, theirs.by_operator)
    assert mine.flops == theirs.flops > 0
