"""The `restore` command: help for every sub-command, and one-paragraph errors naming the culprit."""

from __future__ import annotations

import shutil

import pytest

from restore.cli import COMMANDS, build_parser, main
from tests.conftest import DATASETS, run_restore, tiny_sisr_options


def test_every_command_is_listed_and_has_help(capsys):
    build_parser()
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    for name in COMMANDS:
        assert name in listing
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert len(capsys.readouterr().out.splitlines()) > 5


def _one_paragraph_error(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_at = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    return " ".join(lines[error_at:])


def test_wrong_option_key_is_one_paragraph_naming_the_path(tmp_path, write_options):
    path = write_options(tiny_sisr_options(tmp_path, datasets__train__gt_sise=64))
    message = _one_paragraph_error(run_restore("train", "-opt", str(path)))
    assert message.startswith("error: datasets.train.gt_sise: unknown option") and "Did you mean 'gt_size'?" in message


def test_missing_dataset_path_is_named_with_how_to_prepare_it(tmp_path, write_options):
    path = write_options(tiny_sisr_options(tmp_path, datasets__train__name="DIV2K",
                                           datasets__train__dataroot_gt="datasets/DIV2K/DIV2K_train_HR_sub.lmdb"))
    message = _one_paragraph_error(run_restore("train", "-opt", str(path)))
    assert "datasets.train.dataroot_gt: datasets/DIV2K/DIV2K_train_HR_sub.lmdb does not exist" in message
    assert "restore data lmdb" in message
    assert not (tmp_path / "experiments").exists()  # stopped before any work


def test_corrupt_image_is_named(tmp_path, write_options):
    folder = tmp_path / "val"
    shutil.copytree(DATASETS / "Set5" / "HR", folder)
    (folder / "bird.png").write_bytes((folder / "bird.png").read_bytes()[:1500])
    path = write_options(tiny_sisr_options(tmp_path))
    message = _one_paragraph_error(run_restore("test", "-opt", str(path), "--model", "baseline",
                                               "--dataset", str(folder)))
    assert f"error: {folder / 'bird.png'}: cannot decode this image; the file is corrupt" in message
