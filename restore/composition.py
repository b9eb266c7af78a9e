"""``compose``: one network, several sharing schemes, chosen per slot by pattern.

::

    sharing:
      type: compose
      rules:
        - {slots: projection, scheme: unified_projection}
        - {slots: "*.feature", scheme: {type: partial_filter, ratio: 1/3}}
      default: none

Each layer request goes to the scheme of the first rule whose pattern matches its slot, and to
`default` when none does. Patterns are shell-style (`fnmatch`, case-sensitive): ``*`` matches any
text, dots included, ``?`` one character, ``[ab]`` a set; ``slots`` may also be a list of patterns.

Every sub-scheme is a registered scheme built from its own options (validated under its full
option path, e.g. ``network_g.sharing.rules.1.scheme.ratio``) and sees only the slots routed to
it. The composite owns the sub-schemes as submodules (``rules.<i>``, ``default``), so their shared
tensors appear once in the state_dict, a deep copy (EMA) copies them together with the layers that
use them, and `materialize` turns the network into its ``sharing: none`` form like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from restore.errors import OptionError, closest
from restore.sharing import SharingScheme, build_sharing
from restore.validation import check_options


def compose_rule(slots: str | list[str], scheme: Any) -> None:
    """One rule of a ``compose`` scheme: the slot pattern(s) it claims and the scheme they get.

    (Its signature is what `check_options` validates each entry of ``rules`` against.)
    """


class ComposedSharing(SharingScheme):
    """Several sharing schemes in one network, chosen per slot by the first matching pattern."""

    name = "compose"

    def __init__(self, rules: list[Any], default: Any = "none", option_path: str = "network_g.sharing") -> None:
        super().__init__()
        self.patterns: list[tuple[str, ...]] = []
        schemes = []
        for index, rule in enumerate(rules):
            path = f"{option_path}.rules.{index}"
            if not isinstance(rule, Mapping):
                raise OptionError(f"{path}: expected a mapping {{slots: PATTERN, scheme: SCHEME}}, got {rule!r}.")
            checked = check_options(compose_rule, rule, path)
            self.patterns.append(_patterns(checked["slots"], f"{path}.slots"))
            schemes.append(build_sharing(checked["scheme"], path=f"{path}.scheme"))
        self.rules = nn.ModuleList(schemes)
        self.default = build_sharing(default, path=f"{option_path}.default")
        self.option_path = option_path
        self.routed: list[list[str]] = [[] for _ in range(len(schemes) + 1)]  # slots per rule, default last

    # -- routing requests ------------------------------------------------------------------------
    def scheme_for(self, slot: str) -> SharingScheme:
        """The sub-scheme that serves `slot` (and record the request for `describe`)."""
        self._check_open()
        index = next((i for i, patterns in enumerate(self.patterns)
                      if any(fnmatchcase(slot, p) for p in patterns)), len(self.patterns))
        self.routed[index].append(slot)
        return self.rules[index] if index < len(self.patterns) else self.default

    def conv2d(self, slot: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               padding: int = 0, bias: bool = True, dilation: int = 1, groups: int = 1) -> nn.Module:
        # Pass dilation/groups only when used, so sub-schemes written before they existed still work.
        extra = {k: v for k, v in (("dilation", dilation), ("groups", groups)) if v != 1}
        return self.scheme_for(slot).conv2d(slot, in_channels, out_channels, kernel_size, stride, padding,
                                            bias=bias, **extra)

    def linear(self, slot: str, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
        return self.scheme_for(slot).linear(slot, in_features, out_features, bias=bias)

    def module(self, slot: str, factory: Callable[[], nn.Module]) -> nn.Module:
        return self.scheme_for(slot).module(slot, factory)

    def finalize(self) -> None:
        """Refuse rules that matched no slot (a typo would silently leave layers unshared), then
        finalise every sub-scheme."""
        for index, patterns in enumerate(self.patterns):
            if not self.routed[index]:
                raise OptionError(self._unmatched(index, patterns))
        for scheme in (*self.rules, self.default):
            scheme.finalize()
        super().finalize()

    def _unmatched(self, index: int, patterns: tuple[str, ...]) -> str:
        earlier = [i for i in range(index) if any(fnmatchcase(s, p) for s in self.routed[i] for p in patterns)]
        families = slot_families(s for routed in self.routed for s in routed)
        if earlier:
            why = f"every slot they match is taken by earlier rule(s) {earlier} (the first matching rule wins)"
        else:
            hint = closest(patterns[0], families)
            why = "no slot of this network matches" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        listing = ", ".join(f"{family} ({count})" if count > 1 else family for family, count in families.items())
        return f"{self.option_path}.rules.{index}.slots {list(patterns)}: {why}. The network's slots: {listing}."

    # -- reporting -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        rules = [{"slots": list(patterns), "layers": len(self.routed[i]), "scheme": scheme.describe()}
                 for i, (patterns, scheme) in enumerate(zip(self.patterns, self.rules, strict=True))]
        return {"type": self.name, "rules": rules,
                "default": {"layers": len(self.routed[-1]), "scheme": self.default.describe()}}

    def extra_repr(self) -> str:
        return "rules=" + ", ".join(" | ".join(p) for p in self.patterns)


def slot_families(slots: Iterable[str]) -> dict[str, int]:
    """Slots grouped by their name with every number replaced by ``*`` (``layer*.feature``: 24),
    in first-seen order: a readable listing whose keys are patterns that match them."""
    families: dict[str, int] = {}
    for slot in dict.fromkeys(slots):
        family = re.sub(r"\d+", "*", slot)
        families[family] = families.get(family, 0) + 1
    return families


def _patterns(slots: str | list[str], path: str) -> tuple[str, ...]:
    patterns = (slots,) if isinstance(slots, str) else tuple(slots)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise OptionError(f"{path}: give a slot pattern or a list of them (e.g. '*.qkv'), got {slots!r}.")
    return patterns
