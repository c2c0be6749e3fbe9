# PyTorch timing of the same SED training step as bench/train.bench.ts (reference semantics: 2 of M
# heads, smoothed CE + budget-weighted A2D, AdamW). Prints one JSON line. Not used by the product.
import json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_head import Head, sed_loss_parts  # bench/ is on sys.path: the script's own folder

dim, hidden, classes, batch, n_models, steps, threads = (int(v) for v in sys.argv[1:8])
torch.set_num_threads(threads)
torch.manual_seed(0)

heads = nn.ModuleList([Head(dim, hidden, classes, 1e-4) for _ in range(n_models)])
opt = torch.optim.AdamW(heads.parameters(), lr=1e-3, weight_decay=0.1)
x = torch.randn(batch, dim)
y = torch.randint(0, classes, (batch,))
t = F.one_hot(y, classes).float() * 0.5 + 0.5 / classes

def step(i):
    task, rep = sed_loss_parts(heads, n_models, x, y, t)
    loss = 0.5 * task + 0.0 * rep
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

for i in range(3):
    step(i)
t0 = time.perf_counter()
for i in range(steps):
    step(i)
dt = (time.perf_counter() - t0) / steps
print(json.dumps({"torch": torch.__version__, "threads": threads, "step_ms": dt * 1000}))
