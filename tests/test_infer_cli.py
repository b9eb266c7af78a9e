"""`restore infer`: a checkpoint and images in, restored images out."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.api import build_network, read_array, write_image
from restore.build import model_from_checkpoint
from restore.checkpoint import load_weights, save_weights
from restore.cli import main
from restore.inference import run_network

ROOT = Path(__file__).resolve().parents[1]
LR_X2 = ROOT / "datasets/Set5/LR_bicubic/X2"
NETWORK = {"type": "MSRResNet", "num_block": 2, "num_feat": 8}
TASK = {"type": "sisr", "scale": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = build_network(NETWORK, in_chans=3, out_chans=3, scale=2)
    path = tmp_path_factory.mktemp("weights") / "msrresnet_x2.safetensors"
    return save_weights(path, net.state_dict(), network=NETWORK, task=TASK)


@pytest.fixture(scope="module")
def untiled_outputs(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("untiled")
    assert main(["infer", "--weights", str(checkpoint), str(LR_X2), str(out), "--device", "cpu"]) == 0
    return out


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: read_array(p) for p in sorted(folder.glob("*.png"))}


def test_a_folder_is_restored_at_twice_the_size(untiled_outputs):
    outputs = _pngs(untiled_outputs)
    assert sorted(outputs) == ["babyx2.png", "birdx2.png", "butterflyx2.png", "headx2.png", "womanx2.png"]
    for name, img in outputs.items():
        lr = read_array(LR_X2 / name)
        assert img.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3) and img.dtype == np.uint8


def test_saved_images_are_the_networks_output_rounded_to_8_bits(checkpoint, untiled_outputs):
    net, task = model_from_checkpoint(checkpoint)
    lr = torch.from_numpy(read_array(LR_X2 / "birdx2.png")).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = run_network(net.eval(), lr, 2)[0].permute(1, 2, 0).numpy()
    expected = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_array(untiled_outputs / "birdx2.png"), expected)


def test_tiled_outputs_match_untiled_outputs_within_one_grey_level(checkpoint, untiled_outputs, tmp_path, capsys):
    code = main(["infer", "--weights", str(checkpoint), str(LR_X2), str(tmp_path), "--device", "cpu",
                 "--tile", "96", "--tile-overlap", "32"])
    assert code == 0
    assert "restored 5 image(s) with MSRResNet" in capsys.readouterr().out
    tiled, whole = _pngs(tmp_path), _pngs(untiled_outputs)
    assert sorted(tiled) == sorted(whole)
    for name in whole:
        diff = np.abs(tiled[name].astype(int) - whole[name].astype(int))
        assert diff.max() <= 1, name


def test_truncating_never_rounds_up(checkpoint, untiled_outputs, tmp_path):
    image = LR_X2 / "headx2.png"
    assert main(["infer", "--weights", str(checkpoint), str(image), str(tmp_path), "--quantize", "truncate",
                 "--device", "cpu"]) == 0
    diff = read_array(untiled_outputs / "headx2.png").astype(int) - read_array(tmp_path / "headx2.png").astype(int)
    assert set(np.unique(diff)) == {0, 1}


def test_the_restore_command_restores_one_image(checkpoint, tmp_path):
    out = tmp_path / "new" / "folder"
    result = subprocess.run(
        [sys.executable, "-m", "restore.cli", "infer", "--weights", str(checkpoint), str(LR_X2 / "womanx2.png"),
         str(out), "--tile", "48", "--device", "cpu"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "restored 1 image(s)" in result.stdout and "1 of them in tiles (32-pixel overlap)" in result.stdout
    assert [p.name for p in out.iterdir()] == ["womanx2.png"]
    assert read_array(out / "womanx2.png").shape == (2 * 172, 2 * 114, 3)


def test_an_option_file_loads_weights_without_metadata(checkpoint, untiled_outputs, tmp_path):
    state, _ = load_weights(checkpoint)
    bare = save_weights(tmp_path / "bare.safetensors", state)
    options = tmp_path / "msrresnet.yml"
    options.write_text(
        "name: infer_test\n"
        "task: {type: sisr, scale: 2}\n"
        "network_g: {type: MSRResNet, num_block: 2, num_feat: 8}\n"
        f"path: {{pretrain_network_g: {bare}}}\n"
    )
    out = tmp_path / "out"
    assert main(["infer", "-opt", str(options), str(LR_X2 / "butterflyx2.png"), str(out), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_array(out / "butterflyx2.png"), read_array(untiled_outputs / "butterflyx2.png"))


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return " ".join(capsys.readouterr().err.split())  # undo the CLI's line wrapping


def test_a_missing_input_is_named(checkpoint, tmp_path, capsys):
    missing = tmp_path / "nothing_here.png"
    assert f"{missing}: no such image or folder" in _error(
        capsys, ["infer", "--weights", str(checkpoint), str(missing), str(tmp_path / "out")])


def test_an_unreadable_image_is_named(checkpoint, tmp_path, capsys):
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG but not really an image")
    err = _error(capsys, ["infer", "--weights", str(checkpoint), str(broken.parent), str(tmp_path / "out"),
                          "--device", "cpu"])
    assert "broken.png: cannot decode this image" in err


def test_weights_without_metadata_ask_for_an_option_file(checkpoint, tmp_path, capsys):
    state, _ = load_weights(checkpoint)
    bare = save_weights(tmp_path / "bare.safetensors", state)
    err = _error(capsys, ["infer", "--weights", str(bare), str(LR_X2), str(tmp_path / "out"), "--device", "cpu"])
    assert "bare.safetensors: does not record its network options; use an option file (-opt)" in err


def test_a_missing_checkpoint_is_named(tmp_path, capsys):
    err = _error(capsys, ["infer", "--weights", str(tmp_path / "gone.safetensors"), str(LR_X2), str(tmp_path / "o")])
    assert "gone.safetensors: no such checkpoint file" in err


def test_outputs_never_overwrite_inputs(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    shutil.copytree(LR_X2, folder)
    err = _error(capsys, ["infer", "--weights", str(checkpoint), str(folder), str(folder)])
    assert "is the input folder" in err
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in LR_X2.iterdir())


def test_two_inputs_with_one_stem_are_refused(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(LR_X2 / "birdx2.png", folder / "bird.png")
    write_image(folder / "bird.jpg", read_array(LR_X2 / "birdx2.png"))
    err = _error(capsys, ["infer", "--weights", str(checkpoint), str(folder), str(tmp_path / "out")])
    assert "bird.jpg and" in err and "bird.png would both be saved as" in err


def test_an_overlap_as_large_as_the_tile_is_refused(checkpoint, tmp_path, capsys):
    err = _error(capsys, ["infer", "--weights", str(checkpoint), str(LR_X2 / "birdx2.png"), str(tmp_path / "o"),
                          "--tile", "32", "--tile-overlap", "32", "--device", "cpu"])
    assert "tile_overlap 32 must be smaller than tile 32" in err


def test_output_names_a_file_for_one_input_and_a_folder_otherwise(checkpoint, tmp_path, capsys):
    assert main(["infer", "--weights", str(checkpoint), str(LR_X2 / "birdx2.png"), str(tmp_path / "bird_sr.png"),
                 "--device", "cpu"]) == 0
    assert "into the file" in capsys.readouterr().out
    assert read_array(tmp_path / "bird_sr.png").shape == (288, 288, 3) and not (tmp_path / "bird_sr.png").is_dir()
    assert main(["infer", "--weights", str(checkpoint), str(LR_X2 / "birdx2.png"), str(tmp_path / "folder"),
                 "--device", "cpu"]) == 0
    assert "into the folder" in capsys.readouterr().out and (tmp_path / "folder" / "birdx2.png").is_file()


def test_a_file_named_dot_dot_png_is_written_into_the_output_folder(checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(LR_X2 / "birdx2.png", inputs / "..png")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "restore", "infer", "--weights", str(checkpoint), str(inputs),
                             str(out), "--device", "cpu"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.iterdir()] == ["..png.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing beside the output folder


def test_an_empty_image_is_one_paragraph_and_nothing_is_written(checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(LR_X2 / "birdx2.png", inputs / "a.png")
    (inputs / "b.png").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "restore", "infer", "--weights", str(checkpoint), str(inputs),
                             str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "b.png: the file is empty (0 bytes)" in " ".join(result.stderr.split())  # the CLI wraps at 100 columns
    assert not (tmp_path / "out").exists()


def test_a_non_finite_output_is_an_error(tmp_path, capsys):
    net = build_network(NETWORK, in_chans=3, out_chans=3, scale=2)
    state = {k: torch.full_like(v, 1e38) if k == "conv_first.weight" else v for k, v in net.state_dict().items()}
    weights = save_weights(tmp_path / "overflow.safetensors", state, network=NETWORK, task=TASK)
    assert main(["infer", "--weights", str(weights), str(LR_X2 / "birdx2.png"), str(tmp_path / "out")]) == 2
    assert "non-finite value(s) (NaN or inf)" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def multi_scale(tmp_path_factory) -> Path:
    network = {"type": "DRRN", "num_units": 1, "num_features": 8, "scales": [2, 3]}
    torch.manual_seed(0)
    net = build_network(network, in_chans=3, out_chans=3, scale=2)
    return save_weights(tmp_path_factory.mktemp("ms") / "drrn.safetensors", net.state_dict(), network=network,
                        task={"type": "sisr", "scale": 2})


def test_a_multi_scale_network_runs_at_the_scale_asked_among_those_it_serves(multi_scale, tmp_path, capsys):
    lr = str(LR_X2 / "birdx2.png")
    assert main(["infer", "--weights", str(multi_scale), lr, str(tmp_path / "a.png")]) == 2
    assert "serves x2, x3; choose the scale with --scale" in " ".join(capsys.readouterr().err.split())
    assert main(["infer", "--weights", str(multi_scale), "--scale", "4", lr, str(tmp_path / "b.png")]) == 2
    assert "--scale 4: DRRNet serves x2, x3" in " ".join(capsys.readouterr().err.split())
    assert main(["infer", "--weights", str(multi_scale), "--scale", "3", lr, str(tmp_path / "c.png")]) == 0
    assert read_array(tmp_path / "c.png").shape == (432, 432, 3)


def test_set_overrides_the_recorded_task(checkpoint, tmp_path, capsys):
    assert main(["infer", "--weights", str(checkpoint), "--set", "task.color=y", str(LR_X2 / "birdx2.png"),
                 str(tmp_path / "o.png")]) == 2  # a 3-channel network cannot serve a 1-channel task
    assert "does not fit MSRResNet" in " ".join(capsys.readouterr().err.split()) and not (tmp_path / "o.png").exists()
    assert main(["infer", "--weights", str(checkpoint), "--set", "task.scale=3", str(LR_X2 / "birdx2.png"),
                 str(tmp_path / "o.png")]) == 2
    assert not (tmp_path / "o.png").exists()


def test_large_inputs_are_tiled_automatically_unless_told_otherwise(checkpoint, untiled_outputs, tmp_path,
                                                                    monkeypatch, capsys):
    from restore.commands import infer

    monkeypatch.setattr(infer, "AUTO_TILE_PIXELS", 100 * 100)
    monkeypatch.setattr(infer, "AUTO_TILE", 64)
    assert main(["infer", "--weights", str(checkpoint), str(LR_X2 / "babyx2.png"), str(tmp_path / "t.png")]) == 0
    assert "1 of them in tiles" in capsys.readouterr().out
    tiled, whole = read_array(tmp_path / "t.png").astype(int), read_array(untiled_outputs / "babyx2.png").astype(int)
    assert np.abs(tiled - whole).max() <= 1
    assert main(["infer", "--weights", str(checkpoint), "--tile", "0", str(LR_X2 / "babyx2.png"),
                 str(tmp_path / "u.png")]) == 0
    assert "tiles" not in capsys.readouterr().out
    np.testing.assert_array_equal(read_array(tmp_path / "u.png"), read_array(untiled_outputs / "babyx2.png"))


def test_convert_records_every_scale_a_multi_scale_checkpoint_serves(released, tmp_path, capsys):
    out = tmp_path / "drrn_ps.safetensors"
    assert main(["convert", str(released / "drrnps.pth"), str(out)]) == 0
    assert "scales: x2, x3, x4" in capsys.readouterr().out
    assert load_weights(out)[1]["scales"] == "[2, 3, 4]"
    assert main(["infer", "--weights", str(out), str(LR_X2 / "birdx2.png"), str(tmp_path / "x.png")]) == 2
    assert "serves x2, x3, x4" in " ".join(capsys.readouterr().err.split())
