"""The core's own registrations, loaded through the ``restore.plugins`` entry point ``core``
exactly like any other plugin: generic sharing schemes, PSNR/SSIM, optimizers, schedulers, the
paired dataset and the identity baseline."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

import restore.metrics  # noqa: F401  (registers psnr, ssim)
from restore.api import (
    DATASETS,
    OPTIMIZERS,
    SCHEDULERS,
    ArchInfo,
    Field,
    NoSharing,
    RecursiveSharing,
    register_arch,
    register_sharing,
)
from restore.composition import ComposedSharing
from restore.data.paired import PairedImageDataset

register_sharing(NoSharing)
register_sharing(RecursiveSharing)
register_sharing(ComposedSharing)

for _optimizer in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop):
    OPTIMIZERS.register(_optimizer)

# torch annotates these as plain int/float; the ranges that keep a learning rate positive and finite:
_POSITIVE = Annotated[float, Field(gt=0)]
_COUNT = Annotated[int, Field(ge=0)]
_FRACTION = Annotated[float, Field(ge=0, le=1)]
_lr = torch.optim.lr_scheduler
for _scheduler, _types in (
    (_lr.MultiStepLR, {"milestones": list[_COUNT], "gamma": _POSITIVE}),
    (_lr.StepLR, {"step_size": Annotated[int, Field(ge=1)], "gamma": _POSITIVE}),
    (_lr.CosineAnnealingLR, {"T_max": Annotated[int, Field(ge=1)], "eta_min": Annotated[float, Field(ge=0)]}),
    (_lr.ExponentialLR, {"gamma": _POSITIVE}),
    (_lr.ConstantLR, {"factor": _FRACTION, "total_iters": _COUNT}),
    (_lr.LinearLR, {"start_factor": Annotated[float, Field(gt=0, le=1)], "end_factor": _FRACTION,
                    "total_iters": _COUNT}),
):
    SCHEDULERS.register(_scheduler, option_types=_types)


@register_arch(info=ArchInfo())
class Identity(nn.Module):
    """Returns its input: the 'degraded input' row of results tables for scale-1 tasks."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.in_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


DATASETS.register(PairedImageDataset)
