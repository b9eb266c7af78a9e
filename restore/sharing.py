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

A scheme initialises what it creates; an arch's own initialisation touches only
`unshared_layers(net)`. `materialize` turns a shared network into the plain one it computes
(layers' ``as_plain_module()``, or generically the ``weight``/``bias`` a layer exposes), and
`materialize_into` checks the result against the arch built with ``sharing: none``.
CONTRIBUTING.md states the whole contract, with executed examples.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from restore.errors import OptionError, RestoreError


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


def build_sharing(spec: SharingSpec, default: SharingSpec = "none", path: str | None = None) -> SharingScheme:
    """A scheme from an option value: a name, ``{type: name, **kwargs}``, or a scheme instance.

    `path` is where the value sits in the option file, for error messages; by default the
    ``sharing`` key of the block being built (``network_g.sharing`` inside `build_network`, and
    when an arch is constructed directly). A
    scheme that builds schemes from its own options (a composition) passes
    ``option_path("rules.1.scheme")``; a scheme whose constructor takes ``option_path`` receives
    its path (``compose`` builds its sub-schemes under it). None means `default`.
    """
    from restore.registry import SHARING
    from restore.validation import accepted_keys, call_with_options, option_path

    path = path or f"{option_path() or 'network_g'}.sharing"
    if spec is None:
        spec = default
    if isinstance(spec, SharingScheme):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise OptionError(f"{path}: expected a scheme name or {{type: name, ...}}, got {spec!r}.")
    options = dict(spec)
    if "type" not in options:
        raise OptionError(f"{path}: missing 'type' (one of {', '.join(SHARING.names())}).")
    scheme_cls = SHARING.get(options.pop("type"), f"{path}.type")
    provided = {"option_path": path} if "option_path" in accepted_keys(scheme_cls)[0] else {}
    return call_with_options(scheme_cls, options, path, **provided)


# -- the arch's own initialisation ----------------------------------------------------------------


def unshared_layers(net: nn.Module, types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
                    ) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the layers an arch's own initialisation may touch: modules of exactly
    `types` that no sharing scheme owns.

    A scheme initialises everything it creates (its shared tensors, the per-layer parameters of
    the layers it hands out); an arch re-initialising those would silently change the scheme.
    What the arch may initialise is what it built itself, plus the plain layers ``none`` hands
    out (the unshared network), so that the baseline keeps the arch's published initialisation.
    """
    def walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        for name, child in module.named_children():
            if isinstance(child, SharingScheme):
                continue
            full = f"{prefix}{name}"
            if type(child) in types:
                yield full, child
            yield from walk(child, f"{full}.")

    yield from walk(net, "")


# -- materialisation: the plain network a shared one computes -------------------------------------


def _computed_weight(layer: nn.Module) -> torch.Tensor | None:
    """The weight `layer` computes (a `weight` attribute that is not a parameter or buffer of its own).

    torch's own conv/linear layers are never rewritten, whatever computes their weight
    (parametrizations, weight norm): the unshared network has them too."""
    if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
        return None
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or "weight" in layer._parameters or "weight" in layer._buffers:
        return None
    return weight


def plain_layer(layer: nn.Module) -> nn.Module | None:
    """An independent plain module computing what `layer` computes, or None if it cannot be made.

    A layer's own ``as_plain_module()`` comes first. Otherwise a layer that exposes the ``weight``
    (and ``bias``) it computes, like an ordinary conv or linear layer, becomes an ``nn.Conv2d``
    (4-D weight; ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode`` read from the
    layer, with nn.Conv2d's defaults) or an ``nn.Linear`` (2-D weight) holding those values.
    """
    if hasattr(layer, "as_plain_module"):
        return layer.as_plain_module()
    weight = _computed_weight(layer)
    if weight is None or weight.dim() not in (2, 4):
        return None
    bias = getattr(layer, "bias", None)
    bias = bias if isinstance(bias, torch.Tensor) else None
    if weight.dim() == 2:
        plain: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        groups = int(getattr(layer, "groups", 1))
        plain = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                          stride=getattr(layer, "stride", 1), padding=getattr(layer, "padding", 0),
                          dilation=getattr(layer, "dilation", 1), groups=groups,
                          padding_mode=getattr(layer, "padding_mode", "zeros"), bias=bias is not None)
    plain = plain.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    return plain


def _is_plain(module: nn.Module) -> bool:
    return _computed_weight(module) is None and not hasattr(module, "as_plain_module")


def materialize(net: nn.Module) -> nn.Module:
    """A copy of `net` in which every shared layer is replaced by an independent plain layer.

    Layers are replaced through `plain_layer` and every sharing scheme by a finalised ``none``, so
    the copy has the module paths and parameter names the same arch has with ``sharing: none``.
    `materialize_into` checks that it does.
    """
    plain = copy.deepcopy(net)

    def walk(module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, SharingScheme):
                replacement: nn.Module | None = NoSharing()
                replacement.finalize()
            elif _is_plain(child):
                walk(child)
                continue
            else:
                replacement = plain_layer(child)
                if replacement is None:  # left as it is; materialize_into names it
                    walk(child)
                    continue
            setattr(module, name, replacement)

    with torch.no_grad():
        walk(plain)
    return plain


def materialize_into(net: nn.Module, plain_net: nn.Module) -> None:
    """Load the materialised weights of `net` into `plain_net`, the same arch built with
    ``sharing: none``, requiring every tensor to match by name and shape.

    Raises a RestoreError naming each layer that could not be materialised (one without
    ``as_plain_module()`` or a computed ``weight``) or that does not fit.
    """
    state = materialize(net).state_dict()
    expected = plain_net.state_dict()
    bad = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    bad += [k for k in state if k not in expected]
    if bad:
        layers = list(dict.fromkeys(k.rpartition(".")[0] for k in bad))
        named = ", ".join(f"'{name}' ({_type_at(net, name)})" for name in layers[:5])
        more = f" and {len(layers) - 5} more" if len(layers) > 5 else ""
        raise RestoreError(
            f"cannot materialise {type(net).__name__}: layer(s) {named}{more} do not become the layers of the "
            "network with `sharing: none`. A layer handed out by a sharing scheme is exported through its "
            "as_plain_module(), or as an ordinary conv/linear when it exposes the `weight` (and `bias`) it "
            "computes; see CONTRIBUTING.md, 'Materialisation'."
        )
    plain_net.load_state_dict(state, strict=True)


def _type_at(net: nn.Module, name: str) -> str:
    try:
        return type(net.get_submodule(name)).__name__
    except AttributeError:
        return "not in the shared network"
