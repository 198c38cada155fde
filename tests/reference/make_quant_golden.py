#!/usr/bin/env python3
"""Golden dequantisation values for tests/io/test_ggml_types.cpp, from an independent
implementation: gguf-py (llama.cpp's own Python package, `pip install gguf`), whose numpy
dequantisers are written separately from ggml's C code.

For each block type: two blocks of random bytes with every fp16 scale field replaced by a
finite random half, so that no NaN/inf appears. Writes tests/data/quant_golden.json:
{type: {"hex": block bytes, "values": dequantised floats}}.

Run by hand (never in the build): python3 tests/reference/make_quant_golden.py
"""
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES, quants

# Byte offsets of the fp16 scale fields within one block (ggml-common.h block structs).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.F16: None, T.BF16: None,
}


def main():
    rng = np.random.default_rng(20261125)
    out = {}
    for qtype, halves in HALF_FIELDS.items():
        block_size, block_bytes = GGML_QUANT_SIZES[qtype]
        n_blocks = 2 if block_size > 1 else 64
        raw = bytearray(rng.integers(0, 256, n_blocks * block_bytes, dtype=np.uint8).tobytes())
        if qtype == T.F16:
            raw = bytearray(rng.normal(0, 2, n_blocks).astype(np.float16).tobytes())
        elif qtype == T.BF16:
            f = rng.normal(0, 2, n_blocks).astype(np.float32).view(np.uint32)
            raw = bytearray((f >> 16).astype(np.uint16).tobytes())
        else:
            for b in range(n_blocks):
                for off in halves:
                    h = np.float16(rng.uniform(-0.05, 0.05)).tobytes()
                    raw[b * block_bytes + off: b * block_bytes + off + 2] = h
        values = quants.dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qtype)
        out[qtype.name] = {"hex": bytes(raw).hex(),
                           "values": [float(v) for v in np.asarray(values, np.float32).ravel()]}
    path = pathlib.Path(__file__).resolve().parents[1] / "data" / "quant_golden.json"
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path}: {', '.join(out)}")


if __name__ == "__main__":
    main()
