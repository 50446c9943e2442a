"""Reading the header of a GGUF file: the few metadata keys /api/create turns into a model's
details.

Built from the GGUF layout (ggml's docs/gguf.md, as implemented by readers such as ggufscan's
gguf.h): magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count, then key/value
pairs (key: uint64 length + bytes; uint32 value type 0-12, 8 = string, 9 = array of type + count);
general.architecture and general.file_type (llama.cpp's llama_ftype numbers) become /api/show's
family and quantization_level.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


class GGUFError(Exception):
    pass


def read_gguf_metadata(path: Path, wanted: tuple[str, ...] = ("general.architecture", "general.file_type",
                                                               "general.name")) -> dict[str, Any]:
    """The header and the wanted metadata keys of a GGUF file (stops once it has them)."""
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise GGUFError("invalid file magic")
        (version,) = struct.unpack("<I", fh.read(4))
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        tensors, count = struct.unpack("<QQ", fh.read(16))
        out: dict[str, Any] = {"version": version, "tensors": tensors}
        scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                  12: "<d"}  # fmt: skip

        def read_string() -> str:
            (n,) = struct.unpack("<Q", fh.read(8))
            return fh.read(n).decode(errors="replace")

        def read_value(kind: int) -> Any:
            if kind in scalar:
                fmt = scalar[kind]
                return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]
            if kind == 8:
                return read_string()
            if kind == 9:
                item_kind, n = struct.unpack("<IQ", fh.read(12))
                if item_kind in scalar:  # skip a numeric array without decoding it
                    fh.seek(n * struct.calcsize(scalar[item_kind]), 1)
                    return None
                for _ in range(n):
                    read_value(item_kind)
                return None
            raise GGUFError(f"unknown metadata type {kind}")

        try:
            for _ in range(count):
                key = read_string()
                (kind,) = struct.unpack("<I", fh.read(4))
                value = read_value(kind)
                if key in wanted:
                    out[key] = value
                    if all(k in out for k in wanted):
                        break
        except struct.error as exc:
            raise GGUFError(f"truncated GGUF metadata: {exc}") from None
        return out
