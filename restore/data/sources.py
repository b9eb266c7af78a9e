"""Image sources: one interface over a folder, a BasicSR-layout LMDB and scikit-image's photographs.

A source maps sorted *keys* (file stems, LMDB keys, sample names) to raw HWC arrays whose dtype is
kept (uint8, uint16, float32...). Datasets pair and crop them; they never care where pixels live.
Every source sorts its keys the same way, so a folder and the LMDB made from it give the same
batches. Errors name the file or ``lmdb[key]`` the user has to look at.
"""

from __future__ import annotations

import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from restore.data.headers import header_size
from restore.data.io import (
    check_pixels,
    decode_image,
    file_header_size,
    list_files,
    max_image_pixels,
    read_array,
    set_max_image_pixels,
)
from restore.errors import DataError, did_you_mean

BACKENDS = ("auto", "disk", "lmdb")
SKIMAGE_PREFIX = "skimage:"

# One line of BasicSR's meta_info.txt: `name.ext (h,w,c) compress_level [anything]`. A bare name is
# also accepted (some tools list only names); anything else after the name must start with the shape.
_META_LINE = re.compile(r"^(?P<name>\S+)(?:\s+\((?P<shape>\d+(?:,\s*\d+)*)\)(?:\s+-?\d+)?(?:\s+.*)?)?$")


class ImageSource(ABC):
    """Sorted keys -> raw HWC arrays. Subclasses must be picklable (DataLoader workers).

    A pickled source carries this process's pixel limit (`restore.data.io.set_max_image_pixels`) and
    sets it where it is unpickled, so DataLoader workers started by spawn bound their reads too."""

    root: str

    @abstractmethod
    def keys(self) -> list[str]:
        """The keys, sorted. The list is shared: copy it before shuffling."""

    @abstractmethod
    def read(self, key: str, *, contiguous: bool = True) -> np.ndarray:
        """The HWC array for `key` (dtype kept); DataError naming the file or key when it cannot.
        `contiguous=False` allows a view with reversed strides (cheaper when the caller crops first)."""

    @abstractmethod
    def describe(self, key: str) -> str:
        """Where `key` lives, for messages: 'datasets/Set5/HR/baby.png' or 'x.lmdb[baby]'."""

    def size(self, key: str) -> tuple[int, int]:
        """(height, width) of `key`'s image, from its header where the format allows (no decoding),
        checked against the pixel limit."""
        height, width = self.read(key).shape[:2]
        return height, width

    def check_complete(self) -> None:  # noqa: B027 (a check most sources have nothing to do for)
        """DataError when an image the source lists is not there (an LMDB's meta_info vs its database)."""

    def __len__(self) -> int:
        return len(self.keys())

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_max_image_pixels": max_image_pixels()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        set_max_image_pixels(state.pop("_max_image_pixels", max_image_pixels()))
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r}, {len(self)} images)"

    def _unknown_key(self, key: str) -> DataError:
        return DataError(f"{self.root}: no image with key '{key}'.{did_you_mean(key, self.keys())}")


def _as_hwc(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(f"{where}: expected an image (H, W[, C]) but read an array of shape {arr.shape}.")
    return arr


def parse_meta_info(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...] | None]]:
    """(file name, shape or None) for each line of a BasicSR meta_info file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such meta_info file.")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = _META_LINE.match(line.strip())
        if match is None:
            raise DataError(
                f"{path}, line {number}: cannot parse '{line.strip()}'; expected `name.png (h,w,c) level`."
            )
        shape = match["shape"]
        entries.append((match["name"], tuple(int(v) for v in shape.split(",")) if shape else None))
    if not entries:
        raise DataError(f"{path}: the meta_info file lists no images.")
    return entries


def key_of(name: str) -> str:
    """The key BasicSR gives a file name: its base name without the (last) extension."""
    return os.path.splitext(os.path.basename(name))[0]


class FolderSource(ImageSource):
    """Image files of one folder (not recursive); the key is the file stem, which must be unique."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        meta_info_file: str | os.PathLike | None = None,
        read_file: Callable[[Path], np.ndarray] = read_array,
    ) -> None:
        self.root = str(root)
        self.read_file = read_file
        if meta_info_file is None:
            files = list_files(root)
        else:  # BasicSR's meta_info restricts the folder to the files it lists (paths relative to it)
            names = [name for name, _ in parse_meta_info(meta_info_file)]
            files = [Path(root) / name for name in names]
            for name, file in zip(names, files):
                if not file.is_file():
                    raise DataError(f"{meta_info_file} lists '{name}', but {file} does not exist.")
        self._files: dict[str, Path] = {}
        for file in files:
            key = key_of(file.name)
            if key in self._files:
                raise DataError(
                    f"{self._files[key]} and {file} have the same key '{key}' (file name without extension); "
                    "keep one of them or move it to another folder."
                )
            self._files[key] = file
        self._keys = sorted(self._files)

    def keys(self) -> list[str]:
        return self._keys

    def path(self, key: str) -> Path:
        try:
            return self._files[key]
        except KeyError:
            raise self._unknown_key(key) from None

    def describe(self, key: str) -> str:
        return str(self.path(key))

    def read(self, key: str, *, contiguous: bool = True) -> np.ndarray:
        path = self.path(key)
        if self.read_file is read_array:
            return read_array(path, contiguous=contiguous)
        try:
            arr = _as_hwc(np.asarray(self.read_file(path)), str(path))
        except DataError:
            raise
        except Exception as exc:  # a task's own reader: still name the file
            raise DataError(f"{path}: cannot read this file ({type(exc).__name__}: {exc}).") from None
        check_pixels(arr.shape[0], arr.shape[1], str(path))
        return arr

    def size(self, key: str) -> tuple[int, int]:
        path = self.path(key)
        size = file_header_size(path)
        if size is None:  # a format without a parsed header (.mat, .h5...): read it
            return super().size(key)
        check_pixels(*size, str(path))
        return size


# One read-only handle per LMDB per process: LMDB forbids opening an environment twice in a process
# (py-lmdb refuses it, whatever path names it), and a handle must not be used across fork(). Sources
# share these handles (the first to open one sets its readahead).
_HANDLES: dict[tuple[int, int], tuple[int, Any]] = {}  # data.mdb (device, inode) -> (pid that opened it, env)
_HANDLES_LOCK = threading.Lock()


def _handle_key(root: str | os.PathLike) -> tuple[int, int] | None:
    try:
        stat = (Path(root) / "data.mdb").stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _read_handle(root: str, readahead: bool) -> Any:
    import lmdb

    key = _handle_key(root)
    with _HANDLES_LOCK:
        pid, env = _HANDLES.get(key, (None, None)) if key is not None else (None, None)
        if pid == os.getpid():
            return env
        if env is not None:  # inherited through fork: closing it is the one safe use, and lets us reopen
            env.close()
        try:
            env = lmdb.open(root, readonly=True, lock=False, readahead=readahead, meminit=False)
        except lmdb.Error as exc:
            raise DataError(f"{root}: cannot open this LMDB ({exc}); it is truncated or corrupt; rebuild it with "
                            "`restore data lmdb`.") from None
        try:
            check_not_truncated(env, root)
        except DataError:
            env.close()
            raise
        _HANDLES[_handle_key(root)] = (os.getpid(), env)
        return env


def close_read_handle(root: str | os.PathLike) -> None:
    """Close this process's read handle on the LMDB `root`, if any (before writing to it)."""
    key = _handle_key(root)
    with _HANDLES_LOCK:
        _, env = _HANDLES.pop(key, (None, None)) if key is not None else (None, None)
        if env is not None:
            env.close()


def check_not_truncated(env: Any, root: str | os.PathLike) -> None:
    """DataError when data.mdb is shorter than the pages the environment says it uses.

    LMDB maps the file into memory: reading a page past its end kills the process with SIGBUS,
    with no message, so this is checked on opening, before any page other than the meta pages
    (read when the environment is opened) is touched."""
    data = Path(root) / "data.mdb"
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = data.stat().st_size
    if size < needed:
        raise DataError(f"{data}: truncated or corrupt ({size:,} bytes, but the database uses {needed:,}); "
                        "rebuild it with `restore data lmdb` (delete it first).")


class LmdbSource(ImageSource):
    """A BasicSR-layout LMDB (``data.mdb``, ``lock.mdb``, ``meta_info.txt``; keys = names without extension).

    The environment is opened when the source is made (a truncated data.mdb is refused then), read-only
    and without locking (the BasicSR way), and opened again in each process that reads: a handle must
    not cross a fork into DataLoader workers.

    `readahead` differs from BasicSR's default (off): with it off, reading an image that is not in the
    page cache faults its pages in one at a time, which `benchmarks/bench_lmdb.py` measured 3-12x
    slower than reading the same PNG from a folder; with it on, 1.6-3.9x faster (BENCHMARKS.md).
    Turn it off (``io_backend: {type: lmdb, readahead: false}``) for a database much larger than RAM
    when memory is short, the case LMDB's documentation has in mind.
    """

    def __init__(
        self, root: str | os.PathLike, *, meta_info_file: str | os.PathLike | None = None, readahead: bool = True
    ) -> None:
        self.root = str(root)
        self.readahead = readahead
        path = Path(root)
        if not (path / "data.mdb").is_file():
            raise DataError(f"{self.root}: not an LMDB (no data.mdb in it).")
        meta = Path(meta_info_file) if meta_info_file is not None else path / "meta_info.txt"
        if not meta.is_file():
            raise DataError(
                f"{self.root}: no {meta.name}, so the LMDB's keys are unknown. An LMDB whose writing was "
                "interrupted has none: rerun `restore data lmdb` to finish it."
            )
        self.meta_info_file = str(meta)
        entries = parse_meta_info(meta)
        self.shapes = {key_of(name): shape for name, shape in entries}
        self._keys = sorted(self.shapes)
        _read_handle(self.root, readahead)  # refuse a truncated database now, not with a SIGBUS mid-run

    def keys(self) -> list[str]:
        return self._keys

    def describe(self, key: str) -> str:
        return f"{self.root}[{key}]"

    def read_bytes(self, key: str) -> bytes:
        if key not in self.shapes:
            raise self._unknown_key(key)
        with _read_handle(self.root, self.readahead).begin(write=False) as txn:
            data = txn.get(key.encode())
        if data is None:
            raise DataError(
                f"{self.describe(key)}: the key is listed in {self.meta_info_file} but missing from the "
                "database; the LMDB is incomplete or its meta_info belongs to another one."
            )
        return data

    def read(self, key: str, *, contiguous: bool = True) -> np.ndarray:
        return decode_image(self.read_bytes(key), self.describe(key), contiguous=contiguous)

    def size(self, key: str) -> tuple[int, int]:
        shape = self.shapes.get(key)
        if shape is None or len(shape) < 2:  # a bare name in meta_info: the stored value's header
            size = header_size(self.read_bytes(key))
            if size is None:
                return super().size(key)
        else:
            size = shape[0], shape[1]
        check_pixels(*size, self.describe(key))
        return size

    def check_complete(self) -> None:
        with _read_handle(self.root, self.readahead).begin(write=False) as txn:
            stored = {k.decode() for k in txn.cursor().iternext(keys=True, values=False)}
        missing = [key for key in self._keys if key not in stored]
        if missing:
            raise DataError(
                f"{self.describe(missing[0])}: listed in {self.meta_info_file} but missing from "
                f"{Path(self.root) / 'data.mdb'} ({len(missing)} key(s) missing: {', '.join(missing[:5])}); the LMDB "
                "is incomplete or its meta_info belongs to another one. Rebuild it with `restore data lmdb`."
            )


# scikit-image's real photographs that ship inside the wheel (no pooch download). Synthetic images
# (checkerboard, logo, colorwheel, binary_blobs, phantom) are left out, and so is `microaneurysms`
# (102x102: smaller than the usual training patch). `cat` is an alias of `chelsea`.
SKIMAGE_SETS: dict[str, tuple[str, ...]] = {
    "rgb": (
        "astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
        "stereo_motorcycle_left", "stereo_motorcycle_right",
    ),
    "gray": ("brick", "camera", "cell", "clock", "coins", "grass", "gravel", "moon", "page", "text"),
}
_STEREO_VIEWS = {"stereo_motorcycle_left": 0, "stereo_motorcycle_right": 1}


@cache
def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name in _STEREO_VIEWS:
        img = skimage.data.stereo_motorcycle()[_STEREO_VIEWS[name]]
    else:
        img = getattr(skimage.data, name)()
    img = _as_hwc(np.ascontiguousarray(img), f"skimage.data.{name}")
    img.flags.writeable = False  # cached and shared: callers get copies
    return img


class SkimageSource(ImageSource):
    """scikit-image's bundled photographs (``skimage:rgb``, ``skimage:gray``): training data with no download."""

    def __init__(self, spec: str) -> None:
        self.root = spec
        subset = spec[len(SKIMAGE_PREFIX):]
        if subset not in SKIMAGE_SETS:
            raise DataError(
                f"'{spec}': unknown scikit-image set.{did_you_mean(subset, SKIMAGE_SETS)} "
                f"Known: {', '.join(SKIMAGE_PREFIX + s for s in SKIMAGE_SETS)}."
            )
        self._keys = sorted(SKIMAGE_SETS[subset])

    def keys(self) -> list[str]:
        return self._keys

    def describe(self, key: str) -> str:
        if key not in self._keys:
            raise self._unknown_key(key)
        view = _STEREO_VIEWS.get(key)
        return f"skimage.data.stereo_motorcycle()[{view}]" if view is not None else f"skimage.data.{key}()"

    def read(self, key: str, *, contiguous: bool = True) -> np.ndarray:
        where = self.describe(key)
        try:
            return _skimage_photo(key).copy()
        except Exception as exc:
            raise DataError(f"{where}: cannot load this scikit-image sample ({type(exc).__name__}: {exc}).") from None


def is_lmdb(path: str | os.PathLike) -> bool:
    """True when `path` names an LMDB: it ends in ``.lmdb`` or holds a ``data.mdb``."""
    return str(path).rstrip("/\\").endswith(".lmdb") or (Path(path) / "data.mdb").is_file()


def open_source(
    spec: str | os.PathLike,
    *,
    backend: str = "auto",
    meta_info_file: str | os.PathLike | None = None,
    read_file: Callable[[Path], np.ndarray] = read_array,
    readahead: bool = True,
) -> ImageSource:
    """The source `spec` names: a folder, an LMDB, or ``skimage:rgb`` / ``skimage:gray``.

    `backend` is BasicSR's ``io_backend.type``: ``auto`` picks LMDB for a path ending in ``.lmdb`` or
    holding ``data.mdb``; ``disk`` and ``lmdb`` force the choice. `meta_info_file` restricts a folder
    to the files it lists, or replaces an LMDB's own ``meta_info.txt``. `read_file` lets a task
    read its own file formats from folders; `readahead` is LMDB's (see `LmdbSource`).
    """
    if backend not in BACKENDS:
        raise DataError(f"io_backend type '{backend}' is not supported.{did_you_mean(backend, BACKENDS)} "
                        f"Use one of: {', '.join(BACKENDS)}.")
    text = os.fspath(spec)
    if text.startswith(SKIMAGE_PREFIX):
        if backend == "lmdb":
            raise DataError(f"'{text}' is scikit-image's sample set, not an LMDB; use io_backend type disk or auto.")
        return SkimageSource(text)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{text}: no such folder or LMDB.")
    if backend == "lmdb" or (backend == "auto" and is_lmdb(path)):
        return LmdbSource(text, meta_info_file=meta_info_file, readahead=readahead)
    if not path.is_dir():
        raise DataError(f"{text}: not a folder; a data root is a folder of images or an LMDB.")
    return FolderSource(text, meta_info_file=meta_info_file, read_file=read_file)
