# The reference's TimmVitFinalLayers head in PyTorch (x + gamma_2 * MLP(LN2(x)), LN, Linear), shared
# by the PyTorch side of the benchmarks (train-step.py, eval-heads.py). Not used by the product.
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
