"""Name -> object registries, filled by plugins found through Python entry points.

A plugin is a module named by an entry point in the group ``restore.plugins``. Importing it
registers its objects with the decorators of the registries below (the BasicSR idiom).

Plugins are imported only when one of their names is needed. A plugin's manifest (see
`restore.manifest`) says which names it provides, so looking up ``DRRN_PS`` imports the PS plugin
and nothing else; a plugin without a manifest is imported on the first lookup of any name.

Rules that do not depend on which plugin happens to be imported first:

* The plugins of this distribution (core, basicsr, ps, ups, tasks) are *built in*: their names
  belong to them. A third-party registration of such a name is refused for that name only (the
  rest of its plugin still loads), and the refusal names both packages.
* A name registered by two third-party plugins is ambiguous: neither is used, and a lookup says
  which two packages clash.
* Each plugin is imported in isolation: one that fails is recorded with its error, its partial
  registrations are rolled back, and the others still load.
* A lookup that misses imports every plugin before answering, so a stale manifest costs time,
  never a wrong answer; the miss suggests the closest known name.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import Any, TypeVar

from restore.errors import RegistryError, closest
from restore.manifest import Manifest, ManifestProblem, manifest_path, module_origin, read_manifest

ENTRY_POINT_GROUP = "restore.plugins"
OWN_DISTRIBUTION = "restore"

T = TypeVar("T")

# The plugin whose module is being imported right now; registrations are attributed to it.
_loading_plugin: contextvars.ContextVar[str | None] = contextvars.ContextVar("_loading_plugin", default=None)


class PluginWarning(UserWarning):
    """A plugin problem that does not stop the run: a refused name, a manifest that disagrees."""


@dataclass(frozen=True)
class Entry:
    """One registered object: its name, where it came from, and free-form metadata."""

    name: str
    obj: Any
    origin: str
    plugin: str | None
    meta: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        text = (getattr(self.obj, "__doc__", None) or "").strip()
        return text.splitlines()[0] if text else ""


def _describe_origin(obj: Any, plugin: str | None) -> str:
    where = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    record = PLUGINS.get(plugin) if plugin else None
    if record is not None:
        return f"{where} (plugin '{plugin}', {record.distribution})"
    return f"{where} (plugin '{plugin}')" if plugin else where


class Registry:
    """A case-preserving name -> object map with explicit duplicate errors and helpful misses.

    `key` is the registry's name in manifests and `REGISTRIES` (``archs``, ``sharing``, ...); a
    registry without one (a private registry) never imports plugins.
    """

    def __init__(self, kind: str, key: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._ambiguous: dict[str, list[str]] = {}  # name -> the third-party plugins that both claim it

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
            self._add(name or target.__name__, target, tuple(aliases), meta)
            return target

        return add if obj is None else add(obj)

    def _add(self, name: str, obj: Any, aliases: tuple[str, ...], meta: Mapping[str, Any]) -> None:
        plugin = _registering_plugin()
        entry = Entry(name, obj, _describe_origin(obj, plugin), plugin, MappingProxyType(dict(meta)))
        if not self._claim(name, entry):
            return
        kept = tuple(alias for alias in aliases if self._claim(alias, entry))
        self._entries[name] = Entry(entry.name, obj, entry.origin, plugin, entry.meta, kept)
        for alias in kept:
            self._aliases[alias] = name

    def _claim(self, key: str, entry: Entry) -> bool:
        """Whether `entry` may take `key`; settles clashes by the module docstring's rules."""
        if key in self._ambiguous and not _is_third_party(entry.plugin):
            del self._ambiguous[key]  # a built-in whose manifest missed the name: it is still its name
        if key in self._ambiguous:
            self._ambiguous[key].append(entry.plugin or "?")
            self._refuse(entry.plugin, key, f"is also registered by {_plugin_list(self._ambiguous[key][:-1])}; "
                         "no plugin gets it")
            return False
        existing = self._lookup_exact(key)
        if existing is not None and existing.obj is entry.obj:
            return False
        owner = _builtin_owner(self.key, key)
        if existing is None and owner is not None and _is_third_party(entry.plugin) and owner != entry.plugin:
            self._refuse(entry.plugin, key, f"belongs to {_plugin_label(owner)}; {_package(entry.plugin)} must use "
                         "another name")
            return False
        if existing is None:
            return True
        new_third, old_third = _is_third_party(entry.plugin), _is_third_party(existing.plugin)
        if existing.plugin == entry.plugin or not (new_third or old_third):
            raise RegistryError(
                f"{self.kind} '{key}' is registered twice: by {existing.origin} and by {entry.origin}. "
                "Rename one of them."
            )
        if new_third and not old_third:
            self._refuse(entry.plugin, key, f"belongs to {_plugin_label(existing.plugin)}; {_package(entry.plugin)} "
                         "must use another name")
            return False
        self._evict(key)
        if old_third and not new_third:
            self._refuse(existing.plugin, key, f"belongs to {_plugin_label(entry.plugin)}; "
                         f"{_package(existing.plugin)} must use another name")
            return True
        self._ambiguous[key] = [existing.plugin or "?", entry.plugin or "?"]
        for plugin, other in ((existing.plugin, entry.plugin), (entry.plugin, existing.plugin)):
            self._refuse(plugin, key, f"is also registered by {_plugin_label(other)}; no plugin gets it")
        return False

    def _refuse(self, plugin: str | None, key: str, reason: str) -> None:
        """Record (and warn) that `plugin` does not get `key`; the rest of the plugin is unaffected."""
        message = f"{self.kind} '{key}' {reason}"
        record = PLUGINS.get(plugin) if plugin else None
        if record is not None and message not in record.refused:
            record.refused.append(message)
            record.refused_names.add((self.key or self.kind, key))
        warnings.warn(f"plugin '{plugin}': {message}", PluginWarning, stacklevel=5)

    def _evict(self, key: str) -> None:
        if key in self._aliases:
            name = self._aliases.pop(key)
            old = self._entries[name]
            self._entries[name] = Entry(old.name, old.obj, old.origin, old.plugin, old.meta,
                                        tuple(a for a in old.aliases if a != key))
        else:
            old = self._entries.pop(key)
            for alias in old.aliases:
                self._aliases.pop(alias, None)

    def _lookup_exact(self, name: str) -> Entry | None:
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._entries[self._aliases[name]]
        return None

    def _forget_plugin(self, plugin: str) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e.plugin != plugin}
        self._aliases = {a: n for a, n in self._aliases.items() if n in self._entries}

    def _find(self, name: str) -> Entry | None:
        found = self._lookup_exact(name)
        if found is None:  # tolerate case differences when unambiguous
            folded = [k for k in (*self._entries, *self._aliases) if k.lower() == name.lower()]
            if len(folded) == 1:
                found = self._lookup_exact(folded[0])
        return found

    # -- looking up --------------------------------------------------------------------------
    def entry(self, name: str, path: str | None = None) -> Entry:
        """The entry for `name`; `path` (the option key that named it) prefixes the error message."""
        found = self._resolve(name)
        if found is None:
            raise RegistryError((f"{path}: " if path else "") + self._miss_message(name))
        return found

    def _resolve(self, name: str) -> Entry | None:
        """Import the plugins that may provide `name`, then look it up (all plugins on a miss)."""
        if self.key is not None:
            _load_providers(self.key, name)
        found = self._find(name)
        if found is None and name not in self._ambiguous and self.key is not None and _load_pending():
            found = self._find(name)
        return found

    def get(self, name: str, path: str | None = None) -> Any:
        return self.entry(name, path).obj

    def _miss_message(self, name: str) -> str:
        if name in self._ambiguous:
            return (f"{self.kind} '{name}' is registered by several plugins ({_plugin_list(self._ambiguous[name])}), "
                    "so none of them is used. Uninstall one of these packages, or ask its author to rename it.")
        failed = [r for r in PLUGINS.values()
                  if r.error and r.manifest and self.key and r.manifest.declares(self.key, name)]
        if failed:
            record = failed[0]
            return (f"{self.kind} '{name}' comes from plugin '{record.name}' ({record.distribution}), which failed "
                    f"to load: {record.error}. Run `restore plugins` for details.")
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
        if not isinstance(name, str):
            return False
        self._resolve(name)
        return self._lookup_exact(name) is not None

    def names(self) -> list[str]:
        """Every name a lookup can find: registered ones and those that plugins not imported yet
        declare in their manifests (plugins without a manifest are imported to learn theirs)."""
        declared: set[str] = set()
        if self.key is not None:
            _load_pending(lambda record: record.manifest is None)
            for record in PLUGINS.values():
                if record.state == "pending" and record.manifest is not None:
                    declared |= set(record.manifest.names.get(self.key, {}))
        return sorted(set(self._entries) | declared, key=str.lower)

    def entries(self) -> Iterator[Entry]:
        """All entries (imports every plugin)."""
        if self.key is not None:
            _load_pending()
        return iter(sorted(self._entries.values(), key=lambda e: e.name.lower()))

    def loaded_entries(self) -> list[Entry]:
        """The entries registered so far, importing nothing."""
        return sorted(self._entries.values(), key=lambda e: e.name.lower())

    def provider(self, name: str) -> PluginRecord | None:
        """The plugin that provides `name` as far as is known without importing anything: the
        registered entry's plugin, else the plugin whose manifest declares it."""
        discover_plugins()
        found = self._find(name)
        if found is not None:
            return PLUGINS.get(found.plugin) if found.plugin else None
        for record in PLUGINS.values():
            if record.manifest is not None and self.key and record.manifest.declares(self.key, name):
                return record
        return None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


# -- plugins ---------------------------------------------------------------------------------------


@dataclass
class PluginRecord:
    """One plugin: where it comes from, what its manifest declares, and how loading it went.

    `state` is ``pending`` (found, not imported), ``loading``, ``loaded`` or ``failed``.
    """

    name: str
    target: str
    distribution: str = "?"
    builtin: bool = False
    manifest: Manifest | None = None
    manifest_problem: str | None = None
    state: str = "pending"
    error: str | None = None
    detail: str | None = None
    refused: list[str] = field(default_factory=list)
    refused_names: set[tuple[str, str]] = field(default_factory=set)
    disagreements: list[str] = field(default_factory=list)
    packages: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Everything `restore plugins` reports as wrong with this plugin."""
        found = [f"failed to load: {self.error}"] if self.error else []
        found += [f"refused: {text}" for text in self.refused]
        found += [f"manifest: {text}" for text in self.disagreements]
        if self.manifest_problem:
            found.append(f"manifest unusable (plugin imported whenever a name is looked up): {self.manifest_problem}")
        return found


PLUGINS: dict[str, PluginRecord] = {}
_ALL_REGISTRIES: list[Registry] = []
_discovered = False


def _new_registry(kind: str, key: str) -> Registry:
    registry = Registry(kind, key)
    _ALL_REGISTRIES.append(registry)
    return registry


def _package(plugin: str | None) -> str:
    record = PLUGINS.get(plugin) if plugin else None
    return f"{record.distribution} (plugin '{plugin}')" if record else f"plugin '{plugin}'"


def _plugin_label(plugin: str | None) -> str:
    if plugin is None:
        return "code outside any plugin"
    record = PLUGINS.get(plugin)
    kind = "built-in plugin" if record is not None and record.builtin else "plugin"
    return f"{kind} '{plugin}' ({record.distribution})" if record else f"plugin '{plugin}'"


def _plugin_list(plugins: list[str]) -> str:
    return ", ".join(_plugin_label(p) for p in plugins)


def _is_third_party(plugin: str | None) -> bool:
    """Registrations from outside any plugin (the core, a user's script) rank like built-ins."""
    record = PLUGINS.get(plugin) if plugin else None
    return plugin is not None and not (record is not None and record.builtin)


def _builtin_owner(registry: str | None, name: str) -> str | None:
    """The built-in plugin whose manifest declares `name`: the name is reserved for it."""
    if registry is None:
        return None
    discover_plugins()
    return next((r.name for r in PLUGINS.values() if r.builtin and r.manifest is not None
                 and name in r.manifest.lookup_names(registry)), None)


def _registering_plugin() -> str | None:
    """The plugin being imported; else the plugin whose package holds the module doing the
    registration (a plugin module imported directly, e.g. by a test); else None (a user's script)."""
    loading = _loading_plugin.get()
    if loading is not None:
        return loading
    discover_plugins()
    module = _registering_module()
    best, best_len = None, -1
    for record in PLUGINS.values():
        for package in record.packages:
            if (module == package or module.startswith(package + ".")) and len(package) > best_len:
                best, best_len = record.name, len(package)
    return best


def _registering_module() -> str:
    """The module whose top-level code is registering (decorators and register calls run there)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return str(frame.f_globals.get("__name__", ""))
        frame = frame.f_back
    return ""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def discover_plugins() -> None:
    """Find every ``restore.plugins`` entry point and read its manifest (imports no plugin)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        builtin = ep.dist is not None and _canonical(ep.dist.name) == OWN_DISTRIBUTION
        found.append((not builtin, dist, ep.name, ep.value))
    registries = set(REGISTRIES)
    for third_party, dist, name, target in sorted(found):  # built-ins first
        existing = PLUGINS.get(name)
        if existing is not None:
            if (existing.target, existing.distribution) != (target, dist):
                PLUGINS[f"{name} ({dist})"] = PluginRecord(
                    name, target, dist, state="failed",
                    error=f"the plugin name '{name}' is taken by {existing.distribution}; rename the entry point")
            continue  # the same distribution can be visible twice on sys.path
        record = PluginRecord(name, target, dist, builtin=not third_party)
        module = target.partition(":")[0].strip()
        record.packages = (module, module.rpartition(".")[0]) if "." in module else (module,)
        origin, is_package = module_origin(module)
        if origin is None and module_origin(module.partition(".")[0])[0] is None:
            record.state, record.error = "failed", f"ModuleNotFoundError: no module named '{module}'"
        elif origin is not None:
            try:
                record.manifest = read_manifest(manifest_path(origin, is_package), registries)
            except ManifestProblem as exc:
                record.manifest_problem = str(exc)
                warnings.warn(f"plugin '{name}' ({dist}): {exc}; it will be imported on every lookup",
                              PluginWarning, stacklevel=2)
        PLUGINS[name] = record


def _import_target(target: str | Callable[[], Any]) -> None:
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name.strip())
        if attr:
            getattr(module, attr.strip())()
    else:
        target()


def _load(record: PluginRecord, target: str | Callable[[], Any] | None = None) -> PluginRecord:
    """Import one plugin in isolation; record its errors and check it against its manifest."""
    record.state = "loading"
    try:
        import restore.api  # noqa: F401  the core's own registrations happen here, attributed to the core
    except Exception:  # noqa: BLE001 - reported below, when the plugin's own import fails the same way
        pass
    token = _loading_plugin.set(record.name)
    try:
        _import_target(target if target is not None else record.target)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
        for registry in _ALL_REGISTRIES:
            registry._forget_plugin(record.name)
        record.state = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        record.detail = traceback.format_exc()
    else:
        record.state = "loaded"
        _check_against_manifest(record)
    finally:
        _loading_plugin.reset(token)
    return record


def registered_names(plugin: str, registry_key: str) -> set[str]:
    """The names and aliases `plugin` holds in a registry (after loading it)."""
    registry = REGISTRIES[registry_key]
    return {key for e in registry._entries.values() if e.plugin == plugin for key in (e.name, *e.aliases)}


def _check_against_manifest(record: PluginRecord) -> None:
    """After import: names the manifest declares but the plugin did not register, and the reverse."""
    if record.manifest is None:
        return
    for key in REGISTRIES:
        declared = record.manifest.lookup_names(key)
        registered = registered_names(record.name, key)
        missing = sorted(n for n in declared - registered if (key, n) not in record.refused_names)
        extra = sorted(registered - declared)
        kind = REGISTRIES[key].kind
        if missing:
            record.disagreements.append(f"declares {kind}(s) {', '.join(missing)} that the plugin does not register")
        if extra:
            record.disagreements.append(f"does not declare {kind}(s) {', '.join(extra)} that the plugin registers")
    if record.disagreements and not record.builtin:  # built-ins: a test keeps them current; see `restore plugins`
        how = (f"regenerate it with `restore plugins --write-manifest {record.name}`" if record.manifest.detailed
               else "update it")
        warnings.warn(f"plugin '{record.name}' ({record.distribution}): its manifest {record.manifest.path} is "
                      f"stale: {'; '.join(record.disagreements)}; {how}", PluginWarning, stacklevel=3)


def load_plugin(name: str, target: str | Callable[[], Any], distribution: str = "?") -> PluginRecord:
    """Import one plugin module (or call a register function) now, isolating its failure."""
    label = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    record = PluginRecord(name, label, distribution)
    PLUGINS[name] = record
    return _load(record, target)


def _load_providers(registry_key: str, name: str) -> None:
    """Import the plugins not imported yet that declare `name`, or that have no manifest."""
    _load_pending(lambda r: r.manifest is None or r.manifest.declares(registry_key, name))


def _load_pending(wanted: Callable[[PluginRecord], bool] | None = None) -> bool:
    """Import the pending plugins `wanted` selects (all by default), built-ins first; True if any."""
    discover_plugins()
    chosen = [r for r in PLUGINS.values() if r.state == "pending" and (wanted is None or wanted(r))]
    for record in sorted(chosen, key=lambda r: not r.builtin):
        if record.state == "pending":  # an earlier plugin's import may have loaded it meanwhile
            _load(record)
    return bool(chosen)


def load_plugins(wanted: Callable[[PluginRecord], bool] | None = None) -> None:
    """Import the ``restore.plugins`` entry points not imported yet (built-ins first): all of them,
    or those `wanted` selects."""
    _load_pending(wanted)


# -- the registries the core and plugins share ----------------------------------------------------
ARCHS = _new_registry("arch", "archs")
SHARING = _new_registry("sharing layer", "sharing")
TASKS = _new_registry("task", "tasks")
DATASETS = _new_registry("dataset", "datasets")
LOSSES = _new_registry("loss", "losses")
METRICS = _new_registry("metric", "metrics")
OPTIMIZERS = _new_registry("optimizer", "optimizers")
SCHEDULERS = _new_registry("scheduler", "schedulers")
READERS = _new_registry("file reader", "readers")
CONVERTERS = _new_registry("checkpoint converter", "converters")

REGISTRIES: dict[str, Registry] = {registry.key: registry for registry in _ALL_REGISTRIES}
