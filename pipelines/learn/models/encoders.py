"""One encoder per stream kind; each maps a batch of windows to tokens [B, L, d].

- imu: 1-D convolutions over time ([B, T, C] -> [B, ceil(T/4), d]).
- audio: 2-D convolutions over the log-mel (time x mel) then a linear map of (channels x mel)
  per time step ([B, F, M] -> [B, ceil(F/4), d]).
- video: a per-frame 2-D CNN (a 5x5 stride-4 stem, three stride-2 stages, global average pool:
  112 px -> 28 -> 14 -> 7 -> 4; the stride-4 stem is ~6x cheaper on a CPU than a stride-2 one
  at the same depth) followed by a
  depthwise temporal convolution with a residual (a light "(2+1)-D" design):
  [B, T, H, W, 3] -> [B, T, d].

Inputs arrive already scaled by :class:`InputNorm`.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv1d(cin, cout, k, stride):
    return nn.Sequential(nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm1d(cout), nn.ReLU(inplace=True))


def _conv2d(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class IMUEncoder(nn.Module):
    default_widths = (32, 64)

    def __init__(self, in_shape, d: int, widths=None):
        super().__init__()
        _, c = in_shape
        w1, w2 = widths or self.default_widths
        self.net = nn.Sequential(_conv1d(c, w1, 5, 1), _conv1d(w1, w2, 5, 2), _conv1d(w2, d, 3, 2))

    def forward(self, x):  # [B, T, C]
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class AudioEncoder(nn.Module):
    default_widths = (16, 32)

    def __init__(self, in_shape, d: int, widths=None):
        super().__init__()
        _, m = in_shape
        w1, w2 = widths or self.default_widths
        self.net = nn.Sequential(_conv2d(1, w1, 3, (1, 2)), _conv2d(w1, w2, 3, 2), _conv2d(w2, w2, 3, 2))
        m_out = m
        for s in (2, 2, 2):
            m_out = (m_out - 1) // s + 1
        self.proj = nn.Linear(w2 * m_out, d)

    def forward(self, x):  # [B, F, M]
        h = self.net(x.unsqueeze(1))  # [B, w, F', M']
        b, w, f, m = h.shape
        return self.proj(h.permute(0, 2, 1, 3).reshape(b, f, w * m))


class VideoEncoder(nn.Module):
    default_widths = (16, 32, 64)

    def __init__(self, in_shape, d: int, widths=None, temporal_kernel: int = 3):
        super().__init__()
        w1, w2, w3 = widths or self.default_widths
        self.frame_net = nn.Sequential(_conv2d(3, w1, 5, 4), _conv2d(w1, w2, 3, 2), _conv2d(w2, w3, 3, 2),
                                       _conv2d(w3, d, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.temporal = (nn.Conv1d(d, d, temporal_kernel, padding=temporal_kernel // 2, groups=d)
                         if temporal_kernel and temporal_kernel > 1 else None)

    def forward(self, x):  # [B, T, 3, H, W] float
        b, t = x.shape[:2]
        h = self.frame_net(x.flatten(0, 1)).view(b, t, -1)
        if self.temporal is not None:
            h = h + self.temporal(h.transpose(1, 2)).transpose(1, 2)
        return h


class InputNorm(nn.Module):
    """Scale raw shard arrays: video uint8 -> float in [0, 1] then per-RGB standardization; imu and
    audio: ``(x - in_mean) / in_std`` over the last axis (channels / mel bands). The statistics are
    buffers (saved in the checkpoint); training sets them from the training windows."""

    def __init__(self, kind: str, in_shape):
        super().__init__()
        self.kind = kind
        n = 3 if kind == "video" else int(in_shape[-1])
        if kind == "video":
            mean, std = torch.tensor([0.45, 0.45, 0.45]), torch.tensor([0.225, 0.225, 0.225])
        else:
            mean, std = torch.zeros(n), torch.ones(n)
        self.register_buffer("in_mean", mean)
        self.register_buffer("in_std", std)

    def set_stats(self, mean, std):
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(self.in_mean.shape)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(self.in_std.shape)
        self.in_mean.copy_(mean)
        self.in_std.copy_(torch.clamp(std, min=1e-6))

    def forward(self, x):
        if self.kind == "video":  # [B, T, H, W, 3] uint8 -> [B, T, 3, H, W]
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            x = (x - self.in_mean) / self.in_std
            return x.permute(0, 1, 4, 2, 3)
        return (x.float() - self.in_mean) / self.in_std


ENCODERS = {"imu": IMUEncoder, "audio": AudioEncoder, "video": VideoEncoder}
