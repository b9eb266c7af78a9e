"""The ``restore`` command: one sub-command per module in ``restore.commands``.

Each command module defines ``add_parser(subparsers)`` (which sets ``func`` on its parser) and
nothing else at import time, so ``restore --help`` stays fast. Errors never end in a traceback:
a `RestoreError` (bad input the user can fix) and the system's own refusals (disk full, no
permission, out of memory) are printed as one paragraph with exit status 2; anything else is a
bug, printed as one paragraph naming a file that holds the traceback (exit status 1).
``RESTORE_DEBUG=1`` raises instead, traceback and all.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("RESTORE_DEBUG"):
            raise
        message, status = describe_failure(exc)
        print("error: " + textwrap.fill(message, width=100, break_long_words=False, break_on_hyphens=False),
              file=sys.stderr)
        return status


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def _worker_message(text: str) -> str:
    """A DataLoader worker's error arrives with the worker's traceback inside its message; keep the
    error's own last line, which is our message (``restore.errors.DataError: <message>``)."""
    if _WORKER_TRACEBACK not in text:
        return text
    last = [line for line in text.split(_WORKER_TRACEBACK, 1)[1].splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") else last


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """(one-paragraph message, exit status) for an exception that ended a command."""
    if isinstance(exc, RestoreError):
        return _worker_message(str(exc)), 2
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno in _DISK_FULL:
            return f"{where}the disk is full (or a file-size limit was reached); free space and run again.", 2
        return f"{where}{exc.strerror or exc}.", 2
    if isinstance(exc, MemoryError):
        return ("out of memory; use smaller inputs or batches (datasets.*.batch_size_per_gpu, gt_size) or tiles "
                "(val.tile, --tile)."), 2
    report = Path(tempfile.gettempdir()) / f"restore-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    try:
        report.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        where = f"The traceback is in {report}"
    except OSError:
        where = "Run again with RESTORE_DEBUG=1 for the traceback"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (f"unexpected {type(exc).__name__}{': ' + first if first else ''}. This is a bug in restore or one of "
            f"its plugins, not in your input. {where}; please report it."), 1


if __name__ == "__main__":
    sys.exit(main())
