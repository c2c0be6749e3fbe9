# Writes the paper's big model files at real size, deterministically, for bench/scale.bench.ts:
#   ensemble  a reference-format `50_models.pkl`: torch.save of a dict whose `model` is a pickled
#             RedneckEnsemble nn.Module (ModuleList `submodels` of TimmVitFinalLayers heads,
#             768 -> 3072 -> 1000), reference §1.2/§2.8/§7. 50 heads = 274.8M float32 = 1.1 GB.
#             --optimizer sgd adds the SGD momentum buffers the published file also carries (2.2 GB).
#   deit      a DeiT-3 Base `deit_3_base_224_21k.pth`: {"model": state dict} with timm's keys and
#             shapes (backbone + norm + head 1000x768), 86.6M float32 = 346 MB.
# Values are seeded noise (torch.manual_seed), not trained weights: the readers only see layout.
# Needs torch. Usage: python3 bench/make-scale-files.py ensemble OUT.pkl [--heads 50] [--optimizer none|sgd]
#                     python3 bench/make-scale-files.py deit OUT.pth
import argparse, sys, types
import torch
import torch.nn as nn

D, HID, C = 768, 3072, 1000


def fake_module(name):
    # The published pickle names the reference's own modules; register them so pickle records the
    # same globals (pickle refuses a class it cannot find again under its __module__).
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    return sys.modules[name]


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, HID)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.fc2 = nn.Linear(HID, D)
        self.drop2 = nn.Dropout(0.0)


class TimmVitFinalLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma_2 = nn.Parameter(torch.full((D,), 1e-4))
        self.mlp = Mlp()
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, C)
        with torch.no_grad():
            for lin in (self.mlp.fc1, self.mlp.fc2, self.head):
                lin.weight.normal_(0, 0.02)  # the reference's trunc_normal(0.02), minus the truncation
                lin.bias.zero_()


class RedneckEnsemble(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.submodels = nn.ModuleList([TimmVitFinalLayers() for _ in range(n)])
        self.weights = None
        self.random_select = 2
        self.keep_inactive_on_cpu = True
        self.feature_extractor = None
        self.soup = None


for cls, mod in ((Mlp, "timm.layers.mlp"), (TimmVitFinalLayers, "diverse_universe.local_models.common"),
                 (RedneckEnsemble, "diverse_universe.local_models.ensemble")):
    cls.__module__ = mod
    setattr(sys.modules.get(mod) or fake_module(mod), cls.__name__, cls)


def write_ensemble(out, heads, optimizer):
    torch.manual_seed(42)
    model = RedneckEnsemble(heads).eval()
    ckpt = {"experiment_name": "training", "current_epoch": 10, "model": model}
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for p in model.parameters():
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        ckpt["optimizer"] = opt.state_dict()
    torch.save(ckpt, out)


def write_deit(out):
    torch.manual_seed(42)
    sd = {
        "cls_token": torch.randn(1, 1, D) * 0.02,
        "pos_embed": torch.randn(1, 196, D) * 0.02,
        "patch_embed.proj.weight": torch.randn(D, 3, 16, 16) * 0.02,
        "patch_embed.proj.bias": torch.zeros(D),
    }
    for i in range(12):
        p = f"blocks.{i}."
        sd[p + "gamma_1"] = torch.full((D,), 1e-4)
        sd[p + "gamma_2"] = torch.full((D,), 1e-4)
        sd[p + "norm1.weight"] = torch.ones(D)
        sd[p + "norm1.bias"] = torch.zeros(D)
        sd[p + "attn.qkv.weight"] = torch.randn(3 * D, D) * 0.02
        sd[p + "attn.qkv.bias"] = torch.zeros(3 * D)
        sd[p + "attn.proj.weight"] = torch.randn(D, D) * 0.02
        sd[p + "attn.proj.bias"] = torch.zeros(D)
        sd[p + "norm2.weight"] = torch.ones(D)
        sd[p + "norm2.bias"] = torch.zeros(D)
        sd[p + "mlp.fc1.weight"] = torch.randn(HID, D) * 0.02
        sd[p + "mlp.fc1.bias"] = torch.zeros(HID)
        sd[p + "mlp.fc2.weight"] = torch.randn(D, HID) * 0.02
        sd[p + "mlp.fc2.bias"] = torch.zeros(D)
    sd["norm.weight"] = torch.ones(D)
    sd["norm.bias"] = torch.zeros(D)
    sd["head.weight"] = torch.randn(C, D) * 0.02
    sd["head.bias"] = torch.zeros(C)
    torch.save({"model": sd}, out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ensemble", "deit"])
    ap.add_argument("out")
    ap.add_argument("--heads", type=int, default=50)
    ap.add_argument("--optimizer", choices=["none", "sgd"], default="none")
    a = ap.parse_args()
    if a.kind == "ensemble":
        write_ensemble(a.out, a.heads, a.optimizer)
    else:
        write_deit(a.out)
