"""``restore profile``: parameters and FLOPs of networks, as papers report them (see restore.profile)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters and FLOPs of networks at a paper's output size",
        description="Count every distinct parameter once and the fvcore FLOPs (multiply-accumulates) of the LR "
        "input for a given output size (default 1280x720, the convention of SR papers; the LR size is rounded up "
        "and padded to the network's size multiple). With --paper, print the figures the arch's plugin records "
        "from its paper beside the measured ones. Profiling at 1280x720 runs the network once on the CPU: it "
        "takes from seconds to minutes per network.",
        epilog="examples:\n"
        "  restore profile --arch UPS UPS_S SwinIR_light --scale 2 --paper\n"
        "  restore profile --arch UPS_S --scale 2 --set proj_dim=128 --set sharing.n_share=24\n"
        "  restore profile -opt options/ups_sr_x3.yml --by-operator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", nargs="+", metavar="NAME", help="registered arch name(s)")
    source.add_argument("-opt", "--opt", metavar="FILE", help="option file: its network_g and task")
    p.add_argument("--scale", type=int, nargs="+", metavar="S",
                   help="scale(s) to profile (default 2; with -opt the task's scale)")
    p.add_argument("--in-chans", type=int, default=3, help="input channels with --arch (default 3)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an option: network options with --arch (proj_dim=128), full paths with -opt")
    p.add_argument("--output-size", default="1280x720", metavar="WxH", help="output size (default 1280x720)")
    p.add_argument("--paper", action="store_true", help="show the published figures and their caveats")
    p.add_argument("--by-operator", action="store_true", help="also list FLOPs per operator type")
    p.add_argument("--device", default="cpu", help="where to run the counting pass (default cpu)")
    p.set_defaults(func=run)


def _output_size(text: str) -> tuple[int, int]:
    from restore.errors import OptionError

    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise OptionError(f"--output-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720.")
    return int(height), int(width)


def _jobs(args: argparse.Namespace) -> list[tuple[dict, int, int]]:
    """(network options, scale, input channels) for every network and scale asked for."""
    from restore.options import apply_overrides

    if args.arch:
        return [(apply_overrides({"type": arch}, args.set), scale, args.in_chans)
                for arch in args.arch for scale in args.scale or [2]]
    from restore.build import build_task
    from restore.options import load_options

    options = load_options(args.opt, args.set)
    task = build_task(options.task, options.scale)
    return [(dict(options.network_g), scale, task.in_chans) for scale in args.scale or [task.scale]]


def _count(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= factor:
            return f"{n / factor:.1f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _relative(measured: float, published: float) -> str:
    return f"{(measured - published) / published:+.1%}"


def run(args: argparse.Namespace) -> int:
    from restore.profile import PAPER_OUTPUT_SIZE, paper_figures, profile_arch

    output_size = _output_size(args.output_size)
    header = ["arch", "scale", "params", "FLOPs", "LR input"]
    if args.paper:
        header += ["paper params", "paper FLOPs"]
    rows: list[list[str]] = []
    notes: dict[str, dict[str, None]] = {}
    changes: dict[str, str] = {}
    details: list[str] = []
    for network, scale, in_chans in _jobs(args):
        prof = profile_arch(network, scale=scale, in_chans=in_chans, output_size=output_size, device=args.device)
        name = prof.name + ("*" if prof.changed else "")
        row = [name, f"x{scale}", f"{prof.params:,}", _count(prof.flops), f"{prof.lr_size[1]}x{prof.lr_size[0]}"]
        if args.paper:
            found = paper_figures(prof.name, scale)
            figures, provenance = found if found else ({}, {})
            # A difference is only meaningful for the published configuration (and output size).
            same_model = not prof.changed
            params = figures.get("params")
            flops = figures.get("flops") if output_size == PAPER_OUTPUT_SIZE else None
            row += [_published(params, prof.params, same_model), _published(flops, prof.flops, same_model)]
            if found:
                text = f"{provenance['source']}. {provenance['note']}".strip()
                notes.setdefault(text, {})[prof.name] = None  # arch names per note, in order, once
        rows.append(row)
        if prof.changed:
            changes[prof.name] = ", ".join(f"{k}={v}" for k, v in prof.changed.items())
        if args.by_operator:
            ops = ", ".join(f"{op} {_count(n)}" for op, n in sorted(prof.by_operator.items()))
            details.append(f"{prof.name} x{scale} FLOPs by operator: {ops}")
    print(_table(header, rows))
    height, width = output_size
    print(f"\nFLOPs: fvcore multiply-accumulates for a {width}x{height} output (LR input rounded up and padded "
          "to the network's size multiple); params: every distinct parameter once.")
    if args.paper and output_size != PAPER_OUTPUT_SIZE:
        print("Published FLOPs refer to a 1280x720 output; they are not shown for other sizes.")
    changed = [f"* {name} differs from its registered defaults: {what}" for name, what in changes.items()]
    published = [f"{', '.join(names)}: {text}" for text, names in notes.items()]
    for line in [*changed, *details, *published]:
        print(line)
    return 0


def _published(figure: float | None, measured: float, same_model: bool) -> str:
    if not figure:
        return "-"
    return f"{_count(figure)} ({_relative(measured, figure)})" if same_model else _count(figure)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
