"""UPS (Unified Projection Sharing, NeurIPS 2024) and its SwinIR baselines.

Registers:

* sharing layer ``unified_projection`` -- one projection U for all attention layers (``n_share``);
* archs ``UPS`` (width 60) and ``UPS_S`` (width 44), for SR (upscale 2/3/4/...) and restoration
  (upscale 1, image residual), with the paper's ablation switches;
* archs ``SwinIR_light`` and ``SwinIR_S`` -- SwinIR in the lightweight configurations, written on
  the sharing API: with ``sharing: none`` (the default) basicsr's/official SwinIR layout and outputs,
  with the official test-time padding; any sharing scheme applies to its body layers.

No official UPS code exists; docs/ups.md says which choices are the paper's and which are ours.
"""

from __future__ import annotations

from restore.api import ARCHS, ArchInfo

from .network import UPS, UPS_INFO
from .paper import PAPER_FIGURES
from .presets import preset
from .sharing import UnifiedProjectionSharing
from .swinir import SwinIR_light

UPS_S = preset(UPS, "UPS_S", "UPS-S: UPS at width 44 (452K parameters at x2; the paper: 453K).", __name__,
               embed_dim=44)
SwinIR_S = preset(SwinIR_light, "SwinIR_S", "SwinIR-S: SwinIR-light at width 44 with 4 heads (498,440 "
                  "parameters at x2).", __name__, embed_dim=44, num_heads=(4, 4, 4, 4))

ARCHS.register(UPS, info=UPS_INFO, paper=PAPER_FIGURES["UPS"])
ARCHS.register(UPS_S, info=UPS_INFO, paper=PAPER_FIGURES["UPS_S"])
_SWINIR_INFO = ArchInfo(size_multiple="window_size", pad_mode="symmetric", shares_parameters=True)
ARCHS.register(SwinIR_light, info=_SWINIR_INFO, paper=PAPER_FIGURES["SwinIR_light"])
ARCHS.register(SwinIR_S, info=_SWINIR_INFO, paper=PAPER_FIGURES["SwinIR_S"])

__all__ = ["PAPER_FIGURES", "UPS", "UPS_S", "SwinIR_S", "SwinIR_light", "UnifiedProjectionSharing"]
