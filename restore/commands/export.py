"""``restore export``: write a shared-parameter network as the plain network it computes."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from restore.tasks import Task


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a parameter-sharing network as a plain one (materialised convs)",
        description="Load weights, replace every shared layer (PS convs, recursive slots, plugin layers that "
        "expose the weight they compute, ...) by an ordinary layer holding the weights it computes, load the "
        "result strictly into the same arch built with `sharing: none` from exactly the bytes to be written, "
        "check on a random input that its outputs match the shared network's (the maximum difference is "
        "printed), and only then write the .safetensors file. If any step fails nothing is written and the "
        "layers that could not be materialised are named. Inference with the exported file costs exactly "
        "what the unshared network costs.",
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

    from safetensors.torch import load as decode_tensors

    from restore.archs import build_network
    from restore.build import build_task, load_pretrained, network_for_task, read_state_dict
    from restore.checkpoint import encode_weights
    from restore.data.io import atomic_write_bytes
    from restore.errors import OptionError, RestoreError
    from restore.options import load_options
    from restore.sharing import materialize_into

    target = Path(args.materialize)
    if target.suffix != ".safetensors":
        raise OptionError(f"--materialize {target}: the output must be a .safetensors file.")
    if target.is_dir():
        raise OptionError(f"--materialize {target}: is a folder; give the .safetensors file to write.")
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

    def build(opts: Mapping[str, Any]) -> nn.Module:
        return (network_for_task(opts, task) if task else build_network(opts)).eval()

    net = build(network_options)
    load_pretrained(net, weights)

    plain_options, plain = _unshared_network(network_options, build)
    materialize_into(net, plain)
    data = encode_weights(plain.state_dict(), network=plain_options, task=task_options,
                          extra={"materialized_from": Path(weights).name}, path=target)
    try:
        plain.load_state_dict(decode_tensors(data), strict=True)  # exactly what the file will hold
    except RuntimeError as exc:
        raise RestoreError(f"cannot export: the materialised weights do not load into the unshared network "
                           f"({exc}). Nothing was written.") from None

    scales, side, worst = _compare(net, plain, task, args.scale, network_options)
    if not worst <= args.tolerance:  # also refuses NaN
        raise RestoreError(f"cannot export: the materialised network differs from the shared one by {worst:.3g} "
                           f"(more than --tolerance {args.tolerance}); a layer computes something other than the "
                           "weight it exposes. Nothing was written.")
    atomic_write_bytes(target, data)
    shared_count = sum(p.numel() for p in net.parameters())
    plain_count = sum(p.numel() for p in plain.parameters())
    checked = ", ".join(f"x{s}" for s in scales if s is not None) or "its scale"
    print(f"wrote {target}: {plain_count:,} parameters (shared network: {shared_count:,})")
    print(f"max |output difference| on a random {side}x{side} input ({checked}): {worst:.3g}")
    return 0


def _unshared_network(network_options: Mapping[str, Any], build: Any) -> tuple[dict[str, Any], nn.Module]:
    """The options the exported file records (as a reader will decode them) and the network they build:
    the same arch with ``sharing: none``.

    Factories with a sharing shorthand (``CARN_PS`` with ``gamma``) refuse it beside ``sharing``; for
    them the shorthand keys (those that default to None) are left out. Whatever is chosen here,
    `materialize_into` and the output comparison check it.
    """
    import json

    from restore.errors import OptionError, RestoreError
    from restore.registry import ARCHS
    from restore.validation import _signature

    arch = ARCHS.get(network_options["type"])
    params = _signature(arch).parameters
    if "sharing" not in params:
        return dict(network_options), build(network_options)
    plain_options = json.loads(json.dumps({**network_options, "sharing": "none"}))
    try:
        return plain_options, build(plain_options)
    except OptionError as exc:
        trimmed = {k: v for k, v in plain_options.items()
                   if k in ("type", "sharing") or k not in params or params[k].default is not None}
        try:
            return trimmed, build(trimmed)
        except OptionError:
            raise RestoreError(f"cannot export: the unshared network ({plain_options}) does not build: {exc} "
                               "Nothing was written.") from None


def _compare(net: nn.Module, plain: nn.Module, task: Task | None, requested_scales: list[int] | None,
             network_options: Mapping[str, Any]) -> tuple[list[int | None], int, float]:
    """The scales checked, the input side and the largest |output difference| between `net` and
    `plain` on a random input (inf when an output is not finite)."""
    import math

    import torch

    from restore.archs import arch_info
    from restore.inference import call_network

    info = arch_info(net)
    in_chans = task.in_chans if task else int(network_options.get("in_chans", 3))
    task_scale = task.scale if task else None
    if info.multi_scale:
        scales = requested_scales or list(getattr(net, "scales", None) or [task_scale or 2])
    else:
        scales = [None]
    side = 32 if isinstance(info.size_multiple, str) else -(-32 // info.size_multiple) * info.size_multiple
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, in_chans, side, side, generator=generator)
    worst = 0.0
    with torch.no_grad():
        for scale in scales:
            s = scale or task_scale or 1
            guide = torch.rand(1, 3, side * s, side * s, generator=generator) if info.guided else None
            outputs = [call_network(m, x, scale=s, info=info, guide=guide) for m in (net, plain)]
            outputs = [o[-1] if isinstance(o, (list, tuple)) else o for o in outputs]
            diff = (outputs[0] - outputs[1]).abs().max().item()
            worst = max(worst, diff if math.isfinite(diff) else math.inf)
    return scales, side, worst
