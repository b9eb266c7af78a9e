"""The sharing-layer API: how an arch gets its layers' weights without knowing the sharing scheme.

An arch asks its scheme for layers, naming for each the *slot* it fills: the weight it would use
in the traditional recursive network (e.g. DRRN's ``conv1``/``conv2``, SRFBN's ``down0..2``).
The scheme decides where the weights live:

* ``none``       -- every request gets its own independent weights;
* ``recursive``  -- one weight tensor per slot, reused wherever the slot recurs (DRRN/SRFBN style);
* plugins add more (``partial_filter`` from the PS plugin, ``unified_projection`` from UPS).

Shared weights are owned once by the scheme (a submodule of the arch, conventionally
``self.sharing``), so ``state_dict`` lists each tensor once and safetensors can store it. The
layers an arch holds reference the owner without registering it again.

An arch calls ``scheme.finalize()`` after requesting all its layers: schemes whose sizes depend
on the whole network (a bank sized by a ratio of all slots, projections split into groups)
allocate their parameters there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from restore.errors import OptionError


class SharedRef(nn.Module):
    """A layer that runs a module owned by a sharing scheme without registering it.

    It keeps the scheme and a key, and asks ``scheme.shared_module(key)`` on every call: objects,
    not a closure, so ``copy.deepcopy(net)`` (EMA copies) resolves to the copied scheme.
    """

    def __init__(self, scheme: SharingScheme, key: Any, label: str) -> None:
        super().__init__()
        object.__setattr__(self, "_scheme", scheme)  # not a submodule: the arch registers the scheme
        self.key, self.label = key, label

    @property
    def target(self) -> nn.Module:
        return self._scheme.shared_module(self.key)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def as_plain_module(self) -> nn.Module:
        """An independent copy of the shared module (used to export an unshared network)."""
        plain = copy.deepcopy(self.target)
        return plain.as_plain_module() if hasattr(plain, "as_plain_module") else plain

    def extra_repr(self) -> str:
        return f"shares {self.label}"


def _slot_key(kind: str, slot: str) -> str:
    # ModuleDict keys cannot contain '.', and slots read naturally with dots.
    return f"{kind}__{slot}".replace(".", "_")


class SharingScheme(nn.Module):
    """Base class and the ``none`` scheme: each request gets independent weights.

    Subclasses override the request methods they handle and fall back to these for the rest.
    """

    def __init__(self) -> None:
        super().__init__()
        self._finalized = False

    # -- requests an arch makes --------------------------------------------------------------
    def conv2d(
        self,
        slot: str,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        dilation: int = 1,
        groups: int = 1,
    ) -> nn.Module:
        """A 2-D convolution filling `slot` (arguments as ``nn.Conv2d``; `groups` > 1 for grouped or
        depthwise convs). A scheme that cannot express a geometry raises an OptionError naming `slot`."""
        self._check_open()
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)

    def linear(self, slot: str, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        """A linear projection filling `slot`."""
        self._check_open()
        return nn.Linear(in_features, out_features, bias=bias)

    def module(self, slot: str, factory: Callable[[], nn.Module]) -> nn.Module:
        """A companion layer (activation, norm) that follows the sharing of `slot`'s weights."""
        self._check_open()
        return factory()

    def finalize(self) -> None:
        """Called by the arch once all layers are requested."""
        self._finalized = True

    def shared_module(self, key: Any) -> nn.Module:
        """The module a `SharedRef` made by this scheme with `key` runs (schemes that share override it)."""
        raise NotImplementedError(f"{type(self).__name__} hands out no shared modules")

    # -- reporting ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Facts for logs and `restore plugins`: the scheme name and its sizes."""
        return {"type": type(self).registered_name()}

    @classmethod
    def registered_name(cls) -> str:
        return getattr(cls, "name", cls.__name__)

    def _check_open(self) -> None:
        if self._finalized:
            raise RuntimeError(f"{type(self).__name__}: layers requested after finalize()")


class NoSharing(SharingScheme):
    """Independent weights for every layer (the unshared network)."""

    name = "none"


class RecursiveSharing(SharingScheme):
    """One weight tensor per slot, reused by every layer that names the slot (classic recursion)."""

    name = "recursive"

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.ModuleDict()
        self._signatures: dict[str, tuple] = {}

    def _reuse(self, kind: str, slot: str, signature: tuple, make: Callable[[], nn.Module]) -> nn.Module:
        self._check_open()
        key = _slot_key(kind, slot)
        if key not in self.shared:
            self.shared[key] = make()
            self._signatures[key] = signature
        elif self._signatures[key] != signature:
            raise ValueError(
                f"recursive sharing: slot '{slot}' was requested as {self._signatures[key]} and as {signature}; "
                "layers that share a slot must have the same shape"
            )
        return SharedRef(self, key, f"{kind} slot '{slot}'")

    def shared_module(self, key: str) -> nn.Module:
        return self.shared[key]

    def conv2d(self, slot, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
               dilation=1, groups=1):
        signature = ("conv2d", in_channels, out_channels, kernel_size, stride, padding, bias, dilation, groups)
        return self._reuse(
            "conv", slot, signature,
            lambda: nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias),
        )

    def linear(self, slot, in_features, out_features, bias=True):
        signature = ("linear", in_features, out_features, bias)
        return self._reuse("linear", slot, signature, lambda: nn.Linear(in_features, out_features, bias=bias))

    def module(self, slot, factory):
        return self._reuse("module", slot, ("module",), factory)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, "shared_slots": len(self.shared)}


# -- building schemes from options -----------------------------------------------------------------

SharingSpec = str | Mapping[str, Any] | SharingScheme | None


def build_sharing(spec: SharingSpec, default: SharingSpec = "none", path: str = "network_g.sharing") -> SharingScheme:
    """A scheme from an option value: a name, ``{type: name, **kwargs}``, or a scheme instance.

    `path` is where the value sits in the options (errors name it); a scheme whose constructor
    takes ``option_path`` receives it (``compose`` builds its sub-schemes under it).
    """
    from restore.registry import SHARING
    from restore.validation import accepted_keys, call_with_options

    if spec is None:
        spec = default
    if isinstance(spec, SharingScheme):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    options = dict(spec)
    if "type" not in options:
        raise OptionError(f"{path}: missing 'type' (one of {', '.join(SHARING.names())})")
    scheme_cls = SHARING.get(options.pop("type"), f"{path}.type")
    provided = {"option_path": path} if "option_path" in accepted_keys(scheme_cls)[0] else {}
    return call_with_options(scheme_cls, options, path=path, **provided)


def _replace_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def materialize(net: nn.Module) -> nn.Module:
    """A copy of `net` in which every shared layer is replaced by an independent plain layer.

    The copy has the module paths and parameter names the same arch has with ``sharing: none``,
    so its state_dict loads into that network and its outputs match the shared one.
    """
    plain = copy.deepcopy(net)
    with torch.no_grad():
        for name, module in list(plain.named_modules()):
            if name and hasattr(module, "as_plain_module"):
                _replace_submodule(plain, name, module.as_plain_module())
        for name, module in reversed(list(plain.named_modules())):  # nested schemes (compose) first
            if name and isinstance(module, SharingScheme):
                replacement = NoSharing()
                replacement.finalize()
                _replace_submodule(plain, name, replacement)
    return plain
