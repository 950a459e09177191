# Reference values for PEFT DEFT's merge, from its formula built by hand on torch (CPU), float64:
#   ΔW = Q_P · (s·R − rightᵀ·W), s = alpha / r (1 without alpha); PaRa: ΔW = −Q_P · rightᵀ·W;
#   "relu": Q_P = P, right = relu(P); "qr": Q_P = right = torch.linalg.qr(P).Q (reduced).
# torch.linalg.qr is what PEFT's DeftLinear._project calls: these numbers pin its sign convention
# (LAPACK's Householder reflectors), including r = out, whose last reflector is the identity.
#
#   python3 test/reference/peft-deft-qr.py > test/reference/peft-deft-qr.json
#
# Inputs are dyadic values on the bf16 grid (exact in float32 and float64), from a fixed LCG.
import json
import torch

state = [12345]
def draw(n):
    out = []
    for _ in range(n):
        state[0] = (state[0] * 1103515245 + 12345) % (1 << 31)
        out.append(round(((state[0] / (1 << 31)) * 2 - 1) * 128) / 128)
    return out

def case(name, out_f, in_f, r, method, alpha, para):
    P = torch.tensor(draw(out_f * r), dtype=torch.float64).reshape(out_f, r)
    R = torch.tensor(draw(r * in_f), dtype=torch.float64).reshape(r, in_f)
    W = torch.tensor(draw(out_f * in_f), dtype=torch.float64).reshape(out_f, in_f)
    if method == "qr":
        Q, _ = torch.linalg.qr(P)
        right = Q
    else:
        Q, right = P, torch.relu(P)
    s = alpha / r if alpha else 1.0
    delta = -(Q @ (right.T @ W)) if para else Q @ (R * s - right.T @ W)
    return {
        "name": name, "out": out_f, "in": in_f, "r": r, "decomposition_method": method, "alpha": alpha, "para": para,
        "P": P.flatten().tolist(), "R": None if para else R.flatten().tolist(), "W": W.flatten().tolist(),
        "Q": Q.flatten().tolist(), "merged": (W + delta).flatten().tolist(),
    }

cases = [
    case("qr r=3 on (6, 5), alpha 6", 6, 5, 3, "qr", 6, False),
    case("qr r=3 = out on (3, 4)", 3, 4, 3, "qr", None, False),
    case("qr PaRa r=2 on (5, 4)", 5, 4, 2, "qr", None, True),
    case("relu r=2 on (5, 4), alpha 3", 5, 4, 2, "relu", 3, False),
]
print(json.dumps({"torch": torch.__version__, "cases": cases}, indent=1))
