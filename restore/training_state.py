"""Complete, atomic training states: everything a killed run needs to continue exactly.

A state is a folder ``training_states/<iteration>/`` holding Accelerate's files (model,
optimizer, RNG, grad scaler), the EMA weights (safetensors), the scheduler state and the
trainer's counters (JSON). It is written under a temporary name, fsynced, given a
``manifest.json`` listing every file with its size and SHA-256, and only then renamed into place,
so a run killed mid-save leaves either the previous complete state or the new one, never half of
one. A full disk during a save removes the partial folder and leaves the previous state intact.
Before a state is loaded every file is checked against its checksum (a same-size overwrite, a bad
sector); `resumable_state` falls back to the newest state that verifies, saying so. Loading never
unpickles code: Accelerate loads with ``weights_only=True``, and our own files are safetensors,
JSON and a weights-only scheduler dict.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from restore.checkpoint import load_weights, pickle_refusal, save_weights
from restore.data.io import atomic_write_bytes
from restore.errors import CheckpointError

log = logging.getLogger("restore")

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_training_state(accelerator: Any, root: Path, counters: TrainerCounters, *, ema: torch.nn.Module | None,
                        scheduler: Any) -> Path:
    """Write the state for ``counters.iteration`` under `root`; call on every process.

    Out of disk space, the partial folder is removed on the main process and a CheckpointError says so;
    the previous state is untouched."""
    final = root / f"{counters.iteration:08d}"
    staging = root / f".tmp-{counters.iteration:08d}"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(staging))
        if accelerator.is_main_process:
            _finish_state(staging, final, root, counters, ema, scheduler)
    except OSError as exc:
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else str(exc)
        previous = latest_complete_state(root)
        kept = f"the last complete state {previous} is intact" if previous else "no earlier state exists"
        raise CheckpointError(f"could not save the training state of iteration {counters.iteration} in {root}: "
                              f"{reason}; the partial state was removed and {kept}. Free space and resume with "
                              "--resume.") from None
    accelerator.wait_for_everyone()
    return final


def _finish_state(staging: Path, final: Path, root: Path, counters: TrainerCounters, ema: torch.nn.Module | None,
                  scheduler: Any) -> None:
    """Main process: add our files to Accelerate's, checksum everything, publish by renaming."""
    if ema is not None:
        save_weights(staging / "ema.safetensors", ema.state_dict())
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    (staging / "trainer.json").write_text(json.dumps(asdict(counters), indent=1))
    files = {str(p.relative_to(staging)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = {"format": FORMAT, "iteration": counters.iteration, "files": files}
    _fsync_tree(staging)
    atomic_write_bytes(staging / MANIFEST, json.dumps(manifest, indent=1).encode())
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_dir(root)


def _manifest_files(state: Path) -> dict[str, dict[str, Any]] | None:
    """``{file: {size, sha256?}}`` from the manifest (states of older versions record sizes only)."""
    try:
        files = json.loads((state / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(files, dict):
        return None
    return {name: entry if isinstance(entry, dict) else {"size": entry} for name, entry in files.items()}


def is_complete(state: Path) -> bool:
    """A state is complete when its manifest exists and every listed file has its recorded size."""
    files = _manifest_files(state)
    return files is not None and all(
        (state / name).is_file() and (state / name).stat().st_size == entry.get("size") for name, entry in files.items()
    )


def verification_problem(state: Path) -> str | None:
    """Why `state` cannot be trusted (missing/truncated file, checksum mismatch), or None if it verifies."""
    files = _manifest_files(state)
    if files is None:
        return "no readable manifest.json (the save did not finish)"
    for name, entry in files.items():
        path = state / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry.get("size"):
            return f"{name} has {path.stat().st_size} bytes, not {entry.get('size')}"
        if "sha256" in entry and _sha256(path) != entry["sha256"]:
            return f"{name} does not match its checksum (the file was changed or damaged after it was written)"
    return None


def _numbered_states(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def latest_complete_state(root: Path) -> Path | None:
    """The newest complete state under `root` (incomplete or temporary folders are skipped)."""
    return next((p for p in reversed(_numbered_states(root)) if is_complete(p)), None)


def resumable_state(root: Path) -> tuple[Path | None, list[tuple[str, str]]]:
    """The newest state under `root` that verifies, and (name, problem) for each newer one passed over."""
    skipped = []
    for state in reversed(_numbered_states(root)):
        problem = verification_problem(state)
        if problem is None:
            return state, skipped
        skipped.append((state.name, problem))
    return None, skipped


def prune_states(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete states (and stale temporary folders).

    Only the run holding the experiment's lock calls this, so no other run's staging folder is here."""
    states = _numbered_states(root)
    for old in states[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def check_state_fits(state: Path, net: torch.nn.Module) -> None:
    """Refuse a state written by a network of another shape before anything is loaded or touched."""
    from safetensors import safe_open

    model_file = state / "model.safetensors"
    if not model_file.is_file():
        return
    own = net.state_dict()
    with safe_open(model_file, framework="pt") as f:
        keys = set(f.keys())
        mismatched = [k for k in keys & set(own) if tuple(f.get_slice(k).get_shape()) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - keys), sorted(keys - set(own))
    if mismatched or missing or unexpected:
        details = "; ".join(f"{what} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                            for what, names in (("different shapes:", sorted(mismatched)), ("missing:", missing),
                                                ("unexpected:", unexpected)) if names)
        raise CheckpointError(f"{state}: this training state was written by another network ({details}); "
                              "resume with the option file that wrote it, or start a new run without --resume.")


def load_training_state(accelerator: Any, state: Path, *, ema: torch.nn.Module | None,
                        scheduler: Any) -> TrainerCounters:
    """Restore a state written by `save_training_state` (model, optimizer, RNG, EMA, scheduler)."""
    problem = verification_problem(state)
    if problem is not None:
        raise CheckpointError(f"{state}: not a usable training state: {problem}.")
    try:
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
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever Accelerate/torch raise, name the state and the reason
        raise CheckpointError(f"{state}: cannot load this training state: {pickle_refusal(exc)}") from None
