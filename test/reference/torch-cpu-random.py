# Reference values from torch (CPU): randperm prefixes and FourierFT delta weights as PEFT's
# FourierFTLayer.update_layer / get_delta_weight compute them.
import torch, json, sys, numpy as np
out = {}
def perm(seed, n, k):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist()
out["randperm"] = [{"seed": s, "n": n, "first": perm(s, n, min(n, 24))} for s, n in [(777, 1), (777, 2), (777, 10), (0, 97), (2**32 + 5, 1000), (-3, 4099), (123456789, 768 * 3072), (42, 1 << 20), (2**53 - 1, 65537)]]
rng = np.random.default_rng(5)
cases = []
for name, o, i, n, seed, scaling, keep_delta in [
    ("odd", 5, 7, 9, 777, 150.0, True),
    ("every-cell", 3, 4, 12, 1, 2.0, True),
    ("one", 6, 6, 1, 0, 150.0, True),
    ("conv1d", 12, 40, 30, 2**33 + 11, 0.5, True),
    ("default-n", 48, 64, 1000, 777, 150.0, False),
    ("bluestein", 96, 200, 300, 31337, 3.0, False),
]:
    spectrum = torch.tensor(rng.standard_normal(n), dtype=torch.float32)
    idx = torch.randperm(o * i, generator=torch.Generator().manual_seed(seed))[:n]
    idx = torch.stack([idx // i, idx % i], dim=0)
    dense = torch.zeros(o, i)
    dense[idx[0, :], idx[1, :]] = spectrum.float()
    delta = torch.fft.ifft2(dense).real * scaling
    c = {"name": name, "out": o, "in": i, "n_frequency": n, "random_loc_seed": seed, "scaling": scaling,
         "spectrum": [float(x) for x in spectrum.tolist()], "rows": idx[0].tolist(), "cols": idx[1].tolist()}
    if keep_delta: c["delta"] = [float(x) for x in delta.flatten().tolist()]
    cases.append(c)
out["fourierft"] = cases
json.dump({"producedBy": f"torch {torch.__version__} (Debian python3-torch 1.13.1), CPU", **out}, sys.stdout, separators=(",", ":"))
