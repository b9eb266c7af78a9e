"""Write an image source into a BasicSR-layout LMDB: resumable, self-sizing and verified.

Layout (what BasicSR's ``make_lmdb_from_imgs`` writes, so BasicSR reads ours and we read theirs)::

    name.lmdb/data.mdb, lock.mdb    key = file stem, value = PNG bytes (8/16-bit, 1 or 3 channels)
    name.lmdb/meta_info.txt         one line per key, sorted: `baby.png (512,512,3) 1`

Arrays PNG cannot hold exactly (float, bool, 2 or 4+ channels) are stored as ``.npy`` bytes and
listed as `name.npy (h,w,c) 0`; ``restore.data.io.decode_image`` reads both.
"""

from __future__ import annotations

import errno
import io
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from restore.data.headers import NPY_SIGNATURE, PNG_SIGNATURE, npy_shape, png_size
from restore.data.io import atomic_write_bytes, decode_image, encode_image
from restore.data.sources import ImageSource, check_not_truncated, close_read_handle, open_source
from restore.errors import DataError

_PNG_CHANNELS = {0: 1, 2: 3}  # IHDR colour type -> channels, for the PNGs we write (gray, RGB)
COMMIT_BYTES = 256 * 2**20  # also commit once this much is pending, to bound memory on large images
INITIAL_MAP_SIZE = 64 * 2**20  # grown by doubling on MDB_MAP_FULL, so no size has to be guessed


@dataclass(frozen=True)
class LmdbReport:
    """What `write_lmdb` did: images written now, skipped (already committed), verified by reading back."""

    path: str
    written: int
    skipped: int
    verified: int
    map_size: int
    file_bytes: int
    seconds: float

    @property
    def total(self) -> int:
        return self.written + self.skipped

    def summary(self) -> str:
        checked = f"{self.verified} verified" if self.verified else "not verified"
        return (
            f"{self.path}: {self.total} images ({self.written} written, {self.skipped} already there, {checked}); "
            f"data.mdb {self.file_bytes / 2**20:.1f} MiB, map size {self.map_size / 2**20:.0f} MiB; "
            f"{self.seconds:.1f} s."
        )


def png_params(compress_level: int) -> list[int]:
    """cv2.imencode parameters for PNG values at `compress_level`."""
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, compress_level]
    if compress_level == 1 and hasattr(cv2, "IMWRITE_PNG_FILTER"):
        # OpenCV's own speed settings (what cv2.imwrite uses by default): files as small as libpng's
        # adaptive filters give at level 1, and about a quarter faster to decode, which training repeats.
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    return params


def encode_value(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes when PNG keeps `arr` exactly (uint8/uint16, 1 or 3 channels), else ``.npy`` bytes."""
    if arr.dtype in (np.uint8, np.uint16) and arr.shape[2] in (1, 3):
        return encode_image(arr, ".png", png_params(compress_level))
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(arr), allow_pickle=False)
    return buffer.getvalue()


def stored_shape(value: bytes, where: str) -> tuple[str, tuple[int, ...]]:
    """(extension, HWC shape) of a stored value, from its header when possible (no decoding)."""
    size = png_size(value) if value.startswith(PNG_SIGNATURE) and len(value) > 25 else None
    if size is not None and value[25] in _PNG_CHANNELS:
        return ".png", (*size, _PNG_CHANNELS[value[25]])
    if value.startswith(NPY_SIGNATURE):
        shape = npy_shape(value)
        if shape is not None:
            return ".npy", shape + (1,) if len(shape) == 2 else shape
        return ".npy", decode_image(value, where).shape
    ext = ".png" if value.startswith(PNG_SIGNATURE) else ".jpg" if value.startswith(b"\xff\xd8") else ".img"
    return ext, decode_image(value, where).shape


def _check_destination(path: Path) -> None:
    if path.suffix != ".lmdb":
        raise DataError(f"{path}: an LMDB's name must end in .lmdb (BasicSR's datasets require it).")
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()) and not (path / "data.mdb").is_file():
        raise DataError(f"{path}: a non-empty folder that is not an LMDB; choose another path.")


def _check_keys(source: ImageSource) -> list[str]:
    keys = source.keys()
    for key in keys:
        if not key or any(c.isspace() for c in key):
            # meta_info.txt separates fields with white space, so such a key could not be listed.
            raise DataError(f"{source.describe(key)}: the key '{key}' contains white space; rename the file.")
    return keys


def _commit(env, batch: list[tuple[bytes, bytes]]) -> None:
    """Put `batch` in one transaction, doubling the map size whenever LMDB reports it full."""
    import lmdb

    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:  # the transaction was aborted; grow and redo it
            env.set_mapsize(env.info()["map_size"] * 2)


def _write_failed(exc: Exception, path: Path, pending: int, committed: int) -> DataError:
    """The error for a write that failed: "disk full" when it was (LMDB reports a write cut short
    by a full disk as "Input/output error"), the file size limit when that was reached."""
    free = shutil.disk_usage(path).free
    code = getattr(exc, "errno", None)
    data = path / "data.mdb"
    kept = (f"The {committed} image(s) committed before are kept: run the same command again to finish, "
            "and it skips them.")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    over_limit = limit != resource.RLIM_INFINITY and data.is_file() and data.stat().st_size + pending >= limit
    if code == errno.EFBIG or (code != errno.ENOSPC and over_limit):
        return DataError(f"{path}: the file size limit ({limit:,} bytes, `ulimit -f`) was reached while writing "
                         f"({exc}). Raise the limit. {kept}")
    if code in (errno.ENOSPC, errno.EDQUOT) or free < pending + 2**20:
        return DataError(f"{path}: disk full: writing failed ({exc}) with {free / 2**20:.1f} MiB free on its file "
                         f"system. Free some space (or move {path.name} where there is room). {kept}")
    return DataError(f"{path}: writing failed ({type(exc).__name__}: {exc}). {kept}")


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    nan_equal = np.issubdtype(a.dtype, np.floating)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=nan_equal)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, dynamic_ncols=True)


def write_lmdb(
    source: ImageSource | str | os.PathLike,
    lmdb_path: str | os.PathLike,
    *,
    compress_level: int = 1,
    commit_every: int = 100,
    verify: bool = True,
    progress: bool = True,
    initial_map_size: int = INITIAL_MAP_SIZE,
) -> LmdbReport:
    """Write every image of `source` (a source or a spec for `open_source`) into `lmdb_path`.

    Rerunning after an interruption skips the keys already committed. `commit_every` images go in one
    transaction (a crash loses at most those). With `verify`, every key is read back and compared with
    the source; a mismatch is a DataError naming the key.
    """
    import lmdb

    start = time.perf_counter()
    source = source if isinstance(source, ImageSource) else open_source(source)
    if not 0 <= compress_level <= 9:
        raise DataError(f"PNG compress level must be 0..9, not {compress_level}.")
    if commit_every < 1:
        raise DataError(f"commit_every must be at least 1, not {commit_every}.")
    path = Path(lmdb_path)
    _check_destination(path)
    if os.path.realpath(source.root) == os.path.realpath(path):
        raise DataError(f"{path}: the source and the output are the same LMDB.")
    keys = _check_keys(source)

    path.mkdir(parents=True, exist_ok=True)
    close_read_handle(path)  # LMDB allows one handle per process; readers here reopen theirs later
    try:
        env = lmdb.open(str(path), map_size=initial_map_size, readahead=False, meminit=False)
    except lmdb.Error as exc:
        data = path / "data.mdb"
        if isinstance(exc, lmdb.DiskError) or not data.is_file() or data.stat().st_size == 0:
            raise _write_failed(exc, path, 0, 0) from None
        raise DataError(f"{data}: cannot open it ({exc}); it is truncated or corrupt. Delete it and run the "
                        "command again to rebuild it with `restore data lmdb`.") from None
    written = skipped = pending_bytes = 0
    try:
        check_not_truncated(env, path)  # before a page of it is read: a truncated map means SIGBUS
        with env.begin() as txn:
            committed = {k.decode() for k in txn.cursor().iternext(keys=True, values=False)}
        foreign = sorted(committed.difference(keys))
        if foreign:
            raise DataError(
                f"{path} already holds {len(foreign)} key(s) that {source.root} does not have "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); it was written from another "
                "source. Delete it or choose another path."
            )
        batch: list[tuple[bytes, bytes]] = []
        with _progress(len(keys), f"write {path.name}", progress) as bar:
            for key in keys:
                bar.update()
                if key in committed:
                    skipped += 1
                    continue
                arr = source.read(key)
                if arr.ndim != 3:
                    raise DataError(f"{source.describe(key)}: expected an HWC array, got shape {arr.shape}.")
                value = encode_value(arr, compress_level)
                batch.append((key.encode(), value))
                pending_bytes += len(value)
                if len(batch) >= commit_every or pending_bytes >= COMMIT_BYTES:
                    _commit(env, batch)
                    written += len(batch)
                    batch, pending_bytes = [], 0
            if batch:
                _commit(env, batch)
                written += len(batch)

        verified = _verify(env, source, keys, path, progress) if verify else 0
        # meta_info.txt is written last, from the committed keys, in one atomic rename: it never lists
        # a key that is not in the database, and an interrupted (or unverified-and-failed) LMDB has no
        # new meta_info, so readers refuse it instead of silently training on part of the data.
        lines = []
        with env.begin() as txn:
            for key in keys:
                ext, shape = stored_shape(txn.get(key.encode()), f"{path}[{key}]")
                level = compress_level if ext == ".png" else 0
                lines.append(f"{key}{ext} ({','.join(map(str, shape))}) {level}\n")
        atomic_write_bytes(path / "meta_info.txt", "".join(lines).encode())
        map_size = env.info()["map_size"]
    except (lmdb.Error, OSError) as exc:  # writing failed (a full disk, a size limit...); what was committed stays
        raise _write_failed(exc, path, pending_bytes, written + skipped) from None
    finally:
        env.close()
    return LmdbReport(
        path=str(path), written=written, skipped=skipped, verified=verified, map_size=map_size,
        file_bytes=(path / "data.mdb").stat().st_size, seconds=time.perf_counter() - start,
    )


def _verify(env, source: ImageSource, keys: list[str], path: Path, progress: bool) -> int:
    """Read every key back and compare the decoded array with the source's; return how many matched."""
    with env.begin() as txn, _progress(len(keys), f"verify {path.name}", progress) as bar:
        for key in keys:
            where = f"{path}[{key}]"
            value = txn.get(key.encode())
            if value is None:
                raise DataError(f"{where}: missing after writing; the LMDB is damaged. Delete it and run again.")
            stored, original = decode_image(value, where), source.read(key)
            if not _arrays_equal(stored, original):
                raise DataError(
                    f"{where} differs from {source.describe(key)} (stored {stored.dtype}{list(stored.shape)}, "
                    f"source {original.dtype}{list(original.shape)}); the source changed since it was written. "
                    f"Delete {path} and run again."
                )
            bar.update()
    return len(keys)
