"""Name -> object registries, filled by plugins found through Python entry points.

A plugin is a module named by an entry point in the group ``restore.plugins``. Importing it
registers its objects with the decorators of the registries below (the BasicSR idiom). Plugins
are loaded lazily, on the first lookup, each in isolation: a plugin that fails to import is
recorded with its error, its partial registrations are rolled back, and the others still load.
"""

from __future__ import annotations

import contextvars
import importlib
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any, TypeVar

from restore.errors import RegistryError, closest

ENTRY_POINT_GROUP = "restore.plugins"

T = TypeVar("T")

# The plugin whose module is being imported right now; registrations are attributed to it.
_loading_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar("_loading_plugin", default=None)


@dataclass(frozen=True)
class Entry:
    """One registered object: its name, where it came from, and free-form metadata."""

    name: str
    obj: Any
    origin: str
    plugin: str | None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        text = (getattr(self.obj, "__doc__", None) or "").strip()
        return text.splitlines()[0] if text else ""


def _describe_origin(obj: Any, plugin: str | None) -> str:
    where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    return f"{where} (plugin '{plugin}')" if plugin else where


class Registry:
    """A case-preserving name -> object map with explicit duplicate errors and helpful misses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    # -- registering -------------------------------------------------------------------------
    def register(
        self,
        obj: T | None = None,
        *,
        name: str | None = None,
        aliases: tuple[str, ...] = (),
        **meta: Any,
    ) -> Any:
        """Register `obj` under `name` (default: its ``__name__``). Usable as ``@REG.register()``."""

        def add(target: T) -> T:
            self._add(name or target.__name__, target, aliases, meta)
            return target

        return add if obj is None else add(obj)

    def _add(self, name: str, obj: Any, aliases: tuple[str, ...], meta: Mapping[str, Any]) -> None:
        plugin = _loading_plugin.get()
        entry = Entry(name, obj, _describe_origin(obj, plugin), plugin, MappingProxyType(dict(meta)))
        for key in (name, *aliases):
            existing = self._lookup_exact(key)
            if existing is not None:
                if existing.obj is obj:
                    continue
                raise RegistryError(
                    f"{self.kind} '{key}' is registered twice: by {existing.origin} and by {entry.origin}. "
                    "Rename one of them."
                )
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name

    def _lookup_exact(self, name: str) -> Entry | None:
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._entries[self._aliases[name]]
        return None

    def _forget_plugin(self, plugin: str) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e.plugin != plugin}
        self._aliases = {a: n for a, n in self._aliases.items() if n in self._entries}

    # -- looking up --------------------------------------------------------------------------
    def entry(self, name: str, path: str | None = None) -> Entry:
        """The entry for `name`; `path` (the option key that named it) prefixes the error message."""
        load_plugins()
        found = self._lookup_exact(name)
        if found is None:  # tolerate case differences when unambiguous
            folded = [k for k in (*self._entries, *self._aliases) if k.lower() == name.lower()]
            if len(folded) == 1:
                found = self._lookup_exact(folded[0])
        if found is None:
            raise RegistryError((f"{path}: " if path else "") + self._miss_message(name))
        return found

    def get(self, name: str, path: str | None = None) -> Any:
        return self.entry(name, path).obj

    def _miss_message(self, name: str) -> str:
        known = sorted(self._entries, key=str.lower)
        hint = closest(name, [*known, *self._aliases], n=1)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        listing = ", ".join(known) if known else "(none)"
        broken = [p for p in PLUGINS.values() if p.error]
        note = ""
        if broken:
            names = ", ".join(f"'{p.name}'" for p in broken)
            note = f" Note: plugin(s) {names} failed to load; run `restore plugins` to see why."
        return f"Unknown {self.kind} '{name}'.{suggestion} Known {self.kind}s: {listing}.{note}"

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return isinstance(name, str) and self._lookup_exact(name) is not None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries, key=str.lower)

    def entries(self) -> Iterator[Entry]:
        load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name.lower()))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


# -- plugin discovery ------------------------------------------------------------------------


@dataclass
class PluginRecord:
    name: str
    target: str
    distribution: str
    error: str | None = None
    detail: str | None = None


PLUGINS: dict[str, PluginRecord] = {}
_ALL_REGISTRIES: list[Registry] = []
_loaded = False


def _new_registry(kind: str) -> Registry:
    registry = Registry(kind)
    _ALL_REGISTRIES.append(registry)
    return registry


def load_plugin(name: str, target: str | Callable[[], Any], distribution: str = "?") -> PluginRecord:
    """Import one plugin module (or call a register function), isolating its failure."""
    label = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    record = PluginRecord(name, label, distribution)
    token = _loading_plugin.set(name)
    try:
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            module = importlib.import_module(module_name)
            if attr:
                getattr(module, attr)()
        else:
            target()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
        for registry in _ALL_REGISTRIES:
            registry._forget_plugin(name)
        record.error = f"{type(exc).__name__}: {exc}"
        record.detail = traceback.format_exc()
    finally:
        _loading_plugin.reset(token)
    PLUGINS[name] = record
    return record


def load_plugins() -> None:
    """Load every ``restore.plugins`` entry point once (idempotent, cheap after the first call)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        if ep.name in PLUGINS:
            continue  # the same distribution can be visible twice on sys.path
        load_plugin(ep.name, ep.value, dist)


# -- the registries the core and plugins share ----------------------------------------------------
ARCHS = _new_registry("arch")
SHARING = _new_registry("sharing layer")
TASKS = _new_registry("task")
DATASETS = _new_registry("dataset")
LOSSES = _new_registry("loss")
METRICS = _new_registry("metric")
OPTIMIZERS = _new_registry("optimizer")
SCHEDULERS = _new_registry("scheduler")
READERS = _new_registry("file reader")
CONVERTERS = _new_registry("checkpoint converter")

REGISTRIES: dict[str, Registry] = {
    "archs": ARCHS,
    "sharing": SHARING,
    "tasks": TASKS,
    "datasets": DATASETS,
    "losses": LOSSES,
    "metrics": METRICS,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "readers": READERS,
    "converters": CONVERTERS,
}
