"""``restore plugins``: what is registered, and from which plugin package."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
List the plugins found through the `restore.plugins` entry-point group and every name they
register: archs (with the default scheme of those that accept `sharing`), sharing schemes (with
their options and the describe() of a default instance), tasks, metrics, ...

Third-party plugins are imported, so their status is what a run would meet. The built-in ones are
listed from their manifests without importing them (no torch: fast); --check imports them too.
Exit status 2 when a plugin failed to load, a name was refused (a clash with a built-in or
another plugin), or a manifest disagrees with its plugin, so CI can gate on it.
"""

EPILOG = """\
examples:
  restore plugins                       everything (built-ins from their manifests)
  restore plugins --registry sharing    only the sharing schemes
  restore plugins --check               also import the built-ins; check every manifest
  restore plugins --write-manifest my_plugin   (re)generate a plugin's manifest beside its module
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list plugins and what they register", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", metavar="NAME", help="only this registry (archs, sharing, tasks, metrics, ...)")
    p.add_argument("--verbose", "-v", action="store_true", help="show origins, and tracebacks of broken plugins")
    p.add_argument("--check", action="store_true",
                   help="import the built-in plugins too (slower) and compare every manifest, details included, "
                   "with what its plugin registers")
    p.add_argument("--write-manifest", metavar="PLUGIN",
                   help="import PLUGIN and write its manifest (restore_plugin.json) beside its module")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from restore.errors import OptionError, did_you_mean
    from restore.registry import PLUGINS, REGISTRIES, PluginWarning, discover_plugins

    if args.registry and args.registry not in REGISTRIES:
        raise OptionError(f"--registry {args.registry}: unknown registry.{did_you_mean(args.registry, REGISTRIES)} "
                          f"Registries: {', '.join(REGISTRIES)}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # this command prints every problem itself
        discover_plugins()
        if args.write_manifest:
            return _write_manifest(args.write_manifest)
        _import_needed(check=args.check or args.verbose)
        differences = _manifest_differences() if args.check else {}
        _print_plugins(PLUGINS, differences, args.verbose)
        keys = [args.registry] if args.registry else list(REGISTRIES)
        _print_names(keys, args.verbose)
    problems = sum(len(r.problems) for r in PLUGINS.values()) + sum(len(d) for d in differences.values())
    if problems:
        print(f"\n{problems} problem(s) found (listed under plugins above); exit status 2.")
        return 2
    return 0


def _import_needed(check: bool) -> None:
    """Import every plugin with --check; otherwise all but the built-ins that their manifests describe
    (tests keep those current; a third party's import is what tells whether it works here)."""
    from restore.catalogue import shows_without_import
    from restore.registry import load_plugins

    load_plugins(None if check else lambda record: not (record.builtin and shows_without_import(record.manifest)))


def _manifest_differences() -> dict[str, list[str]]:
    from restore.catalogue import manifest_differences
    from restore.registry import PLUGINS

    return {r.name: manifest_differences(r) for r in PLUGINS.values()
            if r.state == "loaded" and r.manifest is not None and not r.disagreements}


def _write_manifest(name: str) -> int:
    from restore.catalogue import write_manifest
    from restore.errors import OptionError, RestoreError, did_you_mean
    from restore.registry import PLUGINS, load_plugins

    if name not in PLUGINS:
        raise OptionError(f"--write-manifest {name}: no plugin of that name.{did_you_mean(name, PLUGINS)} "
                          f"Plugins: {', '.join(PLUGINS)}.")
    load_plugins()  # all of them: clashes with any other plugin must show before names are declared
    record = PLUGINS[name]
    if record.error or record.refused:
        raise RestoreError(f"plugin '{name}' ({record.distribution}) has problems; fix them before writing its "
                           f"manifest: {'; '.join(record.problems)}")
    path = write_manifest(record)
    print(f"wrote {path}")
    return 0


def _status(record, differences: list[str]) -> str:
    if record.error:
        return f"FAILED: {record.error}"
    state = {"pending": "not imported (listed from its manifest)", "loaded": "imported"}.get(record.state,
                                                                                          record.state)
    return state + (" -- see below" if record.problems or differences else "")


def _print_plugins(plugins: dict, differences: dict[str, list[str]], verbose: bool) -> None:
    print("plugins (entry-point group restore.plugins; built-ins load first and keep their names):")
    for key, record in plugins.items():
        kind = "built-in" if record.builtin else "third-party"
        print(f"  {key:10s} {record.target:24s} {record.distribution:22s} {kind:11s} "
              f"{_status(record, differences.get(record.name, []))}")
        for problem in record.problems[1 if record.error else 0:]:
            print(f"      {problem}")
        for difference in differences.get(record.name, []):
            how = f"run `restore plugins --write-manifest {record.name}`"
            print(f"      manifest {record.manifest.path.name} is stale ({how}): {difference}")
        if record.error and verbose and record.detail:
            print("      " + record.detail.rstrip().replace("\n", "\n      "))


def _print_names(keys: list[str], verbose: bool) -> None:
    from restore.catalogue import listing
    from restore.registry import REGISTRIES

    items = listing(keys)
    for key in keys:
        names = [item for item in items if item.registry == key]
        print(f"\n{key} ({len(names)}):")
        for item in names:
            doc = item.details.get("doc", "")
            aliases = item.details.get("aliases")
            alias_note = f" (also {', '.join(aliases)})" if aliases else ""
            print(f"  {item.name:28s} [{item.plugin or 'script'}]{alias_note}  {doc}".rstrip())
            if verbose and key in REGISTRIES:
                entry = REGISTRIES[key]._lookup_exact(item.name)
                if entry is not None:
                    print(f"      {entry.origin}")
            if key == "sharing":
                options = item.details.get("options")
                print(f"      options: {'; '.join(options) if options else '(none)'}")
                if "describe" in item.details:
                    print(f"      describe() of a default instance: {item.details['describe']}")
                elif "describe_error" in item.details:
                    print(f"      no default instance (it needs options or layers): {item.details['describe_error']}")
        if key == "archs":
            sharing = [item for item in names if "sharing_default" in item.details]
            print(f"\narchs that accept `sharing` ({len(sharing)} of {len(names)}), with the scheme used when it "
                  "is not given:")
            for item in sharing:
                print(f"  {item.name:28s} {item.details['sharing_default']}")
