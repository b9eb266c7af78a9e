"""The ``partial_filter`` sharing scheme: every conv is rebuilt from a bank of partial filters.

Layers with the same geometry ``(partition, C_in, C_out, k)`` form a *shape group* and share
one bank. The bank size N_p is given directly (``num_partial_filters``) or as the paper's ratio
``gamma = N_p / N_total``, where N_total is the number of partial filters the unshared baseline
would have *per distinct slot*: (distinct slots in the group) x k*k for tap partitioning, x C_out
for filter partitioning. So DRRN (slots conv1, conv2; k=3) has N_total = 18, CARN (18 body convs)
162 and SRFBN-S (slots down0..2; 32 filters each) 96, however many times each slot recurs.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

import torch
from torch import nn

from restore.api import OptionError, SharingScheme, option_path, register_sharing
from restore_ps.layers import Partition, PSConv2d, bank_shape, coefficient_rows

BankInit = Literal["auto", "kaiming_normal", "normal"]


def parse_ratio(value: float | str, path: str | None = None) -> Fraction:
    """gamma from ``0.75``, ``"3/4"`` or ``"0.75"``; must be positive."""
    path = path or option_path("ratio")
    try:
        ratio = Fraction(value) if isinstance(value, str) else Fraction(value).limit_denominator(10_000)
    except (ValueError, ZeroDivisionError):
        raise OptionError(f"{path}: expected a number or a fraction such as '6/9', got {value!r}.") from None
    if ratio <= 0:
        raise OptionError(f"{path}: must be positive, got {value!r}.")
    return ratio


def group_name(partition: Partition, in_channels: int, out_channels: int, kernel_size: int) -> str:
    return f"{partition}_{in_channels}x{out_channels}_k{kernel_size}"


@register_sharing
class PartialFilterSharing(SharingScheme):
    """Partial filter-Sharing (Park & Cho, WACV 2025): per-layer coefficients over shared partial filters.

    Args:
        num_partial_filters: N_p for every bank (overrides `ratio`).
        ratio: gamma = N_p / N_total, e.g. ``"6/9"`` or ``0.75`` (default 1 when neither is given).
        partition: ``tap`` (C_in x C_out slices at each spatial tap), ``filter`` (whole output
            filters), or None to choose per layer: ``tap`` for stride-1 convs, ``filter`` otherwise.
        bank_init: ``kaiming_normal`` (CARN/DRRN-PS), ``normal`` (N(0,1), SRFBN-PS), or ``auto``
            (kaiming for tap banks, normal for filter banks, as released).
        cache_kernels: cache rebuilt kernels while gradients are off (evaluation).
    """

    name = "partial_filter"

    def __init__(self, num_partial_filters: int | None = None, ratio: float | str | None = None,
                 partition: Partition | None = None, bank_init: BankInit = "auto",
                 cache_kernels: bool = True) -> None:
        super().__init__()
        if num_partial_filters is not None and ratio is not None:
            raise OptionError(f"{option_path()}: give either num_partial_filters or ratio, not both.")
        if num_partial_filters is not None and num_partial_filters < 1:
            raise OptionError(f"{option_path('num_partial_filters')}: must be >= 1, got {num_partial_filters}.")
        self.num_partial_filters = num_partial_filters
        self.ratio = None if ratio is None else parse_ratio(ratio)
        self.partition = partition
        self.bank_init = bank_init
        self.cache_kernels = cache_kernels
        self.banks = nn.ParameterDict()
        self._layers: list[PSConv2d] = []
        self._slots: dict[str, set[str]] = {}
        self._geometry: dict[str, tuple[Partition, int, int, int]] = {}
        self._layer_counts: dict[str, int] = {}

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               dilation=1, groups=1):
        self._check_open()
        if dilation != 1 or groups != 1:
            raise OptionError(
                f"partial_filter sharing cannot rebuild slot '{slot}': it asks for a conv with "
                f"dilation={dilation}, groups={groups}, and partial filters cut only dense, undilated kernels. "
                f"Give such slots another scheme: `sharing: {{type: compose, rules: [{{slots: '{slot}', "
                "scheme: none}], default: {type: partial_filter, ...}}`."
            )
        partition = self.partition or ("tap" if stride == 1 else "filter")
        group = group_name(partition, in_channels, out_channels, kernel_size)
        layer = PSConv2d(self, group, partition, in_channels, out_channels, kernel_size, stride, padding, bias)
        self._layers.append(layer)
        self._slots.setdefault(group, set()).add(slot)
        self._layer_counts[group] = self._layer_counts.get(group, 0) + 1
        self._geometry[group] = (partition, in_channels, out_channels, kernel_size)
        return layer

    # -- sizes ----------------------------------------------------------------------------------
    def total_partial_filters(self, group: str) -> int:
        """N_total: the partial filters the unshared baseline has in this group's distinct slots."""
        partition, _, out_channels, k = self._geometry[group]
        return len(self._slots[group]) * coefficient_rows(partition, out_channels, k)

    def partial_filters(self, group: str) -> int:
        """N_p for this group's bank."""
        if self.num_partial_filters is not None:
            return self.num_partial_filters
        ratio = self.ratio if self.ratio is not None else Fraction(1)
        return max(1, round(ratio * self.total_partial_filters(group)))

    def finalize(self) -> None:
        for group, (partition, c_in, c_out, k) in self._geometry.items():
            n_p = self.partial_filters(group)
            bank = torch.empty(bank_shape(partition, c_in, c_out, k, n_p))
            init = self.bank_init if self.bank_init != "auto" else (
                "kaiming_normal" if partition == "tap" else "normal")
            if init == "kaiming_normal":
                nn.init.kaiming_normal_(bank)  # fan_in = row length, as the released code
            else:
                nn.init.normal_(bank)
            self.banks[group] = nn.Parameter(bank)
        for layer in self._layers:
            layer.allocate(self.banks[layer.group].shape[0])
        self._layers = []  # the arch owns the layers; keep no second reference
        super().finalize()

    def describe(self) -> dict[str, Any]:
        groups = {}
        for group in self._geometry:
            n_total = self.total_partial_filters(group)
            n_p = self.banks[group].shape[0] if group in self.banks else self.partial_filters(group)
            groups[group] = {
                "slots": len(self._slots[group]),
                "layers": self._layer_counts[group],
                "N_total": n_total,
                "N_p": n_p,
                "ratio": str(Fraction(n_p, n_total)),
            }
        return {"type": self.name, "banks": groups}
