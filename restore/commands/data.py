"""``restore data``: prepare data sets. Sub-commands: ``lmdb`` (more can be added to `SUBCOMMANDS`)."""

from __future__ import annotations

import argparse

from restore.commands.arguments import add_max_pixels_argument

LMDB_DESCRIPTION = """\
Write every image of SRC into the LMDB OUT (BasicSR's layout: data.mdb, lock.mdb, meta_info.txt,
keys = file names without extension, PNG values), so BasicSR and restore both read it.

- SRC is a folder of images, an LMDB, or scikit-image's photographs (skimage:rgb, skimage:gray).
- 16-bit images stay 16-bit; float, boolean and other arrays PNG cannot hold are stored as .npy bytes.
- Resumable: if writing is interrupted, run the same command again; committed images are skipped.
- The map size grows on its own; nothing to guess.
- Verified: every image is read back and compared with SRC (skip with --no-verify).
- meta_info.txt is written last, so an unfinished LMDB is refused by readers instead of used in part.
"""

LMDB_EPILOG = """\
examples:
  restore data lmdb datasets/DIV2K/DIV2K_train_HR_sub datasets/DIV2K/DIV2K_train_HR_sub.lmdb
  restore data lmdb skimage:rgb datasets/skimage_rgb.lmdb --compress-level 3

then train from it with:
  datasets: {train: {dataroot_gt: OUT.lmdb, io_backend: {type: lmdb}}}
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare data sets (folder to LMDB)", description="Prepare data sets for training."
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    commands = parser.add_subparsers(dest="data_command", metavar="<data command>")
    for add in SUBCOMMANDS:
        add(commands)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _add_lmdb(commands: argparse._SubParsersAction) -> None:
    lmdb = commands.add_parser(
        "lmdb",
        help="write a folder of images (or skimage:rgb) into a BasicSR-compatible LMDB",
        description=LMDB_DESCRIPTION,
        epilog=LMDB_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lmdb.add_argument("source", metavar="SRC", help="folder of images, LMDB, skimage:rgb or skimage:gray")
    lmdb.add_argument("output", metavar="OUT.lmdb", help="LMDB to create or finish (name must end in .lmdb)")
    lmdb.add_argument(
        "--compress-level", type=int, default=1, metavar="N",
        help="PNG compression 0-9: 1 is fastest to write and to decode, 9 smallest (default 1)",
    )
    lmdb.add_argument("--no-verify", action="store_true", help="do not read every image back to compare")
    lmdb.add_argument(
        "--meta-info-file", metavar="F",
        help="BasicSR meta_info file: take only the files it lists from the SRC folder",
    )
    lmdb.add_argument(
        "--commit-every", type=int, default=100, metavar="N",
        help="images per transaction; an interruption loses at most these (default 100)",
    )
    lmdb.add_argument("--quiet", action="store_true", help="no progress bars")
    add_max_pixels_argument(lmdb)
    lmdb.set_defaults(func=_run_lmdb)


def _run_lmdb(args: argparse.Namespace) -> int:
    from restore.data.io import use_max_image_pixels
    from restore.data.lmdb import write_lmdb
    from restore.data.sources import open_source

    use_max_image_pixels(args.max_pixels)
    source = open_source(args.source, meta_info_file=args.meta_info_file)
    report = write_lmdb(
        source, args.output, compress_level=args.compress_level, commit_every=args.commit_every,
        verify=not args.no_verify, progress=not args.quiet,
    )
    print(report.summary())
    return 0


SUBCOMMANDS = (_add_lmdb,)
