"""Running a network on one input: padding to the arch's size multiple, scale argument, cropping.

`run_network` is the single place where the core calls an arch at test time, so window
transformers get the official SwinIR padding and multi-scale nets get their scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restore.archs import arch_info


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "symmetric") -> torch.Tensor:
    """Pad the bottom/right of an NCHW tensor to multiples of `multiple`.

    ``symmetric`` appends the flipped image (the official SwinIR test code); ``reflect`` and
    ``replicate`` are torch's modes.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "symmetric":
        x = torch.cat([x, torch.flip(x, [2])], 2)[:, :, : h + pad_h, :]
        return torch.cat([x, torch.flip(x, [3])], 3)[:, :, :, : w + pad_w]
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def run_network(net: nn.Module, lq: torch.Tensor, scale: int) -> torch.Tensor:
    """The network's output for `lq` (NCHW), at `scale`, with the arch's padding undone."""
    info = arch_info(net)
    h, w = lq.shape[-2:]
    x = pad_to_multiple(lq, info.size_multiple, info.pad_mode) if info.size_multiple > 1 else lq
    out = net(x, scale=scale) if info.multi_scale else net(x)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out[..., : h * scale, : w * scale]
