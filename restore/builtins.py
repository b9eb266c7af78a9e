"""The core's own registrations, loaded through the ``restore.plugins`` entry point ``core``
exactly like any other plugin: generic sharing schemes, PSNR/SSIM, optimizers, schedulers, the
paired dataset and the identity baseline."""

from __future__ import annotations

import torch
from torch import nn

import restore.metrics  # noqa: F401  (registers psnr, ssim)
from restore.api import (
    DATASETS,
    OPTIMIZERS,
    SCHEDULERS,
    ArchInfo,
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

for _scheduler in (
    torch.optim.lr_scheduler.MultiStepLR,
    torch.optim.lr_scheduler.StepLR,
    torch.optim.lr_scheduler.CosineAnnealingLR,
    torch.optim.lr_scheduler.ExponentialLR,
    torch.optim.lr_scheduler.ConstantLR,
    torch.optim.lr_scheduler.LinearLR,
):
    SCHEDULERS.register(_scheduler)


@register_arch(info=ArchInfo())
class Identity(nn.Module):
    """Returns its input: the 'degraded input' row of results tables for scale-1 tasks."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.in_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


DATASETS.register(PairedImageDataset)
