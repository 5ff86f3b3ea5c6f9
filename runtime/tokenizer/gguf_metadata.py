"""A reader for the key-value header of a GGUF file (v2/v3, little-endian).

Tokenizers and converters need the `tokenizer.*` and `general.*` metadata only; this reads them
from a memory map in well under a second even for 400k-entry token and merge lists, without the
tensor index `gguf.GGUFReader` also builds. Layout: magic `GGUF`, u32 version, u64 tensor count,
u64 key-value count, then per pair a string key, a u32 type and the value (strings are a u64 length
plus UTF-8 bytes; arrays are a u32 item type, a u64 count and the items).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import TokenizerError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {
    0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8",
}  # fmt: skip
STRING, ARRAY = 8, 9


def read_gguf_metadata(path: Path | str, prefixes: tuple[str, ...] = ("tokenizer.", "general.")) -> dict[str, Any]:
    """The header's key-value pairs whose keys start with one of `prefixes`."""
    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise TokenizerError(f"{path} is not a GGUF file (bad magic); re-download it.")
        version, _tensors, count = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise TokenizerError(f"{path} is GGUF version {version}; convert it again with a current llama.cpp.")
        reader = _Reader(buf, 24)
        try:
            out = {}
            for _ in range(count):
                key = reader.string()
                (kind,) = reader.unpack("<I")
                value = reader.value(kind, keep=key.startswith(prefixes))
                if key.startswith(prefixes):
                    out[key] = value
            return out
        except (struct.error, IndexError, ValueError) as err:
            raise TokenizerError(f"{path} has a truncated or corrupt GGUF header ({err}); re-download it.") from err


class _Reader:
    def __init__(self, buf: mmap.mmap, pos: int):
        self.buf, self.pos = buf, pos

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def string(self) -> str:
        (n,) = struct.unpack_from("<Q", self.buf, self.pos)
        start = self.pos + 8
        self.pos = start + n
        return self.buf[start : self.pos].decode("utf-8", errors="replace")

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])[0]
        if kind == STRING:
            return self.string()
        if kind != ARRAY:
            raise ValueError(f"unknown value type {kind}")
        item_kind, count = self.unpack("<IQ")
        if item_kind in _NUMPY:
            dtype = np.dtype(_NUMPY[item_kind])
            start, self.pos = self.pos, self.pos + count * dtype.itemsize
            return np.frombuffer(self.buf[start : self.pos], dtype=dtype).tolist() if keep else None
        if item_kind == STRING:
            return self._strings(count, keep)
        items = [self.value(item_kind, keep) for _ in range(count)]
        return items if keep else None

    def _strings(self, count: int, keep: bool) -> list[str] | None:
        buf, pos, unpack = self.buf, self.pos, struct.Struct("<Q").unpack_from
        out = []
        for _ in range(count):
            (n,) = unpack(buf, pos)
            if keep:
                out.append(buf[pos + 8 : pos + 8 + n].decode("utf-8", errors="replace"))
            pos += 8 + n
        self.pos = pos
        return out if keep else None
