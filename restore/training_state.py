"""Complete, atomic training states: everything a killed run needs to continue exactly.

A state is a folder ``training_states/<iteration>/`` holding Accelerate's files (model,
optimizer, RNG, grad scaler), the EMA weights (safetensors), the scheduler state and the
trainer's counters (JSON). It is written under a temporary name, fsynced, given a
``manifest.json`` listing every file and its size, and only then renamed into place, so a run
killed mid-save leaves either the previous complete state or the new one, never half of one.
Loading never unpickles code: Accelerate loads with ``weights_only=True``, and our own files
are safetensors, JSON and a weights-only scheduler dict.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from restore.checkpoint import load_weights, save_weights
from restore.data.io import atomic_write_bytes
from restore.errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT = "restore.training-state/1"


@dataclass
class TrainerCounters:
    """The loop's own progress, saved as JSON."""

    iteration: int = 0
    best: dict[str, dict[str, float]] = field(default_factory=dict)  # "<val>/<metric>" -> {value, iteration}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def save_training_state(accelerator: Any, root: Path, counters: TrainerCounters, *, ema: torch.nn.Module | None,
                        scheduler: Any) -> Path:
    """Write the state for ``counters.iteration`` under `root`; call on every process."""
    final = root / f"{counters.iteration:08d}"
    staging = root / f".tmp-{counters.iteration:08d}"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        if ema is not None:
            save_weights(staging / "ema.safetensors", ema.state_dict())
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / "trainer.json").write_text(json.dumps(asdict(counters), indent=1))
        files = {str(p.relative_to(staging)): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = {"format": FORMAT, "iteration": counters.iteration, "files": files}
        _fsync_tree(staging)
        atomic_write_bytes(staging / MANIFEST, json.dumps(manifest, indent=1).encode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(root)
    accelerator.wait_for_everyone()
    return final


def is_complete(state: Path) -> bool:
    """A state is complete when its manifest exists and every listed file has its recorded size."""
    manifest_path = state / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError:
        return False
    return all((state / name).is_file() and (state / name).stat().st_size == size
               for name, size in manifest.get("files", {}).items())


def latest_complete_state(root: Path) -> Path | None:
    """The newest complete state under `root` (incomplete or temporary folders are skipped)."""
    if not root.is_dir():
        return None
    candidates = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    return next((p for p in reversed(candidates) if is_complete(p)), None)


def prune_states(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete states (and stale temporary folders)."""
    states = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for old in states[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def load_training_state(accelerator: Any, state: Path, *, ema: torch.nn.Module | None,
                        scheduler: Any) -> TrainerCounters:
    """Restore a state written by `save_training_state` (model, optimizer, RNG, EMA, scheduler)."""
    if not is_complete(state):
        raise CheckpointError(f"{state}: not a complete training state (no manifest, or files missing/truncated).")
    accelerator.load_state(str(state))
    if ema is not None:
        ema_path = state / "ema.safetensors"
        if not ema_path.is_file():
            raise CheckpointError(f"{state}: has no EMA weights but this run uses train.ema_decay.")
        ema.load_state_dict(load_weights(ema_path)[0])
    with torch.serialization.safe_globals([collections.Counter]):
        scheduler.load_state_dict(torch.load(state / "scheduler.pt", map_location="cpu", weights_only=True))
    data = json.loads((state / "trainer.json").read_text())
    return TrainerCounters(**data)
