"""``restore convert``: a foreign checkpoint (.pth) to restore's safetensors format, without
executing anything from the file."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a released .pth checkpoint to .safetensors (never executes code from it)",
        description="Read a PyTorch checkpoint with a restricted loader that accepts only tensors, plain "
        "containers and numpy scalars (anything else is refused), let the registered converters recognise "
        "it (e.g. the PS authors' files: bank aliases folded, `module.` stripped, N_p inferred), and write "
        "a .safetensors file whose metadata records the network options, so `restore test --weights` and "
        "`restore export` can rebuild the model from the file alone.",
        epilog="examples:\n"
        "  restore convert ../shared/weights/ps/drrnps.pth weights/drrn_ps.safetensors\n"
        "  restore convert ../shared/weights/ps/srfbnspsx2.pth weights/srfbn_s_ps_x2.safetensors \\\n"
        "      --task '{type: sisr, scale: 2}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="checkpoint to read (.pth/.pt, or .safetensors)")
    p.add_argument("output", help="where to write the .safetensors file")
    p.add_argument("--converter", metavar="NAME",
                   help="use this registered converter (default: the first that recognises the file; "
                   "`restore plugins --registry converters` lists them)")
    p.add_argument("--task", metavar="YAML", help="task options to record, e.g. '{type: sisr, scale: 2}'")
    p.set_defaults(func=run)


def served_scales(network: dict | None) -> list[int]:
    """Every scale a multi-scale network's options list (``scales: [2, 3, 4]``); empty otherwise."""
    scales = (network or {}).get("scales")
    if isinstance(scales, (list, tuple)) and len(scales) > 1 and all(isinstance(s, int) for s in scales):
        return sorted(scales)
    return []


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from restore.build import read_state_dict
    from restore.checkpoint import save_weights
    from restore.errors import OptionError
    from restore.options import parse_yaml

    source, target = Path(args.input), Path(args.output)
    if target.suffix != ".safetensors":
        raise OptionError(f"{target}: the output must be a .safetensors file.")
    task = parse_yaml(args.task, "--task") if args.task else None
    if task is not None and not (isinstance(task, dict) and "type" in task):
        raise OptionError(f"--task: expected a mapping with a 'type', e.g. '{{type: sisr, scale: 2}}', "
                          f"got {args.task!r}.")

    state_dict, meta = read_state_dict(source, converter=args.converter)
    network = meta.get("network")
    extra = {"converted_from": source.name}
    if meta.get("converted_by"):
        extra["converted_by"] = meta["converted_by"]
    scales = served_scales(network)
    if scales:
        extra["scales"] = json.dumps(scales)  # every scale served; the task records the default one
    task = task or meta.get("task")
    save_weights(target, state_dict, network=network, task=task, extra=extra)

    print(f"wrote {target}: {len(state_dict)} tensors, {sum(t.numel() for t in state_dict.values()):,} values"
          + (f", converted by '{meta['converted_by']}'" if meta.get("converted_by") else ""))
    if network is not None:
        print(f"network_g: {network}")
    if scales:
        default = f" (task: x{task['scale']} by default)" if task and "scale" in task else ""
        print(f"scales: x{', x'.join(map(str, scales))}{default}; choose one with `restore infer --scale` or "
              "`restore test --scale`")
    else:
        print("note: no converter recognised the file, so no network options were recorded; "
              "give an option file (-opt) when you use these weights.")
    return 0
