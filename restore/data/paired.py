"""Paired GT/LQ datasets and the resumable training sampler.

Every random choice of a training sample (crop, flips, the task's degradation) comes from an
RNG seeded by the sample's position in an endless, epoch-wise shuffled stream. A sample is
therefore a pure function of (seed, position): the same for any number of workers or processes,
for a folder and the LMDB made from it, and after a resume from any iteration.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from restore.errors import DataError
from restore.tasks import Sample, Task


class SampleKey(NamedTuple):
    index: int  # which image
    position: int  # place in the endless training stream (seeds the sample's randomness)
    scale: int | None  # scale drawn for this batch (multi-scale training)


def name_seed(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by (seed, image name): test-time degradations are reproducible."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC float32 array to a CHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class PairedImageDataset(Dataset):
    """GT images (folder, LMDB or ``skimage:`` photos) with LQ read from disk or made by the task.

    dataroot_gt / dataroot_lq: sources (``dataroot_lq: ~`` = the task degrades GT on the fly).
    dataroot_guide: guide images at GT size (the RGB photos of guided depth SR), keyed like GT
        after the substring replacements of `guide_replace` (e.g. ``{_depth: _color}``).
    io_backend: ``{type: disk|lmdb|auto}`` as in BasicSR (LMDB also takes ``readahead: false``).
    meta_info_file: BasicSR list of GT names restricting a folder.
    filename_tmpl: LQ key from the GT key, e.g. ``'{}x2'`` for Set5's ``LR_bicubic/X2``.
    lq_replace: substring replacements turning a GT key into its LQ key, applied before
        `filename_tmpl` (``{_HR: _LR}`` for SelfExSR's ``img_001_SRF_4_HR`` / ``img_001_SRF_4_LR``).
    gt_size / lq_size: training patch size (give one; ``lq_size`` suits multi-scale training).
    scales: training scales drawn per batch (multi-scale nets); evaluation uses the task's scale.
    """

    def __init__(
        self,
        task: Task,
        phase: str,
        seed: int,
        dataroot_gt: str,
        dataroot_lq: str | None = None,
        io_backend: dict[str, str | bool] | None = None,
        meta_info_file: str | None = None,
        filename_tmpl: str = "{}",
        gt_size: int | None = None,
        lq_size: int | None = None,
        use_hflip: bool = True,
        use_rot: bool = True,
        scales: list[int] | None = None,
        dataroot_guide: str | None = None,
        guide_replace: dict[str, str] | None = None,
        lq_replace: dict[str, str] | None = None,
    ) -> None:
        from restore.data.sources import open_source

        self.task, self.phase, self.seed = task, phase, seed
        io_backend = dict(io_backend or {})
        backend, readahead = str(io_backend.pop("type", "auto")), bool(io_backend.pop("readahead", True))
        if io_backend:
            raise DataError(f"datasets.{phase}.io_backend: unknown key(s) {', '.join(io_backend)} (type, readahead).")
        self.gt = open_source(dataroot_gt, backend=backend, meta_info_file=meta_info_file, read_file=task.read,
                              readahead=readahead)
        self.lq = None if dataroot_lq is None else open_source(dataroot_lq, backend=backend, read_file=task.read,
                                                               readahead=readahead)
        self.filename_tmpl = filename_tmpl
        self.lq_replace = dict(lq_replace or {})
        self.keys = self.gt.keys()
        self.guide = None if dataroot_guide is None else open_source(dataroot_guide, readahead=readahead)
        self.guide_replace = dict(guide_replace or {})
        self._check_partner(self.lq, "LQ", self.lq_key, f"map GT names to LQ names with filename_tmpl "
                            f"'{filename_tmpl}' and lq_replace")
        self._check_partner(self.guide, "guide", self.guide_key, "map GT names to guide names with guide_replace")
        if gt_size is not None and lq_size is not None:
            raise DataError(f"datasets.{phase}: give gt_size or lq_size, not both.")
        self.gt_size, self.lq_size = gt_size, lq_size
        self.use_hflip, self.use_rot = use_hflip, use_rot
        self.scales = list(scales) if scales else None
        self._tasks: dict[int, Task] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def task_at(self, scale: int | None) -> Task:
        if scale is None or scale == self.task.scale:
            return self.task
        return self._tasks.setdefault(scale, self.task.at_scale(scale))

    def _check_partner(self, source, what: str, key_of, hint: str) -> None:
        """Every GT key has its LQ (or guide) image in `source`, else a DataError naming the first."""
        if source is None:
            return
        present = set(source.keys())
        missing = [k for k in self.keys if key_of(k) not in present]
        if missing:
            raise DataError(f"{source.root}: no {what} image for GT {', '.join(missing[:5])} "
                            f"(looked for '{key_of(missing[0])}'; {hint}).")

    def guide_key(self, key: str) -> str:
        return _replaced(key, self.guide_replace)

    def lq_key(self, key: str) -> str:
        return self.filename_tmpl.format(_replaced(key, self.lq_replace))

    def load(self, index: int, task: Task) -> Sample:
        """Read one pair (and its guide) and bring it to network space (no crop, no degradation yet)."""
        key = self.keys[index]
        gt = self.gt.read(key)
        lq = None if self.lq is None else self.lq.read(self.lq_key(key))
        path_of = getattr(self.gt, "path", None)  # folders know their files; LMDBs and skimage: do not
        sample = task.prepare(gt, lq, name=key, source=path_of(key) if path_of else None)
        if self.guide is not None:
            sample.guide = self._load_guide(key, sample, task.scale)
        return sample

    def _load_guide(self, key: str, sample: Sample, scale: int) -> np.ndarray:
        """The guide in network space, cropped like GT (to a multiple of the scale)."""
        guide_key = self.guide_key(key)
        where = self.guide.describe(guide_key)
        guide = self.task.guide_to_network(self.guide.read(guide_key), name=where)
        h, w = sample.gt.shape[:2] if sample.gt is not None else (sample.lq.shape[0] * scale,
                                                                   sample.lq.shape[1] * scale)
        gh, gw = guide.shape[:2]
        if not (0 <= gh - h < scale and 0 <= gw - w < scale):  # GT may have lost < scale rows to mod-crop
            raise DataError(f"{where}: the guide is {gw}x{gh} but its depth map {key} is {w}x{h}; "
                            "a guide must have the GT's size.")
        return guide[:h, :w]

    def __getitem__(self, item: int | SampleKey) -> dict[str, Any]:
        if isinstance(item, SampleKey):
            return self._training_sample(item)
        return self._evaluation_sample(int(item))

    def _training_sample(self, key: SampleKey) -> dict[str, Any]:
        task = self.task_at(key.scale)
        scale = task.scale
        rng = np.random.default_rng([self.seed, key.position])
        sample = self.load(key.index, task)
        gt, lq, guide = self._random_crop(sample, scale, rng)
        gt, lq, guide = self._augment(gt, lq, guide, rng)
        if lq is None:
            lq = task.degrade(gt, rng=rng, train=True, scale=scale)
        item = {"lq": to_tensor(lq), "gt": to_tensor(gt), "scale": scale}
        return item if guide is None else {**item, "guide": to_tensor(guide)}

    def _random_crop(self, sample: Sample, scale: int, rng: np.random.Generator):
        gt, lq, guide = sample.gt, sample.lq, sample.guide
        if self.gt_size is None and self.lq_size is None:
            return gt, lq, guide
        lq_patch = self.lq_size if self.lq_size is not None else self.gt_size // scale
        if self.gt_size is not None and self.gt_size % scale:
            raise DataError(f"datasets.{self.phase}.gt_size {self.gt_size} is not a multiple of the scale {scale}.")
        gt_patch = lq_patch * scale
        h, w = gt.shape[:2]
        if h < gt_patch or w < gt_patch:
            raise DataError(
                f"{self.gt.describe(sample.meta['name'])}: {w}x{h} is smaller than the training patch "
                f"{gt_patch}x{gt_patch}; lower gt_size/lq_size or drop the image."
            )
        top = int(rng.integers(0, h // scale - lq_patch + 1))
        left = int(rng.integers(0, w // scale - lq_patch + 1))
        rows, cols = slice(top * scale, top * scale + gt_patch), slice(left * scale, left * scale + gt_patch)
        gt = gt[rows, cols]
        guide = None if guide is None else guide[rows, cols]
        if lq is not None:
            lq = lq[top : top + lq_patch, left : left + lq_patch]
        return gt, lq, guide

    def _augment(self, gt: np.ndarray, lq: np.ndarray | None, guide: np.ndarray | None, rng: np.random.Generator):
        hflip = self.use_hflip and rng.random() < 0.5
        vflip = self.use_rot and rng.random() < 0.5
        transpose = self.use_rot and rng.random() < 0.5

        def apply(img: np.ndarray | None) -> np.ndarray | None:
            if img is None:
                return None
            if hflip:
                img = img[:, ::-1]
            if vflip:
                img = img[::-1]
            if transpose:
                img = img.transpose(1, 0, 2)
            return np.ascontiguousarray(img)

        return apply(gt), apply(lq), apply(guide)

    def _evaluation_sample(self, index: int) -> dict[str, Any]:
        sample = self.load(index, self.task)
        lq = sample.lq
        if lq is None:
            lq = self.task.degrade(sample.gt, rng=name_seed(self.seed, sample.meta["name"]), train=False,
                                   scale=self.task.scale)
        item = {"lq": lq, "gt": sample.gt, "meta": sample.meta, "name": sample.meta["name"]}
        return item if sample.guide is None else {**item, "guide": sample.guide}


def _replaced(key: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        key = key.replace(old, new)
    return key


def batch_to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """A collated training batch on `device`, images as float32 network-space tensors (the trainer's
    one entry point for batches: datasets may hand over cheaper dtypes and convert here)."""
    non_blocking = getattr(device, "type", str(device)) == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) and v.ndim == 4 else v
            for k, v in batch.items()}


class TrainBatchSampler:
    """Endless batches of `SampleKey`s for one process, resumable at any batch.

    The stream is epoch-wise shuffled with `seed`; process `rank` of `num_replicas` takes its
    slice of each global batch, so all processes together see what one process would.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, *, num_replicas: int = 1, rank: int = 0,
                 enlarge_ratio: int = 1, scales: Sequence[int] | None = None, start_batch: int = 0) -> None:
        if num_items == 0:
            raise DataError("the training dataset is empty.")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch_length = num_items * enlarge_ratio
        self.scales = list(scales) if scales else None
        self.start_batch = start_batch
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.epoch_length)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.epoch_length)
        return int(self._perm[offset]) % self.num_items

    def batch(self, batch_index: int) -> list[SampleKey]:
        global_batch = self.batch_size * self.num_replicas
        first = batch_index * global_batch + self.rank * self.batch_size
        scale = None
        if self.scales:
            scale = self.scales[int(np.random.default_rng([self.seed, batch_index, 1]).integers(len(self.scales)))]
        return [SampleKey(self._index_at(p), p, scale) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batch_index = self.start_batch
        while True:
            yield self.batch(batch_index)
            batch_index += 1
