"""Paired GT/LQ datasets and the resumable training sampler.

Every random choice of a training sample (crop, flips, the task's degradation) comes from an
RNG seeded by the sample's position in an endless, epoch-wise shuffled stream. A sample is
therefore a pure function of (seed, position): the same for any number of workers or processes,
for a folder and the LMDB made from it, and after a resume from any iteration.

Training samples of tasks whose network space is the plain unit range (``Task.unit_range``) are
cropped and flipped as read, before any conversion, and handed over as uint8/uint16 tensors:
`batch_to_device` divides them on the device, giving the float32 values the whole-image path
gives, to the bit. Other tasks' samples are prepared whole and handed over as float32.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from restore.data.io import contiguous_array, read_array
from restore.errors import DataError
from restore.tasks import Sample, Task, to_unit_range


class SampleKey(NamedTuple):
    index: int  # which image
    position: int  # place in the endless training stream (seeds the sample's randomness)
    scale: int | None  # scale drawn for this batch (multi-scale training)


def name_seed(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by (seed, image name): test-time degradations are reproducible."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC array to a CHW tensor (dtype kept)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


_UNIT_DIVISORS = {torch.uint8: 255.0, torch.uint16: 65535.0}


def to_unit_float(tensor: torch.Tensor) -> torch.Tensor:
    """An integer image tensor as float32 in [0, 1], on its device; float tensors are returned as they are.

    Divides by a tensor on the same device, not a Python number: CUDA multiplies by the reciprocal of
    a scalar divisor, which can differ from `restore.tasks.to_unit_range` in the last bit."""
    if tensor.is_floating_point():
        return tensor
    if tensor.dtype not in _UNIT_DIVISORS:
        raise TypeError(f"an image tensor of dtype {tensor.dtype} has no unit range (uint8, uint16 or float).")
    divisor = torch.tensor(_UNIT_DIVISORS[tensor.dtype], dtype=torch.float32, device=tensor.device)
    return tensor.to(torch.float32).div_(divisor)


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
        # A task that reads files its own way keeps its reader; the default one can decode without copying.
        read_file = task.read if type(task).read is not Task.read else read_array
        self.gt = open_source(dataroot_gt, backend=backend, meta_info_file=meta_info_file, read_file=read_file,
                              readahead=readahead)
        self.lq = None if dataroot_lq is None else open_source(dataroot_lq, backend=backend, read_file=read_file,
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

    # -- checks -------------------------------------------------------------------------------
    def _check_sizes(self, key: str, scale: int, gt_hw: tuple[int, ...] | None, lq_hw: tuple[int, ...] | None,
                     guide_hw: tuple[int, ...] | None) -> None:
        """The LQ is GT / scale and the guide has the GT's size (both as read, before any crop)."""
        if gt_hw is None:
            return
        h, w = gt_hw[0] - gt_hw[0] % scale, gt_hw[1] - gt_hw[1] % scale
        if lq_hw is not None and tuple(lq_hw[:2]) != (h // scale, w // scale):
            raise DataError(f"{self.lq.describe(self.lq_key(key))}: LQ is {lq_hw[1]}x{lq_hw[0]} but its GT "
                            f"{self.gt.describe(key)} is {gt_hw[1]}x{gt_hw[0]}; at scale {scale} the LQ must be "
                            f"{w // scale}x{h // scale}.")
        if guide_hw is not None and not (0 <= guide_hw[0] - h < scale and 0 <= guide_hw[1] - w < scale):
            raise DataError(f"{self.guide.describe(self.guide_key(key))}: the guide is {guide_hw[1]}x{guide_hw[0]} "
                            f"but its depth map {key} is {w}x{h} ({self.gt.describe(key)}); a guide must have the "
                            "GT's size.")

    def check_pairs(self) -> None:
        """Check every GT/LQ/guide pair from file headers, without decoding, before anything is written:
        each LMDB holds every key its meta_info lists, each image is within the pixel limit, each LQ is
        GT / scale, each guide has its GT's size and (training) each image holds the training patch.
        Raises a DataError naming the file."""
        for source in (self.gt, self.lq, self.guide):
            if source is not None:
                source.check_complete()
        scales = self.scales if self.scales and self.phase == "train" else [self.task.scale]
        for key in self.keys:
            gt_hw = self.gt.size(key)
            lq_hw = None if self.lq is None else self.lq.size(self.lq_key(key))
            guide_hw = None if self.guide is None else self.guide.size(self.guide_key(key))
            for scale in scales:
                self._check_sizes(key, scale, gt_hw, lq_hw, guide_hw)
                if self.phase == "train":
                    self._check_patch_fits(key, gt_hw, scale)

    def _gt_patch(self, scale: int) -> int | None:
        """The GT side of a training patch at `scale` (None: no crop)."""
        if self.gt_size is None and self.lq_size is None:
            return None
        if self.gt_size is not None and self.gt_size % scale:
            raise DataError(f"datasets.{self.phase}.gt_size {self.gt_size} is not a multiple of the scale {scale}.")
        return (self.lq_size if self.lq_size is not None else self.gt_size // scale) * scale

    def _check_patch_fits(self, key: str, gt_hw: tuple[int, ...], scale: int) -> None:
        patch = self._gt_patch(scale)
        h, w = gt_hw[0] - gt_hw[0] % scale, gt_hw[1] - gt_hw[1] % scale
        if patch is not None and (h < patch or w < patch):
            raise DataError(f"{self.gt.describe(key)}: {w}x{h} is smaller than the training patch {patch}x{patch}; "
                            "lower gt_size/lq_size or drop the image.")

    # -- reading ------------------------------------------------------------------------------
    def load(self, index: int, task: Task) -> Sample:
        """Read one pair (and its guide) and bring it to network space (no crop, no degradation yet)."""
        key = self.keys[index]
        gt = self.gt.read(key)
        lq = None if self.lq is None else self.lq.read(self.lq_key(key))
        guide = None if self.guide is None else self.guide.read(self.guide_key(key))
        self._check_sizes(key, task.scale, gt.shape, None if lq is None else lq.shape,
                          None if guide is None else guide.shape)
        path_of = getattr(self.gt, "path", None)  # folders know their files; LMDBs and skimage: do not
        sample = task.prepare(gt, lq, name=key, source=path_of(key) if path_of else None)
        if guide is not None:
            h, w = sample.gt.shape[:2] if sample.gt is not None else (sample.lq.shape[0] * task.scale,
                                                                       sample.lq.shape[1] * task.scale)
            where = self.guide.describe(self.guide_key(key))
            sample.guide = task.guide_to_network(guide, name=where)[:h, :w]  # GT may have lost < scale rows
        return sample

    def _pixel_patch(self, index: int, task: Task, rng: np.random.Generator):
        """The training patch of the arrays as read (unit-range tasks): cropped before anything is copied
        or converted, then in the network's channels (`Task.to_pixels`), dtype kept."""
        key = self.keys[index]
        gt = self.gt.read(key, contiguous=False)
        lq = None if self.lq is None else self.lq.read(self.lq_key(key), contiguous=False)
        guide = None if self.guide is None else self.guide.read(self.guide_key(key), contiguous=False)
        self._check_sizes(key, task.scale, gt.shape, None if lq is None else lq.shape,
                          None if guide is None else guide.shape)
        gt, lq, guide = self._random_crop(key, gt, lq, guide, task.scale, rng)
        gt = task.to_pixels(contiguous_array(gt), name=self.gt.describe(key))
        if lq is not None:
            lq = task.to_pixels(contiguous_array(lq), name=self.lq.describe(self.lq_key(key)))
        if guide is not None:
            guide = task.guide_to_pixels(contiguous_array(guide), name=self.guide.describe(self.guide_key(key)))
        return gt, lq, guide

    def __getitem__(self, item: int | SampleKey) -> dict[str, Any]:
        if isinstance(item, SampleKey):
            return self._training_sample(item)
        return self._evaluation_sample(int(item))

    def __getitems__(self, items: list[int | SampleKey]) -> list[dict[str, Any]]:
        """A batch's samples (the DataLoader asks for them together): images of one key share a dtype,
        so a folder mixing 8- and 16-bit files still collates (as float32)."""
        samples = [self[item] for item in items]
        for name in ("lq", "gt", "guide"):
            tensors = [sample[name] for sample in samples if name in sample]
            if len({t.dtype for t in tensors}) > 1:
                for sample in samples:
                    sample[name] = to_unit_float(sample[name])
        return samples

    def _training_sample(self, key: SampleKey) -> dict[str, Any]:
        task = self.task_at(key.scale)
        scale = task.scale
        rng = np.random.default_rng([self.seed, key.position])
        if task.unit_range:
            gt, lq, guide = self._augment(*self._pixel_patch(key.index, task, rng), rng)
            if lq is None:
                lq = task.degrade(to_unit_range(np.ascontiguousarray(gt)), rng=rng, train=True, scale=scale)
        else:
            sample = self.load(key.index, task)
            cropped = self._random_crop(sample.meta["name"], sample.gt, sample.lq, sample.guide, scale, rng)
            gt, lq, guide = self._augment(*cropped, rng)
            if lq is None:
                lq = task.degrade(np.ascontiguousarray(gt), rng=rng, train=True, scale=scale)
        # one copy per image, straight into the CHW layout (the flips above are views)
        item = {"lq": to_tensor(lq), "gt": to_tensor(gt), "scale": scale}
        return item if guide is None else {**item, "guide": to_tensor(guide)}

    def _random_crop(self, key: str, gt: np.ndarray, lq: np.ndarray | None, guide: np.ndarray | None, scale: int,
                     rng: np.random.Generator):
        """The training patch: GT (and guide) rows/columns within GT cropped to a multiple of the scale."""
        patch = self._gt_patch(scale)
        if patch is None:
            return gt, lq, guide
        self._check_patch_fits(key, gt.shape, scale)
        lq_patch = patch // scale
        h, w = gt.shape[:2]
        top = int(rng.integers(0, h // scale - lq_patch + 1))
        left = int(rng.integers(0, w // scale - lq_patch + 1))
        rows, cols = slice(top * scale, top * scale + patch), slice(left * scale, left * scale + patch)
        gt = gt[rows, cols]
        guide = None if guide is None else guide[rows, cols]
        if lq is not None:
            lq = lq[top : top + lq_patch, left : left + lq_patch]
        return gt, lq, guide

    def _augment(self, gt: np.ndarray, lq: np.ndarray | None, guide: np.ndarray | None, rng: np.random.Generator):
        """Random flips and transposition, as views."""
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
            return img

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
    one entry point for batches). Integer images cross to the device as they are (a quarter of the
    bytes of float32) and are divided there (`to_unit_float`)."""
    non_blocking = getattr(device, "type", str(device)) == "cuda"
    return {k: to_unit_float(v.to(device, non_blocking=non_blocking))
            if isinstance(v, torch.Tensor) and v.ndim == 4 else v for k, v in batch.items()}


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
