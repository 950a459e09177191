# Reference values from torch (CPU): the shared projections PEFT VeRA and PVeRA draw when an
# adapter is loaded without them (save_projection=False), as VeraModel._init_vera_A_vera_B
# (PEFT's _kaiming_init: gain sqrt(2), bound sqrt(3)*gain/sqrt(fan_in), uniform_(-bound, bound))
# and PVeraModel (torch.nn.init.kaiming_uniform_, a=0: the same bound) draw them, A first, from one
# torch.Generator("cpu").manual_seed(projection_prng_key). Run once per CPU kernel build:
#   ATEN_CPU_CAPABILITY=avx2 python3 torch-kaiming-uniform.py avx2 > part-avx2.json
#   ATEN_CPU_CAPABILITY=default python3 torch-kaiming-uniform.py default > part-default.json
# and merged into torch-kaiming-uniform.json (key "kernels").
import torch, math, json, sys, struct
def bits(t): return [struct.unpack("<I", struct.pack("<f", v))[0] for v in t.flatten().tolist()]
def peft_kaiming(shape, g):
    t = torch.empty(shape)
    fan = torch.nn.init._calculate_correct_fan(t, "fan_in")
    bound = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(fan))
    return t.uniform_(-bound, bound, generator=g)
cases = []
for seed, rows, in_max, out_max, r in [(0, 4, 24, 20, 4), (2**32 + 5, 6, 7, 9, 3), (-3, 2, 33, 5, 2), (123, 256, 1024, 640, 256)]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    a = peft_kaiming((rows, in_max), g); b = peft_kaiming((out_max, r), g)
    c = {"seed": seed, "a": [rows, in_max], "b": [out_max, r]}
    if a.numel() + b.numel() <= 400: c["aBits"] = bits(a); c["bBits"] = bits(b)
    else:
        # Large case: entries at a few positions, and a checksum of every entry's bits.
        c["aAt"] = {str(i): bits(a.flatten()[i:i+1])[0] for i in [0, 1, 1023, 1024, 100000, a.numel() - 1]}
        c["bAt"] = {str(i): bits(b.flatten()[i:i+1])[0] for i in [0, 255, 256, 99999, b.numel() - 1]}
        c["aBitSum"] = sum(bits(a)) % 2**32; c["bBitSum"] = sum(bits(b)) % 2**32
    cases.append(c)
torch.manual_seed(0)
json.dump({"kernel": sys.argv[1], "torch": torch.__version__, "rand0": torch.rand(10).tolist(), "cases": cases}, sys.stdout, separators=(",", ":"))
