"""What a user would write with numpy to extract a rank-k LoRA: every 2-D projection weight of two
safetensors files memory-mapped, D = T - B in float32, a full SVD (np.linalg.svd), the top k kept.
Prints the mean share of ||D||_F kept and, last, the peak RSS in KiB."""
import json, resource, struct, sys
import numpy as np

DTYPES = {"F16": np.float16, "BF16": None, "F32": np.float32}

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[a:b])
    return out

def as_f32(entry):
    dtype, shape, raw = entry
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return raw.view(DTYPES[dtype]).astype(np.float32).reshape(shape)

base, tuned, rank = tensors(sys.argv[1]), tensors(sys.argv[2]), int(sys.argv[3])
only = sys.argv[4] if len(sys.argv) > 4 else ""
kept = []
for name, entry in tuned.items():
    if len(entry[1]) != 2 or "embed" in name or "lm_head" in name or not name.startswith(only):
        continue
    d = as_f32(entry) - as_f32(base[name])
    s = np.linalg.svd(d, compute_uv=True, full_matrices=False)[1]
    total = float(np.sum(s.astype(np.float64) ** 2))
    kept.append(np.sqrt(float(np.sum(s[:rank].astype(np.float64) ** 2)) / total) if total > 0 else 1.0)
print(f"modules {len(kept)} mean_kept {np.mean(kept):.6f}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
