"""The ``restore`` command: one sub-command per module in ``restore.commands``.

Each command module defines ``add_parser(subparsers)`` (which sets ``func`` on its parser) and
nothing else at import time, so ``restore --help`` stays fast. A `RestoreError` from any command
is printed as one paragraph without a traceback (exit status 2); ``RESTORE_DEBUG=1`` shows it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

from restore import __version__
from restore.errors import RestoreError

COMMANDS = ("train", "test", "infer", "data", "plugins", "convert", "export", "profile", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restore",
        description="Train, test and compare image restoration networks from YAML option files.",
        epilog="Run `restore <command> --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"restore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"restore.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"restore.commands.{name}":
                raise
            continue  # command not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except RestoreError as exc:
        if os.environ.get("RESTORE_DEBUG"):
            raise
        message = textwrap.fill(str(exc), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
