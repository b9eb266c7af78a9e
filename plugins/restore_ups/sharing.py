"""``unified_projection``: the sharing layer behind UPS's single projection ``U``.

Every attention layer of a UPS network asks its scheme for ``linear(slot="projection", C, d,
bias=False)``. This scheme splits those requests, in order, into `n_share` consecutive groups and
gives each group one ``nn.Linear`` that it owns:

* ``n_share: 1``            -- one U for the whole network (the paper's unified projection);
* ``n_share: k``            -- k projections, each shared by a block of consecutive layers;
* ``n_share: <layers>``     -- one projection per layer (the traditional layer-specific design).

`slot` is a shell-style pattern (``fnmatch``): ``slot: "*.attn.qkv"`` shares SwinIR's qkv
projections the same way. Requests for other slots (the per-layer convs) get independent layers.
The same networks come from the core schemes: ``none`` equals ``n_share: <layers>`` and ``recursive`` equals
``n_share: 1`` as long as the arch names each layer's conv with its own slot (UPS does).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import numpy as np
from torch import nn

from restore.api import OptionError, SharedRef, SharingScheme, register_sharing


@register_sharing(name="unified_projection")
class UnifiedProjectionSharing(SharingScheme):
    """Projections whose slot matches `slot`, shared in `n_share` consecutive groups (1 = fully unified)."""

    name = "unified_projection"

    def __init__(self, n_share: int = 1, slot: str = "projection") -> None:
        super().__init__()
        if n_share < 1:
            raise OptionError(f"network_g.sharing.n_share must be at least 1, got {n_share}.")
        self.n_share, self.slot = n_share, slot
        self.projections = nn.ModuleList()
        self.group_of: list[int] = []
        self._requests: list[tuple[int, int, bool]] = []

    def linear(self, slot: str, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        if not fnmatchcase(slot, self.slot):
            return super().linear(slot, in_features, out_features, bias)
        self._check_open()
        index = len(self._requests)
        self._requests.append((in_features, out_features, bias))
        return SharedRef(self, index, f"projection {index} ('{slot}')")

    def shared_module(self, key: int) -> nn.Module:
        return self.projections[self.group_of[key]]

    def finalize(self) -> None:
        count = len(self._requests)
        if self.n_share > count:
            raise OptionError(
                f"network_g.sharing.n_share is {self.n_share} but the network has only {count} "
                f"'{self.slot}' projection(s); use at most {count}."
            )
        groups = np.array_split(np.arange(count), self.n_share)
        for group, members in enumerate(groups):
            shapes = {self._requests[i] for i in members}
            if len(shapes) > 1:
                raise ValueError(f"unified_projection: layers {members.tolist()} share a projection but request "
                                 f"different shapes {sorted(shapes)}")
            in_features, out_features, bias = shapes.pop()
            self.projections.append(nn.Linear(in_features, out_features, bias=bias))
            self.group_of.extend([group] * len(members))
        super().finalize()

    def group_sizes(self) -> list[int]:
        """How many layers use each projection, in layer order."""
        return np.bincount(self.group_of, minlength=len(self.projections)).tolist()

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "n_share": self.n_share, "layers": len(self._requests),
                "layers_per_projection": self.group_sizes()}

    def extra_repr(self) -> str:
        return f"n_share={self.n_share}, slot='{self.slot}'"
