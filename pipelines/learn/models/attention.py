"""A pre-norm transformer block whose self-attention exposes its keys and values."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVSelfAttention(nn.Module):
    """Multi-head self-attention that returns ``(out, k, v)``.

    ``k`` and ``v`` are [B, L, d]: the projected keys and values of all heads, concatenated along
    the feature axis (head h owns features ``h*d/heads:(h+1)*d/heads``), which is what D-CAT
    aligns through ``K^T V`` [B, d, d].
    """

    def __init__(self, d: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if d % heads:
            raise ValueError(f"attention width d={d} is not divisible by heads={heads}")
        self.d, self.heads, self.dropout = d, heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor):
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)

        def split(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(q), split(k), split(v),
                                           dropout_p=self.dropout if self.training else 0.0)
        o = o.transpose(1, 2).reshape(b, n, d)
        return self.proj(o), k, v


class AttentionBlock(nn.Module):
    """x + Attn(LN(x)); x + MLP(LN(x)). Returns ``(x, k, v)``."""

    def __init__(self, d: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = KVSelfAttention(d, heads, dropout=0.0)
        self.norm2 = nn.LayerNorm(d)
        hidden = int(round(d * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor):
        a, k, v = self.attn(self.norm1(x))
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, k, v


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """Fixed sin/cos position codes [n, d] (Vaswani et al.); no parameters, any length."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float32)
    div = torch.exp(-math.log(10000.0) * i / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe
