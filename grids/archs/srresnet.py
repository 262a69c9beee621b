"""SRResNet at the input resolution: a restoration (not super-resolution) backbone.

References:

* C. Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
  Adversarial Network", CVPR 2017 (SRResNet).
* X. Wang et al., BasicSR (https://github.com/XPixelGroup/BasicSR), ``MSRResNet``: SRResNet
  without batch normalisation.

This is :class:`grids.archs.msrresnet.MSRResNet` without the upsampling stages
(``upconv1``/``upconv2``) and with the input itself as the global residual instead of a
bilinear-upsampled copy. The other layer names are BasicSR's::

    conv_first -> body.{0..num_block-1}.{conv1,conv2} -> conv_hr -> conv_last (+ x)

Input: float tensor ``(B, num_in_ch, H, W)``, values in ``[0, 1]``, any H and W.
Output: ``(B, num_out_ch, H, W)``, same dtype and device; not clamped.
"""

from __future__ import annotations

import torch
from torch import nn

from grids.archs.msrresnet import ResidualBlockNoBN, _init_conv

__all__ = ["SRResNet"]


class SRResNet(nn.Module):
    """SRResNet (no BN) without upsampling, with a global residual connection.

    ``out = conv_last(lrelu(conv_hr(body(lrelu(conv_first(x)))))) + x`` with LeakyReLU(0.1).

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels; must equal ``num_in_ch`` (global residual).
        num_feat: feature channels of the trunk.
        num_block: number of ``ResidualBlockNoBN`` in ``body``.

    ``forward``: ``(B, num_in_ch, H, W)`` float in ``[0, 1]`` -> ``(B, num_out_ch, H, W)``,
    same dtype and device. The default model (64 features, 16 blocks) has 1,222,147
    parameters (MSRResNet x4's 1,517,571 minus its two upconvs, 2 * 147,712).
    Initialisation as MSRResNet: Kaiming-normal weights * 0.1, zero biases.
    """

    size_multiple = 1  # fully convolutional at one resolution: any H, W

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
    ) -> None:
        super().__init__()
        if num_in_ch != num_out_ch:
            raise ValueError(f"num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}) for the global residual")
        if num_block < 1:
            raise ValueError(f"num_block must be >= 1, got {num_block}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat=num_feat) for _ in range(num_block)])
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_in_ch, H, W)`` in ``[0, 1]`` -> ``(B, num_out_ch, H, W)``, same dtype."""
        feat = self.lrelu(self.conv_first(x))
        feat = self.body(feat)
        return self.conv_last(self.lrelu(self.conv_hr(feat))) + x
