"""The Task interface: how LQ is made from GT, what the data look like, how results are scored.

A task turns arrays read from disk (``restore.data.io``) into *network space* (float32 HWC,
usually [0, 1]) and back into *data units* (uint8 images, depth in its own units) for metrics
and saving. The core's datasets, validation and test runner call only these methods, so a new
task is one class registered with ``@register_task``.

Most tasks' network space is the plain unit range: `to_pixels` (a per-pixel conversion that keeps
the dtype, such as gray to RGB or RGB to Y) followed by `to_unit_range`. Such a task keeps
``unit_range = True``, and training datasets then crop and flip the integer arrays as read,
convert only the patch, and hand it over as uint8/uint16 for `restore.data.paired.batch_to_device`
to divide on the device. A task that maps data otherwise (depth's per-image min/max) sets
``unit_range = False`` and gets whole images through `prepare`; overriding `prepare`,
`to_network` or `guide_to_network` without declaring ``unit_range`` implies False.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from restore.data.io import read_array, write_image
from restore.errors import DataError
from restore.registry import TASKS
from restore.report.render import Legend

T = TypeVar("T")


@dataclass
class Sample:
    """One image pair in network space (HWC float32) plus what is needed to undo the mapping."""

    gt: np.ndarray | None
    lq: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    guide: np.ndarray | None = None  # RGB at GT size (guided depth SR)


@dataclass
class Display:
    """How a task wants one image's panels shown in reports: `images` are RGB uint8 pictures
    shown as they are; `maps` are HxW float maps (NaN = no data) coloured with `legend`."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    legend: Legend | None = None


def register_task(obj: T | None = None, *, name: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    return TASKS.register(obj, name=name, aliases=aliases)


def mod_crop(img: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `multiple`."""
    if multiple <= 1:
        return img
    h, w = img.shape[:2]
    return img[: h - h % multiple, : w - w % multiple]


def to_unit_range(img: np.ndarray) -> np.ndarray:
    """float32 copy of `img`; 8- and 16-bit integers are divided by their maximum."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


def gray_to_rgb(img: np.ndarray) -> np.ndarray:
    """An HxWx1 array repeated to HxWx3 (by OpenCV where it can: numpy's repeat is 5-10x slower)."""
    if img.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return np.repeat(img, 3, axis=2)


def quantize_uint8(img: np.ndarray, mode: str = "round") -> np.ndarray:
    """[0, 1] floats to uint8: ``round`` (BasicSR, SRFBN) or ``truncate`` (CARN/DRRN scripts)."""
    scaled = np.clip(img, 0.0, 1.0) * 255.0
    if mode == "round":
        scaled = np.round(scaled)
    elif mode == "truncate":
        scaled = np.floor(scaled)
    else:
        raise ValueError(f"quantize must be 'round' or 'truncate', got {mode!r}")
    return scaled.astype(np.uint8)


class Task:
    """Base class: 8-bit images scaled to [0, 1]; subclasses define the degradation.

    Class attributes a subclass sets: ``scale`` (output/input size ratio), ``in_chans`` and
    ``out_chans`` (channels the network sees), ``baseline`` (options of the model every results
    table shows next to the trained one, e.g. bicubic for SR).
    """

    scale: int = 1
    in_chans: int = 3
    out_chans: int = 3
    baseline: dict[str, Any] = {"type": "Identity"}
    #: Network space = `to_unit_range(to_pixels(raw))`, pixel by pixel (see the module docstring).
    unit_range: bool = True
    baseline_label: str | None = None  # how reports name the baseline (default: its arch type)
    saved_as: str = "8-bit PNG"  # what `save_output` writes, as reports state it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_mapping = any(name in cls.__dict__ for name in ("prepare", "to_network", "guide_to_network"))
        if own_mapping and "unit_range" not in cls.__dict__:
            cls.unit_range = False  # the fast path's assumption may not hold: do as the class says

    def baseline_name(self) -> str:
        """The baseline's name in tables and figures, e.g. "Bicubic" or "noisy input"."""
        return self.baseline_label or str(self.baseline["type"])

    def at_scale(self, scale: int) -> Task:
        """This task at another scale (multi-scale training and evaluation)."""
        if scale == self.scale:
            return self
        other = copy.copy(self)
        other.scale = scale
        return other

    # -- reading and network space -----------------------------------------------------------
    def read(self, path: Path) -> np.ndarray:
        """Read one file from disk as an HWC array in its own dtype."""
        return read_array(path)

    def prepare(self, gt: np.ndarray | None, lq: np.ndarray | None, *, name: str,
                source: Path | None = None) -> Sample:
        """Raw arrays (as read) to network space; GT is cropped to a multiple of the scale.
        `source` is the file the sample was read from (GT, else LQ) when there is one: tasks that
        save outputs in their input's format (depth maps) record it in the meta."""
        gt_f = None if gt is None else self.to_network(mod_crop(gt, self.scale), name=name)
        lq_f = None if lq is None else self.to_network(lq, name=name)
        if gt_f is not None and lq_f is not None:
            self.check_lq_size(gt_f.shape[:2], lq_f.shape[:2], name)
        return Sample(gt_f, lq_f, {"name": name})

    def lq_size(self, gt_hw: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) an LQ must have for a GT of `gt_hw` (cropped to a multiple of the scale or not)."""
        return gt_hw[0] // self.scale, gt_hw[1] // self.scale

    def check_lq_size(self, gt_hw: tuple[int, ...], lq_hw: tuple[int, ...], name: str) -> None:
        """An LQ read from disk must be the (cropped) GT's size divided by the scale."""
        expected = self.lq_size(gt_hw)
        if tuple(lq_hw) != expected:
            raise DataError(f"{name}: LQ is {lq_hw[1]}x{lq_hw[0]} but GT {gt_hw[1]}x{gt_hw[0]} "
                            f"at scale {self.scale} needs LQ {expected[1]}x{expected[0]}.")

    def to_pixels(self, img: np.ndarray, *, name: str) -> np.ndarray:
        """One raw array (or a patch of it) in the network's channels, pixel by pixel, its dtype family
        kept: a gray image is repeated to RGB. Subclasses add per-pixel conversions (colour spaces)."""
        channels = img.shape[2]
        if channels == self.in_chans:
            return img
        if channels == 1 and self.in_chans == 3:
            return gray_to_rgb(img)
        raise DataError(f"{name}: has {channels} channel(s) but this task needs {self.in_chans}.")

    def to_network(self, img: np.ndarray, *, name: str) -> np.ndarray:
        """One raw array to float32 network space: integers are divided by their maximum."""
        return to_unit_range(self.to_pixels(img, name=name))

    def guide_to_pixels(self, img: np.ndarray, *, name: str) -> np.ndarray:
        """A guide image (the RGB photo of guided depth SR) as RGB, pixel by pixel, dtype kept."""
        if img.shape[2] == 1:
            return gray_to_rgb(img)
        if img.shape[2] != 3:
            raise DataError(f"{name}: a guide image needs 1 or 3 channels, this one has {img.shape[2]}.")
        return img

    def guide_to_network(self, img: np.ndarray, *, name: str) -> np.ndarray:
        """A guide image to network space: RGB floats in [0, 1]."""
        return to_unit_range(self.guide_to_pixels(img, name=name))

    def degrade(self, gt: np.ndarray, *, rng: np.random.Generator, train: bool, scale: int | None = None) -> np.ndarray:
        """Make the LQ input from a GT array in network space. `scale` overrides the task's
        (multi-scale training). Tasks that only read LQ from disk need not implement it."""
        raise DataError(f"{type(self).__name__} cannot make LQ from GT; give the dataset a dataroot_lq.")

    # -- results ---------------------------------------------------------------------------
    def to_data(self, img: np.ndarray, meta: dict[str, Any], quantize: str = "round") -> np.ndarray:
        """A network-space output (or GT) back to data units for metrics and saving."""
        return quantize_uint8(img, quantize)

    def metric_context(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Extra keyword arguments the task's metrics need (e.g. a validity mask)."""
        return {}

    def default_metrics(self) -> dict[str, dict[str, Any]]:
        """Metric options used when the option file names none."""
        return {
            "psnr": {"type": "psnr", "crop_border": self.scale, "test_y_channel": self.in_chans == 3},
            "ssim": {"type": "ssim", "crop_border": self.scale, "test_y_channel": self.in_chans == 3},
        }

    def save_output(self, data: np.ndarray, stem: Path, meta: dict[str, Any]) -> Path:
        """Write one restored result in data units, losslessly (reports read it back to draw
        figures); returns the written path. `stem` is the path without extension."""
        return write_image(Path(f"{stem}.png"), data)

    def display(self, panels: dict[str, np.ndarray], meta: dict[str, Any]) -> Display:
        """How reports show one image: `panels` maps labels (``LQ``, each model, ``GT``, and
        ``Guide`` when the dataset has guide images) to data-unit arrays. By default 8-bit
        images are shown as they are (gray as RGB)."""
        return Display(images={label: _rgb(img) for label, img in panels.items()})

    def error_map(self, output: np.ndarray, gt: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, str] | None:
        """(|output - GT| as an HxW float map in reported units, NaN where not scored; the units),
        for tasks whose reports draw error maps on one scale per test set; None for none."""
        return None

    def describe(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, channels={self.in_chans})"


def _rgb(img: np.ndarray) -> np.ndarray:
    """An 8-bit HWC image as RGB (gray repeated); other dtypes are scaled to 0..255."""
    if img.dtype != np.uint8:
        img = quantize_uint8(to_unit_range(img))
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]
