"""``restore test``: score a network (and the task's baseline) on test sets and write the report."""

from __future__ import annotations

import argparse

from restore.commands.arguments import add_max_pixels_argument, add_threads_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="evaluate a trained network (and the task's baseline) on test sets",
        description="Evaluate on every test_* dataset of the option file (or val*, or --dataset). Everything is "
        "checked before anything is written. Writes results/<run>/<set>/ (<run> = the experiment's name and "
        "scale): metrics.csv and metrics.md (per image and mean), a chart per metric, the restored outputs of "
        "each model (lossless: 8-bit PNG for images, float32 in the data's units for depth), per-image figures "
        "and index.html, a page that opens from disk with a sortable table and every image's panels side by "
        "side under one zoom; results/<run>/index.html links the sets. The task's baseline (bicubic for SR, "
        "the degraded input for scale-1 tasks) is scored next to the network.",
        epilog="examples:\n"
        "  restore test -opt options/ps_drrn_released_test.yml\n"
        "  restore test -opt options/quickstart_denoise_s50.yml \\\n"
        "      --weights experiments/quickstart_denoise_s50/models/net_g_latest.safetensors\n"
        "  restore test --weights model.safetensors --dataset datasets/Set12\n"
        "  restore test -opt options/test_bicubic_set5.yml --model baseline --figures 'worst 2'\n"
        "  restore test -opt options/test_bicubic_set5.yml --model baseline --dataset SelfExSR/Set14 \\\n"
        "      --lq SelfExSR/Set14 --lq-replace _HR=_LR --scale 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", "--opt", metavar="FILE", help="option file (task, network_g, datasets.test_*)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option (with --dataset, datasets.test.<key> sets a key of that set)")
    p.add_argument("--weights", metavar="FILE", help="network weights (.safetensors, or a .pth read safely)")
    p.add_argument("--model", choices=("both", "net", "baseline"), default="both",
                   help="which models to score (default: the network and the task's baseline)")
    p.add_argument("--dataset", metavar="FOLDER", help="a GT folder (or LMDB) to test on instead of test_*")
    p.add_argument("--lq", metavar="FOLDER", help="with --dataset: LQ inputs on disk (default: made by the task)")
    p.add_argument("--guide", metavar="FOLDER", help="with --dataset: guide images named like GT (guided depth SR)")
    p.add_argument("--filename-tmpl", default="{}", metavar="TMPL", help="with --lq: LQ name from GT name, e.g. {}x2")
    p.add_argument("--lq-replace", action="append", metavar="OLD=NEW",
                   help="with --lq: LQ name from GT name by replacing OLD with NEW (repeatable), e.g. _HR=_LR")
    p.add_argument("--guide-replace", action="append", metavar="OLD=NEW",
                   help="with --guide: guide name from GT name by replacing OLD with NEW (repeatable)")
    p.add_argument("--scale", type=int, help="evaluate at this scale (multi-scale networks)")
    p.add_argument("--quantize", choices=("round", "truncate"), help="8-bit output quantisation (val.quantize)")
    p.add_argument("--out", metavar="DIR", help="report folder of the run (default results/<run>)")
    p.add_argument("--figures", nargs="+", metavar="WHICH", default=None,
                   help="which images get figures and panels in index.html: none, all or worst N "
                   "(default: worst 100, i.e. every image of sets up to 100)")
    p.add_argument("--error-scale", choices=("set", "image"), default="set",
                   help="colour scale of error maps: one per test set (default; its 99th percentile) or per image")
    p.add_argument("--no-save-img", action="store_true",
                   help="write only the metrics and the page, not the restored images (no figures either)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_max_pixels_argument(p)
    add_threads_argument(p, "the networks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from restore.commands.arguments import apply_threads
    from restore.data.io import use_max_image_pixels
    from restore.errors import OptionError
    from restore.options import load_options
    from restore.report.figures import FigurePolicy
    from restore.tester import options_from_checkpoint, run_tests, split_dataset_overrides, test_sets

    threads = apply_threads(args)
    figures = FigurePolicy.parse(args.figures) if args.figures else None
    if args.no_save_img and figures is not None and figures.mode != "none":
        raise OptionError(f"--figures {figures}: --no-save-img writes only the metrics and the page; drop it to "
                          "get figures, or use --figures none.")
    quantize = [f"val.quantize={args.quantize}"] if args.quantize else []
    dataset_overrides, overrides = split_dataset_overrides(args.set) if args.dataset else ([], args.set)
    if args.opt:
        options = load_options(args.opt, [*overrides, *quantize])
    elif args.weights:
        options = options_from_checkpoint(args.weights, args.dataset, [*overrides, *quantize])
    else:
        raise OptionError("give an option file (-opt FILE) or --weights FILE with --dataset FOLDER.")
    use_max_image_pixels(args.max_pixels, options.max_image_pixels)
    if args.guide and not args.dataset:
        raise OptionError("--guide: goes with --dataset; in an option file set datasets.<set>.dataroot_guide.")
    sets = test_sets(options, args.dataset, args.lq, args.filename_tmpl, args.scale, args.guide,
                     dataset_overrides=dataset_overrides, lq_replace=args.lq_replace,
                     guide_replace=args.guide_replace)
    runs = run_tests(options, weights=args.weights, models=args.model, sets=sets,
                     out_root=Path(args.out) if args.out else None, save_images=not args.no_save_img,
                     device=args.device, figures=figures, error_scale=args.error_scale)
    if runs and runs[0].weights:
        print(f"weights: {runs[0].weights}")
    print(f"networks ran on {args.device or 'cuda when available, else cpu'}; CPU: {threads}")
    for run_ in runs:
        print(f"\n## {run_.dataset}\n\n{run_.table}\n\nreport: {run_.page or run_.out_dir}")
    if runs:
        print(f"\nall sets: {runs[0].out_dir.parent / 'index.html'}")
    return 0
