"""A small NAFNet-style restoration network: an example of a user-defined architecture.

Written for this project after the ideas of NAFNet (Chen et al., "Simple Baselines for Image
Restoration", ECCV 2022): blocks without nonlinear activations, a channel split-and-multiply
("simple gate") in their place, and a cheap channel attention; a U-shaped encoder/decoder.
Use it with::

    training:
      arch: "examples/nafnet.py:NAFNet"     # relative to the working directory
      arch_kwargs: {width: 16, enc_blocks: [1, 1], middle_blocks: 1, dec_blocks: [1, 1]}

The contract every architecture meets (see :mod:`grids.archs`): built as ``NAFNet(**arch_kwargs)``,
``(B, 3, H, W)`` in [0, 1] in and out, and ``size_multiple``: H and W must be multiples of
``2 ** len(enc_blocks)`` (one halving per encoder level), which evaluation pads to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel, with a per-channel scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[None, :, None, None] + self.bias[None, :, None, None]


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """Split the channels in two halves and multiply them: the block's only nonlinearity."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """Norm -> 1x1 -> depthwise 3x3 -> gate -> channel attention -> 1x1, then a gated feed-forward;
    both branches residual, each scaled by a learnt per-channel factor that starts at zero (so a
    fresh block is the identity)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.depthwise = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.attention = nn.Conv2d(c, c, 1)  # on the globally pooled features
        self.project = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.ffn_in = nn.Conv2d(c, 2 * c, 1)
        self.ffn_out = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = simple_gate(self.depthwise(self.expand(self.norm1(x))))
        y = y * self.attention(y.mean((2, 3), keepdim=True))
        x = x + self.beta * self.project(y)
        y = self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))
        return x + self.gamma * y


class NAFNet(nn.Module):
    """U-shaped stack of NAF blocks with a global residual: ``out = input + net(input)``.

    Args:
        width: channels at full resolution (doubled at each encoder level).
        enc_blocks: blocks per encoder level (each level then halves the resolution).
        middle_blocks: blocks at the lowest resolution.
        dec_blocks: blocks per decoder level (same length as ``enc_blocks``).
    """

    def __init__(
        self,
        width: int = 16,
        enc_blocks: Sequence[int] = (1, 1),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1),
    ):
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(f"enc_blocks {list(enc_blocks)} and dec_blocks {list(dec_blocks)} differ in length")
        self.size_multiple = 2 ** len(enc_blocks)
        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.intro(image)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(up(x) + skip)
        return image + self.ending(x)
