"""Drawing report pictures without a plotting library per image: colour maps by table lookup,
text with Pillow, and indexed (palette) PNGs, which compress three times less data than RGB.

A *figure* is a grid of scalar maps (e.g. depth maps in one row, their error maps in the next),
each row coloured by its own `Legend` and closed by a colour bar that states its range. The
whole figure is one 8-bit index image plus a 256-colour palette: two colour-map segments, and
greys for the background, text and pixels without data.
"""

from __future__ import annotations

import functools
import threading
import zlib
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

LEVELS = 120  # palette entries per colour map (two maps) ...
GREYS = 16  # ... and greys: 0 = white (background) to 15 = black (text)
GREY_BASE = 2 * LEVELS
NO_DATA = GREY_BASE + 7  # mid grey: invalid pixels
TITLE_HEIGHT = 22
MARGIN = 6
BAR_WIDTH = 14
FONT_SIZE = 13
_TEXT_LOCK = threading.Lock()  # one FreeType face is shared; FreeType faces are not thread-safe


@dataclass(frozen=True)
class Legend:
    """A colour bar: `colormap` (a matplotlib name) spans `low`..`high`, described by `label`
    (what and in which units, e.g. ``|error| (cm), 99th percentile of the set``)."""

    low: float
    high: float
    colormap: str
    label: str


@dataclass
class Cell:
    """One panel of a figure: its key, a title and an HxW float map (NaN = no data, drawn grey),
    or `levels` already computed (uint8 0..LEVELS-1 on the row's legend, 255 = no data)."""

    key: str
    title: str
    values: np.ndarray | None = None
    levels: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.values if self.values is not None else self.levels).shape


@dataclass
class Row:
    """Cells drawn left to right (None leaves a gap) with one legend."""

    cells: list[Cell | None]
    legend: Legend


@cache
def colormap_table(name: str, levels: int = 256) -> np.ndarray:
    """`levels` RGB uint8 colours sampled evenly along a matplotlib colour map."""
    from matplotlib import colormaps

    return np.round(colormaps[name](np.linspace(0.0, 1.0, levels))[:, :3] * 255).astype(np.uint8)


def level_indices(values: np.ndarray, low: float, high: float, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as uint8 levels 0..levels-1 on the low..high scale, clipped; the mask of NaN = no data)."""
    span = high - low if high > low else 1.0
    scaled = (np.asarray(values, dtype=np.float32) - np.float32(low)) * np.float32((levels - 1) / span)
    missing = np.isnan(scaled)
    np.clip(scaled, 0, levels - 1, out=scaled)  # NaN stays NaN and is masked below
    scaled += 0.5
    scaled[missing] = 0
    return scaled.astype(np.uint8), missing


def colorize(values: np.ndarray, legend: Legend) -> np.ndarray:
    """An HxW map as RGB uint8 coloured by `legend` (grey where there is no data)."""
    levels, missing = level_indices(values, legend.low, legend.high, 256)
    rgb = colormap_table(legend.colormap)[levels]
    rgb[missing] = 128
    return rgb


@functools.lru_cache(maxsize=4096)
def text_mask(text: str, size: int = FONT_SIZE) -> np.ndarray:
    """Anti-aliased text as an HxW uint8 coverage mask (255 = ink); cached, so read-only."""
    with _TEXT_LOCK:
        return _render_text(text, size)


@cache
def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _render_text(text: str, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(size)
    left, top, right, bottom = font.getbbox(text or " ")
    image = Image.new("L", (max(1, right - left + 2), max(1, bottom - top + 2)), 0)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=255, font=font)
    mask = np.asarray(image)
    mask.flags.writeable = False
    return mask


def _grey(coverage: np.ndarray) -> np.ndarray:
    """Coverage 0..255 to grey palette indices (white background, black ink)."""
    return (GREY_BASE + (coverage.astype(np.uint16) * (GREYS - 1) + 127) // 255).astype(np.uint8)


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    mask = text_mask(text)
    h, w = mask.shape
    if w > width:  # too long for its panel: cut on the right
        mask, w = mask[:, :width], width
    h = min(h, canvas.shape[0] - y)
    region = canvas[y : y + h, x : x + w]
    ink = _grey(mask[:h])
    np.copyto(region, ink, where=mask[:h] > 0)


def _palette(colormaps: list[str]) -> np.ndarray:
    segments = [colormap_table(name, LEVELS) for name in colormaps]
    segments += [colormap_table("gray", LEVELS)] * (2 - len(segments))
    greys = np.repeat(np.round(np.linspace(255, 0, GREYS)).astype(np.uint8)[:, None], 3, axis=1)
    return np.concatenate([*segments, greys])


@dataclass
class Composite:
    """A drawn figure: palette indices, the palette, and where each titled cell lies
    (``key -> (x, y, width, height)`` in pixels) so a web page can show the cells one by one."""

    indices: np.ndarray
    palette: np.ndarray
    cells: dict[str, tuple[int, int, int, int]]

    def rgb(self) -> np.ndarray:
        return self.palette[self.indices]

    def png(self) -> bytes:
        return palette_png(self.indices, self.palette)


def _legend_text(value: float) -> str:
    return f"{value:.4g}"


def compose(rows: list[Row]) -> Composite:
    """Draw `rows` (at most two colour maps among their legends) as one figure at full
    resolution: one pixel per map pixel, a title above every cell, a colour bar per row."""
    names = list(dict.fromkeys(row.legend.colormap for row in rows))
    if len(names) > 2:
        raise ValueError(f"a figure holds at most two colour maps, got {names}")
    shapes = [cell.shape for row in rows for cell in row.cells if cell is not None]
    height, width = max(s[0] for s in shapes), max(s[1] for s in shapes)
    columns = max(len(row.cells) for row in rows)
    bar_text = max(text_mask(_legend_text(v)).shape[1] for row in rows for v in (row.legend.low, row.legend.high))
    legend_width = BAR_WIDTH + 2 * MARGIN + max(bar_text, 40)
    row_height = TITLE_HEIGHT + height + MARGIN
    canvas = np.full((MARGIN + len(rows) * row_height + TITLE_HEIGHT,
                      MARGIN + columns * (width + MARGIN) + legend_width), GREY_BASE, np.uint8)
    cells: dict[str, tuple[int, int, int, int]] = {}
    for r, row in enumerate(rows):
        base = LEVELS * names.index(row.legend.colormap)
        top = MARGIN + r * row_height
        for c, cell in enumerate(row.cells):
            if cell is None:
                continue
            x = MARGIN + c * (width + MARGIN)
            if cell.levels is not None:
                missing = cell.levels == 255
                levels = cell.levels + np.uint8(base)
            else:
                levels, missing = level_indices(cell.values, row.legend.low, row.legend.high, LEVELS)
                levels += np.uint8(base)
            h, w = levels.shape
            levels[missing] = NO_DATA
            canvas[top + TITLE_HEIGHT : top + TITLE_HEIGHT + h, x : x + w] = levels
            _put_text(canvas, cell.title, x, top + 4, width)
            cells[cell.key] = (x, top + TITLE_HEIGHT, w, h)
        _draw_bar(canvas, row.legend, base, MARGIN + columns * (width + MARGIN), top + TITLE_HEIGHT, height)
    labels = "   ".join(f"row {r + 1}: {row.legend.label}" for r, row in enumerate(rows))
    _put_text(canvas, labels, MARGIN, canvas.shape[0] - TITLE_HEIGHT + 4, canvas.shape[1] - 2 * MARGIN)
    return Composite(canvas, _palette(names), cells)


def _draw_bar(canvas: np.ndarray, legend: Legend, base: int, x: int, y: int, height: int) -> None:
    """A vertical colour bar (high at the top) with its end values written beside it."""
    steps = (np.arange(height)[::-1] * (LEVELS - 1) // max(1, height - 1)).astype(np.uint8)
    canvas[y : y + height, x : x + BAR_WIDTH] = (steps + base)[:, None]
    text_x = x + BAR_WIDTH + 4
    room = canvas.shape[1] - text_x
    _put_text(canvas, _legend_text(legend.high), text_x, y, room)
    _put_text(canvas, _legend_text(legend.low), text_x, max(y, y + height - FONT_SIZE - 4), room)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """An indexed-colour PNG: libpng (through OpenCV) compresses the 8-bit indices as a grey
    image, whose header then says "indexed" and gains the palette. The pixel data of a grey and
    an indexed 8-bit PNG are encoded identically, so no re-encoding is needed."""
    # No row filter (what the PNG specification advises for indexed images; adaptive filtering
    # doubled the time here), zlib's fastest level.
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(indices, dtype=np.uint8),
                              [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode an index image of shape {indices.shape}")
    data = buffer.tobytes()
    length = int.from_bytes(data[8:12], "big")
    if data[12:16] != b"IHDR":
        raise RuntimeError("unexpected PNG layout from OpenCV")
    header = bytearray(data[16 : 16 + length])
    header[9] = 3  # colour type 3: indexed
    rest = data[8 + 12 + length :]
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    return data[:8] + _chunk(b"IHDR", bytes(header)) + _chunk(b"PLTE", colours.tobytes()) + rest


def rgb_png(image: np.ndarray) -> bytes:
    """A fast lossless RGB (or grey) PNG: zlib's fastest level, the SUB row filter only."""
    img = image[:, :, ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(img),
                              [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode an image of shape {image.shape}")
    return buffer.tobytes()


def jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    """RGB uint8 as JPEG (for context photos, which are not measured)."""
    img = image[:, :, ::-1] if image.ndim == 3 and image.shape[2] == 3 else image
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return buffer.tobytes()


def nearest_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` repeated pixel by pixel up to (height, width) (LR panels shown at GT size)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    rows = np.minimum(np.arange(height) * h // height, h - 1)
    cols = np.minimum(np.arange(width) * w // width, w - 1)
    return image[rows][:, cols]


def worst_window(error: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the size x size window with the largest summed error (NaN counts as 0)."""
    h, w = error.shape
    if h <= size and w <= size:
        return 0, 0
    filled = np.nan_to_num(error.astype(np.float32), nan=0.0, posinf=0.0)
    sums = cv2.boxFilter(filled, -1, (min(size, w), min(size, h)), normalize=False, anchor=(0, 0),
                         borderType=cv2.BORDER_CONSTANT)
    sums = sums[: max(1, h - size + 1), : max(1, w - size + 1)]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)
