# Reference values for PEFT WaveFT with use_idwt true, written by PEFT's own code on torch (CPU):
# WaveFTLayer.update_layer (positions from torch.randperm) and get_delta_weight (padding, sub-band
# quadrants, waverec2d, crop), run from a PEFT source tree given on the command line, with the imports
# layer.py needs from outside its folder stubbed (nothing they provide is used by these two methods).
#
#   python3 test/reference/peft-waveft-idwt.py <peft checkout> > test/reference/peft-waveft-idwt.json
#
# For each case: the spectrum, the positions, ΔW from a float64 spectrum (PEFT's code in float64:
# dense spectrum and filters take the spectrum's dtype) and, for the small ones, from a float32 one
# (the dtype PEFT trains and merges in). Also each family's filters as PEFT's Wavelet forms them,
# WAVELET_REDUCTIONS, and what PEFT does with the families it cannot reconstruct.
import importlib.util, json, os, sys, types
import numpy as np
import torch
from torch import nn

src = os.path.join(sys.argv[1], "src", "peft", "tuners", "waveft")

def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m

class BaseTunerLayer:
    def get_base_layer(self):
        return self.base_layer
    def _move_adapter_to_device_of_base_layer(self, adapter_name):
        pass
    def set_adapter(self, *args, **kwargs):
        pass
    active_adapters = ["default"]

stub("transformers"); stub("transformers.pytorch_utils", Conv1D=type("Conv1D", (nn.Module,), {}))
stub("peft"); stub("peft.tuners"); stub("peft.tuners.tuners_utils", BaseTunerLayer=BaseTunerLayer, check_adapters_to_merge=None)
stub("peft.utils"); stub("peft.utils.other", transpose=None)
pkg = stub("waveft_ref"); pkg.__path__ = [src]
stub("waveft_ref.config", WaveFTConfig=object)

def load(name):
    spec = importlib.util.spec_from_file_location(f"waveft_ref.{name}", os.path.join(src, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

wavelet, constants, _, layer = load("wavelet"), load("constants"), load("waverec2d"), load("layer")

def waveft_layer(out_f, in_f, n, seed, scaling, family):
    l = layer.WaveFTLayer(nn.Linear(in_f, out_f, bias=False))
    config = types.SimpleNamespace(wavelet_family=family, scaling=scaling, init_weights=True, random_loc_seed=seed, use_idwt=True, inference_mode=True)
    l.update_layer("default", n, config)
    return l

def delta(l, spectrum, dtype):
    l.waveft_spectrum["default"] = nn.Parameter(spectrum.to(dtype), requires_grad=False)
    with torch.no_grad():
        return l.get_delta_weight("default")

rng = np.random.default_rng(11)
shapes = [(5, 7), (6, 4), (3, 11), (1, 1), (4, 3), (7, 6), (9, 8), (8, 9), (2, 5), (10, 5), (1, 6)]
families = list(wavelet._WAVELET_COEFFS)
cases = []
specs = []
for k, family in enumerate(families):
    if family == "coif5":
        continue
    o, i = shapes[k % len(shapes)]
    n = max(1, (o * i * 2) // 3) if k % 3 else o * i
    specs.append((family, o, i, n, [777, 1, 42, 0, 2**33 + 11][k % 5], [25.0, 2.0, 0.5, 1.0][k % 4], True, False))
specs += [
    ("db1-merge", 48, 64, 300, 777, 25.0, False, False),
    ("sym5-merge", 33, 20, 200, 31337, 3.0, False, False),
    ("db2-bf16", 12, 17, 60, 5, 25.0, True, True),
]
for name, o, i, n, seed, scaling, small, bf16 in specs:
    family = name.split("-")[0]
    l = waveft_layer(o, i, n, seed, scaling, family)
    spectrum = torch.tensor(rng.standard_normal(n), dtype=torch.float32)
    if bf16:
        spectrum = spectrum.bfloat16().float()
    d64 = delta(l, spectrum, torch.float64)
    assert tuple(d64.shape) == (o, i)
    idx = l.waveft_indices["default"]
    c = {"name": name, "wavelet_family": family, "out": o, "in": i, "n_frequency": n, "random_loc_seed": seed, "scaling": scaling,
         "spectrum_dtype": "BF16" if bf16 else "F32", "spectrum": [float(x) for x in spectrum.tolist()],
         "rows": idx[0].tolist(), "cols": idx[1].tolist(), "delta": [float(x) for x in d64.flatten().tolist()]}
    if small:
        c["delta32"] = [float(x) for x in delta(l, spectrum, torch.float32).flatten().tolist()]
    cases.append(c)

filters = {f: {"rec_lo": list(wavelet.Wavelet(f).rec_lo), "rec_hi": list(wavelet.Wavelet(f).rec_hi)} for f in families}

refused = []
for family, o, i in [("coif5", 5, 7), ("coif5", 64, 48), ("db11", 5, 7), ("sym20", 5, 7), ("coif17", 5, 7)]:
    l = waveft_layer(o, i, 4, 777, 25.0, family)
    try:
        d = delta(l, torch.ones(4), torch.float32)
        refused.append({"wavelet_family": family, "out": o, "in": i, "delta_shape": list(d.shape)})
    except Exception as e:
        refused.append({"wavelet_family": family, "out": o, "in": i, "error": f"{type(e).__name__}: {e}"})

json.dump({"producedBy": f"PEFT tuners/waveft (layer.py, waverec2d.py, wavelet.py, constants.py) on torch {torch.__version__} (Debian python3-torch 1.13.1), CPU",
           "wavelet_reductions": constants.WAVELET_REDUCTIONS, "filters": filters, "cases": cases, "refused": refused},
          sys.stdout, separators=(",", ":"))
