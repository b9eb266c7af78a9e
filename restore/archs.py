"""Building networks from ``network_g`` options, and the facts the loop needs about an arch.

Archs stay task-agnostic: the builder fills their channel and scale arguments from the task,
whatever the arch calls them (``in_chans``/``num_in_ch``, ``scale``/``upscale``), so basicsr's
archs and ours are configured the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from torch import nn

from restore.errors import OptionError
from restore.registry import ARCHS, Entry, RegistryError
from restore.validation import _signature, accepted_keys, check_options, construct

T = TypeVar("T")

IN_CHANNEL_ARGS = ("in_chans", "num_in_ch", "in_channels", "in_nc")
OUT_CHANNEL_ARGS = ("out_chans", "num_out_ch", "out_channels", "out_nc")
SCALE_ARGS = ("scale", "upscale", "upscale_factor")


@dataclass(frozen=True)
class ArchInfo:
    """What the loop, the tiler and DDP need to know about an arch (spandrel-style descriptor).

    size_multiple: inputs are padded to a multiple of this (an int, or the name of the
        constructor argument that holds it, e.g. ``"window_size"``).
    multi_scale: the network serves several scales and is called as ``net(x, scale=s)``.
    shares_parameters: some parameters are used by several layers (DDP needs ``static_graph``).
    supports_half: fp16/bf16 inference is safe.
    pad_mode: how inputs are padded to `size_multiple` (``symmetric`` = the official SwinIR
        flip-and-append, ``reflect``, ``replicate``).
    guided: the network also takes a guide image at output resolution, ``net(x, guide=g)``
        (the RGB photo of guided depth SR); datasets give it with ``dataroot_guide``.
    channels_last: the network trains faster on channels-last (NHWC) tensors; ``train.channels_last``
        follows this unless the option file says otherwise. Set it only where it was measured (plain
        conv nets on CPU run 1.2-1.5x faster; window transformers can run slower).
    """

    size_multiple: int | str = 1
    multi_scale: bool = False
    shares_parameters: bool = False
    supports_half: bool = True
    pad_mode: str = "symmetric"
    guided: bool = False
    channels_last: bool = False


def register_arch(obj: T | None = None, *, name: str | None = None, aliases: tuple[str, ...] = (),
                  info: ArchInfo | None = None, option_types: Mapping[str, Any] | None = None) -> Any:
    """Register a network class or factory function in the arch registry, with its ArchInfo.

    `option_types` annotate constructor parameters the arch leaves unannotated (e.g.
    ``{"num_block": Annotated[int, Field(ge=0)]}``), so option files are checked as for annotated archs."""
    return ARCHS.register(obj, name=name, aliases=aliases, info=info or ArchInfo(), option_types=option_types)


def arch_info(net: nn.Module) -> ArchInfo:
    """The resolved ArchInfo attached by `build_network` (a default one for hand-built nets)."""
    return getattr(net, "restore_info", None) or ArchInfo()


def _first_accepted(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def split_type(block: Any, path: str, known: str = "") -> tuple[str, dict[str, Any]]:
    """(``type`` name, the other keys) of an option block; `known` lists valid names for the message."""
    hint = f" ({known})" if known else ""
    if not isinstance(block, Mapping):
        raise OptionError(f"{path}: expected a block of keys with a 'type', got {block!r}.")
    options = dict(block)
    name = options.pop("type", None)
    if not isinstance(name, str) or not name:
        got = "missing" if "type" not in block else f"must be a name, got {name!r}"
        raise OptionError(f"{path}.type: {got}{hint}.")
    return name, options


def network_kwargs(options: Mapping[str, Any], *, in_chans: int | None, out_chans: int | None,
                   scale: int | None, path: str = "network_g") -> tuple[Callable[..., nn.Module], dict, ArchInfo]:
    """Resolve ``{type, **kwargs}`` into (constructor, validated kwargs, resolved ArchInfo)."""
    arch, options = split_type(options, path, "an arch name; `restore plugins` lists them")
    entry = ARCHS.entry(arch, f"{path}.type")
    ctor = entry.obj
    info: ArchInfo = entry.meta.get("info") or ArchInfo()
    names, _ = accepted_keys(ctor)
    injected: dict[str, Any] = {}
    for value, candidates, what in (
        (in_chans, IN_CHANNEL_ARGS, "input channels"),
        (out_chans, OUT_CHANNEL_ARGS, "output channels"),
        (None if info.multi_scale else scale, SCALE_ARGS, "scale"),
    ):
        arg = _first_accepted(names, candidates)
        if value is None or arg is None:
            continue
        if arg in options and options[arg] != value:
            raise OptionError(
                f"{path}.{arg} is {options[arg]!r} but the task's {what} is {value!r}; "
                f"remove {path}.{arg} or change the task."
            )
        injected[arg] = value
    kwargs = check_options(ctor, {**injected, **options}, path, option_types=entry.meta.get("option_types"))
    if isinstance(info.size_multiple, str):
        default = _signature(ctor).parameters.get(info.size_multiple)
        multiple = kwargs.get(info.size_multiple, default.default if default is not None else 1)
        info = replace(info, size_multiple=int(multiple))
    return ctor, kwargs, info


def _json_default(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    return isinstance(value, (list, tuple)) and all(_json_default(v) for v in value)


def _registered_arch(options: Mapping[str, Any]) -> Entry | None:
    """The registered arch `options` names, or None (weights may record any options; building them
    is what reports a bad one)."""
    name = options.get("type")
    if not isinstance(name, str):
        return None
    try:
        return ARCHS.entry(name)
    except RegistryError:
        return None


def arch_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """The arch's default values of the keyword arguments `options` leaves out (JSON values only;
    not the channel and scale arguments the builder fills); {} for an unregistered arch. Weights
    record them so that a later change of a default cannot silently change the network a file
    loads into."""
    entry = _registered_arch(options)
    if entry is None:
        return {}
    filled = {*IN_CHANNEL_ARGS, *OUT_CHANNEL_ARGS, *SCALE_ARGS}
    return {name: list(p.default) if isinstance(p.default, tuple) else p.default
            for name, p in _signature(entry.obj).parameters.items()
            if name not in options and name not in filled and p.default is not p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and _json_default(p.default)}


def with_recorded_defaults(options: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with the defaults a weights file recorded for the keys it leaves out, where the arch
    still takes them."""
    entry = _registered_arch(options)
    merged = dict(options)
    if entry is None:
        return merged
    names, _ = accepted_keys(entry.obj)
    for key, value in recorded.items():
        if key in names:
            merged.setdefault(key, value)
    return merged


def build_network(options: Mapping[str, Any], *, in_chans: int | None = None, out_chans: int | None = None,
                  scale: int | None = None, path: str = "network_g") -> nn.Module:
    """Instantiate the arch named by ``options['type']`` and attach its resolved ArchInfo."""
    ctor, kwargs, info = network_kwargs(options, in_chans=in_chans, out_chans=out_chans, scale=scale, path=path)
    net = construct(ctor, kwargs, path)  # errors inside (e.g. from its sharing scheme) name their path
    net.restore_info = info
    return net


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Every distinct parameter once (shared ones are counted once), frozen ones included by default."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
