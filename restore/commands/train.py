"""``restore train``: train from an option file (also under ``accelerate launch``)."""

from __future__ import annotations

import argparse

from restore.commands.data import add_max_pixels_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network from a YAML option file",
        description="Train a network from a YAML option file (BasicSR schema). Runs unchanged on CPU, one GPU or "
        "several: `accelerate launch -m restore train -opt FILE`. Results go to experiments/<name>/: options.yml, "
        "logs/, tb_logger/, models/ "
        "(safetensors weights), training_states/ (complete states for --resume).",
    )
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option, e.g. --set train.total_iter=200 (repeatable; values are YAML)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="STATE",
                   help="continue from the newest complete training state of this experiment, or from STATE")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the option file (every block, data paths) and stop before any work")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from restore.data.io import use_max_image_pixels
    from restore.options import load_options
    from restore.trainer import train

    options = load_options(args.opt, args.set)
    use_max_image_pixels(args.max_pixels, options.max_image_pixels)
    result = train(options, resume=args.resume, dry_run=args.dry_run, progress=not args.no_progress)
    if result is None:
        print(f"{args.opt}: options valid; data paths exist. (dry run: nothing trained)")
        return 0
    print(f"trained {result.iteration} iterations; weights: {result.final_weights}")
    for tag, value in result.last_validation.items():
        print(f"  {tag}: {value:.4f}")
    return 0
