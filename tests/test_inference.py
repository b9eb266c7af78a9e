"""Tiled inference gives the whole-image result with memory bounded by the tile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restore.api import ArchInfo, build_network, read_array
from restore.errors import OptionError, RestoreError
from restore.inference import blend_weights, run_network, tile_starts

ROOT = Path(__file__).resolve().parents[1]

SWINIR_SMALL = {"type": "SwinIR", "window_size": 8, "embed_dim": 24, "depths": [2], "num_heads": [2],
                "mlp_ratio": 2.0, "img_size": 64}


@pytest.fixture(scope="module")
def baby_crop() -> torch.Tensor:
    """A real photo, 150x203: divisible neither by the tiles nor by SwinIR's window."""
    img = read_array(ROOT / "datasets/Set5/HR/baby.png")[100:250, 150:353]
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _seeded(build):
    torch.manual_seed(0)
    return build().eval()


def msrresnet_x2() -> nn.Module:
    # Receptive-field radius about 7 LQ pixels (6 convs at LQ size, 2 at HR size, bilinear base).
    net = _seeded(lambda: build_network({"type": "MSRResNet", "num_block": 2, "num_feat": 16},
                                        in_chans=3, out_chans=3, scale=2))
    # basicsr scales its initial weights by 0.1, which hides distant context below float precision;
    # PyTorch's default initialisation makes the whole receptive field count.
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    return net


def conv3_x1() -> nn.Module:
    # Three 3x3 convs: receptive-field radius 3.
    return _seeded(lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                         nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)))


def swinir(scale: int) -> nn.Module:
    upsampler = "pixelshuffledirect" if scale > 1 else ""
    return _seeded(lambda: build_network({**SWINIR_SMALL, "upsampler": upsampler}, in_chans=3, out_chans=3,
                                         scale=scale))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize(("make", "scale", "tile", "overlap"), [
    (msrresnet_x2, 2, 64, 32),
    (msrresnet_x2, 2, 100, 40),
    (conv3_x1, 1, 40, 16),
    (conv3_x1, 1, 64, 12),
])
def test_tiled_output_equals_whole_image_output_for_conv_nets(baby_crop, make, scale, tile, overlap):
    net = make()
    with torch.no_grad():
        whole = run_network(net, baby_crop, scale)
        tiled = run_network(net, baby_crop, scale, tile=tile, tile_overlap=overlap)
    assert tiled.shape == whole.shape == (1, 3, 150 * scale, 203 * scale)
    assert tiled.dtype == torch.float32
    assert _max_diff(tiled, whole) < 1e-5


def ups_s_x2() -> nn.Module:
    return _seeded(lambda: build_network({"type": "UPS_S", "embed_dim": 24, "depths": [2]}, in_chans=3, out_chans=3,
                                         scale=2))


@pytest.mark.parametrize(("make", "scale"), [(lambda: swinir(1), 1), (lambda: swinir(2), 2), (ups_s_x2, 2)],
                         ids=["swinir-x1", "swinir-x2", "ups_s-x2"])
def test_tiled_window_transformers_see_the_whole_image_window_grid_and_match_it(baby_crop, make, scale):
    # Receptive-field radius about 20 LQ pixels: two window layers of 8 plus convs. Tile 130 and
    # overlap 75 round to 128 and 80 on the 8-pixel window grid; 80/4 = 20 pixels of margin.
    net = make()
    assert net.restore_info.size_multiple == 8
    with torch.no_grad():
        whole = run_network(net, baby_crop, scale)
        tiled = run_network(net, baby_crop, scale, tile=130, tile_overlap=75)
    assert tiled.shape == whole.shape == (1, 3, 150 * scale, 203 * scale)
    assert _max_diff(tiled, whole) < 1e-5


@pytest.mark.parametrize(("make", "scale", "overlap"), [(msrresnet_x2, 2, 8), (lambda: swinir(2), 2, 32)])
def test_tiles_lacking_context_differ_slightly_from_the_whole_image(baby_crop, make, scale, overlap):
    # The counterpart of the equivalence tests: when the receptive field exceeds overlap/4 the
    # tiles really are cut off from their context, and blending keeps the difference small.
    net = make()
    with torch.no_grad():
        whole = run_network(net, baby_crop, scale)
        tiled = run_network(net, baby_crop, scale, tile=64, tile_overlap=overlap)
    assert 1e-6 < _max_diff(tiled, whole) < 0.02


def test_network_only_ever_sees_tile_sized_inputs_and_activations(baby_crop):
    net = msrresnet_x2()
    inputs: list[tuple[int, ...]] = []
    largest = {"numel": 0}

    def record_input(module, args):
        inputs.append(tuple(args[0].shape))

    def record_activation(module, args, output):
        largest["numel"] = max(largest["numel"], output.numel())

    hooks = [net.register_forward_pre_hook(record_input)]
    hooks += [m.register_forward_hook(record_activation) for m in net.modules() if m is not net]
    try:
        with torch.no_grad():
            run_network(net, baby_crop, 2)
            whole_peak, whole_inputs = largest["numel"], list(inputs)
            inputs.clear()
            largest["numel"] = 0
            run_network(net, baby_crop, 2, tile=64, tile_overlap=32)
    finally:
        for hook in hooks:
            hook.remove()
    assert whole_inputs == [(1, 3, 150, 203)]
    rows, cols = len(tile_starts(150, 64, 32)), len(tile_starts(203, 64, 32))
    assert inputs == [(1, 3, 64, 64)] * (rows * cols)
    # The largest activation shrinks exactly by the ratio of tile area to image area.
    assert largest["numel"] / whole_peak == pytest.approx(64 * 64 / (150 * 203))


def test_an_image_smaller_than_the_tile_is_run_whole(baby_crop):
    net = msrresnet_x2()
    small = baby_crop[..., :40, :57]
    with torch.no_grad():
        assert torch.equal(run_network(net, small, 2, tile=64), run_network(net, small, 2))


def test_a_batch_is_tiled_image_by_image(baby_crop):
    net = conv3_x1()
    batch = torch.cat([baby_crop, baby_crop.flip(-1)])
    with torch.no_grad():
        tiled = run_network(net, batch, 1, tile=48, tile_overlap=16)
        singles = [run_network(net, batch[i : i + 1], 1) for i in range(2)]
    assert tiled.shape == (2, 3, 150, 203)
    for i in range(2):
        assert _max_diff(tiled[i : i + 1], singles[i]) < 1e-5


class StepOutputs(nn.Module):
    """Returns per-step outputs, like recursive archs in training mode; the last one counts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.zeros_like(x), self.conv(x)]


class MultiScaleNearest(nn.Module):
    """A multi-scale net: called as ``net(x, scale=s)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.restore_info = ArchInfo(multi_scale=True)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=scale, mode="nearest"))


@pytest.mark.parametrize(("make", "scale"), [(StepOutputs, 1), (MultiScaleNearest, 3)])
def test_tiles_use_the_last_step_output_and_pass_the_scale(baby_crop, make, scale):
    net = _seeded(make)
    with torch.no_grad():
        whole = run_network(net, baby_crop, scale)
        tiled = run_network(net, baby_crop, scale, tile=64, tile_overlap=16)
    assert whole.shape == tiled.shape == (1, 3, 150 * scale, 203 * scale)
    assert _max_diff(tiled, whole) < 1e-5


@pytest.mark.parametrize("length", [64, 65, 97, 150, 203, 256, 1000])
@pytest.mark.parametrize(("tile", "overlap", "multiple"), [(64, 32, 1), (48, 0, 1), (96, 80, 8), (64, 16, 16)])
def test_tiles_cover_the_axis_on_the_grid_with_at_least_the_overlap(length, tile, overlap, multiple):
    length = -(-length // multiple) * multiple  # the input is padded to the multiple first
    tile = min(tile, length)
    starts = tile_starts(length, tile, overlap, multiple)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(s % multiple == 0 for s in starts)
    assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize(("length", "tile", "overlap", "scale"), [(203, 64, 32, 1), (97, 64, 32, 2), (150, 48, 0, 3)])
def test_blend_weights_sum_to_one_and_ignore_the_outer_quarter_of_each_overlap(length, tile, overlap, scale):
    starts = tile_starts(length, tile, overlap)
    weights = blend_weights(starts, tile, length, scale)
    total = torch.zeros(length * scale)
    for start, w in zip(starts, weights, strict=True):
        total[start * scale : (start + tile) * scale] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    for i in range(1, len(starts)):
        margin = (starts[i - 1] + tile - starts[i]) // 4 * scale
        assert torch.all(weights[i][:margin] == 0) and torch.all(weights[i - 1][-margin or len(weights[i - 1]):] == 0)


def test_overlap_must_be_smaller_than_the_tile_after_rounding_to_the_window(baby_crop):
    with pytest.raises(OptionError, match=r"tile_overlap 40 must be smaller than tile 40 \(rounded to .* 8\)"):
        run_network(swinir(2), baby_crop, 2, tile=44, tile_overlap=33)
    with pytest.raises(OptionError, match="tile_overlap 32 must be smaller than tile 32"):
        run_network(conv3_x1(), baby_crop, 1, tile=32)


def test_a_network_at_another_scale_is_reported(baby_crop):
    with pytest.raises(RestoreError, match=r"MSRResNet turned a 64x64 tile into 128x128, not 192x192 at scale 3"):
        run_network(msrresnet_x2(), baby_crop, 3, tile=64)
