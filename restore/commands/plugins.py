"""``restore plugins``: what is registered, and from which plugin package."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list plugins and what they register",
                       description="List the plugins found through the `restore.plugins` entry-point group, "
                       "whether they loaded, and every registered name by registry.")
    p.add_argument("--registry", metavar="NAME", help="only this registry (archs, sharing, tasks, metrics, ...)")
    p.add_argument("--verbose", "-v", action="store_true", help="show origins, and tracebacks of broken plugins")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from restore.errors import OptionError, did_you_mean
    from restore.registry import PLUGINS, REGISTRIES, load_plugins

    load_plugins()
    print("plugins (entry-point group restore.plugins):")
    for record in sorted(PLUGINS.values(), key=lambda r: r.name):
        status = "ok" if record.error is None else f"FAILED: {record.error}"
        print(f"  {record.name:10s} {record.target:22s} [{record.distribution}]  {status}")
        if record.error and args.verbose:
            print("    " + (record.detail or "").replace("\n", "\n    "))
    names = [args.registry] if args.registry else list(REGISTRIES)
    for name in names:
        if name not in REGISTRIES:
            raise OptionError(f"--registry {name}: unknown registry.{did_you_mean(name, REGISTRIES)} "
                              f"Registries: {', '.join(REGISTRIES)}.")
        registry = REGISTRIES[name]
        entries = list(registry.entries())
        print(f"\n{name} ({len(entries)}):")
        for entry in entries:
            source = entry.origin if args.verbose else f"[{entry.plugin or 'core'}]"
            doc = f"  {entry.doc}" if entry.doc and not args.verbose else ""
            print(f"  {entry.name:28s} {source}{doc}")
    return 0
