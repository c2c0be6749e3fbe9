# PyTorch timing of the eval work bench/eval.bench.ts measures: M reference-size heads (x + gamma_2 *
# MLP(LN2(x)), LN, Linear) on random feature rows, the mean-logit ensemble, the uniform soup, and the
# per-sample scores that need softmax over every head (PDS, confidences, entropies). One JSON line.
# Not used by the product.
import json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_head import Head  # bench/ is on sys.path: the script's own folder

dim, hidden, classes, n_models, rows, batch, threads = (int(v) for v in sys.argv[1:8])
torch.set_num_threads(threads)
torch.manual_seed(0)

heads = nn.ModuleList([Head(dim, hidden, classes, 0.1) for _ in range(n_models)]).eval()
soup = Head(dim, hidden, classes, 0.1).eval()
with torch.no_grad():
    for name, p in soup.named_parameters():
        p.copy_(torch.stack([dict(h.named_parameters())[name] for h in heads]).mean(0))
x = torch.randn(rows, dim)

def run():
    with torch.no_grad():
        for s in range(0, rows, batch):
            xb = x[s:s + batch]
            z = torch.stack([h(xb) for h in heads])          # [M, B, C]
            p = F.softmax(z, -1)
            ens = z.mean(0).argmax(-1)
            soup_pred = soup(xb).argmax(-1)
            pds = p.max(0).values.sum(-1)
            conf = F.softmax(z.mean(0), -1).max(-1).values
            mp = p.mean(0)
            ent = -(mp * torch.log(mp.clamp_min(1e-30))).sum(-1)
            avg_ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(0)
            _ = (ens, soup_pred, pds, conf, ent, avg_ent)

run()  # warm-up
t0 = time.perf_counter()
run()
s = time.perf_counter() - t0
print(json.dumps({"samples_per_s": rows / s, "torch": torch.__version__, "threads": threads}))
