# Reference values for PEFT PEANuT's merge, from its formula built by hand on torch (CPU), float64:
# each column x of the base weight W (out, in) runs through h = act(A·x); per encoder, keep h as a
# residual and h = act(E_i·h); per decoder, h = act(D_i·h) + residual[depth - 1 - i]; ΔW's column
# is scaling·B·h. The activations are torch's own functions, as transformers' ACT2FN entries call
# them (relu, nn.functional.gelu exact and with approximate="tanh", silu, mish, sigmoid, tanh); and
# every ACT2FN entry this tool forms on a grid of inputs, from the formula its transformers class applies.
#
#   python3 test/reference/peft-peanut.py > test/reference/peft-peanut.json
#
# Inputs are dyadic values on the bf16 grid (exact in float32 and float64), from a fixed LCG.
import json
import math
import torch
import torch.nn.functional as F

state = [2024]
def draw(n, scale=1.0):
    out = []
    for _ in range(n):
        state[0] = (state[0] * 1103515245 + 12345) % (1 << 31)
        out.append(round(((state[0] / (1 << 31)) * 2 - 1) * 128) / 128 * scale)
    return out

ACTS = {
    "relu": F.relu, "gelu": F.gelu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu, "mish": F.mish, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}

def case(name, out_f, in_f, r, depth, act, scaling):
    t = lambda shape, scale=1.0: torch.tensor(draw(shape[0] * shape[1], scale), dtype=torch.float64).reshape(*shape)
    W, A, B = t((out_f, in_f), 2.0), t((r, out_f)), t((out_f, r))
    enc = [t((r, r)) for _ in range(depth)]
    dec = [t((r, r)) for _ in range(depth)]
    f = ACTS[act]
    h = f(W.T @ A.T)  # (in, r): one row per column of W
    res = []
    for e in enc:
        res.append(h)
        h = f(h @ e.T)
    for i, d in enumerate(dec):
        h = f(h @ d.T) + res[depth - 1 - i]
    delta = (h @ B.T * scaling).T
    return {
        "name": name, "out": out_f, "in": in_f, "r": r, "depth": depth, "act_fn": act, "scaling": scaling,
        "W": W.flatten().tolist(), "A": A.flatten().tolist(), "B": B.flatten().tolist(),
        "enc": [e.flatten().tolist() for e in enc], "dec": [d.flatten().tolist() for d in dec],
        "merged": (W + delta).flatten().tolist(),
    }

cases = [
    case("relu, depth 0, r 3 on (6, 5)", 6, 5, 3, 0, "relu", 1.0),
    case("gelu (erf), depth 2, r 2 on (5, 4), scaling 0.5", 5, 4, 2, 2, "gelu", 0.5),
    case("gelu_pytorch_tanh, depth 1, r 3 on (4, 6)", 4, 6, 3, 1, "gelu_pytorch_tanh", 2.0),
    case("silu, depth 1, r 2 on (5, 3)", 5, 3, 2, 1, "silu", 1.0),
    case("mish, depth 3, r 2 on (4, 4), scaling 0.25", 4, 4, 2, 3, "mish", 0.25),
    case("sigmoid, depth 1, r 2 on (3, 5)", 3, 5, 2, 1, "sigmoid", 1.0),
    case("tanh, depth 0, r 2 on (3, 3)", 3, 3, 2, 0, "tanh", 1.5),
]
# Each ACT2FN entry this tool forms, on a grid, as transformers' class computes it on torch (float64).
xs = torch.tensor([-25.0, -12.5, -7.0, -3.0, -1.5, -0.75, -0.125, 0.0, 0.0625, 0.5, 1.0, 2.25, 4.0, 6.5, 11.0, 30.0], dtype=torch.float64)
tanh_gelu = lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
activations = {
    "relu": F.relu(xs), "relu6": F.relu6(xs), "relu2": torch.square(F.relu(xs)), "leaky_relu": F.leaky_relu(xs),
    "sigmoid": torch.sigmoid(xs), "tanh": torch.tanh(xs), "linear": xs, "silu": F.silu(xs), "swish": F.silu(xs),
    "gelu": F.gelu(xs), "gelu_python": xs * 0.5 * (1.0 + torch.erf(xs / math.sqrt(2.0))), "gelu_10": torch.clip(F.gelu(xs), -10, 10),
    "gelu_new": tanh_gelu(xs), "gelu_pytorch_tanh": F.gelu(xs, approximate="tanh"), "gelu_accurate": tanh_gelu(xs),
    "gelu_fast": 0.5 * xs * (1.0 + torch.tanh(xs * 0.7978845608 * (1.0 + 0.044715 * xs * xs))),
    "quick_gelu": xs * torch.sigmoid(1.702 * xs), "mish": F.mish(xs),
}
print(json.dumps({"torch": torch.__version__, "cases": cases, "x": xs.tolist(), "activations": {k: v.tolist() for k, v in activations.items()}}, indent=1))
