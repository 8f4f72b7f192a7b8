"""The lunar report's custom U-Net (section 2.2 and figure 3), re-implemented.

Encoder and decoder blocks are two [3x3 conv ('same' padding), BatchNorm, ReLU]; between
encoder blocks a 2x2 max pool followed by Dropout(0.2); each decoder block is preceded by a
2x2 transposed convolution, and its input is the upsampled map concatenated with the encoder
map of the same level (centre-cropped when the sizes differ).  A 1x1 convolution gives the class
logits; the softmax lives in the loss / predictor, so the module outputs ``logits_nchw``.
Convolutions use He (Kaiming normal) initialisation as in the report; trained with Adam 1e-3.
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 4


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Down(nn.Module):
    """Max pool + dropout, then a double conv."""

    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.drop(self.pool(x)))


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[:, :, top:top + h, left:left + w]


class Up(nn.Module):
    """Transposed-conv upsampling, skip concatenation, double conv."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin // 2 + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        h = min(x.shape[-2], skip.shape[-2])
        w = min(x.shape[-1], skip.shape[-1])
        x = torch.cat([center_crop(skip, h, w), center_crop(x, h, w)], dim=1)
        return self.conv(x)


class ReportUNet(nn.Module):
    output_convention = 'logits_nchw'

    def __init__(self, in_channels: int = 3, num_classes: int = NUM_CLASSES,
                 base: int = 16, depth: int = 4, dropout: float = 0.2):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList([Down(widths[i], widths[i + 1], dropout) for i in range(depth)])
        self.ups = nn.ModuleList([Up(widths[i + 1], widths[i], widths[i])
                                  for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inc(x)
        skips: List[torch.Tensor] = [x]
        for down in self.downs:
            x = down(x)
            skips.append(x)
        i = len(skips) - 2
        for up in self.ups:
            x = up(x, skips[i])
            i -= 1
        x = self.head(x)
        return x
