"""basicsr's archs, pixel losses and schedulers, usable by name from option files.

Baselines such as ``SwinIR``, ``EDSR``, ``RCAN`` or ``MSRResNet`` need no copy: this plugin
registers basicsr's own classes. Names basicsr suffixes with ``_basicsr`` are also reachable
without the suffix.
"""

from __future__ import annotations

from basicsr.losses.basic_loss import CharbonnierLoss, L1Loss, MSELoss, WeightedTVLoss
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
from basicsr.utils.registry import ARCH_REGISTRY

from restore.api import LOSSES, SCHEDULERS, ArchInfo, register_arch, types_from_defaults

# Per-arch facts the loop needs; archs not listed take defaults (no padding).
# Plain conv nets train faster on channels-last tensors (BENCHMARKS.md, training on the CPU).
ARCH_FACTS: dict[str, ArchInfo] = {
    "SwinIR": ArchInfo(size_multiple="window_size", pad_mode="symmetric"),
    **{name: ArchInfo(channels_last=True) for name in ("MSRResNet", "EDSR", "RCAN", "RRDBNet")},
}



for _name, _cls in sorted(ARCH_REGISTRY):
    _short = _name.removesuffix("_basicsr")
    register_arch(_cls, name=_name, aliases=(_short,) if _short != _name else (),
                  info=ARCH_FACTS.get(_short, ArchInfo()), option_types=types_from_defaults(_cls))

for _loss in (L1Loss, MSELoss, CharbonnierLoss, WeightedTVLoss):
    LOSSES.register(_loss, option_types=types_from_defaults(_loss))

for _scheduler in (MultiStepRestartLR, CosineAnnealingRestartLR):
    SCHEDULERS.register(_scheduler, option_types=types_from_defaults(_scheduler))
