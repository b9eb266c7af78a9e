"""Image sizes from file headers, without decoding: what a size check or a pixel limit needs.

`header_size` reads the width and height that PNG, JPEG, BMP, PNM (PPM/PGM), PFM, TIFF, WebP
and ``.npy`` files declare at their start. It returns None when it cannot tell (another format, a
header beyond the bytes given, a damaged header); callers then decode and look at the array.
A header is what the file *claims*: a decompression bomb declares its full size there, which is
exactly what a pixel limit must see before any memory is allocated.
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NPY_SIGNATURE = b"\x93NUMPY"
# Enough for PNG, BMP, PNM, WebP and .npy headers; a JPEG's frame header after a large EXIF/ICC block
# or a TIFF directory at the end of the file needs more (`header_size` returns None for the prefix).
HEADER_BYTES = 1024

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length field
_PNM = re.compile(rb"P[1-6Ff](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)\s")
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not at a marker: damaged
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return height, width
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return None


def bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(height), abs(width)  # a negative height means rows stored top-down


def pnm_size(data: bytes) -> tuple[int, int] | None:
    match = _PNM.match(data)
    return (int(match[2]), int(match[1])) if match else None


def tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:  # 43 is BigTIFF: left to the decoder
        return None
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return None
    found: dict[int, int] = {}
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(data) - 11), 12):
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            fmt, end = ("H", entry + 10) if kind == 3 else ("I", entry + 12)
            found[tag] = struct.unpack(order + fmt, data[entry + 8:end])[0]
    return (found[257], found[256]) if len(found) == 2 else None


def webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[27:30], "little") + 1, int.from_bytes(data[24:27], "little") + 1
    return None


def npy_shape(data: bytes) -> tuple[int, ...] | None:
    """The shape a ``.npy`` header declares (None for versions whose header numpy reads otherwise)."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in _NPY_HEADER_READERS:
            return None
        return tuple(_NPY_HEADER_READERS[version](stream)[0])
    except ValueError:
        return None


def npy_size(data: bytes) -> tuple[int, int] | None:
    shape = npy_shape(data)
    return (shape[0], shape[1]) if shape is not None and len(shape) in (2, 3) else None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) declared by the header at the start of `data`, or None when not known."""
    try:
        if data.startswith(PNG_SIGNATURE):
            return png_size(data)
        if data.startswith(b"\xff\xd8"):
            return jpeg_size(data)
        if data.startswith(NPY_SIGNATURE):
            return npy_size(data)
        if data.startswith(b"BM"):
            return bmp_size(data)
        if data.startswith((b"II*\x00", b"MM\x00*")):
            return tiff_size(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return webp_size(data)
        if re.match(rb"P[1-6Ff]\s", data):  # PBM/PGM/PPM and PFM (float maps)
            return pnm_size(data)
    except struct.error:  # a header cut short
        return None
    return None
