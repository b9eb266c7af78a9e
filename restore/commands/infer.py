"""``restore infer``: restore one image or a folder of images with a trained network.

The network and task come from the weights file's metadata (restore's safetensors files record
both), or from an option file (``-opt``) for weights without metadata. Large inputs can be run
in overlapping tiles (``--tile``) so the network's memory stays bounded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from restore.commands.data import add_max_pixels_argument


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="restore images with a trained network (one image or a folder in, restored images out)",
        description="Restore one image or every readable file of a folder with a trained network and "
        "write the results as <OUTPUT>/<stem>.png (or the task's own format).",
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="an image (or other readable file) or a folder")
    parser.add_argument("output", metavar="OUTPUT", type=Path, help="folder for the results (created)")
    parser.add_argument("--weights", type=Path, metavar="MODEL",
                        help="weights file; restore's .safetensors files rebuild the network and task on their own")
    parser.add_argument("-opt", "--opt", dest="opt", type=Path, metavar="FILE",
                        help="option file giving network_g, task and (unless --weights) path.pretrain_network_g, "
                        "for weights without metadata")
    parser.add_argument("--guide", type=Path, metavar="GUIDE",
                        help="guide image (or folder of guides named like the inputs) for guided networks, "
                        "at the output's size (the RGB photo of guided depth SR)")
    parser.add_argument("--tile", type=int, default=None, metavar="PIXELS",
                        help="process the input in overlapping tiles of this size (LQ pixels) to bound memory; "
                        "default: the whole image at once (or val.tile of -opt)")
    parser.add_argument("--tile-overlap", type=int, default=None, metavar="PIXELS",
                        help="overlap between tiles (default 32, or val.tile_overlap of -opt)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where the network runs (default: cuda when available)")
    parser.add_argument("--quantize", choices=("round", "truncate"), default=None,
                        help="how outputs become 8-bit (default round, or val.quantize of -opt)")
    add_max_pixels_argument(parser)
    parser.set_defaults(func=run)


def _input_files(path: Path) -> list[Path]:
    from restore.data.io import list_files
    from restore.errors import DataError

    if path.is_dir():
        return list_files(path)
    if path.is_file():
        return [path]
    raise DataError(f"{path}: no such image or folder.")


def _output_stems(files: list[Path], output: Path) -> list[Path]:
    """OUTPUT/<stem> per input; refuses two inputs with one stem and writing over an input."""
    from restore.errors import DataError

    if output.exists() and not output.is_dir():
        raise DataError(f"{output}: exists and is not a folder; OUTPUT must be a folder.")
    seen: dict[str, Path] = {}
    for file in files:
        if file.stem in seen:
            raise DataError(f"{seen[file.stem]} and {file} would both be saved as {output / file.stem}; "
                            "rename one of them.")
        seen[file.stem] = file
    if output.resolve() in {f.parent.resolve() for f in files}:
        raise DataError(f"{output}: is the input folder; choose another OUTPUT so no input is overwritten.")
    return [output / file.stem for file in files]


def _guide_files(guide: Path | None, files: list[Path]) -> list[Path | None]:
    """The guide of each input: GUIDE itself for one input, else GUIDE/<input stem>.*."""
    from restore.errors import DataError

    if guide is None:
        return [None] * len(files)
    if guide.is_file() and len(files) == 1:
        return [guide]
    if not guide.is_dir():
        raise DataError(f"--guide {guide}: no such folder (a single guide file goes with a single input).")
    by_stem = {f.stem: f for f in _input_files(guide)}
    missing = [f.name for f in files if f.stem not in by_stem]
    if missing:
        raise DataError(f"--guide {guide}: no guide named like {', '.join(missing[:5])}.")
    return [by_stem[f.stem] for f in files]


def _device(name: str | None) -> Any:
    import torch

    from restore.errors import RestoreError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RestoreError("--device cuda: no CUDA device is available here; use --device cpu.")
    return torch.device(name)


def _model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(network, task, defaults for tile/overlap/quantize) from the weights or the option file."""
    from restore.build import build_task, load_pretrained, model_from_checkpoint, network_for_task
    from restore.errors import OptionError

    if args.opt is None:
        if args.weights is None:
            raise OptionError("restore infer needs --weights MODEL (or -opt FILE naming path.pretrain_network_g).")
        net, task = model_from_checkpoint(args.weights)
        return net, task, {}
    from restore.options import load_options

    options = load_options(args.opt)
    weights = args.weights or options.path.pretrain_network_g
    if weights is None:
        raise OptionError(f"{args.opt}: path.pretrain_network_g is empty; set it or pass --weights.")
    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    load_pretrained(net, weights, strict=options.path.strict_load_g, param_key=options.path.param_key_g)
    val = options.val
    return net, task, {"tile": val.tile, "tile_overlap": val.tile_overlap, "quantize": val.quantize,
                       "max_image_pixels": options.max_image_pixels}


def run(args: argparse.Namespace) -> int:
    import time

    import torch
    from tqdm import tqdm

    from restore.data.io import read_array, use_max_image_pixels
    from restore.data.paired import to_tensor
    from restore.inference import run_network

    files = _input_files(args.input)
    stems = _output_stems(files, args.output)
    guides = _guide_files(args.guide, files)
    device = _device(args.device)
    net, task, defaults = _model(args)
    use_max_image_pixels(args.max_pixels, defaults.get("max_image_pixels"))
    tile = args.tile if args.tile is not None else defaults.get("tile")
    overlap = args.tile_overlap if args.tile_overlap is not None else defaults.get("tile_overlap", 32)
    quantize = args.quantize or defaults.get("quantize", "round")
    net.eval().to(device)

    start = time.perf_counter()
    with torch.inference_mode():
        bar = tqdm(files, desc="infer", unit="img", disable=len(files) < 2)
        for file, stem, guide_file in zip(bar, stems, guides, strict=True):
            sample = task.prepare(None, task.read(file), name=file.stem, source=file)
            lq = to_tensor(sample.lq).unsqueeze(0)
            guide = None
            if guide_file is not None:
                guide = to_tensor(task.guide_to_network(read_array(guide_file), name=str(guide_file))).unsqueeze(0)
            # Tiled: the image stays on the CPU and only tiles visit the device.
            target = device if tile is None else lq.device
            out = run_network(net, lq.to(target), task.scale, guide=None if guide is None else guide.to(target),
                              tile=tile, tile_overlap=overlap, progress=tile is not None)
            img = out[0].permute(1, 2, 0).float().cpu().numpy()
            task.save_output(task.to_data(img, sample.meta, quantize), stem, sample.meta)
    seconds = time.perf_counter() - start
    tiling = f", tiles {tile}/{overlap}" if tile is not None else ""
    print(f"restored {len(files)} image(s) with {type(net).__name__} ({task.describe()}) on {device}{tiling} "
          f"into {args.output} in {seconds:.1f} s")
    return 0
