"""Reader for the IDX format of MNIST / Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions ``d``, ``d`` big-endian uint32 sizes,
then the values in big-endian C order. ``.gz`` files are gunzipped on the fly.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

__all__ = ["read_idx"]

_TYPE_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped when it starts with the gzip
    magic bytes), in native byte order."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file: it must start with two zero bytes, got {data[:4]!r}."
        )
    code, ndim = data[2], data[3]
    if code not in _TYPE_CODES:
        allowed = ", ".join(f"0x{c:02X}" for c in _TYPE_CODES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; allowed: {allowed}.")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _TYPE_CODES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {shape} of {dtype.name} ({expected} bytes of data), "
            f"but the file holds {len(data) - header} bytes after the header."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
