"""Every option file shipped in options/ loads and validates; training files either find their data
or stop before any work, naming the missing path and how to prepare it."""

from __future__ import annotations

import pytest

from restore.errors import DataError
from restore.options import check_registered_blocks, load_options, read_with_bases
from restore.sweep.grid import check_cells, load_sweep
from restore.trainer import train
from tests.conftest import REPO

OPTION_FILES = sorted((REPO / "options").glob("*.yml"))


# The files the task, PS and UPS plans name; each is also validated below.
PLANNED = ["ups_denoise_s50", "ups_jpeg_q40", "ups_sr_x2", "ups_sr_x3", "ups_sr_x4", "ups_s_sr_x2",
           "swinir_light_sr_x2", "ups_depth_x4", "ups_depth_x16", "ps_srfbn_x2", "ps_drrn", "ps_carn_x2"]


def test_the_planned_option_files_exist():
    names = {p.stem for p in OPTION_FILES}
    assert [name for name in PLANNED if name not in names] == []


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_file_validates(path, monkeypatch):
    monkeypatch.chdir(REPO)  # data paths in option files are relative to the project root
    if "sweep" in read_with_bases(path):  # a sweep file (`restore sweep`): every cell validates
        try:
            check_cells(load_sweep(path))
            return
        except DataError as err:
            message = str(err).split(": ", 1)[1]
    else:
        message = _check_training_file(path)
    if message is not None:  # a paper-scale dataset that is not on this machine
        assert message.startswith("datasets.") and "does not exist" in message
        assert "Prepare it with:" in message and "See datasets/README.md" in message


def _check_training_file(path) -> str | None:
    options = load_options(path)
    check_registered_blocks(options)
    if options.train is None:
        return None
    try:
        assert train(options, dry_run=True) is None
    except DataError as err:  # a paper-scale dataset that is not on this machine
        return str(err)
    return None
