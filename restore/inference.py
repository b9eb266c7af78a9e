"""Running a network on one input: padding to the arch's size multiple, scale and guide arguments,
cropping, and tiling large inputs so memory scales with the tile rather than the image.

`call_network` is the single place where the core calls an arch (training and test), so
multi-scale nets get their scale and guided nets their guide; `run_network` adds the test-time
padding (the official SwinIR padding for window transformers) and tiling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from restore.archs import ArchInfo, arch_info
from restore.errors import DataError, OptionError, RestoreError


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "symmetric") -> torch.Tensor:
    """Pad the bottom/right of an NCHW tensor to multiples of `multiple`.

    ``symmetric`` appends the flipped image (the official SwinIR test code); ``reflect`` and
    ``replicate`` are torch's modes.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "symmetric":
        while x.shape[2] < h + pad_h:  # inputs smaller than half the multiple need several flips
            x = torch.cat([x, torch.flip(x, [2])], 2)
        while x.shape[3] < w + pad_w:
            x = torch.cat([x, torch.flip(x, [3])], 3)
        return x[:, :, : h + pad_h, : w + pad_w]
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def _pad(x: torch.Tensor, info: ArchInfo) -> torch.Tensor:
    return pad_to_multiple(x, info.size_multiple, info.pad_mode) if info.size_multiple > 1 else x


def call_network(net: nn.Module, x: torch.Tensor, *, scale: int, info: ArchInfo,
                 guide: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
    """``net(x)``, plus ``scale=`` for multi-scale nets and ``guide=`` for guided ones."""
    kwargs: dict[str, object] = {}
    if info.multi_scale:
        kwargs["scale"] = scale
    if info.guided:
        if guide is None:
            raise DataError(
                f"{type(net).__name__} is a guided network: it needs a guide image (give the dataset a "
                "dataroot_guide, or `restore infer --guide`)."
            )
        expected = (x.shape[-2] * scale, x.shape[-1] * scale)
        if tuple(guide.shape[-2:]) != expected:
            raise DataError(f"the guide is {guide.shape[-1]}x{guide.shape[-2]} but this input needs "
                            f"{expected[1]}x{expected[0]} (the input's size times the scale {scale}).")
        kwargs["guide"] = guide
    return net(x, **kwargs)


def _pad_guide(guide: torch.Tensor | None, info: ArchInfo, scale: int) -> torch.Tensor | None:
    """The guide padded like its input, i.e. to the size multiple times the scale."""
    if guide is None or not info.guided or info.size_multiple <= 1:
        return guide
    return pad_to_multiple(guide, info.size_multiple * scale, info.pad_mode)


def _forward(net: nn.Module, lq: torch.Tensor, scale: int, info: ArchInfo,
             guide: torch.Tensor | None = None) -> torch.Tensor:
    """One network call: pad, pass scale and guide, keep the last step, crop."""
    h, w = lq.shape[-2:]
    out = call_network(net, _pad(lq, info), scale=scale, info=info, guide=_pad_guide(guide, info, scale))
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out[..., : h * scale, : w * scale]


def run_network(net: nn.Module, lq: torch.Tensor, scale: int, *, guide: torch.Tensor | None = None,
                tile: int | None = None, tile_overlap: int = 32, progress: bool = False) -> torch.Tensor:
    """The network's output for `lq` (NCHW), at `scale`, with the arch's padding undone.

    `guide` (NCHW at output size) is passed to guided nets and ignored by the others. With
    `tile`, the input is processed in overlapping tiles of at most `tile` x `tile` LQ pixels
    (see `run_tiled`); the result then lives on `lq`'s device in float32.
    """
    if tile is None:
        return _forward(net, lq, scale, arch_info(net), guide)
    return run_tiled(net, lq, scale, guide=guide, tile=tile, overlap=tile_overlap, progress=progress)


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of `tile`-long tiles covering ``[0, length)``.

    The first starts at 0 and the last ends at `length` (edge tiles move inward instead of
    shrinking); the others are spread evenly in between, on multiples of `multiple`, so that
    neighbours overlap by at least `overlap`. `length`, `tile` and `overlap` are multiples of
    `multiple`, with ``overlap < tile``.
    """
    if length <= tile:
        return [0]
    steps = math.ceil((length - tile) / (tile - overlap))
    # Flooring i*(length - tile)/steps moves by at most ceil((length - tile)/steps) <= tile - overlap,
    # and rounding down to `multiple` keeps that bound because tile - overlap is a multiple of it.
    return sorted({(i * (length - tile) // steps) // multiple * multiple for i in range(steps + 1)})


def _ramp_up(x: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """0 -> 1 across the middle half of the overlap ``[start, end)`` (LQ coordinates)."""
    if end == start:  # tiles that only touch: a hard step
        return (x >= start).to(x.dtype)
    quarter = (end - start) / 4
    return ((x - start - quarter) / (2 * quarter)).clamp(0.0, 1.0)


def blend_weights(starts: list[int], tile: int, length: int, scale: int) -> list[torch.Tensor]:
    """Per-tile weights along one axis, in output pixels, summing to 1 at every output position.

    Why this profile: pixels near a tile's inner edge were computed without the context beyond it
    (the network pads with zeros there), so they differ from the whole-image result. Each tile
    therefore gets weight 0 in the outer quarter of every overlap it shares, rising linearly to 1
    across the middle half. Tiled output then equals untiled output exactly when the network's
    receptive-field radius is at most overlap/4, and for networks that see further (transformers,
    deep CNNs) the remaining difference is spread over the ramp instead of showing as a step at a
    hard seam. Uniform averaging (SwinIR's tiled test) would give those edge pixels full weight
    and is never exact.
    """
    # LQ coordinate of each output pixel centre within a tile.
    offsets = (torch.arange(tile * scale, dtype=torch.float64) + 0.5) / scale
    weights = []
    for i, start in enumerate(starts):
        x = start + offsets
        w = torch.ones_like(x)
        if i > 0:
            w *= _ramp_up(x, start, starts[i - 1] + tile)
        if i + 1 < len(starts):
            w *= 1.0 - _ramp_up(x, starts[i + 1], start + tile)
        weights.append(w)
    total = torch.zeros(length * scale, dtype=torch.float64)
    for start, w in zip(starts, weights, strict=True):
        total[start * scale : (start + tile) * scale] += w
    # Two ramps that meet are complementary; dividing by the sum also covers spots where three
    # tiles overlap (short images), where the sum is still > 0 because a tile weighs >= 1/4 there.
    return [(w / total[s * scale : (s + tile) * scale]).float() for s, w in zip(starts, weights, strict=True)]


def _tile_geometry(tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """(tile, overlap) on multiples of the arch's size multiple: the tile rounded down, the
    overlap up, so tile origins fall on the arch's window grid as in the whole padded image."""
    if tile < 1:
        raise OptionError(f"tile must be a positive number of pixels, got {tile}.")
    if overlap < 0:
        raise OptionError(f"tile_overlap must be >= 0, got {overlap}.")
    rounded_tile = max(multiple, tile // multiple * multiple)
    rounded_overlap = -(-overlap // multiple) * multiple
    if rounded_overlap >= rounded_tile:
        note = f" (rounded to this network's size multiple {multiple})" if multiple > 1 else ""
        raise OptionError(
            f"tile_overlap {rounded_overlap} must be smaller than tile {rounded_tile}{note}; "
            "use a larger tile or a smaller overlap."
        )
    return rounded_tile, rounded_overlap


def _network_device(net: nn.Module, default: torch.device) -> torch.device:
    first = next(net.parameters(), None)
    return first.device if first is not None else default


@torch.no_grad()
def run_tiled(net: nn.Module, lq: torch.Tensor, scale: int, *, tile: int, overlap: int = 32,
              guide: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """The network's output for `lq` (NCHW) computed tile by tile.

    The whole input is first padded to the arch's size multiple exactly as untiled inference
    does, then cut into overlapping tiles of ``tile`` x ``tile`` pixels (rounded to the size
    multiple) whose origins lie on that multiple, so a window transformer sees the same window
    grid as on the whole image. Each tile goes to the network's device and its output is
    blended (`blend_weights`) into a float32 result on `lq`'s device, so the network's memory
    scales with the tile and only the result is image-sized. A guide is cut into the matching
    tiles at output resolution.
    """
    info = arch_info(net)
    multiple = info.size_multiple if info.size_multiple > 1 else 1
    tile, overlap = _tile_geometry(tile, overlap, multiple)
    h, w = lq.shape[-2:]
    padded, padded_guide = _pad(lq, info), _pad_guide(guide, info, scale)
    ph, pw = padded.shape[-2:]
    tile_h, tile_w = min(tile, ph), min(tile, pw)
    rows, cols = tile_starts(ph, tile_h, overlap, multiple), tile_starts(pw, tile_w, overlap, multiple)
    row_weights = [wt.to(lq.device) for wt in blend_weights(rows, tile_h, ph, scale)]
    col_weights = [wt.to(lq.device) for wt in blend_weights(cols, tile_w, pw, scale)]
    device = _network_device(net, lq.device)

    from tqdm import tqdm

    result: torch.Tensor | None = None
    positions = [(i, j) for i in range(len(rows)) for j in range(len(cols))]
    for i, j in tqdm(positions, desc="tiles", unit="tile", leave=False, disable=not progress or len(positions) < 2):
        y, x = rows[i], cols[j]
        piece = padded[..., y : y + tile_h, x : x + tile_w].to(device)
        guide_piece = None if padded_guide is None else padded_guide[
            ..., y * scale : (y + tile_h) * scale, x * scale : (x + tile_w) * scale].to(device)
        out = _forward(net, piece, scale, info, guide_piece)
        if out.shape[-2:] != (tile_h * scale, tile_w * scale):
            raise RestoreError(
                f"{type(net).__name__} turned a {tile_w}x{tile_h} tile into "
                f"{out.shape[-1]}x{out.shape[-2]}, not {tile_w * scale}x{tile_h * scale} at scale {scale}; "
                "does the network's scale match the task's?"
            )
        if result is None:
            result = torch.zeros((*out.shape[:-2], ph * scale, pw * scale), dtype=torch.float32, device=lq.device)
        weight = row_weights[i][:, None] * col_weights[j][None, :]
        result[..., y * scale : (y + tile_h) * scale, x * scale : (x + tile_w) * scale] += (
            out.to(lq.device, torch.float32) * weight
        )
    assert result is not None  # at least one tile always exists
    return result[..., : h * scale, : w * scale]
