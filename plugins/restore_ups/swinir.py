"""SwinIR-light and SwinIR-S baselines: basicsr's SwinIR with the lightweight configurations.

basicsr's SwinIR does not pad its input; the official SwinIR test code mirror-pads to a multiple
of the window and crops the output. `PaddedSwinIR` does the same inside ``forward``, so direct
calls work too (under the core, `run_network` has already padded and nothing is left to pad), with
basicsr's parameter names unchanged so official and basicsr checkpoints load as they are.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from basicsr.archs.swinir_arch import SwinIR

from restore.api import pad_to_multiple

Upsampler = Literal["pixelshuffledirect", "pixelshuffle", "nearest+conv", ""]


class PaddedSwinIR(SwinIR):
    """basicsr's SwinIR with the official test-time mirror padding to a multiple of the window."""

    def __init__(self, *, window_size: int, **kwargs: object) -> None:
        with warnings.catch_warnings():  # basicsr calls torch.meshgrid without `indexing`
            warnings.filterwarnings("ignore", message="torch.meshgrid")
            super().__init__(window_size=window_size, **kwargs)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = super().forward(pad_to_multiple(x, self.window_size, "symmetric"))
        return out[..., : h * self.upscale, : w * self.upscale]


def SwinIR_light(  # noqa: N802 - registry name
    in_chans: int = 3,
    upscale: int = 2,
    img_size: int = 64,
    window_size: int = 8,
    embed_dim: int = 60,
    depths: tuple[int, ...] = (6, 6, 6, 6),
    num_heads: tuple[int, ...] = (6, 6, 6, 6),
    mlp_ratio: float = 2.0,
    img_range: float = 1.0,
    upsampler: Upsampler | None = None,
    resi_connection: Literal["1conv", "3conv"] = "1conv",
    drop_path_rate: float = 0.1,
) -> PaddedSwinIR:
    """SwinIR-light (SwinIR's `lightweight_sr` configuration; 910,152 parameters at x2).

    `upsampler` defaults to 'pixelshuffledirect' for SR and, at upscale 1, to SwinIR's restoration
    tail (conv + image residual).
    """
    if upsampler is None:
        upsampler = "pixelshuffledirect" if upscale > 1 else ""
    return PaddedSwinIR(
        in_chans=in_chans, upscale=upscale, img_size=img_size, window_size=window_size, embed_dim=embed_dim,
        depths=list(depths), num_heads=list(num_heads), mlp_ratio=mlp_ratio, img_range=img_range,
        upsampler=upsampler, resi_connection=resi_connection, drop_path_rate=drop_path_rate,
    )
