"""Reading and writing images and maps, with errors that name the file.

Arrays are HWC. Colour images are RGB (not OpenCV's BGR); the bit depth on disk is kept
(uint8, uint16, float32). Extensions other than images are read by readers in the ``readers``
registry (plugins add ``.npy``, ``.mat``, ``.pfm``...), keyed by the extension with its dot.

Every read is bounded: an image whose header declares more pixels than the limit
(`set_max_image_pixels`, the option ``max_image_pixels``, the commands' ``--max-pixels``) is
refused before it is decoded, so a small file that claims a huge size costs no memory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from restore.data.headers import HEADER_BYTES, NPY_SIGNATURE, header_size
from restore.errors import DataError
from restore.registry import READERS

# Corrupt files are reported by our own errors; OpenCV's console warnings would only add noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Read natively by `decode_image` (no plugin needed); a registered reader still takes precedence.
ARRAY_EXTENSIONS = (".npy",)

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """From now on, in this process, refuse images of more than `limit` pixels (0 or None: no limit).

    Image sources carry the limit into DataLoader workers, whichever way they are started."""
    global _max_image_pixels
    if limit is not None and limit < 0:
        raise DataError(f"the pixel limit must be 0 (none) or positive, not {limit}.")
    _max_image_pixels = int(limit or 0)


def use_max_image_pixels(flag: int | None, option: int | None = None) -> None:
    """The commands' rule: ``--max-pixels`` if given, else the option file's ``max_image_pixels``, else
    the default."""
    chosen = flag if flag is not None else option
    set_max_image_pixels(chosen if chosen is not None else DEFAULT_MAX_IMAGE_PIXELS)


def max_image_pixels() -> int:
    """The pixel limit in force (0: none)."""
    return _max_image_pixels


def check_pixels(height: int, width: int, source: str) -> None:
    """DataError naming `source` when an image of height x width is above the pixel limit."""
    limit = _max_image_pixels
    if limit and height * width > limit:
        raise DataError(
            f"{source}: {width}x{height} pixels ({height * width / 1e6:.1f} Mpx) is above the limit of "
            f"{limit / 1e6:g} Mpx, so it is refused before decoding (a small file can claim a huge size to exhaust "
            "memory). If the image is meant to be this large, raise the limit with --max-pixels N or the option "
            "max_image_pixels (0: no limit)."
        )


def _empty(source: str) -> DataError:
    return DataError(f"{source}: the file is empty (0 bytes); it was not written completely. Replace or delete it.")


def _to_hwc_rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) as an RGB view (the channel axis reversed; no copy)."""
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return img[:, :, ::-1] if img.shape[2] == 3 else img


def contiguous_array(img: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `img`, such as a (cropped) view `decode_image(..., contiguous=False)` returned.

    A reversed channel axis (BGR <-> RGB) is copied by OpenCV: numpy copies an axis of 3 reversed
    elements one element at a time, 30x slower for a training patch."""
    if img.ndim == 3 and img.shape[2] == 3 and img.strides[2] < 0 and img.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(img[:, :, ::-1], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def decode_image(data: bytes, source: str, *, contiguous: bool = True) -> np.ndarray:
    """Decode encoded image bytes (PNG/JPEG/... or .npy) into an HWC array; `source` names them in errors.

    The size in the header is checked against the pixel limit first. `contiguous=False` may return
    a view with reversed channel strides (OpenCV decodes BGR): free to make, for callers that crop
    first and then copy only the crop with `contiguous_array`."""
    if not len(data):
        raise _empty(source)
    size = header_size(data)
    if size is not None:
        check_pixels(*size, source)
    if data[:6] == NPY_SIGNATURE:
        import io

        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{source}: not a readable .npy array ({exc}).") from None
        return arr[:, :, None] if arr.ndim == 2 else arr
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{source}: cannot decode this image; the file is corrupt or not an image.")
    if size is None:  # a format whose header is not parsed here: OpenCV's own bound (2^30 pixels) held
        check_pixels(img.shape[0], img.shape[1], source)
    rgb = _to_hwc_rgb(img)
    return contiguous_array(rgb) if contiguous else rgb


def read_array(path: str | os.PathLike, *, contiguous: bool = True) -> np.ndarray:
    """Read an image (or any registered format) as an HWC array, keeping its bit depth.
    `contiguous=False`: see `decode_image`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS and ext in READERS:
        size = file_header_size(path)
        if size is not None:
            check_pixels(*size, str(path))
        try:
            arr = READERS.get(ext)(path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read this {ext} file ({type(exc).__name__}: {exc}).") from None
        if arr.ndim >= 2:
            check_pixels(arr.shape[0], arr.shape[1], str(path))
        return arr[:, :, None] if arr.ndim == 2 else arr
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read this file ({exc.strerror or exc}).") from None
    return decode_image(data, str(path), contiguous=contiguous)


def file_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) a file's header declares (see `restore.data.headers`), or None when not known;
    reads the first KiB, and the whole file only when the header lies further (JPEG EXIF, TIFF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            if not head:
                raise _empty(str(path))
            size = header_size(head)
            if size is None and len(head) == HEADER_BYTES:
                size = header_size(head + f.read())
    except OSError as exc:
        raise DataError(f"{path}: cannot read this file ({exc.strerror or exc}).") from None
    return size


def encode_image(img: np.ndarray, ext: str = ".png", params: list[int] | None = None) -> bytes:
    """Encode an HWC RGB (or gray) array; uint16 is kept by PNG/TIFF."""
    img = contiguous_array(img[:, :, ::-1]) if img.ndim == 3 and img.shape[2] == 3 else img  # OpenCV wants BGR
    ok, buf = cv2.imencode(ext, img, params or [])
    if not ok:
        raise DataError(f"cannot encode an array of shape {img.shape} and dtype {img.dtype} as {ext}.")
    return buf.tobytes()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that a reader never sees a partial file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # Not mkstemp: its files are 0600; os.open with 0o666 gets the permissions open() would (umask applied).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write an HWC RGB/gray array to `path` (format from the extension), atomically."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(img, path.suffix.lower()))


def list_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted files of `folder` (not recursive) whose extension is readable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder.")
    allowed = (*IMAGE_EXTENSIONS, *ARRAY_EXTENSIONS, *READERS.names())
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in allowed)
    if not files:
        raise DataError(f"{folder}: the folder holds no readable files ({', '.join(allowed)}).")
    return files
