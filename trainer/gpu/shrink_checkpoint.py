#!/usr/bin/env python3
"""Carries an f32 checkpoint to the GPU machine in three quarters of its bytes (the device tool
sends at most 64 MiB a call): `shrink IN.safetensors OUT.st3` drops the lowest byte of every f32
(the 8 lowest of 23 mantissa bits: a relative change below 2^-15, far under the ternary
quantizer's rounding, which it could move only for a weight within that of a rounding boundary);
`grow OUT.st3 IN.safetensors` writes the safetensors back with that byte zero. Standard library
only (the GPU machine has no numpy)."""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return data[: 8 + n], json.loads(data[8 : 8 + n]), data[8 + n :]


def shrink(src, dst):
    header, meta, body = read(src)
    for name, t in meta.items():
        if name != "__metadata__" and t["dtype"] != "F32":
            sys.exit(f"{src}: tensor {name} is {t['dtype']}; only F32 checkpoints shrink")
    if len(body) % 4:
        sys.exit(f"{src}: data is not whole f32s")
    out = bytearray(len(body) // 4 * 3)
    for k in range(3):
        out[k::3] = body[k + 1 :: 4]
    with open(dst, "wb") as f:
        f.write(header)
        f.write(out)


def grow(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    body = data[8 + n :]
    if len(body) % 3:
        sys.exit(f"{src}: data is not whole 3-byte values")
    out = bytearray(len(body) // 3 * 4)
    for k in range(3):
        out[k + 1 :: 4] = body[k::3]
    with open(dst, "wb") as f:
        f.write(data[: 8 + n])
        f.write(out)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("shrink", "grow"):
        sys.exit("usage: shrink_checkpoint.py shrink|grow IN OUT")
    (shrink if sys.argv[1] == "shrink" else grow)(sys.argv[2], sys.argv[3])
