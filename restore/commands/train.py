"""``restore train``: train from an option file (also under ``accelerate launch``)."""

from __future__ import annotations

import argparse

from restore.commands.arguments import add_max_pixels_argument, add_threads_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network from a YAML option file",
        description="Train a network from a YAML option file (BasicSR schema). Runs unchanged on CPU, one GPU or "
        "several: `accelerate launch -m restore train -opt FILE`. Everything that can fail (options, data, the "
        "network at every scale, the first batch) is checked before the experiment folder is touched. Results go "
        "to experiments/<name>/: options.yml, logs/, tb_logger/, models/ (safetensors weights), training_states/ "
        "(checksummed states for --resume). One run at a time owns an experiment folder.",
    )
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option, e.g. --set train.total_iter=200 (repeatable; values are YAML)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", nargs="?", const=True, default=None, metavar="STATE",
                        help="continue from the newest training state of this experiment that verifies, or from "
                        "STATE; an error when there is none")
    resume.add_argument("--auto-resume", action="store_true",
                        help="continue from the newest training state if one exists, else start a new run")
    p.add_argument("--dry-run", action="store_true",
                   help="build and check everything (options, data, network, loss, optimizer, scheduler, the first "
                   "batch, the state to resume) and stop without writing anything")
    add_threads_argument(p, "the training step")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from restore.commands.arguments import apply_threads
    from restore.data.io import use_max_image_pixels
    from restore.options import load_options
    from restore.trainer import train

    threads = apply_threads(args)
    options = load_options(args.opt, args.set)
    use_max_image_pixels(args.max_pixels, options.max_image_pixels)
    result = train(options, resume=args.resume, auto_resume=args.auto_resume, dry_run=args.dry_run,
                   progress=not args.no_progress, threads=threads)
    if result is None:
        print(f"{args.opt}: options valid; data, network, loss, optimizer, scheduler and the first batch checked. "
              "(dry run: nothing written)")
        return 0
    if result.archived is not None:
        print(f"an earlier run of this name was moved to {result.archived}")
    print(f"trained {result.iteration} iterations; weights: {result.final_weights}")
    for tag, value in result.last_validation.items():
        print(f"  {tag}: {value:.4f}")
    return 0
