"""Weights on disk: safetensors files with the network options in their metadata, and safe loading.

Nothing here unpickles arbitrary objects. Foreign ``.pth`` files are read with
``torch.load(weights_only=True)``, optionally widened by an allow-list of harmless numpy types
(released training checkpoints often hold numpy scalars in their logs).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save_bytes

from restore.data.io import atomic_write_bytes
from restore.errors import CheckpointError

FORMAT = "restore.weights/1"
NETWORK_KEY = "restore.network"
TASK_KEY = "restore.task"


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], *,
                 network: Mapping[str, Any] | None = None, task: Mapping[str, Any] | None = None,
                 extra: Mapping[str, str] | None = None) -> Path:
    """Write a state_dict as safetensors, atomically. `network` (the ``network_g`` options) and
    `task` (the ``task`` options) go into the metadata so the file alone rebuilds its model."""
    return atomic_write_bytes(path, encode_weights(state_dict, network=network, task=task, extra=extra, path=path))


def encode_weights(state_dict: Mapping[str, torch.Tensor], *, network: Mapping[str, Any] | None = None,
                   task: Mapping[str, Any] | None = None, extra: Mapping[str, str] | None = None,
                   path: str | os.PathLike = "weights") -> bytes:
    """The bytes `save_weights` writes (so a caller can check them before anything is written)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    metadata = {"format": FORMAT, **(extra or {})}
    if network is not None:
        metadata[NETWORK_KEY] = json.dumps(dict(network))
    if task is not None:
        metadata[TASK_KEY] = json.dumps(dict(task))
    try:
        return st_save_bytes(tensors, metadata=metadata)
    except RuntimeError as exc:  # tensors sharing storage
        raise CheckpointError(f"cannot save {path}: {exc}") from None


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file: (state_dict, metadata with ``network``/``task`` decoded if present)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: restore loads weights from .safetensors files. "
            "Convert other formats first with `restore convert` (it never executes code from the file)."
        )
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
            meta: dict[str, Any] = dict(f.metadata() or {})
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc}).") from None
    for key, name in ((NETWORK_KEY, "network"), (TASK_KEY, "task")):
        if key in meta:
            meta[name] = _decode_options(meta.pop(key), path, key)
    check_finite(tensors, path)
    return tensors, meta


def _decode_options(text: str, path: Path, key: str) -> dict[str, Any]:
    """An options block from the metadata: JSON for a mapping, else a CheckpointError naming the file."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: its metadata entry '{key}' is not a JSON mapping of options; the file was "
                              "not written by restore or has been edited. Give an option file (-opt) instead.")
    return value


def check_finite(state_dict: Mapping[str, Any], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN or infinity, naming the tensors (they would only produce black images
    or a diverging run blamed on the learning rate)."""
    bad = [key for key, value in state_dict.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{source}: holds NaN or infinite values in {len(bad)} tensor(s) ({shown}); "
                              "these weights are unusable (a diverged or damaged run). Use an earlier checkpoint.")


def _numpy_allow_list() -> list[Any]:
    """numpy scalar/array/dtype globals found in released training logs and RNG states.

    They rebuild plain numbers and arrays; none of them executes code. Pickles written under
    numpy 1 name them ``numpy.core.*``, under numpy 2 ``numpy._core.*``: both are listed.
    """
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list[Any] = [np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "uint32", "uint8", "bool")]
    allowed += [(multiarray.scalar, "numpy.core.multiarray.scalar"),
                (multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]
    return allowed


_REFUSED_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global:\s*GLOBAL)\s+([\w.]+)", re.IGNORECASE)
_UNSUPPORTED_OPERAND = re.compile(r"Unsupported operand \S+")


def pickle_refusal(exc: BaseException) -> str:
    """What a failed weights-only load refused, in our words: torch's own message advises re-running
    with ``weights_only=False``, the one thing a user must not do with an untrusted file."""
    text = str(exc)
    found = _REFUSED_GLOBAL.search(text)
    if found:
        return (f"it holds a pickled reference to `{found.group(1)}`, which could run code when loaded; "
                "restore refuses it. Only tensors, plain containers and numbers are loaded.")
    if "weights only load failed" in text.lower() or "WeightsUnpickler" in text:
        operand = _UNSUPPORTED_OPERAND.search(text)
        detail = f" ({operand.group(0)})" if operand else ""
        return (f"it holds objects other than tensors, plain containers and numbers{detail}; restore refuses to "
                "unpickle them because that could run code.")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'unreadable'}"


def safe_torch_load(path: str | os.PathLike, *, allow_numpy: bool = False) -> Any:
    """``torch.load`` that cannot execute code: tensors, containers and (optionally) numpy scalars."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        if allow_numpy:
            with torch.serialization.safe_globals(_numpy_allow_list()):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        hint = "" if allow_numpy else " If it holds numpy values, convert it with `restore convert`."
        raise CheckpointError(f"{path}: refused to load: {pickle_refusal(exc)}{hint}") from None


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Remove a DataParallel/DDP/compile prefix from every key that has it."""
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}
