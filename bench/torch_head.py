# The reference's TimmVitFinalLayers head in PyTorch (x + gamma_2 * MLP(LN2(x)), LN, Linear), shared
# by the PyTorch side of the benchmarks (train-step.py, eval-heads.py, gpu-torch.py), with the SED
# step's loss. Not used by the product.
import torch
import torch.nn as nn
import torch.nn.functional as F


class Head(nn.Module):
    def __init__(self, dim, hidden, classes, gamma):
        super().__init__()
        self.gamma_2 = nn.Parameter(gamma * torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = x + self.gamma_2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return self.head(self.norm(x))


def sed_loss_parts(heads, n_models, x, y, t):
    """One SED step's forward on 2 random active heads: (task term, A2D repulsion term).
    Smoothed cross-entropy targets `t`; the repulsion is budget-weighted by the ensemble's CE."""
    active = sorted(torch.randperm(n_models)[:2].tolist())
    logits = [heads[j](x) for j in active]
    task = sum(F.cross_entropy(z, t) for z in logits) / len(logits)
    with torch.no_grad():
        ce = F.cross_entropy(torch.stack(logits).mean(0), y, reduction="none")
        alpha = ce / ce.mean() ** 2
    p0, p1 = F.softmax(logits[0], -1), F.softmax(logits[1], -1)
    c = p0.argmax(-1, keepdim=True)
    a, b = p0.gather(1, c).squeeze(1), p1.gather(1, c).squeeze(1)
    rep = (alpha * -torch.log(a * (1 - b) + b * (1 - a) + 1e-9)).mean()
    return task, rep
