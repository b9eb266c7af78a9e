"""Pieces the PS archs share: the sharing option shorthand, frozen mean shifts, argument checks,
and the fused CPU inference path of their convolutions.

Fused inference. Without autograd, on the CPU in float32, a convolution and what follows it (a
ReLU or a one-slope PReLU, optionally after adding a residual) run as one oneDNN call with
post-ops (the same ``mkldnn::_convolution_pointwise`` kernels torch.compile's CPU backend emits),
on channels-last activations. That drops the separate passes over every activation, oneDNN's
reorders to and from its blocked layout, and most of the fresh allocations (and page faults) of
large feature maps: on DRRN-PS x4 the network runs in about two thirds of its plain-op time.
Outputs agree with the plain ops to float rounding (about 1e-6). Everything else (training,
tracing for FLOP counts, torch.compile, CUDA, other dtypes, layers that are not plain convs) takes
the ordinary PyTorch ops; `fused_inference(False)` forces them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import OptionError, SharedRef
from restore_ps.layers import PSConv2d

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


# -- fused CPU inference --------------------------------------------------------------------------

_ONEDNN_FUSION = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
_fusion_enabled = True

Activation = nn.Module | str | None  # nn.ReLU / one-slope nn.PReLU / "relu" / None


@contextlib.contextmanager
def fused_inference(enabled: bool) -> Iterator[None]:
    """Switch the fused CPU inference path on or off within the block (comparisons, debugging)."""
    global _fusion_enabled
    previous, _fusion_enabled = _fusion_enabled, enabled
    try:
        yield
    finally:
        _fusion_enabled = previous


def can_fuse(x: torch.Tensor) -> bool:
    """Whether convolutions on `x` may take the fused oneDNN path (see the module docstring)."""
    return (_fusion_enabled and _ONEDNN_FUSION and torch.backends.mkldnn.enabled and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.dim() == 4 and not torch.is_grad_enabled()
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _pair(value: int | Sequence[int]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _resolve(module: Any) -> Any:
    """The module a sharing scheme's reference runs (the `recursive` scheme hands out `SharedRef`s)."""
    return module.target if isinstance(module, SharedRef) else module


def _conv_call(conv: nn.Module) -> tuple[bool, torch.Tensor, torch.Tensor | None, dict[str, Any]] | None:
    """(transposed, weight, bias, geometry) of a plain (transposed) conv or a PS conv, else None."""
    conv = _resolve(conv)
    if isinstance(conv, PSConv2d):
        geometry = {"padding": _pair(conv.padding), "stride": _pair(conv.stride),
                    "dilation": _pair(getattr(conv, "dilation", 1)), "groups": getattr(conv, "groups", 1)}
        return False, conv.kernel(), conv.bias, geometry
    if type(conv) in (nn.Conv2d, nn.ConvTranspose2d) and conv.padding_mode == "zeros" \
            and not isinstance(conv.padding, str):
        geometry = {"padding": list(conv.padding), "stride": list(conv.stride), "dilation": list(conv.dilation),
                    "groups": conv.groups}
        if type(conv) is nn.ConvTranspose2d:
            geometry["output_padding"] = list(conv.output_padding)
        return type(conv) is nn.ConvTranspose2d, conv.weight, conv.bias, geometry
    return None


def _post_op(act: Activation) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for `act`, or None when it has no post-op equivalent."""
    act = _resolve(act)
    if act is None:
        return "none", []
    if act == "relu" or type(act) is nn.ReLU:
        return "relu", []
    if type(act) is nn.PReLU and act.weight.numel() == 1:
        return "leaky_relu", [act.weight.item()]
    return None


def _activate(y: torch.Tensor, act: Activation) -> torch.Tensor:
    if act is None:
        return y
    return F.relu(y) if act == "relu" else act(y)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    if x.stride(1) == 1 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    if x.shape[1] == 1:  # torch keeps NCHW strides for one channel; oneDNN reads the strides
        _, _, h, w = x.shape
        return x.contiguous().as_strided(x.shape, (h * w, 1, w, 1))
    return x.contiguous(memory_format=torch.channels_last)


def conv_act(x: torch.Tensor, conv: nn.Module, act: Activation = None,
             residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(conv(x) + residual)`` (each part optional): one fused oneDNN call where `can_fuse`
    allows it and `conv` is a plain or PS convolution, else the same with PyTorch ops."""
    call = _conv_call(conv) if can_fuse(x) else None
    post = _post_op(act)
    # oneDNN fuses an added residual only into a forward conv, and only with ReLU (or nothing) after it.
    if call is None or post is None or (residual is not None and (call[0] or post[0] not in ("none", "relu"))):
        y = conv(x)
        return _activate(y if residual is None else y + residual, act)
    transposed, weight, bias, geometry = call
    attr, scalars = post
    x, g, mkldnn = _channels_last(x), geometry, torch.ops.mkldnn
    if transposed:
        return mkldnn._convolution_transpose_pointwise(x, weight, bias, g["padding"], g["output_padding"],
                                                       g["stride"], g["dilation"], g["groups"], attr, scalars, "")
    if residual is None:
        return mkldnn._convolution_pointwise(x, weight, bias, g["padding"], g["stride"], g["dilation"], g["groups"],
                                             attr, scalars, "")
    unary = None if attr == "none" else attr
    return mkldnn._convolution_pointwise.binary(x, _channels_last(residual), weight, bias, g["padding"], g["stride"],
                                                g["dilation"], g["groups"], "add", None, unary, scalars, "")


def is_activation(module: nn.Module) -> bool:
    return type(_resolve(module)) in (nn.ReLU, nn.PReLU)


class FusedSequential(nn.Sequential):
    """``nn.Sequential`` (same names and keys) whose convolutions run fused with the activation
    that follows them (`conv_act`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and is_activation(layers[i + 1]):
                x = conv_act(x, layers[i], layers[i + 1])
                i += 2
            else:
                x = conv_act(x, layers[i])  # a layer that is no conv simply runs
                i += 1
        return x
