# PyTorch side of bench/gpu.bench.ts: the same work at the same sizes on this machine's best device
# (CUDA when there is one), printed as one JSON line with the same keys as the sed-pipe side.
#   python3 bench/gpu-torch.py paper|small ROUNDS
# ViT forward: timm's deit3_base_patch16_224 forward_features where timm is installed (random
# weights), else a plain-PyTorch ViT of the same architecture. Not used by the product.
import json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from torch_head import Head, sed_loss_parts  # noqa: E402

size, rounds = sys.argv[1], int(sys.argv[2])
paper = size == "paper"
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n):
    fn()
    sync()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t) / n


class Block(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)
        self.g1, self.g2 = nn.Parameter(0.1 * torch.ones(d)), nn.Parameter(0.1 * torch.ones(d))
        self.h = heads

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v)
        else:  # torch < 2.0
            a = (q @ k.transpose(-2, -1) * (d // self.h) ** -0.5).softmax(-1) @ v
        a = a.transpose(1, 2).reshape(b, n, d)
        x = x + self.g1 * self.proj(a)
        return x + self.g2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Vit(nn.Module):
    def __init__(self, img, patch, d, depth, heads):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (img // patch) ** 2, d))
        self.blocks = nn.Sequential(*[Block(d, heads, 4 * d) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward_features(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        return self.norm(self.blocks(x))


if paper:
    try:
        import timm
        vit = timm.create_model("deit3_base_patch16_224", pretrained=False)
        out["vit"] = "timm deit3_base_patch16_224"
    except ImportError:
        vit = Vit(224, 16, 768, 12, 12)
        out["vit"] = "plain PyTorch DeiT-B"
    img, batches = 224, [64, 128, 256]
else:
    vit, img, batches = Vit(32, 16, 64, 2, 4), 32, [8]
    out["vit"] = "small ViT"
vit = vit.to(dev).eval()
for tf32 in ([False, True] if dev.type == "cuda" else [False]):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    for b in batches:
        x = torch.randn(b, 3, img, img, device=dev)
        with torch.no_grad():
            s = timed(lambda: vit.forward_features(x), rounds)
        out[f"vit_img_s_b{b}{'_tf32' if tf32 else ''}"] = b / s
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

dim, hidden, classes = (768, 3072, 1000) if paper else (64, 128, 50)


def step_ms(n_models, batch, sgd):
    heads = nn.ModuleList([Head(dim, hidden, classes, 0.1) for _ in range(n_models)]).to(dev)
    opt = torch.optim.SGD(heads.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) if sgd else torch.optim.AdamW(heads.parameters(), lr=1e-3, weight_decay=0.1)
    x = torch.randn(batch, dim, device=dev)
    y = torch.randint(0, classes, (batch,), device=dev)
    t = F.one_hot(y, classes).float() * 0.5 + 0.5 / classes

    def step():
        task, rep = sed_loss_parts(heads, n_models, x, y, t)
        loss = task + 0.5 * rep
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if sgd and not all(torch.isfinite(p.grad).all() for p in heads.parameters() if p.grad is not None):
            return
        opt.step()

    return timed(step, rounds) * 1000


out["ood_gen_b32"] = step_ms(5, 32, False)
if paper:
    out["ood_gen_b256"] = step_ms(5, 256, False)
out["50_heads_sgd_b16"] = step_ms(50 if paper else 6, 16, True)

M, rows = (50, 8192) if paper else (6, 256)
heads = nn.ModuleList([Head(dim, hidden, classes, 0.1) for _ in range(M)]).to(dev).eval()
soup = Head(dim, hidden, classes, 0.1).to(dev).eval()
x = torch.randn(rows, dim, device=dev)


def evaluate():
    with torch.no_grad():
        for s in range(0, rows, 256):
            xb = x[s:s + 256]
            logits = torch.stack([h(xb) for h in heads])
            p = logits.softmax(-1)
            ens = logits.mean(0)
            pred = p.argmax(-1)
            # the per-sample scores: PDS-like unique votes, confidences, entropies, mutual information
            _ = (pred.T.unsqueeze(-1) == torch.arange(classes, device=dev)).any(1).sum(-1)
            pm = p.mean(0)
            _ = -(pm * pm.clamp_min(1e-12).log()).sum(-1) + (p * p.clamp_min(1e-12).log()).sum(-1).mean(0)
            _ = ens.softmax(-1).max(-1).values, soup(xb).softmax(-1).max(-1).values


out["eval_samples_s"] = rows / timed(evaluate, max(1, rounds // 5))
print(json.dumps(out))
