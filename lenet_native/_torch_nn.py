"""The LeNet-5 of the design note as PyTorch modules (imported only by
:func:`lenet_native.interop.to_torch`, so that nothing else needs PyTorch).

Every parameter and buffer carries the name of the weight file's array, so that
``LeNet5Module.state_dict()`` and ``LeNet5.state_dict()`` hold the same keys::

    c1.weight c1.bias  s2.weight s2.bias  c3.weight c3.bias c3.table  s4.weight s4.bias
    c5.weight c5.bias  f6.weight f6.bias  out.weight out.bias (softmax) | out.prototypes (rbf)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .reference import RBF_J, A, S

__all__ = ["LeNet5Module", "ScaledTanh", "Subsampling", "TableConv2d", "EuclideanRBF"]


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a), A = 1.7159, S = 2/3 (so that f(1) = 1)."""

    def forward(self, a):
        return A * torch.tanh(S * a)

    def extra_repr(self):
        return f"A={A}, S=2/3"


class Subsampling(nn.Module):
    """The trainable subsampling of S2 and S4: per map, (sum of each 2x2 block) * weight + bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        block_sum = F.avg_pool2d(x, 2, divisor_override=1)
        return block_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"{self.weight.numel()} maps, 2x2 block sum * weight + bias"


class TableConv2d(nn.Module):
    """C3: a 5x5 convolution whose (out map, in map) pairs are those of Table I.

    ``weight`` is dense (out, in, 5, 5) as in the weight file; the bool buffer ``table``
    (out, in) masks it in every forward, so the entries of unconnected pairs never take part
    and their gradients are zero."""

    def __init__(self, table):
        super().__init__()
        table = torch.as_tensor(table, dtype=torch.bool)
        out_maps, in_maps = table.shape
        self.weight = nn.Parameter(torch.zeros(out_maps, in_maps, 5, 5))
        self.bias = nn.Parameter(torch.zeros(out_maps))
        self.register_buffer("table", table.clone())

    def forward(self, x):
        mask = self.table[:, :, None, None].to(self.weight.dtype)
        return F.conv2d(x, self.weight * mask, self.bias)

    def extra_repr(self):
        out_maps, in_maps = self.table.shape
        return (f"{in_maps} -> {out_maps} maps, kernel 5x5, Table I: "
                f"{int(self.table.sum())} of {out_maps * in_maps} pairs connected")


class EuclideanRBF(nn.Module):
    """The paper's output layer: y_i = sum_j (x_j - prototypes_ij)^2 with fixed +1/-1
    prototypes (a buffer: never trained). The predicted class is argmin y."""

    def __init__(self, prototypes):
        super().__init__()
        self.register_buffer("prototypes", torch.as_tensor(prototypes, dtype=torch.float32).clone())

    def forward(self, x):
        return ((x[:, None, :] - self.prototypes[None]) ** 2).sum(-1)

    def extra_repr(self):
        n, d = self.prototypes.shape
        return f"{d} -> {n}, fixed +1/-1 prototypes"


class LeNet5Module(nn.Module):
    """LeNet-5 (LeCun et al., 1998) computing what ``lenet_native.LeNet5.forward`` computes:
    input (N, 1, 32, 32) (or (N, 32, 32)), output (N, 10): the logits (softmax head) or the
    RBF distances (rbf head, predicted class = argmin). ``loss`` is the head's loss."""

    def __init__(self, head: str, table, prototypes=None):
        super().__init__()
        if head not in ("softmax", "rbf"):
            raise ValueError(f"head must be 'softmax' or 'rbf'; got {head!r}")
        self.head = head
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = TableConv2d(table)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10) if head == "softmax" else EuclideanRBF(prototypes)
        self.squash = ScaledTanh()

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        f = self.squash
        x = f(self.s2(f(self.c1(x))))
        x = f(self.s4(f(self.c3(x))))
        x = f(self.f6(f(self.c5(x)).flatten(1)))
        return self.out(x)

    def loss(self, outputs, labels):
        """Mean loss over the batch, as ``LeNet5.loss_and_grad`` computes it: softmax
        cross-entropy, or the paper's eq. 9 for the rbf head,
        E = y_label + log(exp(-j) + sum_i exp(-y_i)), j = 0.1."""
        labels = torch.as_tensor(labels, dtype=torch.long, device=outputs.device)
        if self.head == "softmax":
            return F.cross_entropy(outputs, labels)
        const = torch.full((outputs.shape[0], 1), -RBF_J, dtype=outputs.dtype, device=outputs.device)
        log_z = torch.logsumexp(torch.cat([const, -outputs], dim=1), dim=1)
        return (outputs.gather(1, labels[:, None])[:, 0] + log_z).mean()

    def extra_repr(self):
        return f"head={self.head!r}"
