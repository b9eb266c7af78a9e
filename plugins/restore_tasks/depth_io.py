"""Reading and writing depth maps in the formats depth datasets ship: ``.npy``, ``.mat``
(MATLAB v5 via scipy, v7.3 via h5py), ``.h5``/``.hdf5`` and ``.pfm``. 8/16-bit PNG is read by
the core. Restored maps are written back in their source's format, dtype and units.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from restore.api import DataError, atomic_write_bytes, register_reader, write_image

# Variable names tried first when a .mat/.h5 file holds several arrays.
PREFERRED_VARIABLES = ("depth", "depths", "disparity", "disp", "gt", "img_double", "data")


def _pick(names: list[str], path: Path) -> str:
    if len(names) == 1:
        return names[0]
    for preferred in PREFERRED_VARIABLES:
        if preferred in names:
            return preferred
    listing = ", ".join(names) or "(none)"
    raise DataError(f"{path}: cannot tell which array is the depth map; it holds {listing}. "
                    f"Name it one of {', '.join(PREFERRED_VARIABLES)}.")


def _image_array(arr: np.ndarray, path: Path, variable: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] > 4:
        raise DataError(f"{path}: '{variable}' has shape {arr.shape}, a stack of maps rather than one map; "
                        "split it into one file per map (e.g. with `restore data`).")
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "uif":
        raise DataError(f"{path}: '{variable}' is not a 2-D numeric map (shape {arr.shape}, dtype {arr.dtype}).")
    return arr


def read_npy(path: Path) -> np.ndarray:
    return _image_array(np.load(path, allow_pickle=False), path, "array")


def _h5_datasets(group, prefix: str = "") -> dict[str, object]:
    import h5py

    found = {}
    for key, item in group.items():
        if isinstance(item, h5py.Dataset) and not key.startswith("#"):
            found[prefix + key] = item
        elif isinstance(item, h5py.Group) and not key.startswith("#"):
            found.update(_h5_datasets(item, f"{prefix}{key}/"))
    return found


def _read_hdf5(path: Path, matlab: bool) -> tuple[np.ndarray, str]:
    import h5py

    with h5py.File(path, "r") as f:
        datasets = _h5_datasets(f)
        name = _pick(sorted(datasets), path)
        arr = np.asarray(datasets[name][()])
    # MATLAB v7.3 stores arrays column-major: h5py sees them transposed.
    return (arr.T if matlab else arr), name


def mat_variable(path: Path) -> str:
    """The name of the depth variable in a .mat file (without loading it when possible)."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3
        return h5_variable(path)
    return _pick([name for name, _, _ in scipy.io.whosmat(path)], path)


def read_mat(path: Path) -> np.ndarray:
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # MATLAB v7.3
        arr, name = _read_hdf5(path, matlab=True)
        return _image_array(arr, path, name)
    contents = scipy.io.loadmat(path)
    name = _pick(sorted(k for k in contents if not k.startswith("__")), path)
    return _image_array(contents[name], path, name)


def read_h5(path: Path) -> np.ndarray:
    arr, name = _read_hdf5(path, matlab=False)
    return _image_array(arr, path, name)


def h5_variable(path: Path) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        return _pick(sorted(_h5_datasets(f)), path)


_PFM_HEADER = re.compile(rb"^(P[Ff])\s+(\d+)\s+(\d+)\s+(\S+)\s")


def read_pfm(path: Path) -> np.ndarray:
    """Portable float map: 'Pf' gray / 'PF' colour, little-endian when the scale is negative,
    rows stored bottom to top."""
    data = path.read_bytes()
    match = _PFM_HEADER.match(data)
    if match is None:
        raise DataError(f"{path}: not a PFM file (bad header).")
    kind, width, height, scale = match.group(1), int(match.group(2)), int(match.group(3)), float(match.group(4))
    channels = 3 if kind == b"PF" else 1
    dtype = np.dtype("<f4" if scale < 0 else ">f4")
    count = width * height * channels
    body = data[match.end():]
    if len(body) < count * 4:
        raise DataError(f"{path}: truncated PFM ({len(body)} bytes of pixels, {count * 4} expected).")
    arr = np.frombuffer(body, dtype=dtype, count=count).reshape(height, width, channels)
    return np.ascontiguousarray(arr[::-1].astype(np.float32))


def pfm_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype="<f4")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    kind = b"PF" if arr.shape[2] == 3 else b"Pf"
    header = b"%s\n%d %d\n-1.0\n" % (kind, arr.shape[1], arr.shape[0])
    return header + np.ascontiguousarray(arr[::-1]).tobytes()


for _ext, _reader in ((".npy", read_npy), (".mat", read_mat), (".h5", read_h5), (".hdf5", read_h5),
                      (".pfm", read_pfm)):
    register_reader(_ext, _reader)


def write_depth(path: Path, depth: np.ndarray, dtype: str, variable: str = "depth") -> Path:
    """Write an HW(1) float map to `path` in the format its suffix names, stored as `dtype`
    (integer dtypes are rounded and clipped to their range, as the source file held them)."""
    depth = depth[:, :, 0] if depth.ndim == 3 else depth
    target = np.dtype(dtype)
    if target.kind in "ui":
        info = np.iinfo(target)
        depth = np.clip(np.round(np.nan_to_num(depth)), info.min, info.max)
    depth = depth.astype(target)
    suffix = path.suffix.lower()
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, depth, allow_pickle=False)
    elif suffix == ".pfm":
        buffer.write(pfm_bytes(depth))
    elif suffix == ".mat":
        import scipy.io

        scipy.io.savemat(buffer, {variable: depth}, do_compression=True)
    elif suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(buffer, "w") as f:
            f.create_dataset(variable, data=depth, compression="gzip")
    else:
        float_tiff = suffix in (".tif", ".tiff") and target == np.float32
        if target not in (np.uint8, np.uint16) and not float_tiff:
            raise DataError(f"{path}: a {target} map cannot be stored as {suffix}; use .tiff, .npy, .pfm, .mat or .h5.")
        return write_image(path, depth[:, :, None])
    return atomic_write_bytes(path, buffer.getvalue())
