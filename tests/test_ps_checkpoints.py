"""The authors' released PS checkpoints load safely and strictly; the converters fold the bank
aliases, strip prefixes and infer N_p; conversion and export through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from restore_ps.convert import convert_carn_ps

from restore.api import CheckpointError, build_network, count_parameters, read_array
from restore.build import load_pretrained, model_from_checkpoint, read_state_dict
from restore.checkpoint import load_weights, safe_torch_load
from restore.cli import main
from restore.metrics import psnr
from restore.tasks import quantize_uint8

DATASETS = Path(__file__).resolve().parents[1] / "datasets"


def test_drrn_ps_released_checkpoint_loads_strictly_with_np_inferred(released):
    raw = safe_torch_load(released / "drrnps.pth")
    state_dict, meta = read_state_dict(released / "drrnps.pth")
    assert meta["converted_by"] == "ps_drrn"
    assert meta["network"]["sharing"] == {"type": "partial_filter", "num_partial_filters": 18}
    assert not [k for k in state_dict if k.endswith(".matrix") or k == "filterbank"]
    net = build_network(meta["network"])
    net.load_state_dict(state_dict, strict=True)
    assert count_parameters(net) == 306_093
    assert torch.equal(net.sharing.banks["tap_128x128_k3"], raw["filterbank"])
    assert torch.equal(net.b7.b1_x3.conv2.element, raw["b7.b1_x3.conv2.element"])


def test_srfbn_ps_released_checkpoint_needs_the_numpy_allow_list_and_loads_strictly(released):
    path = released / "srfbnspsx2.pth"
    with pytest.raises(CheckpointError, match="numpy"):
        safe_torch_load(path)  # plain weights_only refuses the numpy scalars in its training records
    state_dict, meta = read_state_dict(path)
    assert meta["converted_by"] == "ps_srfbn"
    assert meta["network"]["scale"] == 2 and meta["network"]["sharing"]["num_partial_filters"] == 72
    assert not [k for k in state_dict if k.startswith("module.")]
    net = build_network(meta["network"])
    net.load_state_dict(state_dict, strict=True)
    assert count_parameters(net) == 282_355


def butterfly_crop(scale: int, size: int = 40) -> tuple[torch.Tensor, np.ndarray]:
    """A central LR crop of Set5 butterfly and the matching HR crop."""
    lr_box, hr_box = slice(20, 20 + size), slice(20 * scale, (20 + size) * scale)
    lr = read_array(DATASETS / f"Set5/LR_bicubic/X{scale}/butterflyx{scale}.png")[lr_box, lr_box]
    hr = read_array(DATASETS / "Set5/HR/butterfly.png")[hr_box, hr_box]
    return torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255, hr


@pytest.mark.parametrize("weights, scale", [("drrnps.pth", 2), ("drrnps.pth", 4), ("srfbnspsx2.pth", 2)])
def test_released_weights_restore_far_better_than_bicubic(released, weights, scale):
    # A wrong bank layout (ci/co or tap order swapped) loads without error but falls to or below bicubic.
    _, meta = read_state_dict(released / weights)
    net = build_network(meta["network"]).eval()
    load_pretrained(net, released / weights)
    lr, hr = butterfly_crop(scale)
    with torch.no_grad():
        out = net(lr, scale=scale) if net.restore_info.multi_scale else net(lr)
        bicubic = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic")
    score = psnr(quantize_uint8(out[0].permute(1, 2, 0).numpy()), hr, crop_border=scale, test_y_channel=True)
    baseline = psnr(quantize_uint8(bicubic[0].permute(1, 2, 0).numpy()), hr, crop_border=scale, test_y_channel=True)
    assert score > baseline + 3.0


def authors_carn_ps_state_dict(num_partial_filters: int) -> dict[str, torch.Tensor]:
    """A CARN-PS state_dict laid out as the released code saves it (design note, appendix A.3)."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen)

    bank = rand(num_partial_filters, 64 * 64)
    sd = {"filterbank": bank}
    for shift in ("sub_mean", "add_mean"):
        sd[f"{shift}.shifter.weight"], sd[f"{shift}.shifter.bias"] = rand(3, 3, 1, 1), rand(3)
    sd["entry.weight"], sd["entry.bias"] = rand(64, 3, 3, 3), rand(64)
    for i in (1, 2, 3):
        for j in (1, 2, 3):
            for s in (2, 3, 4):
                for c in (1, 2):
                    layer = f"b{i}.b{j}_x{s}.conv{c}"
                    sd[f"{layer}.matrix"] = bank
                    sd[f"{layer}.element"], sd[f"{layer}.bias"] = rand(9, num_partial_filters), rand(64)
        for j in (1, 2, 3):
            sd[f"b{i}.c{j}.body.0.weight"], sd[f"b{i}.c{j}.body.0.bias"] = rand(64, 64 * (j + 1), 1, 1), rand(64)
    for j in (1, 2, 3):
        sd[f"c{j}.body.0.weight"], sd[f"c{j}.body.0.bias"] = rand(64, 64 * (j + 1), 1, 1), rand(64)
    for key, out in (("up2.body.0", 256), ("up3.body.0", 576), ("up4.body.0", 256), ("up4.body.3", 256)):
        sd[f"upsample.{key}.weight"], sd[f"upsample.{key}.bias"] = rand(out, 64, 3, 3), rand(out)
    sd["exit.weight"], sd["exit.bias"] = rand(3, 64, 3, 3), rand(3)
    return sd


@pytest.mark.parametrize("num_partial_filters, parameters", [(108, 1_425_571), (144, 1_590_523)])
def test_carn_ps_checkpoint_layout_converts_and_loads_strictly(num_partial_filters, parameters):
    authors = authors_carn_ps_state_dict(num_partial_filters)
    assert len(authors) == 203
    state_dict, network, task = convert_carn_ps(authors, Path("carnps.pth"))
    assert task == {"type": "sisr", "scale": 2}
    assert network["sharing"] == {"type": "partial_filter", "num_partial_filters": num_partial_filters}
    net = build_network(network)
    net.load_state_dict(state_dict, strict=True)
    assert count_parameters(net) == parameters
    assert torch.equal(net.b2.b3_x4.conv1.element, authors["b2.b3_x4.conv1.element"])
    assert torch.equal(net.upsample.up4.body[3].weight, authors["upsample.up4.body.3.weight"])


def test_a_bank_alias_that_differs_from_the_bank_is_refused():
    authors = authors_carn_ps_state_dict(108)
    authors["b3.b2_x3.conv1.matrix"] = authors["filterbank"] + 1e-3
    with pytest.raises(CheckpointError, match="b3.b2_x3.conv1.matrix' differs from 'filterbank'"):
        convert_carn_ps(authors, Path("damaged.pth"))


def test_other_checkpoints_are_left_to_other_converters():
    assert convert_carn_ps({"weight": torch.zeros(2)}, Path("x.pth")) is None
    assert convert_carn_ps({"epoch": 3, "state_dict": {"filterbank": torch.zeros(2)}}, Path("x.pth")) is None


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_convert_refuses_a_checkpoint_that_would_execute_code(tmp_path, capsys):
    marker, evil = tmp_path / "was_executed", tmp_path / "evil.pth"
    torch.save({"state_dict": {"filterbank": torch.zeros(2, 4)}, "records": _RunsCodeWhenUnpickled(marker)}, evil)
    assert main(["convert", str(evil), str(tmp_path / "out.safetensors")]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_convert_writes_safetensors_that_rebuild_the_released_srfbn(released, tmp_path, capsys):
    out = tmp_path / "srfbn_s_ps_x2.safetensors"
    assert main(["convert", str(released / "srfbnspsx2.pth"), str(out), "--task", "{type: sisr, scale: 2}"]) == 0
    assert "282,355 values, converted by 'ps_srfbn'" in capsys.readouterr().out
    _, meta = load_weights(out)
    assert meta["task"] == {"type": "sisr", "scale": 2} and meta["converted_from"] == "srfbnspsx2.pth"
    net, task = model_from_checkpoint(out)
    assert count_parameters(net) == 282_355 and task.scale == 2


def test_convert_with_a_converter_that_does_not_fit_names_it(released, tmp_path, capsys):
    assert main(["convert", str(released / "drrnps.pth"), str(tmp_path / "x.safetensors"),
                 "--converter", "ps_srfbn"]) == 2
    assert "converter 'ps_srfbn' does not recognise" in capsys.readouterr().err


def test_export_materializes_drrn_ps_into_the_unshared_arch_with_equal_outputs(released, tmp_path, capsys):
    out = tmp_path / "drrn_ps_plain.safetensors"
    assert main(["export", "--weights", str(released / "drrnps.pth"), "--materialize", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |output difference| on a random 32x32 input (x2, x3, x4): 0" in printed
    state_dict, meta = load_weights(out)
    assert meta["network"]["sharing"] == "none"
    plain = build_network(meta["network"]).eval()
    plain.load_state_dict(state_dict, strict=True)
    shared = build_network({"type": "DRRN_PS"}).eval()
    load_pretrained(shared, released / "drrnps.pth")
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(plain(x, scale=3), shared(x, scale=3), rtol=0, atol=1e-6)
