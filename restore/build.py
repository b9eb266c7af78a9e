"""Building a task and its network from options, and loading weights into the network.

Weights load from our safetensors files, or from foreign ``.pth`` files through a safe
``torch.load`` and the registered checkpoint converters (never by unpickling code).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restore.archs import build_network, split_type
from restore.checkpoint import check_finite, load_weights, safe_torch_load, strip_prefix
from restore.errors import CheckpointError
from restore.registry import CONVERTERS, DATASETS, LOSSES, OPTIMIZERS, SCHEDULERS, TASKS, Registry
from restore.tasks import Task
from restore.validation import call_with_options

log = logging.getLogger("restore")


def build_task(options: Mapping[str, Any], scale: int | None = None, path: str = "task") -> Task:
    """The task named by ``options['type']``; `scale` (e.g. top-level ``scale:``) fills its scale."""
    name, options = split_type(options, path, f"one of {', '.join(TASKS.names())}")
    task_cls = TASKS.get(name, f"{path}.type")
    if scale is not None and "scale" not in options and "scale" in _params(task_cls):
        options["scale"] = scale
    return call_with_options(task_cls, options, path)


def _params(target: Any) -> list[str]:
    from restore.validation import accepted_keys

    return accepted_keys(target)[0]


def network_for_task(options: Mapping[str, Any], task: Task, path: str = "network_g") -> nn.Module:
    """Build ``network_g`` with channels and scale taken from the task."""
    return build_network(options, in_chans=task.in_chans, out_chans=task.out_chans, scale=task.scale, path=path)


def read_state_dict(path: str | Path, param_key: str | None = None,
                    converter: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata) from a safetensors file or, safely, from a foreign ``.pth`` file.

    `param_key` (BasicSR's ``path.param_key_g``: ``params`` or ``params_ema``) picks the weights of a
    BasicSR checkpoint that holds both; by default the EMA weights are preferred. `converter` names
    the one registered converter to use (default: the first that recognises the file)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(path)
    state_dict, meta = _read_foreign(path, param_key, converter)
    check_finite(state_dict, path)
    return state_dict, meta


def _read_foreign(path: Path, param_key: str | None, converter: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = safe_torch_load(path, allow_numpy=True)
    entries = [CONVERTERS.entry(converter, "--converter")] if converter else CONVERTERS.entries()
    for entry in entries:
        converted = entry.obj(obj, path)
        if converted is not None:
            state_dict, network, *task = converted  # converters may also name the task
            meta = {"network": network, "converted_by": entry.name}
            if task and task[0] is not None:
                meta["task"] = task[0]
            return state_dict, meta
    if converter:
        raise CheckpointError(f"{path}: converter '{converter}' does not recognise this file.")
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return strip_prefix(dict(obj)), {}
    for key in ((param_key,) if param_key else ("params_ema", "params", "state_dict", "model")):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return strip_prefix(dict(obj[key])), {}
    wanted = f"no '{param_key}' entry" if param_key else "no state_dict found"
    raise CheckpointError(f"{path}: {wanted} and no converter recognises this file.")


def load_pretrained(net: nn.Module, path: str | Path, *, strict: bool = True,
                    param_key: str | None = None) -> dict[str, Any]:
    """Load weights from `path` into `net`; returns the file's metadata. Mismatches name the keys."""
    state_dict, meta = read_state_dict(path, param_key)
    if not strict:  # BasicSR: skip weights whose shape differs (e.g. an x2 upsampler loaded into x3)
        own = net.state_dict()
        mismatched = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
        state_dict = {k: v for k, v in state_dict.items() if k not in mismatched}
        meta = {**meta, "skipped_shape_mismatch": mismatched}
    try:
        result = net.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{path} does not fit {type(net).__name__}: {exc}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {_short(result.missing_keys)}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {_short(result.unexpected_keys)}")
    if problems and strict:
        raise CheckpointError(
            f"{path} does not fit {type(net).__name__}: {'; '.join(problems)}. "
            "Check network_g against the checkpoint (or set path.strict_load_g: false)."
        )
    if not strict and (problems or meta.get("skipped_shape_mismatch")):
        skipped = meta.get("skipped_shape_mismatch")
        problems += [f"skipped keys of another shape {_short(skipped)}"] if skipped else []
        log.warning("non-strict load of %s into %s: %s", path, type(net).__name__, "; ".join(problems))
    return meta


def _short(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def model_from_checkpoint(path: str | Path, task_options: Mapping[str, Any] | None = None) -> tuple[nn.Module, Task]:
    """Rebuild (network, task) from a weights file that records its options (`restore` checkpoints)."""
    state_dict, meta = read_state_dict(path)
    if "network" not in meta:
        raise CheckpointError(f"{path}: does not record its network options; use an option file (-opt) instead.")
    task_opts = task_options or meta.get("task")
    if task_opts is None:
        raise CheckpointError(f"{path}: does not record its task; give an option file (-opt) with a task block.")
    task = build_task(task_opts)
    net = network_for_task(meta["network"], task)
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded network ({exc}).") from None
    return net, task


def build_registered(registry: Registry, block: Mapping[str, Any], path: str, *, defaults: Mapping[str, Any] = (),
                     **provided: Any) -> Any:
    """The object a ``{type: name, ...}`` block names in `registry`, with its options checked (also
    against the entry's ``option_types``); `defaults` fill keys the block leaves out."""
    name, options = split_type(block, path)
    entry = registry.entry(name, f"{path}.type")
    return call_with_options(entry.obj, {**dict(defaults), **options}, path,
                             option_types=entry.meta.get("option_types"), **provided)


def build_loss(block: Mapping[str, Any], path: str = "train.pixel_opt") -> nn.Module:
    return build_registered(LOSSES, block, path)


def build_optimizer(block: Mapping[str, Any], params: list[nn.Parameter], path: str = "train.optim_g",
                    device: torch.device | str | None = None) -> torch.optim.Optimizer:
    """The optimizer of `block`. On CUDA, optimizers that offer a fused kernel (Adam, AdamW, SGD)
    use it unless the block chooses ``fused``/``foreach`` itself: one kernel per step instead of
    one per parameter group."""
    name, _ = split_type(block, path)
    on_cuda = torch.device(device).type == "cuda" if device is not None else False
    chosen = {"fused", "foreach"} & set(block)
    fused = on_cuda and not chosen and "fused" in _params(OPTIMIZERS.get(name, f"{path}.type"))
    return build_registered(OPTIMIZERS, block, path, defaults={"fused": True} if fused else {}, params=params)


def build_scheduler(block: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer,
                    path: str = "train.scheduler") -> Any:
    """The LR scheduler, stepped once per optimizer update (iteration-based, like BasicSR). Its position
    (``last_epoch``) is not an option: training states restore it."""
    if block is None:
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    name, _ = split_type(block, path)
    provided = {"last_epoch": -1} if "last_epoch" in _params(SCHEDULERS.get(name, f"{path}.type")) else {}
    return build_registered(SCHEDULERS, block, path, optimizer=optimizer, **provided)


def build_dataset(block: Any, task: Task, phase_key: str, seed: int) -> Any:
    """The dataset of ``datasets.<phase_key>`` (a `restore.schema.DatasetOptions`)."""
    dataset_cls = DATASETS.get(block.type, f"datasets.{phase_key}.type")
    return call_with_options(dataset_cls, block.dataset_kwargs(), f"datasets.{phase_key}",
                             task=task, phase=phase_key, seed=seed)
