"""The PS convolution: a conv whose kernel is a linear combination of shared partial filters.

A partial-filter bank ``P`` (owned by the `PartialFilterSharing` scheme, shared by many layers)
and a per-layer coefficient matrix ``E`` give the kernel ``W = reshape(E @ P)``. Two ways of
cutting a kernel into partial filters are used by the paper (Park & Cho, WACV 2025):

* ``tap``    -- a partial filter is the ``C_in x C_out`` matrix at one spatial tap
  (CARN-PS, DRRN-PS): ``E`` is ``(k*k, N_p)``, ``P`` is ``(N_p, C_in*C_out)``;
* ``filter`` -- a partial filter is one whole output filter ``C_in x k x k`` (SRFBN-PS):
  ``E`` is ``(C_out, N_p)``, ``P`` is ``(N_p, C_in*k*k)``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Partition = Literal["tap", "filter"]


def build_kernel(element: torch.Tensor, bank: torch.Tensor, partition: Partition,
                 in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """The ``(C_out, C_in, k, k)`` conv kernel rebuilt from coefficients and bank."""
    combined = element @ bank
    k = kernel_size
    if partition == "tap":
        # Bank rows are laid out [ci][co] (a TF-style 1x1 kernel) and taps are row-major; the
        # released weights only work with exactly this layout (design note, pitfall 1).
        kernel = combined.view(k, k, in_channels, out_channels).permute(3, 2, 0, 1)
    else:
        kernel = combined.view(out_channels, in_channels, k, k)
    return kernel.contiguous()


def bank_shape(partition: Partition, in_channels: int, out_channels: int, kernel_size: int,
               num_partial_filters: int) -> tuple[int, int]:
    row = in_channels * out_channels if partition == "tap" else in_channels * kernel_size**2
    return num_partial_filters, row


def coefficient_rows(partition: Partition, out_channels: int, kernel_size: int) -> int:
    """Rows of a layer's coefficient matrix: one per tap, or one per output filter."""
    return kernel_size**2 if partition == "tap" else out_channels


class PSConv2d(nn.Module):
    """A 2-D convolution whose kernel is rebuilt from a shared bank and its own coefficients.

    The layer owns its coefficients (``element``) and optional ``bias``; the bank belongs to the
    sharing scheme and is referenced without being registered, so ``state_dict`` holds it once.
    ``element`` is allocated by the scheme's ``finalize()`` (its width, N_p, depends on the whole
    network).

    While gradients are recorded the kernel is rebuilt on every call, so gradients reach both
    bank and coefficients. Without gradients (evaluation) the kernel is built once and cached;
    the cache is keyed by the storage and version counter of bank and coefficients, so an
    optimizer step or ``load_state_dict`` (both in-place updates) invalidates it.
    """

    def __init__(self, scheme: Any, group: str, partition: Partition, in_channels: int, out_channels: int,
                 kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        object.__setattr__(self, "_scheme", scheme)  # not a submodule: the arch registers the scheme
        self.group = group
        self.partition = partition
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.register_parameter("element", None)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._cached: tuple[tuple, torch.Tensor] | None = None

    @property
    def bank(self) -> torch.Tensor:
        return self._scheme.banks[self.group]

    def allocate(self, num_partial_filters: int) -> None:
        """Create the coefficients, initialised to 1/N_p as in the released code."""
        rows = coefficient_rows(self.partition, self.out_channels, self.kernel_size)
        self.element = nn.Parameter(torch.full((rows, num_partial_filters), 1.0 / num_partial_filters))

    def _build(self) -> torch.Tensor:
        return build_kernel(self.element, self.bank, self.partition, self.in_channels, self.out_channels,
                            self.kernel_size)

    def kernel(self) -> torch.Tensor:
        """The current ``(C_out, C_in, k, k)`` kernel (cached while gradients are off)."""
        if self.element is None:
            raise RuntimeError("PSConv2d used before its sharing scheme was finalized")
        if torch.is_grad_enabled() or not self._scheme.cache_kernels:
            self._cached = None
            return self._build()
        bank, element = self.bank, self.element
        key = tuple((id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in (bank, element))
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._build())
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel(), self.bias, self.stride, self.padding)

    def as_plain_module(self) -> nn.Conv2d:
        """An ordinary ``nn.Conv2d`` holding the materialised kernel (same outputs, no bank)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         bias=self.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(self._build())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv.to(device=self.bank.device, dtype=self.bank.dtype)

    def extra_repr(self) -> str:
        n_p = None if self.element is None else self.element.shape[1]
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, partition={self.partition}, "
                f"bank={self.group}, N_p={n_p}")
