"""Weights on disk: safetensors files with the network options in their metadata, and safe loading.

The metadata also records the provenance of every registered name the options use (the arch, the
sharing schemes, nested ones included, and the task): which package and version provided it. A
file whose names are not registered here is refused with the package to install.

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
PROVENANCE_KEY = "restore.provenance"
DEFAULTS_KEY = "restore.network_defaults"


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], *,
                 network: Mapping[str, Any] | None = None, task: Mapping[str, Any] | None = None,
                 extra: Mapping[str, str] | None = None) -> Path:
    """Write a state_dict as safetensors, atomically. `network` (the ``network_g`` options) and
    `task` (the ``task`` options) go into the metadata so the file alone rebuilds its model, with
    the package that provided each registered name they use (`provenance`)."""
    return atomic_write_bytes(path, encode_weights(state_dict, network=network, task=task, extra=extra, path=path))


def encode_weights(state_dict: Mapping[str, torch.Tensor], *, network: Mapping[str, Any] | None = None,
                   task: Mapping[str, Any] | None = None, extra: Mapping[str, str] | None = None,
                   path: str | os.PathLike = "weights") -> bytes:
    """The bytes `save_weights` writes (so a caller can check them before anything is written)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    metadata = {"format": FORMAT, **(extra or {})}
    if network is not None:
        from restore.archs import arch_defaults  # the registry: imported when weights are written

        metadata[NETWORK_KEY] = json.dumps(dict(network))
        defaults = arch_defaults(network)
        if defaults:
            metadata[DEFAULTS_KEY] = json.dumps(defaults)
    if task is not None:
        metadata[TASK_KEY] = json.dumps(dict(task))
    needs = provenance(network, task)
    if needs:
        metadata[PROVENANCE_KEY] = json.dumps(needs, sort_keys=True)
    try:
        return st_save_bytes(tensors, metadata=metadata)
    except RuntimeError as exc:  # tensors sharing storage
        raise CheckpointError(f"cannot save {path}: {exc}") from None


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file: (state_dict, metadata with ``network``/``task``/``provenance`` decoded
    if present). Refuses a file that needs a name no installed plugin registers, naming its package."""
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
    if PROVENANCE_KEY in meta:
        meta["provenance"] = _decode_provenance(meta.pop(PROVENANCE_KEY), path)
        require_registered(path, meta["provenance"])
    if DEFAULTS_KEY in meta:
        recorded = _decode_options(meta.pop(DEFAULTS_KEY), path, DEFAULTS_KEY)
        if isinstance(meta.get("network"), dict):
            from restore.archs import with_recorded_defaults

            meta["network"] = with_recorded_defaults(meta["network"], recorded)
    check_finite(tensors, path)
    return tensors, meta


# -- provenance: which package provided each registered name ------------------------------------------

_KINDS = {"arch": "archs", "sharing": "sharing", "task": "tasks"}


def provenance(network: Mapping[str, Any] | None, task: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"arch:DRRN_PS": "restore 0.1.0", "sharing:templates": "restore-templates 0.2.0", ...}``
    for the registered names the options use (names no plugin provides are left out)."""
    from restore.registry import REGISTRIES

    found = {}
    for kind, name in used_names(network, task):
        record = REGISTRIES[_KINDS[kind]].provider(name)
        if record is not None and record.distribution != "?":
            found[f"{kind}:{name}"] = record.distribution
    return found


def used_names(network: Mapping[str, Any] | None, task: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(kind, name) of the arch, every sharing scheme (nested ones, e.g. a compose scheme's rules) and
    the task that options name."""
    names: list[tuple[str, str]] = []
    if network and isinstance(network.get("type"), str):
        names.append(("arch", network["type"]))
    if network and network.get("sharing") is not None:
        names += [("sharing", n) for n in _scheme_names(network["sharing"], top=True)]
    if task and isinstance(task.get("type"), str):
        names.append(("task", task["type"]))
    return list(dict.fromkeys(names))


def _scheme_names(spec: Any, top: bool) -> list[str]:
    """Scheme names in a sharing option: ``type`` of every mapping, and strings that name a scheme
    (a compose rule's ``scheme: unified_projection``) -- not slot patterns or other strings."""
    from restore.registry import SHARING

    if isinstance(spec, str):
        return [spec] if top or SHARING.provider(spec) is not None else []
    if isinstance(spec, Mapping):
        own = [spec["type"]] if isinstance(spec.get("type"), str) else []
        return own + [n for key, value in spec.items() if key != "type" for n in _scheme_names(value, top=False)]
    if isinstance(spec, (list, tuple)):
        return [n for item in spec for n in _scheme_names(item, top=False)]
    return []


def _decode_provenance(text: str, path: Path) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise CheckpointError(f"{path}: its metadata entry '{PROVENANCE_KEY}' is not a JSON mapping of names to "
                              "packages; the file was not written by restore or has been edited.")
    return value


def require_registered(path: str | os.PathLike, needs: Mapping[str, str]) -> None:
    """Refuse weights whose recorded names are not registered here, saying which package to install."""
    from restore.registry import PLUGINS, REGISTRIES

    missing = []
    for key, distribution in needs.items():
        kind, _, name = key.partition(":")
        if kind in _KINDS and name not in REGISTRIES[_KINDS[kind]]:
            missing.append((REGISTRIES[_KINDS[kind]].kind, name, distribution))
    if not missing:
        return
    what = "; ".join(f"{kind} '{name}' from {dist}" for kind, name, dist in missing)
    packages = sorted({dist for _, _, dist in missing})
    broken = [r for r in PLUGINS.values() if r.error and r.distribution in packages]
    if broken:
        why = "; ".join(f"plugin '{r.name}' ({r.distribution}) is installed but failed to load: {r.error}"
                        for r in broken)
        advice = f"{why}. Run `restore plugins` for details."
    else:
        pins = " ".join(f'"{d.split()[0]}=={d.split()[1]}"' if " " in d else f'"{d}"' for d in packages)
        advice = (f"Install {'it' if len(packages) == 1 else 'them'} (`pip install {pins}`, or a compatible "
                  "version) and run again; `restore plugins` lists what is installed.")
    raise CheckpointError(f"{path}: these weights need {what}, which no installed plugin provides. {advice}")


def require_plugins(*paths: str | os.PathLike | None) -> None:
    """`require_registered` for weights files about to be used (those that exist and record their
    provenance), reading only their headers: call it before building a network from options."""
    for path in paths:
        if path is None or Path(path).suffix != ".safetensors" or not Path(path).is_file():
            continue
        try:
            with safe_open(path, framework="pt") as f:
                text = (f.metadata() or {}).get(PROVENANCE_KEY)
        except (SafetensorError, ValueError):
            continue  # the full load reports it
        if text is not None:
            require_registered(path, _decode_provenance(text, Path(path)))


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
