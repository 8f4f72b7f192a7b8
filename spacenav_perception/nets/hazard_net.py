"""Default segmentation network: residual encoder (stride 32) with a light U-Net decoder.

Input (N, 3, H, W) RGB in [0, 1] normalised per the manifest (H, W even: the decoder resizes to
each skip's size and the sub-pixel head works on 2 x 2 blocks; training default 240 x 352, the
shipped model 432 x 624 for 480 x 720 frames).  Output (N, 4, H, W) class logits
(``logits_nchw``): the decoder goes down to stride 2 and a bilinear x2 brings its logits to the input size.  With
``full_res=True`` (arch ``hazardnet_fr``) a light stage at the input's resolution instead joins
the upsampled decoder features with features of the input image itself, so rock outlines are
drawn per input pixel (small rocks are a few pixels across at the model input): more accurate,
and about 9 ms slower per frame on a 2-core CPU (see docs/RESULTS_MODELS.md).  With
``subpixel=True`` (arch ``hazardnet_sp``) the same per-pixel detail comes at stride 2: the last
decoder block also sees the input image rearranged space-to-depth (each 2 x 2 block of pixels as
12 channels) and the head predicts the logits of the four pixels of each 2 x 2 block, put back in
place by a pixel shuffle; nothing runs at the input's resolution (about 3 ms slower than the
bilinear head instead of 9-12 ms for ``full_res``).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from .centroid_net import ConvBNAct, ResBlock

NUM_CLASSES = 4


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(ConvBNAct(cin + cskip, cout, 3), ConvBNAct(cout, cout, 3))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class HazardNet(nn.Module):
    output_convention = 'logits_nchw'

    def __init__(self, in_channels: int = 3, num_classes: int = NUM_CLASSES,
                 widths=(24, 32, 48, 96, 160), dec=(96, 64, 48, 32), full_res: bool = False,
                 subpixel: bool = False):
        super().__init__()
        if full_res and subpixel:
            raise ValueError('full_res and subpixel are two different output stages; pick one')
        self.full_res = full_res
        self.subpixel = subpixel
        w0, w1, w2, w3, w4 = widths
        self.stem = ConvBNAct(in_channels, w0, 3, 2)                               # /2
        self.enc1 = nn.Sequential(ResBlock(w0, w1, 2), ResBlock(w1, w1))           # /4
        self.enc2 = nn.Sequential(ResBlock(w1, w2, 2), ResBlock(w2, w2))           # /8
        self.enc3 = nn.Sequential(ResBlock(w2, w3, 2), ResBlock(w3, w3))           # /16
        self.enc4 = nn.Sequential(ResBlock(w3, w4, 2), ResBlock(w4, w4))           # /32
        self.context = ConvBNAct(w4, w4, 1)
        self.dec3 = DecoderBlock(w4, w3, dec[0])
        self.dec2 = DecoderBlock(dec[0], w2, dec[1])
        self.dec1 = DecoderBlock(dec[1], w1, dec[2])
        # subpixel: the stride-2 block also sees the space-to-depth input (4 pixels x channels)
        self.dec0 = DecoderBlock(dec[2], w0 + (4 * in_channels if subpixel else 0), dec[3])
        head_in, head_out = dec[3], num_classes
        if full_res:
            # input-resolution stage: image features (stride 1) + projected decoder features
            self.full_img = ConvBNAct(in_channels, 8, 3)
            self.full_dec = ConvBNAct(dec[3], 16, 1)
            self.full = ConvBNAct(24, 16, 3)
            head_in = 16
        else:
            self.full_img, self.full_dec, self.full = nn.Identity(), nn.Identity(), nn.Identity()
            if subpixel:
                head_out = 4 * num_classes          # the 2 x 2 pixels of each position
        self.head = nn.Conv2d(head_in, head_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size: List[int] = [x.shape[-2], x.shape[-1]]
        s0 = self.stem(x)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        s3 = self.enc3(s2)
        s4 = self.enc4(s3)
        g = F.adaptive_avg_pool2d(s4, 1)
        p = self.context(s4 + g)
        p = self.dec3(p, s3)
        p = self.dec2(p, s2)
        p = self.dec1(p, s1)
        if self.subpixel:
            p = self.dec0(p, torch.cat([s0, F.pixel_unshuffle(x, 2)], dim=1))
            return F.pixel_shuffle(self.head(p), 2)
        p = self.dec0(p, s0)
        if self.full_res:
            p = F.interpolate(self.full_dec(p), size=size, mode='bilinear', align_corners=False)
            return self.head(self.full(torch.cat([p, self.full_img(x)], dim=1)))
        return F.interpolate(self.head(p), size=size, mode='bilinear', align_corners=False)


class HFlipAveraged(nn.Module):
    """Test-time averaging over the frame and its mirror image (left-right flip, which training
    augments with; an up-down flip would put the sky under the ground): the mirrored view's
    logits are flipped back and the two are averaged.  Same input and output convention as the
    wrapped network (``logits_nchw``); 2x the compute of one pass."""
    output_convention = 'logits_nchw'

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = self.net(torch.cat([x, x.flip(3)], dim=0))
        return 0.5 * (y[:n] + y[n:].flip(3))
