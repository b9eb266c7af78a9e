"""Pieces the PS archs share: the sharing option shorthand, frozen mean shifts, argument checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from restore.api import OptionError

SharingOption = str | dict[str, Any] | None

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def ps_sharing(arch: str, sharing: SharingOption, gamma: float | str | None, num_partial_filters: int | None,
               default_gamma: float | str) -> SharingOption:
    """The sharing spec of a ``*_PS`` factory: `sharing` itself, or partial_filter built from the
    shorthand `gamma` / `num_partial_filters` (the paper's N_p/N_total, or N_p)."""
    if sharing is not None:
        if gamma is not None or num_partial_filters is not None:
            raise OptionError(
                f"network_g: {arch} takes either `sharing` or the shorthand `gamma`/`num_partial_filters`, not both."
            )
        return sharing
    if num_partial_filters is not None:
        if gamma is not None:
            raise OptionError(f"network_g: {arch}: give either gamma or num_partial_filters, not both.")
        return partial_filter_spec(num_partial_filters)
    return {"type": "partial_filter", "ratio": default_gamma if gamma is None else gamma}


def partial_filter_spec(num_partial_filters: int) -> dict[str, Any]:
    """``network_g.sharing`` for a bank of `num_partial_filters` partial filters."""
    return {"type": "partial_filter", "num_partial_filters": num_partial_filters}


def mean_shift(sign: int, data_range: float = 1.0, mean: Sequence[float] = DIV2K_RGB_MEAN) -> nn.Conv2d:
    """A frozen 1x1 conv adding (sign=+1) or subtracting (-1) the RGB mean (counted as parameters,
    as the papers' totals do)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * data_range * torch.tensor(mean))
    conv.requires_grad_(False)
    return conv


def require_rgb(arch: str, in_chans: int, out_chans: int) -> None:
    if in_chans != 3 or out_chans != 3:
        raise OptionError(
            f"network_g: {arch} works on RGB images (in_chans = out_chans = 3), got {in_chans} -> {out_chans}; "
            "use a task with colour images."
        )


def check_scale(arch: str, scale: int, scales: Sequence[int]) -> None:
    if scale not in scales:
        raise OptionError(f"{arch} was built for scales {list(scales)}; it cannot run at scale {scale}.")
