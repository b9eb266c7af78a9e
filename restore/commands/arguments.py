"""Command-line arguments several commands share (kept free of heavy imports: `--help` stays fast)."""

from __future__ import annotations

import argparse


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels N``, the same for every command that reads images."""
    parser.add_argument(
        "--max-pixels", type=int, default=None, metavar="N",
        help="refuse images of more than N pixels, read from their header before decoding (default: the option "
        "max_image_pixels, else 100000000; 0: no limit)",
    )


def add_threads_argument(parser: argparse.ArgumentParser, work: str) -> None:
    """``--threads N``: CPU threads for `work` (see `restore.threads`)."""
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help=f"CPU threads for {work} (default: OMP_NUM_THREADS, else the cores the load average leaves free; "
        "data workers use one thread each)",
    )


def apply_threads(args: argparse.Namespace) -> str:
    """Set the threads `--threads` asks for (or the default) and say how many, and why, for the log."""
    from restore.errors import OptionError
    from restore.threads import choose_threads

    if args.threads is not None and args.threads < 1:
        raise OptionError(f"--threads: must be 1 or more, got {args.threads}.")
    threads, why = choose_threads(args.threads)
    return f"{threads} intra-op thread(s) ({why})"
