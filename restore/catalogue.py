"""What `restore plugins` shows about each registered name, from the objects or from manifests.

For an imported plugin the details are computed from its objects: the first doc line, aliases, an
arch's default sharing scheme (when it accepts ``sharing``), a sharing scheme's options and the
``describe()`` of a default-constructed, finalised instance. The same details, written to a
plugin's manifest (`write_manifest`), let ``restore plugins`` list the plugin without importing
it; `manifest_differences` says where a manifest no longer matches its plugin.

Only the functions that compute details from objects import torch, and only when called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restore.manifest import Manifest, manifest_path, module_origin, render_manifest
from restore.registry import PLUGINS, REGISTRIES, Entry, PluginRecord


@dataclass(frozen=True)
class Listed:
    """One name as `restore plugins` lists it."""

    registry: str
    name: str
    plugin: str | None
    details: Mapping[str, Any]


def entry_details(registry: str, entry: Entry) -> dict[str, Any]:
    """The manifest details of one registered object (imports what the object needs)."""
    details: dict[str, Any] = {"doc": entry.doc}
    if entry.aliases:
        details["aliases"] = sorted(entry.aliases)
    if registry == "archs":
        default = sharing_default(entry.obj)
        if default is not None:
            details["sharing_default"] = default
    elif registry == "sharing":
        details["options"] = option_list(entry.obj)
        details.update(default_description(entry.obj))
    return details


def option_list(target: Any) -> list[str]:
    """``name: annotation = default`` for each keyword `target` accepts (as written in its source)."""
    import inspect

    func = target.__init__ if inspect.isclass(target) else target
    items = []
    for param in inspect.signature(func).parameters.values():
        if param.name in ("self", "cls") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        text = param.name
        if annotation is not param.empty:
            text += f": {annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)}"
        if param.default is not param.empty:
            text += f" = {param.default!r}"
        items.append(text)
    return items


def default_description(scheme_cls: Any) -> dict[str, str]:
    """``describe()`` of a default-constructed, finalised scheme, or why it cannot be built."""
    try:
        scheme = scheme_cls()
        scheme.finalize()
        return {"describe": json.dumps(scheme.describe(), default=str)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: a listing must not fail on one scheme
        return {"describe_error": f"{type(exc).__name__}: {exc}"}


def sharing_default(ctor: Any) -> str | None:
    """The scheme an arch uses when ``sharing`` is not given; None if it does not accept ``sharing``."""
    from restore.validation import _signature

    try:
        param = _signature(ctor).parameters.get("sharing")
    except (TypeError, ValueError):
        return None
    if param is None:
        return None
    default = param.default
    if isinstance(default, str):
        return default
    if isinstance(default, Mapping) and isinstance(default.get("type"), str):
        options = ", ".join(f"{k}={v!r}" for k, v in default.items() if k != "type")
        return f"{default['type']} ({options})" if options else default["type"]
    if default is param.empty:
        return "(required)"
    built = _built_scheme_name(ctor)
    return f"{built} (chosen by the arch)" if built else "(chosen by the arch)"


def _built_scheme_name(ctor: Any) -> str | None:
    """The scheme of the arch built with its defaults, on the meta device (no memory, no init)."""
    import torch

    from restore.archs import build_network
    from restore.registry import ARCHS
    from restore.sharing import SharingScheme

    name = next((e.name for e in ARCHS.loaded_entries() if e.obj is ctor), None)
    if name is None:
        return None
    try:
        with torch.device("meta"):
            net = build_network({"type": name}, scale=2)
    except Exception:  # noqa: BLE001 - archs that need options to be built
        return None
    scheme = getattr(net, "sharing", None)
    return scheme.registered_name() if isinstance(scheme, SharingScheme) else None


def plugin_catalogue(plugin: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Every name an imported plugin registered, with its details, by registry."""
    catalogue: dict[str, dict[str, dict[str, Any]]] = {}
    for key, registry in REGISTRIES.items():
        entries = {e.name: entry_details(key, e) for e in registry.loaded_entries() if e.plugin == plugin}
        if entries:
            catalogue[key] = entries
    return catalogue


def plugin_manifest_path(record: PluginRecord) -> Path | None:
    origin, is_package = module_origin(record.target.partition(":")[0].strip())
    return manifest_path(origin, is_package) if origin is not None else None


def write_manifest(record: PluginRecord) -> Path:
    """Write the generated manifest of an imported plugin beside its module; returns the path."""
    from restore.data.io import atomic_write_bytes

    path = plugin_manifest_path(record)
    if path is None:
        raise FileNotFoundError(f"cannot find the module '{record.target}' of plugin '{record.name}'")
    atomic_write_bytes(path, render_manifest(plugin_catalogue(record.name)).encode("utf-8"))
    return path


def manifest_differences(record: PluginRecord) -> list[str]:
    """How an imported plugin's manifest differs from what it registers (empty when current)."""
    manifest = record.manifest
    current = plugin_catalogue(record.name)
    if manifest is None:
        return ["has no manifest"]
    problems = []
    for key in sorted(set(current) | set(manifest.names)):
        have, declared = current.get(key, {}), manifest.names.get(key, {})
        missing, extra = sorted(set(have) - set(declared)), sorted(set(declared) - set(have))
        if missing:
            problems.append(f"{key}: missing {', '.join(missing)}")
        if extra:
            problems.append(f"{key}: declares {', '.join(extra)} which the plugin does not register")
        if manifest.detailed:
            foreign = _foreign_names(record, key)  # their docs follow another package's version: not compared
            changed = sorted(n for n in set(have) & set(declared)
                             if _comparable(have[n], n in foreign) != _comparable(declared[n], n in foreign))
            if changed:
                problems.append(f"{key}: details changed for {', '.join(changed)}")
    return problems


def _foreign_names(record: PluginRecord, key: str) -> set[str]:
    """Names the plugin registers for objects defined outside its own package (torch's, basicsr's)."""
    own = tuple(record.packages)
    return {e.name for e in REGISTRIES[key].loaded_entries() if e.plugin == record.name
            and not any(getattr(e.obj, "__module__", "") == p or getattr(e.obj, "__module__", "").startswith(p + ".")
                        for p in own)}


def _comparable(details: Mapping[str, Any], foreign: bool) -> dict[str, Any]:
    return {k: v for k, v in details.items() if not (foreign and k == "doc")}


def listing(registries: list[str]) -> list[Listed]:
    """Every name of `registries`: imported plugins' entries, and manifest entries of the others."""
    listed = []
    for key in registries:
        for entry in REGISTRIES[key].loaded_entries():
            listed.append(Listed(key, entry.name, entry.plugin, entry_details(key, entry)))
        for record in PLUGINS.values():
            if record.state == "pending" and record.manifest is not None:
                for name, details in record.manifest.names.get(key, {}).items():
                    listed.append(Listed(key, name, record.name, details))
    return sorted(listed, key=lambda item: (item.registry, item.name.lower()))


def shows_without_import(manifest: Manifest | None) -> bool:
    """Whether `restore plugins` can list a plugin from its manifest alone (a generated one)."""
    return manifest is not None and manifest.detailed
