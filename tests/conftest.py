"""Shared fixtures: paths to bundled and shared data, and ways to run the `restore` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESTORE_SHARED_DIR", REPO.parent / "shared"))
DATASETS = REPO / "datasets"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference material beside the project (``../shared``); tests needing it skip, saying so."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared reference data not found at {SHARED} (set RESTORE_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def released(shared) -> Path:
    """The PS authors' released checkpoints (``../shared/weights/ps``); tests needing them skip without."""
    folder = shared / "weights/ps"
    if not (folder / "drrnps.pth").is_file():
        pytest.skip(f"the PS authors' released weights are not at {folder}")
    return folder


def run_restore(*args: str, cwd: Path = REPO, timeout: float = 900, env: dict | None = None
                ) -> subprocess.CompletedProcess:
    """Run the installed `restore` command in a fresh interpreter (as a user would)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "restore", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def write_options(tmp_path: Path):
    """Write an option mapping to a YAML file under tmp_path and return its path."""

    def write(data: dict, name: str = "options.yml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def tiny_sisr_options(tmp_path: Path, **overrides) -> dict:
    """A small but real x2 SR run: scikit-image photos for training, Set5 (MATLAB LR) for validation.

    Overrides are keyword paths joined by ``__`` (``train__total_iter=5``); None drops the key."""
    options = {
        "name": "tiny_sisr",
        "task": {"type": "sisr", "scale": 2},
        "manual_seed": 0,
        "datasets": {
            "train": {"name": "skimage", "dataroot_gt": "skimage:rgb", "gt_size": 64, "batch_size_per_gpu": 4,
                      "num_worker_per_gpu": 0},
            "val": {"name": "Set5", "dataroot_gt": str(DATASETS / "Set5/HR"),
                    "dataroot_lq": str(DATASETS / "Set5/LR_bicubic/X2"), "filename_tmpl": "{}x2"},
        },
        "network_g": {"type": "MSRResNet", "num_feat": 16, "num_block": 2},
        "path": {"experiments_root": str(tmp_path / "experiments"), "results_root": str(tmp_path / "results")},
        "train": {"total_iter": 20, "optim_g": {"type": "Adam", "lr": 1e-3},
                  "scheduler": {"type": "MultiStepLR", "milestones": [10], "gamma": 0.5},
                  "pixel_opt": {"type": "L1Loss"}},
        "val": {"val_freq": 10, "pbar": False},
        "logger": {"print_freq": 5, "save_checkpoint_freq": 10, "use_tb_logger": True},
    }
    for dotted, value in overrides.items():
        node = options
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:  # like `key: ~` in an inheriting option file: drop it
            node.pop(last, None)
        else:
            node[last] = value
    return options
