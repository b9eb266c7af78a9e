"""Converters for the authors' released PS checkpoints (CARN_DRRN-PS and SRFBN-PS repositories).

Their models register the bank once at the root (``filterbank``) and again in every PS layer
(``<layer>.matrix``); SRFBN-PS files are training checkpoints (``state_dict`` wrapper, ``module.``
prefix, numpy scalars in the logs). A converter receives what a safe ``torch.load`` read, folds
the aliases into our single bank key, infers N_p from the bank shape and the rest of the
network options from the other shapes, and returns ``(state_dict, network options)``. Our module
names are the authors', so no other key changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from restore.api import CheckpointError, register_converter
from restore_ps.common import partial_filter_spec
from restore_ps.scheme import group_name
from restore_ps.srfbn import GEOMETRY

BANK = "filterbank"


def authors_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The state_dict of a released PS checkpoint (bare, or under ``state_dict``), prefix stripped;
    None when `obj` is not one."""
    sd = obj.get("state_dict") if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return None
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd if BANK in sd else None


def fold_bank(sd: dict[str, torch.Tensor], bank_key: str, source: Path) -> dict[str, torch.Tensor]:
    """Replace ``filterbank`` and its per-layer ``*.matrix`` aliases by one entry under `bank_key`."""
    bank = sd.pop(BANK)
    for key in [k for k in sd if k.endswith(".matrix")]:
        alias = sd.pop(key)
        if not torch.equal(alias, bank):
            raise CheckpointError(
                f"{source}: '{key}' differs from 'filterbank'; in a PS checkpoint every layer's matrix is the "
                "shared bank, so this file is damaged or not a PS checkpoint."
            )
    return {bank_key: bank, **sd}


def _indices(sd: Mapping[str, Any], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return sorted(found)


Converted = tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]  # state_dict, network, task

# Multi-scale models are recorded with the x2 task; `restore test --scale 3` evaluates another scale.
SR_TASK_X2 = {"type": "sisr", "scale": 2}


def _tap_ps(sd: dict[str, torch.Tensor], source: Path, network: dict[str, Any]
            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """CARN-PS / DRRN-PS: 3x3 tap-partitioned PS convs of `entry`'s width, a unit per scale."""
    channels = sd["entry.weight"].shape[0]
    network = {
        **network,
        "num_features": channels,
        "scales": _indices(sd, r"b1\.b1_x(\d)\.conv1\.element$"),
        "sharing": partial_filter_spec(sd[BANK].shape[0]),
    }
    return fold_bank(sd, f"sharing.banks.{group_name('tap', channels, channels, 3)}", source), network


@register_converter(name="ps_drrn")
def convert_drrn_ps(obj: Any, source: Path) -> Converted | None:
    """DRRN-PS (``drrnps.pth``): Y-channel entry conv, units ``b{n}.b1_x{s}``."""
    sd = authors_state_dict(obj)
    if sd is None or "entry.weight" not in sd or sd["entry.weight"].shape[1] != 1:
        return None
    network = {"type": "DRRN_PS", "num_units": len(_indices(sd, r"b(\d+)\.b1_x\d\.conv1\.element$"))}
    return (*_tap_ps(sd, source, network), SR_TASK_X2)


@register_converter(name="ps_carn")
def convert_carn_ps(obj: Any, source: Path) -> Converted | None:
    """CARN-PS (``carnps6_9.pth`` / ``carnps8_9.pth``): gamma from the bank (108 -> 6/9, 144 -> 8/9)."""
    sd = authors_state_dict(obj)
    if sd is None or "sub_mean.shifter.weight" not in sd:
        return None
    return (*_tap_ps(sd, source, {"type": "CARN_PS"}), SR_TASK_X2)


@register_converter(name="ps_srfbn")
def convert_srfbn_ps(obj: Any, source: Path) -> Converted | None:
    """SRFBN-S-PS (``srfbnspsx{2,3,4}.pth``): scale from the deconv kernel size, N_p from the bank."""
    sd = authors_state_dict(obj)
    if sd is None or "block.downBlocks.0.0.element" not in sd:
        return None
    kernel_size = sd["out.0.weight"].shape[-1]
    scale = next((s for s, (k, _, _) in GEOMETRY.items() if k == kernel_size), None)
    if scale is None:
        raise CheckpointError(f"{source}: SRFBN-PS projection kernel size {kernel_size} matches no known scale.")
    features = sd["block.compress_in.0.weight"].shape[0]
    groups = len(_indices(sd, r"block\.upBlocks\.(\d+)\.0\.weight$"))
    network = {
        "type": "SRFBN_S_PS",
        "scale": scale,
        "num_features": features,
        "num_groups": groups,
        "num_steps": len(_indices(sd, r"block\.downBlocks\.(\d+)\.0\.element$")) // groups,
        "sharing": partial_filter_spec(sd[BANK].shape[0]),
    }
    bank_key = f"sharing.banks.{group_name('filter', features, features, kernel_size)}"
    return fold_bank(sd, bank_key, source), network, {"type": "sisr", "scale": scale}
