"""Guided depth SR: guide images travel with their depth maps through crops, flips, padding and
tiles, reach guided archs (DJF) in training, `restore test` and `restore infer`, and bad guides
are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from restore.api import ArchInfo, DataError, read_array, write_image
from restore.archs import build_network
from restore.build import build_task
from restore.checkpoint import save_weights
from restore.cli import main
from restore.data.paired import PairedImageDataset, SampleKey
from restore.inference import run_network

DEPTH_X4 = {"type": "depth_sr", "scale": 4, "zero_is_invalid": False}


@pytest.fixture
def rgbd(tmp_path):
    """Six 8-bit depth maps spanning 0..255 (so normalisation is /255) and RGB guides whose three
    channels equal the map, named like Middlebury's (`*_depth` / `*_color`)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        depth = rng.integers(0, 256, (50 + i, 61), dtype=np.uint8)
        depth[0, 0], depth[0, 1] = 0, 255
        write_image(tmp_path / "Depth" / f"scene{i}_depth.png", depth[:, :, None])
        write_image(tmp_path / "RGB" / f"scene{i}_color.png", np.repeat(depth[:, :, None], 3, axis=2))
    return tmp_path


def _dataset(root, phase="train", **kwargs):
    options = {"dataroot_gt": str(root / "Depth"), "dataroot_guide": str(root / "RGB"),
               "guide_replace": {"_depth": "_color"}, **kwargs}
    return PairedImageDataset(build_task(DEPTH_X4), phase, 0, **options)


def test_the_guide_is_cropped_and_flipped_with_its_depth_map(rgbd):
    dataset = _dataset(rgbd, gt_size=16)
    for position in range(24):
        item = dataset[SampleKey(position % 6, position, None)]
        assert item["guide"].shape == (3, 16, 16) and item["gt"].shape == (1, 16, 16)
        for channel in item["guide"]:
            torch.testing.assert_close(channel, item["gt"][0], atol=1e-6, rtol=0)


def test_evaluation_items_carry_the_guide_cropped_to_the_scale(rgbd):
    item = _dataset(rgbd, phase="val")[5]  # 55 x 61 -> 52 x 60 at x4
    assert item["guide"].shape == (52, 60, 3) and item["gt"].shape == (52, 60, 1)
    np.testing.assert_allclose(item["guide"][:, :, 0], item["gt"][:, :, 0], atol=1e-6)


def test_a_missing_guide_names_the_key_and_how_to_map_names(rgbd):
    with pytest.raises(DataError, match=r"no guide image for GT scene0_depth.*'scene0_depth'.*guide_replace"):
        _dataset(rgbd, guide_replace=None)


def test_a_guide_of_another_size_names_the_file(rgbd):
    write_image(rgbd / "RGB" / "scene2_color.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"scene2_color.png: the guide is 20x20 but its depth map scene2_depth"):
        _dataset(rgbd, phase="val")[2]


class _GuidedProbe(nn.Module):
    """x4 upsampling plus the guide's mean: shows which guide pixels reach each output pixel."""

    def forward(self, x, guide):
        assert guide.shape[-2:] == (x.shape[-2] * 4, x.shape[-1] * 4)
        return torch.repeat_interleave(torch.repeat_interleave(x, 4, -1), 4, -2) + guide.mean(1, keepdim=True)


def test_a_guided_arch_gets_a_guide_padded_like_its_input_and_cropped_back():
    net = _GuidedProbe()
    net.restore_info = ArchInfo(guided=True, size_multiple=8, pad_mode="replicate")
    lq, guide = torch.rand(1, 1, 13, 21), torch.rand(1, 3, 52, 84)
    out = run_network(net, lq, 4, guide=guide)
    expected = torch.repeat_interleave(torch.repeat_interleave(lq, 4, -1), 4, -2) + guide.mean(1, keepdim=True)
    torch.testing.assert_close(out, expected)


def test_tiled_guided_inference_equals_whole_image_inference():
    torch.manual_seed(0)
    net = build_network({"type": "DJF"}, in_chans=1, scale=4).eval()
    nn.init.normal_(net.fusion[-1].weight, std=0.1)  # a trained-looking net, not the zero-init identity
    lq, guide = torch.rand(1, 1, 40, 56), torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        whole = run_network(net, lq, 4, guide=guide)
        tiled = run_network(net, lq, 4, guide=guide, tile=24, tile_overlap=16)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_a_guided_arch_without_a_guide_says_how_to_give_one():
    net = build_network({"type": "DJF"}, in_chans=1, scale=4)
    with pytest.raises(DataError, match="DJF is a guided network.*dataroot_guide"):
        run_network(net, torch.rand(1, 1, 8, 8), 4)


def test_profile_counts_a_guided_arch_with_its_guide():
    from restore.profile import profile_arch

    profile = profile_arch({"type": "DJF"}, scale=4, in_chans=1, output_size=(64, 48))
    # Per HR pixel: target 81*96 + 96*48 + 48*25, guide 3*81*96 + 96*48 + 48*25, fusion 2*81*64 + 64*32 + 32*25.
    per_pixel = (7776 + 4608 + 1200) + (23328 + 4608 + 1200) + (10368 + 2048 + 800)
    assert profile.params == 56_323 and profile.flops == pytest.approx(per_pixel * 64 * 48, rel=0.01)


def test_djf_learns_from_both_inputs():
    net = build_network({"type": "DJF"}, in_chans=1, scale=4)
    assert sum(p.numel() for p in net.parameters()) == 56_323
    with torch.no_grad():  # zero-initialised last layer: the untrained net is the upsampled map
        lq = torch.rand(1, 1, 8, 8)
        torch.testing.assert_close(net(lq, guide=torch.rand(1, 3, 32, 32)),
                                   nn.functional.interpolate(lq, scale_factor=4, mode="bicubic"))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # the first step moves the zero layer; then gradients reach every branch
        optimizer.zero_grad()
        net(torch.rand(2, 1, 8, 8), guide=torch.rand(2, 3, 32, 32)).square().mean().backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.fixture
def djf_weights(tmp_path):
    torch.manual_seed(0)
    net = build_network({"type": "DJF"}, in_chans=1, scale=4)
    nn.init.normal_(net.fusion[-1].weight, std=0.1)
    return save_weights(tmp_path / "djf.safetensors", net.state_dict(), network={"type": "DJF"},
                        task=DEPTH_X4)


def test_restore_test_takes_guides_beside_a_dataset(rgbd, djf_weights, tmp_path):
    for path in (rgbd / "RGB").iterdir():  # --guide matches guides to maps by name
        path.rename(path.with_name(path.name.replace("_color", "_depth")))
    assert main(["test", "--weights", str(djf_weights), "--dataset", str(rgbd / "Depth"), "--guide",
                 str(rgbd / "RGB"), "--out", str(tmp_path / "report")]) == 0
    report = tmp_path / "report" / rgbd.name  # <name>/Depth is reported as <name>
    assert "DJF" in (report / "metrics.md").read_text()
    figure = read_array(report / "figures" / "scene0_depth.png")  # LQ, Bicubic, DJF, GT over two error maps
    assert figure.shape[2] == 3 and figure.shape[1] > 3 * figure.shape[0] / 2
    assert read_array(report / "figures" / "Guide" / "scene0_depth.jpg").shape[2] == 3  # the photo, beside it
    page = (report / "index.html").read_text()
    assert "figures/Guide/scene0_depth.jpg" in page and "|DJF - GT|" in page


def test_restore_infer_takes_a_guide(rgbd, djf_weights, tmp_path):
    lr = read_array(rgbd / "Depth" / "scene0_depth.png")[:48:4, :60:4]
    write_image(tmp_path / "lr.png", lr)
    write_image(tmp_path / "guide.png", read_array(rgbd / "RGB" / "scene0_color.png")[:48, :60])
    assert main(["infer", str(tmp_path / "lr.png"), str(tmp_path / "out"), "--weights", str(djf_weights),
                 "--guide", str(tmp_path / "guide.png")]) == 0
    restored = read_array(tmp_path / "out" / "lr.tiff")  # float32 in the input's units, not rounded to 8 bits
    assert restored.shape == (48, 60, 1) and restored.dtype == np.float32
    assert main(["infer", str(tmp_path / "lr.png"), str(tmp_path / "out2"), "--weights", str(djf_weights)]) == 2


def test_training_a_guided_arch_without_guides_stops_before_any_work(shared, capsys, monkeypatch):
    from tests.conftest import REPO

    monkeypatch.chdir(REPO)
    assert main(["train", "-opt", "options/quick_djf_depth_x4.yml", "--set", "datasets.val.dataroot_guide=~",
                 "--dry-run"]) == 2
    assert "datasets.val.dataroot_guide: missing; DJF is a guided network" in capsys.readouterr().err
