"""Per-image figures of a test set, drawn while the set is scored.

Which images get one is the `FigurePolicy` (``--figures none|worst N|all``); the worst come
first, ranked by the set's first metric for the network (or the baseline when it is alone).
Tasks that show scalar maps (depth) get two indexed PNGs per image at full resolution (or a crop
of the worst region for large maps): ``figures/<image>.png``, the maps in one row on the GT's
range, and ``figures/errors/<image>.png``, every model's error map below its map on **one error
scale for the whole set** (the 99th percentile of all sampled errors, stated on the colour bar;
per image with ``error_scale="image"``). The maps figure is drawn and written by the scoring's
background threads as soon as an image is scored; the error figure waits for the set's scale,
keeping each error map meanwhile as compressed 8-bit square-root levels, so no image is read
twice. Photographic tasks show their 8-bit images as they are. Every figure also yields `View`s,
the rectangles index.html shows side by side with a synchronised zoom.
"""

from __future__ import annotations

import heapq
import math
import os
import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore.errors import OptionError
from restore.metrics import MetricSet
from restore.paths import inside
from restore.report.render import LEVELS, Cell, Legend, Row, compose, jpeg, nearest_resize, rgb_png, worst_window
from restore.tasks import Task

FULL_SIZE_LIMIT = 1024  # maps wider or taller than this are shown as a crop of their worst region
CROP_SIZE = 512
ERROR_PERCENTILE = 99.0
ERROR_SAMPLES = 4096  # errors sampled per image for the set's scale
PACKED_BUDGET = 256 * 2**20  # bytes of error maps kept as they are; beyond, they are compressed


@dataclass(frozen=True)
class FigurePolicy:
    """Which images of a set get a figure: ``none``, ``all``, or the ``worst`` `count`."""

    mode: str = "all"
    count: int = 0

    @classmethod
    def parse(cls, text: str | list[str]) -> FigurePolicy:
        words = text.split() if isinstance(text, str) else [w for part in text for w in str(part).split()]
        spec = " ".join(words).lower()
        if spec in ("none", "all"):
            return cls(spec)
        match = re.fullmatch(r"worst[ :=]?(\d+)", spec)
        if match and int(match.group(1)) > 0:
            return cls("worst", int(match.group(1)))
        raise OptionError(f"--figures: expected 'none', 'all' or 'worst N' (N >= 1), got {spec!r}.")

    def __str__(self) -> str:
        return f"worst {self.count}" if self.mode == "worst" else self.mode


@dataclass
class View:
    """One panel as a web page shows it: the rectangle (x, y, width, height) of image file `src`
    (relative to the set's folder) that holds it. A panel narrower than the figure (an LR input)
    is stretched over it, so that one zoom shows the same region in every panel."""

    label: str
    src: str
    x: int
    y: int
    width: int
    height: int


@dataclass
class ImageFigure:
    """What index.html shows for one image: its views, the reference size, notes."""

    name: str
    index: int
    views: list[View]
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    figure: str | None = None  # the maps figure, relative to the set's folder


def nice_ceiling(value: float) -> float:
    """`value` rounded up to two significant digits (a readable colour-bar end)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / step - 1e-9) * step


def _write(out_dir: Path, relative: str, data: bytes) -> str:
    """Write a report file whole (temporary name, then rename). Not fsynced: figures can be drawn
    again, and a sync per file would cost more than drawing it."""
    path = inside(out_dir, *relative.split("/"), what="figure file")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return relative


@dataclass
class _Packed:
    """An error map kept until the set's scale is known: square-root levels 0..254 of
    |error| / `high` (255 = not scored), zlib-compressed once the kept maps pass `PACKED_BUDGET`."""

    data: bytes | np.ndarray
    shape: tuple[int, int]
    high: float

    @classmethod
    def pack(cls, error: np.ndarray, compress: bool) -> _Packed:
        scored = np.isfinite(error)
        high = float(error[scored].max()) if scored.any() else 0.0
        levels = np.where(scored, error, np.float32(0.0)) * np.float32(1.0 / (high or 1.0))
        np.clip(levels, 0.0, 1.0, out=levels)
        levels = (np.sqrt(levels) * 254 + 0.5).astype(np.uint8)
        levels[~scored] = 255
        return cls(zlib.compress(levels.tobytes(), 1) if compress else levels, error.shape, high)

    @property
    def nbytes(self) -> int:
        return len(self.data) if isinstance(self.data, bytes) else self.data.nbytes

    def levels(self, scale_high: float) -> np.ndarray:
        """Levels 0..LEVELS-1 of the 0..`scale_high` colour scale (255 = not scored), by table lookup."""
        packed = self.data if isinstance(self.data, np.ndarray) else \
            np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.shape)
        values = (np.arange(255, dtype=np.float32) / 254) ** 2 * np.float32(self.high)
        table = np.clip(values / np.float32(scale_high) * (LEVELS - 1) + 0.5, 0, LEVELS - 1).astype(np.uint8)
        return np.append(table, np.uint8(255))[packed]


@dataclass
class _Pending:
    """One image's figure between its scoring and the end of the set."""

    index: int
    badness: float
    figure: ImageFigure
    files: dict[str, bytes] = field(default_factory=dict)  # written at the end (worst N) or at once
    errors: dict[str, _Packed] = field(default_factory=dict)
    error_cells: list[tuple[str, str] | None] = field(default_factory=list)  # (model, title) per column
    samples: np.ndarray | None = None
    units: str = ""


@dataclass
class SetFigures:
    """What every figure of one set shares; known before scoring."""

    task: Task
    metrics: MetricSet
    out_dir: Path
    models: list[str]
    labels: dict[str, str]
    baseline: str | None = None
    error_scale: str = "set"  # or "image"

    @property
    def ranked(self) -> tuple[str, str]:
        """(model, metric) that ranks the images: the first metric, of the network if there is one."""
        return next((m for m in self.models if m != self.baseline), self.models[0]), self.metrics.names[0]

    def title(self, model: str, scores: dict[str, dict[str, float]]) -> str:
        metric = self.metrics.names[0]
        unit = self.metrics.unit(metric)
        return f"{self.labels.get(model, model)}: {metric} {scores[model][metric]:.4g}{f' {unit}' if unit else ''}"


class FigureWriter:
    """Called (`__call__`) for every scored image from the scoring's writer threads; `finish`
    completes the figures once the set is scored and returns them worst first."""

    def __init__(self, context: SetFigures, policy: FigurePolicy) -> None:
        self.context, self.policy = context, policy
        self.lock = threading.Lock()
        self.kept: list[tuple[float, int, _Pending]] = []  # a heap: the least bad on top (worst N)
        self.samples: list[np.ndarray] = []
        self.packed_bytes = 0

    def _badness(self, scores: dict[str, dict[str, float]]) -> float:
        model, metric = self.context.ranked
        value = scores[model][metric]
        if not math.isfinite(value):
            return -math.inf
        return -value if self.context.metrics.higher_is_better(metric) else value

    def __call__(self, index: int, panels: dict[str, np.ndarray], meta: dict[str, Any],
                 scores: dict[str, dict[str, float]]) -> None:
        if self.policy.mode == "none":
            return
        badness = self._badness(scores)
        if self.policy.mode == "worst":
            with self.lock:
                full = len(self.kept) >= self.policy.count
                if full and (badness, -index) <= (self.kept[0][0], -self.kept[0][1]):
                    return  # not among the worst so far: nothing to draw
        pending = self._draw(index, badness, panels, meta, scores)
        if self.policy.mode == "all":
            for relative, data in pending.files.items():
                _write(self.context.out_dir, relative, data)
            pending.files = {}
        with self.lock:
            heapq.heappush(self.kept, (badness, -index, pending))  # indices are unique: no tie reaches `pending`
            if self.policy.mode == "worst" and len(self.kept) > self.policy.count:
                heapq.heappop(self.kept)

    def _draw(self, index: int, badness: float, panels: dict[str, np.ndarray], meta: dict[str, Any],
              scores: dict[str, dict[str, float]]) -> _Pending:
        context = self.context
        display = context.task.display(panels, meta)
        name = str(meta["name"])
        if display.maps:
            return self._draw_maps(index, badness, name, panels, display, meta, scores)
        gt = display.images["GT"]
        height, width = gt.shape[:2]
        pending = _Pending(index, badness, ImageFigure(name, index, [], width, height))
        views = pending.figure.views
        if context.task.scale > 1 and "LQ" in display.images:
            lq = display.images["LQ"]
            relative = f"figures/LQ/{name}.png"
            pending.files[relative] = rgb_png(lq)
            views.append(View(f"LQ {lq.shape[1]}x{lq.shape[0]} (x{context.task.scale})", relative, 0, 0,
                              lq.shape[1], lq.shape[0]))
        for model in context.models:
            relative = f"figures/{model}/{name}.png"
            pending.files[relative] = rgb_png(display.images[model])
            views.append(View(context.title(model, scores), relative, 0, 0, width, height))
        pending.files[f"figures/GT/{name}.png"] = rgb_png(gt)
        views.append(View("GT", f"figures/GT/{name}.png", 0, 0, width, height))
        return pending

    def _draw_maps(self, index: int, badness: float, name: str, panels: dict[str, np.ndarray], display: Any,
                   meta: dict[str, Any], scores: dict[str, dict[str, float]]) -> _Pending:
        context, task = self.context, self.context.task
        maps = display.maps
        height, width = maps["GT"].shape
        errors: dict[str, np.ndarray] = {}
        units = ""
        for model in context.models:
            found = task.error_map(panels[model], panels["GT"], meta)
            if found is not None:
                errors[model], units = found
        notes = []
        window = (slice(None), slice(None))
        if max(height, width) > FULL_SIZE_LIMIT:  # a crop of the worst region of the ranked model
            size = min(CROP_SIZE, max(height, width))
            ranked = context.ranked[0] if context.ranked[0] in errors else next(iter(errors), None)
            top, left = worst_window(errors[ranked] if ranked else np.zeros((height, width), np.float32), size)
            window = (slice(top, top + size), slice(left, left + size))
            notes.append(f"crop {min(size, width)}x{min(size, height)} at x={left}, y={top} of the {width}x{height} "
                         "map: the window with the largest error")

        def crop(plane: np.ndarray) -> np.ndarray:
            return nearest_resize(plane, height, width)[window]

        cells: list[Cell | None] = []
        error_cells: list[tuple[str, str] | None] = []
        lq = maps.get("LQ")
        if lq is not None:
            cells.append(Cell("LQ", f"LQ {lq.shape[1]}x{lq.shape[0]} (x{task.scale})", crop(lq)))
            error_cells.append(None)
        for model in context.models:
            cells.append(Cell(model, context.title(model, scores), crop(maps[model])))
            error_cells.append((model, f"|{context.labels.get(model, model)} - GT|") if model in errors else None)
        cells.append(Cell("GT", f"GT {width}x{height}", crop(maps["GT"])))
        error_cells.append(None)
        composite = compose([Row(cells, display.legend)])
        relative = f"figures/{name}.png"
        shown_h, shown_w = cells[-1].shape
        pending = _Pending(index, badness, ImageFigure(name, index, [], shown_w, shown_h, notes, relative),
                           files={relative: composite.png()}, error_cells=error_cells, units=units)
        pending.figure.views = [View(cell.title, relative, *composite.cells[cell.key]) for cell in cells if cell]
        for label, image in display.images.items():  # context photos (the guide of guided depth SR)
            shown = nearest_resize(image, height, width)[window]
            photo = f"figures/{label}/{name}.jpg"
            pending.files[photo] = jpeg(shown)
            pending.figure.views.insert(0, View(label, photo, 0, 0, shown.shape[1], shown.shape[0]))
        if errors:
            compress = self.packed_bytes > PACKED_BUDGET
            pending.errors = {model: _Packed.pack(error[window], compress) for model, error in errors.items()}
            strided = np.concatenate([e.ravel()[:: max(1, e.size // ERROR_SAMPLES)] for e in errors.values()])
            pending.samples = strided[np.isfinite(strided)]
            with self.lock:
                self.samples.append(pending.samples)
                self.packed_bytes += sum(p.nbytes for p in pending.errors.values())
        return pending

    def set_error_high(self) -> float | None:
        """The set's error scale: the `ERROR_PERCENTILE` of every sampled error, rounded up."""
        if not self.samples:
            return None
        return nice_ceiling(float(np.percentile(np.concatenate(self.samples), ERROR_PERCENTILE)))

    def finish(self) -> list[ImageFigure]:
        """Write what waited for the end (the worst N's files, every error figure); worst first."""
        high = self.set_error_high()
        ordered = [pending for _, _, pending in sorted(self.kept, key=lambda k: (k[0], k[1]), reverse=True)]

        def complete(pending: _Pending) -> ImageFigure:
            for relative, data in pending.files.items():
                _write(self.context.out_dir, relative, data)
            if pending.errors:
                self._draw_errors(pending, high)
            return pending.figure

        # Independent figures; the encoders release the GIL, so threads use every core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="restore-figures") as pool:
            return list(pool.map(complete, ordered))

    def _draw_errors(self, pending: _Pending, set_high: float | None) -> None:
        unit = f" ({pending.units})" if pending.units else ""
        if self.context.error_scale == "image" or set_high is None:
            samples = pending.samples if pending.samples is not None else np.zeros(0)
            high = nice_ceiling(float(np.percentile(samples, ERROR_PERCENTILE))) if samples.size else 1.0
            label = f"|error|{unit}, 0 to {high:.4g}: {ERROR_PERCENTILE:g}th percentile of this image's errors"
        else:
            high = set_high
            label = (f"|error|{unit}, 0 to {high:.4g}: {ERROR_PERCENTILE:g}th percentile of the set's errors "
                     "(one scale for every image)")
        cells = [None if spec is None else Cell(spec[0], spec[1], levels=pending.errors[spec[0]].levels(high))
                 for spec in pending.error_cells]
        composite = compose([Row(cells, Legend(0.0, high, "inferno", label))])
        relative = _write(self.context.out_dir, f"figures/errors/{pending.figure.name}.png", composite.png())
        pending.figure.views += [View(cell.title, relative, *composite.cells[cell.key]) for cell in cells if cell]
        pending.figure.notes.append(f"error maps: {label}")
        pending.errors = {}
