"""``restore export``: write a shared-parameter network as the plain network it computes."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a parameter-sharing network as a plain one (materialised convs)",
        description="Load weights, replace every shared layer (PS convs, recursive slots, ...) by an ordinary "
        "layer holding the weights it computes, check on a random input that the outputs match (the maximum "
        "difference is printed), and write a .safetensors file that loads into the same arch with "
        "`sharing: none`. Inference with the exported file costs exactly what the unshared network costs.",
        epilog="examples:\n"
        "  restore export --weights ../shared/weights/ps/drrnps.pth --materialize weights/drrn_ps_plain.safetensors\n"
        "  restore export -opt options/ps_srfbn_x2_released_test.yml --materialize srfbn_plain.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-opt", "--opt", metavar="FILE", help="option file (task, network_g, path.pretrain_network_g)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override an option")
    p.add_argument("--weights", metavar="FILE",
                   help="weights (.safetensors, or a .pth read safely); without -opt they must record their network")
    p.add_argument("--materialize", metavar="OUT", required=True, help="the .safetensors file to write")
    p.add_argument("--scale", type=int, action="append", metavar="S",
                   help="scale(s) to check a multi-scale network at (default: every scale it serves)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest output difference accepted (default 1e-4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from restore.archs import arch_info, build_network
    from restore.build import build_task, load_pretrained, network_for_task, read_state_dict
    from restore.checkpoint import save_weights
    from restore.errors import OptionError, RestoreError
    from restore.options import load_options
    from restore.registry import ARCHS
    from restore.sharing import materialize
    from restore.validation import accepted_keys

    target = Path(args.materialize)
    if target.suffix != ".safetensors":
        raise OptionError(f"--materialize {target}: the output must be a .safetensors file.")
    if args.opt:
        options = load_options(args.opt, args.set)
        network_options, task_options = dict(options.network_g), dict(options.task)
        task = build_task(options.task, options.scale)
        weights = args.weights or options.path.pretrain_network_g
        if weights is None:
            raise OptionError("no weights: give --weights FILE or path.pretrain_network_g.")
    elif args.weights:
        weights = args.weights
        _, meta = read_state_dict(weights)
        if "network" not in meta:
            raise OptionError(f"{weights}: the file does not record its network; give an option file (-opt).")
        network_options, task_options = dict(meta["network"]), meta.get("task")
        task = build_task(task_options) if task_options else None
    else:
        raise OptionError("give --weights FILE (recording its network) or an option file (-opt).")

    net = network_for_task(network_options, task) if task else build_network(network_options)
    load_pretrained(net, weights)
    net.eval()
    plain = materialize(net).eval()

    info = arch_info(net)
    in_chans = task.in_chans if task else int(network_options.get("in_chans", 3))
    if info.multi_scale:
        scales = args.scale or list(getattr(net, "scales", None) or [task.scale if task else 2])
    else:
        scales = [None]
    x = torch.rand(1, in_chans, 32, 32, generator=torch.Generator().manual_seed(0))
    worst = 0.0
    with torch.no_grad():
        for scale in scales:
            shared_out, plain_out = (m(x) if scale is None else m(x, scale=scale) for m in (net, plain))
            worst = max(worst, (shared_out - plain_out).abs().max().item())
    if worst > args.tolerance:
        raise RestoreError(f"materialised network differs from the shared one by {worst:.3g} "
                           f"(more than --tolerance {args.tolerance}); not written.")

    arch = ARCHS.get(network_options["type"])
    if "sharing" in accepted_keys(arch)[0]:
        network_options = {**network_options, "sharing": "none"}
    save_weights(target, plain.state_dict(), network=network_options, task=task_options,
                 extra={"materialized_from": Path(weights).name})
    shared_count = sum(p.numel() for p in net.parameters())
    plain_count = sum(p.numel() for p in plain.parameters())
    checked = ", ".join(f"x{s}" for s in scales if s is not None) or "its scale"
    print(f"wrote {target}: {plain_count:,} parameters (shared network: {shared_count:,})")
    print(f"max |output difference| on a random 32x32 input ({checked}): {worst:.3g}")
    return 0
