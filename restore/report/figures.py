"""Per-image figures of a test set, drawn after scoring from the saved outputs.

Which images get one is the `FigurePolicy` (``--figures none|worst N|all``); the worst come
first, ranked by the set's first metric for the network (or the baseline when it is alone).
Tasks that show scalar maps (depth) get one indexed PNG per image: the maps in one row, every
model's error map under it on **one error scale for the whole set** (a high percentile of all
sampled errors, stated on the colour bar; per image with ``error_scale="image"``), at full
resolution, or as a crop of the worst region for large images. Photographic tasks show their
8-bit images as they are. Every figure also yields `View`s, the rectangles index.html shows
side by side with a synchronised zoom. Drawing runs in threads (the encoders release the GIL)
while the main thread reads the next image.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restore.data.io import read_array
from restore.errors import OptionError
from restore.evaluation import EvalResults, panels_of, writer_threads
from restore.metrics import MetricSet
from restore.paths import inside
from restore.report.render import Cell, Legend, Row, compose, jpeg, nearest_resize, rgb_png, worst_window
from restore.tasks import Task

FULL_SIZE_LIMIT = 1024  # maps wider or taller than this are shown as a crop of their worst region
CROP_SIZE = 512
ERROR_PERCENTILE = 99.0


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

    def pick(self, worst_first: list[int]) -> list[int]:
        if self.mode == "none":
            return []
        return worst_first if self.mode == "all" else worst_first[: self.count]

    def __str__(self) -> str:
        return f"worst {self.count}" if self.mode == "worst" else self.mode


def ranking(results: EvalResults, metrics: MetricSet, baseline: str | None) -> tuple[str, str, list[int]]:
    """(model, metric, image indices worst first): the set's first metric, for the first model that
    is not the baseline (or the baseline when it is alone); images without a score come last."""
    model = next((m for m in results.models if m != baseline), results.models[0])
    metric = results.metric_names[0]
    values = results.values[model][metric]
    sign = 1.0 if metrics.higher_is_better(metric) else -1.0
    order = sorted(range(len(values)),
                   key=lambda i: (not math.isfinite(values[i]), sign * values[i] if math.isfinite(values[i]) else 0.0))
    return model, metric, order


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
    figure: str | None = None  # the composite PNG, relative to the set's folder


def nice_ceiling(value: float) -> float:
    """`value` rounded up to two significant digits (a readable colour-bar end)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return math.ceil(value / step - 1e-9) * step


@dataclass
class FigureSettings:
    """What every figure of one set shares."""

    task: Task
    results: EvalResults
    metrics: MetricSet
    out_dir: Path
    error_scale: str = "set"  # or "image"
    set_error_high: float | None = None
    baseline: str | None = None


def _title(settings: FigureSettings, model: str, index: int) -> str:
    results, metric = settings.results, settings.results.metric_names[0]
    unit = settings.metrics.unit(metric)
    value = results.values[model][metric][index]
    return f"{results.label(model)}: {metric} {value:.4g}{f' {unit}' if unit else ''}"


def _write(out_dir: Path, relative: str, data: bytes) -> str:
    """Write a report file whole (temporary name, then rename). Not fsynced: figures can be drawn
    again, and a sync per file would cost more than drawing it."""
    path = inside(out_dir, *relative.split("/"), what="figure file")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return relative


def draw(settings: FigureSettings, index: int, panels: dict[str, np.ndarray], meta: dict[str, Any]) -> ImageFigure:
    """Draw and write the figure of one image (`panels` in data units, outputs included)."""
    display = settings.task.display(panels, meta)
    if display.maps:
        return _draw_maps(settings, index, panels, display, meta)
    return _draw_images(settings, index, display)


def _draw_images(settings: FigureSettings, index: int, display: Any) -> ImageFigure:
    """8-bit images: the saved outputs as they are, LR input (SR) and GT written beside them."""
    results, task = settings.results, settings.task
    name = results.images[index]
    gt = display.images["GT"]
    height, width = gt.shape[:2]
    views = []
    if task.scale > 1 and "LQ" in display.images:
        lq = display.images["LQ"]
        src = _write(settings.out_dir, f"figures/LQ/{name}.png", rgb_png(lq))
        views.append(View(f"LQ {lq.shape[1]}x{lq.shape[0]} (x{task.scale})", src, 0, 0, lq.shape[1], lq.shape[0]))
    for model in results.models:
        saved = results.saved.get(name, {}).get(model)
        if saved is not None and saved.suffix.lower() == ".png":
            src = saved.relative_to(settings.out_dir).as_posix()
        else:
            src = _write(settings.out_dir, f"figures/{model}/{name}.png", rgb_png(display.images[model]))
        views.append(View(_title(settings, model, index), src, 0, 0, width, height))
    views.append(View("GT", _write(settings.out_dir, f"figures/GT/{name}.png", rgb_png(gt)), 0, 0, width, height))
    return ImageFigure(name, index, views, width, height)


def _draw_maps(settings: FigureSettings, index: int, panels: dict[str, np.ndarray], display: Any,
               meta: dict[str, Any]) -> ImageFigure:
    results, task = settings.results, settings.task
    name = results.images[index]
    maps, legend = display.maps, display.legend
    height, width = maps["GT"].shape
    errors: dict[str, np.ndarray] = {}
    units = ""
    for model in results.models:
        found = task.error_map(panels[model], panels["GT"], meta)
        if found is not None:
            errors[model], units = found
    notes = []
    top = left = 0
    if max(height, width) > FULL_SIZE_LIMIT:  # a crop of the worst region of the ranked model
        size = min(CROP_SIZE, max(height, width))
        ranked = next((m for m in errors if m != settings.baseline), next(iter(errors), None))
        top, left = worst_window(errors[ranked] if ranked else np.zeros((height, width), np.float32), size)
        notes.append(f"crop {min(size, width)}x{min(size, height)} at x={left}, y={top} of the {width}x{height} "
                     "map: the window with the largest error")
    window = (slice(top, top + CROP_SIZE), slice(left, left + CROP_SIZE)) if notes else (slice(None), slice(None))

    def crop(plane: np.ndarray) -> np.ndarray:
        return nearest_resize(plane, height, width)[window]

    row_maps: list[Cell | None] = []
    row_errors: list[Cell | None] = []
    lq = maps.get("LQ")
    if lq is not None:
        row_maps.append(Cell("LQ", f"LQ {lq.shape[1]}x{lq.shape[0]} (x{task.scale})", crop(lq)))
        row_errors.append(None)
    for model in results.models:
        row_maps.append(Cell(model, _title(settings, model, index), crop(maps[model])))
        row_errors.append(Cell(f"error:{model}", f"|{results.label(model)} - GT|", crop(errors[model]))
                          if model in errors else None)
    row_maps.append(Cell("GT", f"GT {width}x{height}", crop(maps["GT"])))
    rows = [Row(row_maps, legend)]
    if errors:
        error_legend = _error_legend(settings, errors, units)
        rows.append(Row(row_errors, error_legend))
        notes.append(f"error maps: {error_legend.label}")
    composite = compose(rows)
    figure = _write(settings.out_dir, f"figures/{name}.png", composite.png())
    views = [View(cell.title, figure, *composite.cells[cell.key]) for row in rows for cell in row.cells
             if cell is not None]
    for label, image in display.images.items():  # context photos (the guide of guided depth SR)
        shown = nearest_resize(image, height, width)[window]
        src = _write(settings.out_dir, f"figures/{label}/{name}.jpg", jpeg(shown))
        views.insert(0, View(label, src, 0, 0, shown.shape[1], shown.shape[0]))
    shown_h, shown_w = crop(maps["GT"]).shape
    return ImageFigure(name, index, views, shown_w, shown_h, notes, figure)


def _error_legend(settings: FigureSettings, errors: Mapping[str, np.ndarray], units: str) -> Legend:
    unit = f" ({units})" if units else ""
    if settings.error_scale == "image" or settings.set_error_high is None:
        values = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()])
        high = nice_ceiling(float(np.percentile(values, ERROR_PERCENTILE)) if values.size else 1.0)
        return Legend(0.0, high, "inferno", f"|error|{unit}, 0 to {high:.4g}: {ERROR_PERCENTILE:g}th percentile "
                      "of this image's errors")
    high = settings.set_error_high
    return Legend(0.0, high, "inferno", f"|error|{unit}, 0 to {high:.4g}: {ERROR_PERCENTILE:g}th percentile of "
                  "the set's errors (one scale for every image)")


def write_figures(settings: FigureSettings, dataset: Any, chosen: list[int], *, quantize: str,
                  progress: bool = True) -> list[ImageFigure]:
    """Draw the figures of the `chosen` images (in that order) from `dataset` and the saved outputs."""
    from tqdm import tqdm

    high = settings.results.error_percentile(ERROR_PERCENTILE)
    settings.set_error_high = None if high is None else nice_ceiling(high)
    futures: list[Future] = []
    with ThreadPoolExecutor(max_workers=writer_threads(), thread_name_prefix="restore-figures") as pool:
        for index in tqdm(chosen, desc=f"figures {settings.results.dataset}", unit="img", leave=False,
                          disable=not progress or len(chosen) < 2):
            item = dataset[index]
            panels = panels_of(item, settings.task, quantize)
            name = settings.results.images[index]
            for model in settings.results.models:
                panels[model] = read_array(settings.results.saved[name][model])
            futures.append(pool.submit(draw, settings, index, panels, item["meta"]))
            while sum(not f.done() for f in futures) > 2 * writer_threads():  # bounded backlog
                next(f for f in futures if not f.done()).result()
        return [f.result() for f in futures]
