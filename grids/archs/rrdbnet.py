"""RRDBNet: the ESRGAN generator (Residual-in-Residual Dense Blocks).

References:

* X. Wang, K. Yu, S. Wu, J. Gu, Y. Liu, C. Dong, Y. Qiao and C. C. Loy, "ESRGAN: Enhanced
  Super-Resolution Generative Adversarial Networks", ECCV Workshops 2018.
* X. Wang et al., BasicSR (https://github.com/XPixelGroup/BasicSR), ``RRDBNet``, whose
  pixel-unshuffle front end (Real-ESRGAN) gives the x2 and x1 variants.

The parameter names are BasicSR's, so its published weights load strictly::

    [pixel_unshuffle] -> conv_first -> body.{i}.rdb{1,2,3}.conv{1..5} -> conv_body (+ feat)
    -> nearest x2 -> conv_up1 -> nearest x2 -> conv_up2 -> conv_hr -> conv_last

The trunk always upsamples 4x; ``scale`` 2 and 1 first fold the input with
``pixel_unshuffle(2)`` / ``pixel_unshuffle(4)``, so the output is ``scale`` times the input.

Input: float tensor ``(B, num_in_ch, H, W)``, values in ``[0, 1]``; H and W must be multiples
of 4 for ``scale=1`` and of 2 for ``scale=2``. Output: ``(B, num_out_ch, scale*H, scale*W)``,
same dtype and device; not clamped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grids.archs.msrresnet import _init_conv

__all__ = ["RRDBNet", "RRDB", "ResidualDenseBlock"]

_UNSHUFFLE = {1: 4, 2: 2, 4: 1}  # scale -> pixel-unshuffle factor of the input


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; ``x5 * 0.2 + x``; ``(B, num_feat, H, W)`` in and out.

    LeakyReLU(0.2) after conv1..conv4. Init: Kaiming-normal * 0.1, zero bias (BasicSR).
    """

    def __init__(self, *, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            _init_conv(conv, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: ``rdb3(rdb2(rdb1(x))) * 0.2 + x``; shape kept."""

    def __init__(self, *, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator with BasicSR's layer names and scale 1 / 2 / 4.

    Args:
        num_in_ch: input channels (``conv_first`` sees ``num_in_ch * 16`` for scale 1 and
            ``num_in_ch * 4`` for scale 2, after pixel-unshuffle).
        num_out_ch: output channels.
        scale: 1, 2 or 4: output size / input size.
        num_feat: trunk channels.
        num_block: number of RRDBs in ``body``.
        num_grow_ch: growth channels of the dense blocks.

    ``forward``: ``(B, num_in_ch, H, W)`` float in ``[0, 1]`` ->
    ``(B, num_out_ch, scale*H, scale*W)``, same dtype and device. Raises ``ValueError`` when
    H or W is not a multiple of 4 (scale 1) or 2 (scale 2).

    The default model (scale 1, 64 features, 23 blocks, growth 32) has 16,723,907
    parameters (scale 2: 16,703,171; scale 4: 16,697,987). Initialisation as BasicSR: the
    dense-block convs get Kaiming-normal * 0.1 and zero bias (``default_init_weights``);
    the other convs keep PyTorch's default initialisation.
    """

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 1,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in _UNSHUFFLE:
            raise ValueError(f"scale must be 1, 2 or 4, got {scale}")
        if num_block < 1:
            raise ValueError(f"num_block must be >= 1, got {num_block}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.scale = scale
        self.unshuffle = _UNSHUFFLE[scale]

        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat=num_feat, num_grow_ch=num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        """What evaluation pads H and W to: the input's pixel-unshuffle factor."""
        return self.unshuffle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_in_ch, H, W)`` in ``[0, 1]`` -> ``(B, num_out_ch, scale*H, scale*W)``."""
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(
                    f"RRDBNet(scale={self.scale}) needs H and W to be multiples of {self.unshuffle}, "
                    f"got {h}x{w}; pad the input and crop the output"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
