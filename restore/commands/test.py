"""``restore test``: score a network (and the task's baseline) on test sets and write the report."""

from __future__ import annotations

import argparse

from restore.commands.data import add_max_pixels_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="evaluate a trained network (and the task's baseline) on test sets",
        description="Evaluate on every test_* dataset of the option file (or val*, or --dataset). Writes "
        "results/<name>/<set>/: metrics.csv and metrics.md (per image and mean), a bar chart per metric, the "
        "restored outputs of each model, and per-image figures for tasks that draw them. The task's baseline "
        "(bicubic for SR, the degraded input for scale-1 tasks) is scored next to the network.",
        epilog="examples:\n"
        "  restore test -opt options/ps_drrn_released_test.yml\n"
        "  restore test -opt options/quickstart_denoise_s50.yml \\\n"
        "      --weights experiments/quickstart_denoise_s50/models/net_g_latest.safetensors\n"
        "  restore test --weights model.safetensors --dataset datasets/Set12\n"
        "  restore test -opt options/test_bicubic_set5.yml --model baseline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", "--opt", metavar="FILE", help="option file (task, network_g, datasets.test_*)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override an option")
    p.add_argument("--weights", metavar="FILE", help="network weights (.safetensors, or a .pth read safely)")
    p.add_argument("--model", choices=("both", "net", "baseline"), default="both",
                   help="which models to score (default: the network and the task's baseline)")
    p.add_argument("--dataset", metavar="FOLDER", help="a GT folder (or LMDB) to test on instead of test_*")
    p.add_argument("--lq", metavar="FOLDER", help="with --dataset: LQ inputs on disk (default: made by the task)")
    p.add_argument("--guide", metavar="FOLDER", help="with --dataset: guide images named like GT (guided depth SR)")
    p.add_argument("--filename-tmpl", default="{}", metavar="TMPL", help="with --lq: LQ name from GT name, e.g. {}x2")
    p.add_argument("--scale", type=int, help="evaluate at this scale (multi-scale networks)")
    p.add_argument("--quantize", choices=("round", "truncate"), help="8-bit output quantisation (val.quantize)")
    p.add_argument("--out", metavar="DIR", help="report folder (default results/<name>)")
    p.add_argument("--no-save-img", action="store_true", help="write only the metrics, not the restored images")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_max_pixels_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from restore.data.io import use_max_image_pixels
    from restore.errors import OptionError
    from restore.options import load_options
    from restore.tester import options_from_checkpoint, run_tests, test_sets

    if args.opt:
        options = load_options(args.opt, [*args.set, *([f"val.quantize={args.quantize}"] if args.quantize else [])])
    elif args.weights:
        options = options_from_checkpoint(args.weights, args.dataset)
    else:
        raise OptionError("give an option file (-opt FILE) or --weights FILE with --dataset FOLDER.")
    use_max_image_pixels(args.max_pixels, options.max_image_pixels)
    if args.quantize and not args.opt:
        options = options.model_copy(update={"val": options.val.model_copy(update={"quantize": args.quantize})})
    if args.guide and not args.dataset:
        raise OptionError("--guide: goes with --dataset; in an option file set datasets.<set>.dataroot_guide.")
    sets = test_sets(options, args.dataset, args.lq, args.filename_tmpl, args.scale, args.guide)
    runs = run_tests(options, weights=args.weights, models=args.model, sets=sets,
                     out_root=Path(args.out) if args.out else None, save_images=not args.no_save_img,
                     device=args.device)
    if runs and runs[0].weights:
        print(f"weights: {runs[0].weights}")
    for run_ in runs:
        print(f"\n## {run_.dataset}\n\n{run_.table}\n\nreport: {run_.out_dir}")
    return 0
