"""Model size and compute as papers report them: parameters and fvcore FLOPs for a given output size.

Conventions (those of the SwinIR/UPS size tables):

* parameters: every distinct parameter once, frozen ones and position-bias tables included;
* FLOPs: ``fvcore.nn.FlopCountAnalysis`` -- one per multiply-accumulate of conv, linear and matmul,
  5 per element of a LayerNorm, elementwise ops not counted -- of the LR input for a 1280x720
  output: the LR size is rounded up (x3: 240x427) and padded to the arch's size multiple
  (x3: 240x432), which is what the network computes on.

A plugin can attach the published figures to an arch as registry metadata ``paper`` (see
`paper_figures`); `restore profile --paper` prints them beside the measured ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from restore.archs import arch_info, build_network, count_parameters
from restore.inference import call_network
from restore.registry import ARCHS
from restore.validation import _signature

PAPER_OUTPUT_SIZE = (720, 1280)  # (height, width) of the output the papers' FLOPs refer to


@dataclass
class Profile:
    """Size and compute of one network at one scale."""

    name: str
    scale: int
    params: int
    flops: float
    lr_size: tuple[int, int]  # (height, width) the network computes on, padding included
    by_operator: dict[str, float] = field(default_factory=dict)
    changed: dict[str, Any] = field(default_factory=dict)  # options that differ from the arch's defaults


def lr_input_size(output_size: tuple[int, int], scale: int, multiple: int = 1) -> tuple[int, int]:
    """(height, width) of the LR input for an output of `output_size`, rounded up, then padded."""
    return tuple(math.ceil(math.ceil(n / scale) / multiple) * multiple for n in output_size)


class _CoreCall(nn.Module):
    """Lets the tracer call an arch as the core does: with ``scale=`` or ``guide=`` when it takes them."""

    def __init__(self, net: nn.Module, scale: int, guide: torch.Tensor | None) -> None:
        super().__init__()
        self.net, self.scale, self.guide = net, scale, guide

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return call_network(self.net, x, scale=self.scale, info=arch_info(self.net), guide=self.guide)


def count_flops(net: nn.Module, x: torch.Tensor, scale: int = 1) -> tuple[float, dict[str, float]]:
    """fvcore FLOPs of the core's call of `net` on `x` at `scale` (guided archs get a random
    guide at output size): total and by operator."""
    guide = None
    if arch_info(net).guided:
        guide = torch.rand(x.shape[0], 3, x.shape[-2] * scale, x.shape[-1] * scale, device=x.device)
    model = _CoreCall(net, scale, guide)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and the tracer warn about things that do not matter here
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model.eval(), x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = float(analysis.total())
        by_operator = {op: float(n) for op, n in analysis.by_operator().items()}
    return total, by_operator


def profile_network(net: nn.Module, *, name: str, scale: int, in_chans: int,
                    output_size: tuple[int, int] = PAPER_OUTPUT_SIZE, device: str = "cpu") -> Profile:
    """Parameters and FLOPs of a built network (see the module docstring for the conventions)."""
    info = arch_info(net)
    lr_size = lr_input_size(output_size, scale, max(int(info.size_multiple), 1))
    net = net.to(device)
    x = torch.rand(1, in_chans, *lr_size, generator=torch.Generator().manual_seed(0)).to(device)
    total, by_operator = count_flops(net, x, scale)
    return Profile(name, scale, count_parameters(net), total, lr_size, by_operator)


def profile_arch(options: Mapping[str, Any], *, scale: int, in_chans: int = 3,
                 output_size: tuple[int, int] = PAPER_OUTPUT_SIZE, device: str = "cpu") -> Profile:
    """Build ``options`` (``{type, **kwargs}``) for `in_chans` channels at `scale`, then profile it."""
    net = build_network(options, in_chans=in_chans, out_chans=in_chans, scale=scale)
    profile = profile_network(net, name=str(options["type"]), scale=scale, in_chans=in_chans,
                              output_size=output_size, device=device)
    profile.changed = _changed_options(ARCHS.get(options["type"]), options)
    return profile


def _changed_options(ctor: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    defaults = {name: p.default for name, p in _signature(ctor).parameters.items()}
    return {k: v for k, v in options.items()
            if k != "type" and k in defaults and _normalise(v) != _normalise(defaults[k])}


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def paper_figures(arch: str, scale: int) -> tuple[dict[str, float], dict[str, str]] | None:
    """(figures, provenance) an arch's plugin published for `scale`, or None.

    The plugin registers ``paper={"source": str, "note": str, "figures": {scale: {"params": n,
    "flops": n}}}`` as arch metadata; either figure may be missing.
    """
    meta = ARCHS.entry(arch).meta.get("paper")
    if not meta or scale not in meta.get("figures", {}):
        return None
    return dict(meta["figures"][scale]), {"source": meta.get("source", ""), "note": meta.get("note", "")}
