"""What a user would write with numpy to extract a rank-k LoRA: every 2-D projection weight of two
safetensors files memory-mapped, D = T - B in float32, a full SVD (np.linalg.svd), the top k kept.

Usage: numpy-extract.py BASE TUNED RANK [PREFIX [ADAPTER_DIR]]
Prints "modules N mean_kept X seconds S" (S: the SVD phase alone) and then its peak RSS in KiB.
With ADAPTER_DIR (a PEFT folder extracted from the same pair, scale alpha/r = 1), it then checks,
untimed, each module's actual error ||D - B.A||_F against the optimal (Eckart-Young) error, for
that adapter and for numpy's own rank-k factors (sqrt(S) on each side) stored in the adapter's
dtype, and prints one "check" line per module and a "check_summary" line."""
import json, resource, struct, sys, time
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

def round_to(x, dtype):
    if dtype == "BF16":
        bits = x.astype(np.float32).view(np.uint32)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.view(np.float32)
    return x.astype(DTYPES[dtype]).astype(np.float32)

base, tuned, rank = tensors(sys.argv[1]), tensors(sys.argv[2]), int(sys.argv[3])
only = sys.argv[4] if len(sys.argv) > 4 else ""
adapter_dir = sys.argv[5] if len(sys.argv) > 5 else None
kept, factors = [], {}
t0 = time.perf_counter()
for name, entry in tuned.items():
    if len(entry[1]) != 2 or "embed" in name or "lm_head" in name or not name.startswith(only):
        continue
    d = as_f32(entry) - as_f32(base[name])
    u, s, vt = np.linalg.svd(d, compute_uv=True, full_matrices=False)
    total = float(np.sum(s.astype(np.float64) ** 2))
    kept.append(np.sqrt(float(np.sum(s[:rank].astype(np.float64) ** 2)) / total) if total > 0 else 1.0)
    if adapter_dir:
        root = np.sqrt(s[:rank])
        factors[name] = (u[:, :rank] * root, root[:, None] * vt[:rank], s.astype(np.float64))
seconds = time.perf_counter() - t0
print(f"modules {len(kept)} mean_kept {np.mean(kept):.8f} seconds {seconds:.3f}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)

if adapter_dir:
    ours = tensors(f"{adapter_dir}/adapter_model.safetensors")
    worst = [0.0, 0.0]
    for name, (b_np, a_np, s) in factors.items():
        key = "base_model.model." + name[: -len(".weight")]
        b_entry, a_entry = ours[key + ".lora_B.weight"], ours[key + ".lora_A.weight"]
        d = (as_f32(tuned[name]) - as_f32(base[name])).astype(np.float64)
        optimal = np.sqrt(np.sum(s[rank:] ** 2))
        err = lambda b, a: float(np.linalg.norm(d - b.astype(np.float64) @ a.astype(np.float64)))
        ours_excess = err(as_f32(b_entry), as_f32(a_entry)) / optimal - 1
        numpy_excess = err(round_to(b_np, b_entry[0]), round_to(a_np, a_entry[0])) / optimal - 1
        worst = [max(worst[0], ours_excess), max(worst[1], numpy_excess)]
        print(f"check {name} optimal {optimal / np.sqrt(np.sum(s ** 2)):.4e} ours {ours_excess:.3e} numpy_{b_entry[0]} {numpy_excess:.3e}")
    print(f"check_summary dtype {b_entry[0]} ours_max {worst[0]:.3e} numpy_max {worst[1]:.3e}")
