"""``restore infer``: restore one image or a folder of images with a trained network.

The network and task come from the weights file's metadata (restore's safetensors files record
both), or from an option file (``-opt``) for weights without metadata; ``--set`` overrides
either. Multi-scale networks run at ``--scale`` (checked against the scales the network serves).
Inputs above `AUTO_TILE_PIXELS` run in overlapping tiles so memory stays bounded (``--tile``
chooses the tile size, ``--tile 0`` never tiles). Everything is checked before the first file is
written; a network output with NaN or inf is an error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from restore.commands.arguments import add_max_pixels_argument, add_threads_argument

AUTO_TILE_PIXELS = 1024 * 1024  # inputs with more pixels than this are tiled ...
AUTO_TILE = 512  # ... in tiles of this size, unless --tile says otherwise
OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".pfm", ".mat", ".h5", ".hdf5", ".bmp", ".jpg", ".jpeg")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="restore images with a trained network (one image or a folder in, restored images out)",
        description="Restore one image or every readable file of a folder with a trained network. OUTPUT is a "
        "file when it names one (a single input and an image extension: OUTPUT.png), else a folder that "
        "receives <stem>.png (or the task's own format: float32 TIFF/.npy for depth maps). Inputs larger than "
        f"{AUTO_TILE_PIXELS:,} pixels are processed in {AUTO_TILE}-pixel tiles unless --tile says otherwise.",
        epilog="examples:\n"
        "  restore infer --weights net.safetensors photo.png restored.png\n"
        "  restore infer --weights net.safetensors inputs/ outputs/ --tile 256\n"
        "  restore infer -opt options/ps_drrn_released_test.yml --scale 3 lr/ sr_x3/\n"
        "  restore infer --weights jpeg.safetensors --set task.quality=10 in/ out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="an image (or other readable file) or a folder")
    parser.add_argument("output", metavar="OUTPUT", type=Path,
                        help="output file (one input, with an image extension) or folder (created)")
    parser.add_argument("--weights", type=Path, metavar="MODEL",
                        help="weights file; restore's .safetensors files rebuild the network and task on their own")
    parser.add_argument("-opt", "--opt", dest="opt", type=Path, metavar="FILE",
                        help="option file giving network_g, task and (unless --weights) path.pretrain_network_g, "
                        "for weights without metadata")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override an option of -opt, or of the options the weights record (task.*, network_g.*)")
    parser.add_argument("--scale", type=int, default=None,
                        help="run a multi-scale network at this scale (one of those it serves); required when the "
                        "weights alone describe a network serving several")
    parser.add_argument("--guide", type=Path, metavar="GUIDE",
                        help="guide image (or folder of guides named like the inputs) for guided networks, "
                        "at the output's size (the RGB photo of guided depth SR)")
    parser.add_argument("--tile", type=int, default=None, metavar="PIXELS",
                        help="process the input in overlapping tiles of this size (LQ pixels) to bound memory; 0: "
                        f"never tile; default: val.tile of -opt, else tiles of {AUTO_TILE} for inputs above "
                        f"{AUTO_TILE_PIXELS:,} pixels")
    parser.add_argument("--tile-overlap", type=int, default=None, metavar="PIXELS",
                        help="overlap between tiles (default 32, or val.tile_overlap of -opt)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where the network runs (default: cuda when available)")
    parser.add_argument("--quantize", choices=("round", "truncate"), default=None,
                        help="how outputs become 8-bit (default round, or val.quantize of -opt)")
    add_max_pixels_argument(parser)
    add_threads_argument(parser, "the network")
    parser.set_defaults(func=run)


def _input_files(path: Path) -> list[Path]:
    from restore.data.io import list_files
    from restore.errors import DataError

    if path.is_dir():
        files = list_files(path)
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such image or folder.")
    empty = [f for f in files if f.stat().st_size == 0]
    if empty:
        raise DataError(f"{empty[0]}: the file is empty (0 bytes), not an image"
                        f"{f' ({len(empty)} empty files)' if len(empty) > 1 else ''}; nothing was written.")
    return files


def output_name(file: Path) -> str:
    """The name an input's result gets: its stem, or its whole name when the stem is not a usable
    file name (``..png`` has the stem ``.``)."""
    return file.stem if file.stem not in ("", ".", "..") else file.name


def _output_stems(files: list[Path], output: Path) -> tuple[list[Path], bool]:
    """(the output path without extension of each input, whether OUTPUT is a single file).

    Refuses two inputs with one output name, writing over an input, and names that leave OUTPUT."""
    from restore.errors import DataError
    from restore.paths import inside

    as_file = len(files) == 1 and output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir()
    if as_file:
        if output.resolve() == files[0].resolve():
            raise DataError(f"{output}: is the input; choose another OUTPUT so the input is not overwritten.")
        return [output.with_suffix("")], True
    if output.exists() and not output.is_dir():
        raise DataError(f"{output}: exists and is not a folder; OUTPUT must be a folder for "
                        f"{'several inputs' if len(files) > 1 else 'this input'}.")
    seen: dict[str, Path] = {}
    for file in files:
        name = output_name(file)
        if name in seen:
            raise DataError(f"{seen[name]} and {file} would both be saved as {output / name}; rename one of them.")
        seen[name] = file
    if output.resolve() in {f.parent.resolve() for f in files}:
        raise DataError(f"{output}: is the input folder; choose another OUTPUT so no input is overwritten.")
    try:
        return [inside(output, name, what=f"output of {file}") for name, file in seen.items()], False
    except Exception as exc:
        raise DataError(str(exc)) from None


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


def served_scales(net: Any, task: Any, recorded: Any = None) -> list[int]:
    """The scales a network serves: a multi-scale arch's ``scales`` (or what the weights record),
    else the task's one scale."""
    from restore.archs import arch_info

    if not arch_info(net).multi_scale:
        return [task.scale]
    if isinstance(recorded, str):  # as `restore convert` records it: "[2, 3, 4]"
        import json

        recorded = json.loads(recorded)
    scales = getattr(net, "scales", None) or recorded or [task.scale]
    return sorted(int(s) for s in scales)


def _model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(network, task at the chosen scale, defaults for tile/overlap/quantize)."""
    from restore.build import build_task, load_pretrained, network_for_task
    from restore.errors import OptionError
    from restore.options import load_options

    if args.opt is None:
        if args.weights is None:
            raise OptionError("restore infer needs --weights MODEL (or -opt FILE naming path.pretrain_network_g).")
        from restore.tester import checkpoint_options

        options, weights, from_file = checkpoint_options(str(args.weights), args.set), str(args.weights), False
    else:
        options, from_file = load_options(args.opt, args.set), True
        weights = str(args.weights) if args.weights else options.path.pretrain_network_g
        if weights is None:
            raise OptionError(f"{args.opt}: path.pretrain_network_g is empty; set it or pass --weights.")
    task = build_task(options.task, options.scale)
    net = network_for_task(options.network_g, task)
    meta = load_pretrained(net, weights, strict=options.path.strict_load_g, param_key=options.path.param_key_g)
    scales = served_scales(net, task, meta.get("scales"))
    if args.scale is not None:
        if args.scale not in scales:
            raise OptionError(f"--scale {args.scale}: {type(net).__name__} serves x{', x'.join(map(str, scales))}; "
                              "choose one of them.")
        task = task.at_scale(args.scale)
    elif len(scales) > 1 and not from_file:
        raise OptionError(f"{args.weights}: {type(net).__name__} serves x{', x'.join(map(str, scales))}; choose "
                          "the scale with --scale.")
    val = options.val if from_file else None
    defaults = {"tile": val.tile, "tile_overlap": val.tile_overlap, "quantize": val.quantize,
                "max_image_pixels": options.max_image_pixels} if val else {}
    return net, task, defaults


def _tile_for(lq_pixels: int, args: argparse.Namespace, defaults: dict[str, Any]) -> int | None:
    if args.tile is not None:
        return args.tile or None
    if defaults.get("tile"):
        return defaults["tile"]
    return AUTO_TILE if lq_pixels > AUTO_TILE_PIXELS else None


def run(args: argparse.Namespace) -> int:
    import time

    import torch
    from tqdm import tqdm

    from restore.commands.arguments import apply_threads
    from restore.data.io import read_array, use_max_image_pixels
    from restore.data.paired import to_tensor
    from restore.errors import OptionError
    from restore.evaluation import check_finite_output
    from restore.inference import run_network

    threads = apply_threads(args)
    if args.tile is not None and 0 < args.tile < 8:
        raise OptionError(f"--tile {args.tile}: give 0 (never tile) or a tile of at least 8 pixels.")
    files = _input_files(args.input)
    stems, as_file = _output_stems(files, args.output)
    guides = _guide_files(args.guide, files)
    device = _device(args.device)
    net, task, defaults = _model(args)
    use_max_image_pixels(args.max_pixels, defaults.get("max_image_pixels"))
    overlap = args.tile_overlap if args.tile_overlap is not None else defaults.get("tile_overlap", 32)
    quantize = args.quantize or defaults.get("quantize", "round")
    net.eval().to(device)

    start = time.perf_counter()
    written: list[Path] = []
    tiled = 0
    with torch.inference_mode():
        bar = tqdm(files, desc="infer", unit="img", disable=len(files) < 2)
        for file, stem, guide_file in zip(bar, stems, guides, strict=True):
            sample = task.prepare(None, task.read(file), name=file.stem, source=file)
            lq = to_tensor(sample.lq).unsqueeze(0)
            tile = _tile_for(lq.shape[-1] * lq.shape[-2], args, defaults)
            tiled += tile is not None
            guide = None
            if guide_file is not None:
                guide = to_tensor(task.guide_to_network(read_array(guide_file), name=str(guide_file))).unsqueeze(0)
            # Tiled: the image stays on the CPU and only tiles visit the device.
            target = device if tile is None else lq.device
            out = run_network(net, lq.to(target), task.scale, guide=None if guide is None else guide.to(target),
                              tile=tile, tile_overlap=overlap, progress=tile is not None)
            check_finite_output(out, type(net).__name__, str(file))
            img = out[0].permute(1, 2, 0).float().cpu().numpy()
            written.append(task.save_output(task.to_data(img, sample.meta, quantize), stem, sample.meta))
    seconds = time.perf_counter() - start
    tiling = f", {tiled} of them in tiles ({overlap}-pixel overlap)" if tiled else ""
    where = f"the file {written[0]}" if as_file else f"the folder {args.output}"
    cpu = f" ({threads})" if device.type == "cpu" else ""
    print(f"restored {len(files)} image(s) with {type(net).__name__} ({task.describe()}) on {device}{cpu}{tiling} "
          f"in {seconds:.1f} s into {where}; saved as {task.saved_as}")
    return 0
