"""Default centroid network: small residual encoder, light FPN-style decoder to stride 4,
a weight-map head reduced by a spatial soft-argmax, and an in-view logit.

Input (N, 1, S, S) mono in [0, 1] (S = 256 by default; any multiple of 32 works).
Output (N, 3) = (u, v, in-view logit), u, v in [0, 1] across the image *extent*
(manifest convention ``xy_norm_logit``): full-resolution x = u * W - 0.5.

The head predicts a logit per stride-4 cell (added to a log-brightness prior, so training starts
from the centre of brightness); the softmax of those logits is a weight map whose mean position,
plus a small bounded global offset, is the prediction.  The map may be a peak or a broad body-shaped mask: the loss
only sees its mean, so the network is free to learn the centre of *mass* (which for a partly
lit body differs from the centre of light) as a weighted average of evidence spread over the
visible disc.  Training can also supervise the weight map directly with the body's rendered
silhouette (a uniform weight over the whole outline has its mean at the projected centre of
volume): set ``with_map = True`` and the output gains the h*w log-weights after the three
numbers (the shipped/exported model keeps it False).  Everything is static-shape tensor code, so TorchScript, torch.export and ONNX
all trace the same graph.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_INPUT = 256


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) x/y coordinates of pixel centres in [-1, 1]."""
    n, _, h, w = x.shape
    xs = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) * (2.0 / w) - 1.0
    ys = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) * (2.0 / h) - 1.0
    gx = xs.view(1, 1, 1, w).expand(n, 1, h, w)
    gy = ys.view(1, 1, h, 1).expand(n, 1, h, w)
    return torch.cat([gx, gy], dim=1)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: bool = True):
        layers: List[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convs); a strided 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride)
        self.conv2 = ConvBNAct(cout, cout, 3, 1, act=False)
        self.proj = nn.Identity() if (cin == cout and stride == 1) else \
            ConvBNAct(cin, cout, 1, stride, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.proj(x))


class CentroidNet(nn.Module):
    output_convention = 'xy_norm_logit'

    def __init__(self, widths=(16, 24, 40, 64, 96), decoder_width: int = 32):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        # 1 image channel + 2 coordinate channels (CoordConv).
        self.stem = ConvBNAct(3, w0, 3, 2)                             # /2
        self.stage1 = ResBlock(w0, w1, 2)                              # /4
        self.stage2 = nn.Sequential(ResBlock(w1, w2, 2), ResBlock(w2, w2))  # /8
        self.stage3 = nn.Sequential(ResBlock(w2, w3, 2), ResBlock(w3, w3))  # /16
        self.stage4 = nn.Sequential(ResBlock(w3, w4, 2), ResBlock(w4, w4))  # /32
        d = decoder_width
        self.lat4 = nn.Conv2d(w4, d, 1)
        self.lat3 = nn.Conv2d(w3, d, 1)
        self.lat2 = nn.Conv2d(w2, d, 1)
        self.lat1 = nn.Conv2d(w1, d, 1)
        self.smooth = ConvBNAct(d + 2, d, 3)
        self.head = nn.Conv2d(d, 1, 1)
        # prior: the head's logits start from log(brightness) of each cell, so the untrained
        # network already returns the centre of brightness; training learns where to move
        # weight (onto the unlit part of the body) and a small global offset.
        self.prior_gain = nn.Parameter(torch.ones(1))
        self.offset = nn.Linear(w4, 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.in_view = nn.Linear(w4, 1)
        self.with_map = False       # training only: append the log-weight map to the output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        x = torch.cat([x, coord_channels(x)], dim=1)
        x = self.stem(x)
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        p = self.lat4(c4)
        p = F.interpolate(p, size=c3.shape[-2:], mode='nearest') + self.lat3(c3)
        p = F.interpolate(p, size=c2.shape[-2:], mode='nearest') + self.lat2(c2)
        p = F.interpolate(p, size=c1.shape[-2:], mode='nearest') + self.lat1(c1)
        p = self.smooth(torch.cat([p, coord_channels(p)], dim=1))
        n, _, h, w = p.shape
        brightness = F.adaptive_avg_pool2d(image, [h, w]).clamp(min=0.0)
        logits = self.head(p) + self.prior_gain * torch.log(brightness + 1e-4)   # (N, 1, h, w)
        log_w = torch.log_softmax(logits.reshape(n, h * w), dim=1)
        weights = log_w.exp().reshape(n, h, w)
        us = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) / w
        vs = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) / h
        u = (weights.sum(dim=1) * us.view(1, w)).sum(dim=1)
        v = (weights.sum(dim=2) * vs.view(1, h)).sum(dim=1)
        g = F.adaptive_avg_pool2d(c4, 1).flatten(1)
        off = 0.05 * torch.tanh(self.offset(g))
        in_view = self.in_view(g).squeeze(1)
        out = torch.stack([u + off[:, 0], v + off[:, 1], in_view], dim=1)
        if self.with_map:
            return torch.cat([out, log_w], dim=1)
        return out


class D4Averaged(nn.Module):
    """Test-time averaging over the 8 flips/transposes of the square input (the dihedral group
    D4, the same transforms training augments with): each view's (u, v) is mapped back to the
    original frame and the 8 answers (and in-view logits) are averaged.  Same input and output
    convention as the wrapped network (``xy_norm_logit``); 8x the compute of one pass."""
    output_convention = 'xy_norm_logit'

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = x.flip(3)
        v = x.flip(2)
        hv = x.flip([2, 3])
        views = torch.cat([x, h, v, hv, x.transpose(2, 3), h.transpose(2, 3),
                           v.transpose(2, 3), hv.transpose(2, 3)], dim=0)
        p = self.net(views)[:, :3].reshape(8, n, 3)
        a, b, logit = p[..., 0], p[..., 1], p[..., 2]
        one = torch.ones_like(a)
        # view -> original frame: transposed views swap (a, b) first, then undo the flips
        u = torch.stack([a[0], one[1] - a[1], a[2], one[3] - a[3],
                         b[4], one[5] - b[5], b[6], one[7] - b[7]], dim=0)
        w = torch.stack([b[0], b[1], one[2] - b[2], one[3] - b[3],
                         a[4], a[5], one[6] - a[6], one[7] - a[7]], dim=0)
        return torch.stack([u.mean(0), w.mean(0), logit.mean(0)], dim=1)
