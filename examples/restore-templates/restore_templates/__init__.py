"""Template mixing (Savarese & Maire, "Learning Implicitly Recurrent CNNs Through Parameter
Sharing", ICLR 2019) as a ``restore`` sharing scheme.

Every conv (and linear) layer whose weight has one shape draws it from one bank of K shared
templates: ``W_i = sum_k alpha_ik T_k``. The templates belong to the scheme; each layer owns its K
mixing coefficients and its bias. As in the paper, templates start Kaiming-normal and the
(layers x K) coefficient matrix of a bank starts orthogonal, so it is allocated in `finalize()`,
once the number of layers per bank is known.

Use it from any arch written on the sharing API::

    network_g: {type: DRRN, num_units: 9, sharing: {type: templates, num_templates: 4}}

A template layer exposes the ``weight`` it computes (and its geometry), so ``restore export
--materialize`` turns it into an ordinary conv without any code here. This package imports
nothing from ``restore`` but ``restore.api``, like every plugin should.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from restore.api import Field, SharingScheme, register_sharing

__all__ = ["TemplateConv2d", "TemplateLinear", "TemplateMixing"]


class _TemplateLayer(nn.Module):
    """A layer whose weight mixes the templates of one bank with this layer's coefficients."""

    def __init__(self, scheme: TemplateMixing, bank: str, out_features: int, bias: bool) -> None:
        super().__init__()
        object.__setattr__(self, "_scheme", scheme)  # not a submodule: the arch registers the scheme
        self.bank = bank
        self.register_parameter("coefficients", None)  # allocated by the scheme's finalize()
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The weight this layer computes: its coefficients times the bank's templates."""
        if self.coefficients is None:
            raise RuntimeError(f"{type(self).__name__} used before its sharing scheme was finalized")
        return torch.tensordot(self.coefficients, self._scheme.banks[self.bank], dims=1)


class TemplateConv2d(_TemplateLayer):
    """A conv with a template-mixed kernel (``stride``/``padding``/``dilation``/``groups`` as nn.Conv2d)."""

    def __init__(self, scheme: TemplateMixing, bank: str, out_channels: int, stride: Any, padding: Any,
                 dilation: Any, groups: int, bias: bool) -> None:
        super().__init__(scheme, bank, out_channels, bias)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class TemplateLinear(_TemplateLayer):
    """A linear layer with a template-mixed weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


@register_sharing(name="templates")
class TemplateMixing(SharingScheme):
    """Template mixing (Savarese & Maire, ICLR 2019): each conv/linear is a learned mix of K templates
    shared by every layer of its weight shape.

    Args:
        num_templates: K, the templates per bank (one bank per weight shape).
    """

    name = "templates"

    def __init__(self, num_templates: Annotated[int, Field(ge=1)]) -> None:
        super().__init__()
        self.num_templates = num_templates
        self.banks = nn.ParameterDict()
        self._layers: dict[str, list[_TemplateLayer]] = {}

    def _bank(self, kind: str, shape: tuple[int, ...], make_template: Any) -> str:
        key = f"{kind}_" + "x".join(map(str, shape))
        if key not in self.banks:
            templates = torch.empty(self.num_templates, *shape)
            for template in templates:
                make_template(template)
            self.banks[key] = nn.Parameter(templates)
            self._layers[key] = []
        return key

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               dilation=1, groups=1):
        self._check_open()
        if in_channels % groups:
            raise ValueError(f"templates: {in_channels} input channels do not split into {groups} groups")
        kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        shape = (out_channels, in_channels // groups, *kernel)
        key = self._bank("conv", shape, nn.init.kaiming_normal_)  # the paper's template initialisation
        layer = TemplateConv2d(self, key, out_channels, stride, padding, dilation, groups, bias)
        self._layers[key].append(layer)
        return layer

    def linear(self, slot, in_features, out_features, bias=True):
        self._check_open()
        # nn.Linear's own initialisation for each template
        key = self._bank("linear", (out_features, in_features),
                         lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5)))
        layer = TemplateLinear(self, key, out_features, bias)
        self._layers[key].append(layer)
        return layer

    def finalize(self) -> None:
        # The (layers x K) coefficient matrix of each bank starts orthogonal, as in the paper.
        for layers in self._layers.values():
            matrix = nn.init.orthogonal_(torch.empty(len(layers), self.num_templates))
            for layer, row in zip(layers, matrix):
                layer.coefficients = nn.Parameter(row.clone())
        super().finalize()

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "num_templates": self.num_templates,
            "banks": {key: len(layers) for key, layers in self._layers.items()},  # layers mixing each bank
            "template_parameters": sum(p.numel() for p in self.banks.values()),
        }
