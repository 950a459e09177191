"""
The numpy baseline: how a user would merge a PEFT LoRA into a safetensors model with numpy alone.
Memory-maps the base, merges each target tensor in fp32 as W + s * (B @ A), casts back to the
base dtype and writes the output file tensor by tensor. Prints its peak RSS (KiB) as the last line.

usage: python3 numpy-merge.py BASE.safetensors ADAPTER_DIR OUT.safetensors
"""
import json
import os
import resource
import struct
import sys

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64}


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def tensor(mm, start, info):
    begin, end = info["data_offsets"]
    flat = mm[start + begin : start + end].view(DTYPES[info["dtype"]])
    return flat.reshape(info["shape"])


def main(base_path, adapter_dir, out_path):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    scale = config["lora_alpha"] / config["r"]
    adapter_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    a_header, a_start = read_header(adapter_path)
    a_mm = np.memmap(adapter_path, dtype=np.uint8, mode="r")
    header, start = read_header(base_path)
    base = np.memmap(base_path, dtype=np.uint8, mode="r")

    with open(base_path, "rb") as f:
        raw_header = f.read(start)
    with open(out_path, "wb") as out:
        out.write(raw_header)  # same names, dtypes and offsets
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            w = tensor(base, start, info)
            key = "base_model.model." + name[: -len(".weight")]
            if key + ".lora_A.weight" in a_header:
                a = tensor(a_mm, a_start, a_header[key + ".lora_A.weight"]).astype(np.float32)
                b = tensor(a_mm, a_start, a_header[key + ".lora_B.weight"]).astype(np.float32)
                w = (w.astype(np.float32) + scale * (b @ a)).astype(w.dtype)
            out.write(memoryview(np.ascontiguousarray(w)).cast("B"))
        out.flush()
        os.fsync(out.fileno())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main(*sys.argv[1:4])
