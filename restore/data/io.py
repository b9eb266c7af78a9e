"""Reading and writing images and maps, with errors that name the file.

Arrays are HWC. Colour images are RGB (not OpenCV's BGR); the bit depth on disk is kept
(uint8, uint16, float32). Extensions other than images are read by readers in the ``readers``
registry (plugins add ``.npy``, ``.mat``, ``.pfm``...), keyed by the extension with its dot.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from restore.errors import DataError
from restore.registry import READERS

# Corrupt files are reported by our own errors; OpenCV's console warnings would only add noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Read natively by `decode_image` (no plugin needed); a registered reader still takes precedence.
ARRAY_EXTENSIONS = (".npy",)


def _to_hwc_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode encoded image bytes (PNG/JPEG/... or .npy) into an HWC array; `source` names them in errors."""
    if data[:6] == b"\x93NUMPY":
        import io

        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{source}: not a readable .npy array ({exc}).") from None
        return arr[:, :, None] if arr.ndim == 2 else arr
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{source}: cannot decode this image; the file is corrupt or not an image.")
    return _to_hwc_rgb(img)


def read_array(path: str | os.PathLike) -> np.ndarray:
    """Read an image (or any registered format) as an HWC array, keeping its bit depth."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS and ext in READERS:
        try:
            arr = READERS.get(ext)(path)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read this {ext} file ({type(exc).__name__}: {exc}).") from None
        return arr[:, :, None] if arr.ndim == 2 else arr
    return decode_image(path.read_bytes(), str(path))


def encode_image(img: np.ndarray, ext: str = ".png", params: list[int] | None = None) -> bytes:
    """Encode an HWC RGB (or gray) array; uint16 is kept by PNG/TIFF."""
    img = np.ascontiguousarray(img[:, :, ::-1]) if img.ndim == 3 and img.shape[2] == 3 else img
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
