"""``restore sweep``: train and test one run per cell of an option grid; table and Pareto plots."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train and test a grid of option values; CSV, table and parameters/FLOPs-vs-metric plots",
        description="Run one `restore train` per cell of a grid of option values (each its own experiment, named "
        "from the option file's name and the cell's values), test each on the option file's test_* (or val) sets, "
        "and write results/<name>/sweep.csv (options, parameters, FLOPs, latency, every metric), sweep.md (one "
        "row per configuration, seeds pooled) and <metric>_vs_params.png / _vs_flops.png with the Pareto front. "
        "Every cell is validated before anything runs. Running the same command again skips finished cells and "
        "resumes interrupted ones from their last training state. Grid axes come from --grid and from a `sweep:` "
        "block in the option file (docs: README, section Sweeps).",
        epilog="examples:\n"
        "  restore sweep -opt options/sweep_quick.yml\n"
        "  restore sweep -opt options/ps_carn_x2.yml --grid 'network_g.gamma=[3/9, 6/9, 8/9]' \\\n"
        "      --grid 'manual_seed=[0, 1, 2]' --jobs 4 --devices 0 1 2 3\n"
        "  restore sweep -opt options/sweep_ps_carn.yml --jobs 2 --devices 0,1 2,3 \\\n"
        "      --launcher 'accelerate launch --multi_gpu --num_processes 2'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", "--opt", required=True, metavar="FILE", help="option file (a `sweep:` block is optional)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY.PATH=[V1,V2]",
                   help="a grid axis: a key and a YAML list of values (repeatable; the cells are the product)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override an option of every cell (repeatable; values are YAML)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="cells trained at the same time, each its own process (default 1, or one per --devices group)")
    p.add_argument("--devices", nargs="+", default=[], metavar="IDS",
                   help="GPU groups for CUDA_VISIBLE_DEVICES, one per running cell, e.g. `0 1 2 3` or `0,1 2,3`")
    p.add_argument("--launcher", default=None, metavar="CMD",
                   help="what runs `-m restore train ...` for each cell (default: this Python), e.g. "
                   "'accelerate launch --num_processes 2'")
    p.add_argument("--device", help="where cells are tested and timed: cpu or cuda (default: cuda when available)")
    p.add_argument("--dry-run", action="store_true", help="validate every cell, list them with their status, stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from restore.errors import OptionError
    from restore.sweep.grid import check_cells, load_sweep
    from restore.sweep.runner import plan_cells, run_sweep, sweep_root

    jobs = args.jobs if args.jobs is not None else max(1, len(args.devices))
    if jobs < 1:
        raise OptionError(f"--jobs: must be at least 1, got {jobs}.")
    launcher = tuple(shlex.split(args.launcher)) if args.launcher else (sys.executable,)
    sweep = load_sweep(args.opt, args.grid, args.set)
    plans = plan_cells(sweep, check_cells(sweep))
    if args.dry_run:
        print(f"{args.opt}: {len(plans)} cells valid. (dry run: nothing trained)")
        for plan in plans:
            state = {"resume": f"resume at iteration {plan.iteration}", "trained": "trained, to test"}
            print(f"  {plan.cell.name}: {state.get(plan.status, plan.status)}")
        return 0
    run_sweep(sweep, plans, jobs=jobs, launcher=launcher, devices=args.devices, device=args.device,
              progress=not args.no_progress)
    root = sweep_root(sweep)
    print((root / "sweep.md").read_text(encoding="utf-8"))
    print(f"report: {root} (sweep.csv, sweep.md, plots)")
    return 0
