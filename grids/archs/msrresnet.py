"""MSRResNet: the modified SRResNet used as the degradation descriptor.

References:

* C. Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
  Adversarial Network", CVPR 2017 (SRResNet).
* X. Wang et al., BasicSR (https://github.com/XPixelGroup/BasicSR), ``MSRResNet``: SRResNet
  without batch normalisation, with a bilinear-upsampled input added to the output.

The layer names match BasicSR's ``MSRResNet`` so that its official weights load strictly
(see :func:`grids.descriptor.load_descriptor`)::

    conv_first -> body.{0..num_block-1}.{conv1,conv2} -> upconv1 [-> upconv2] -> conv_hr -> conv_last

Input: float tensor ``(B, num_in_ch, H, W)``, values in ``[0, 1]`` (float32 for the
official weights). Output: ``(B, num_out_ch, upscale*H, upscale*W)``, same dtype; not clamped.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSRResNet", "ResidualBlockNoBN"]


def _init_conv(module: nn.Conv2d, scale: float) -> None:
    """Kaiming-normal weights multiplied by ``scale``, zero bias."""
    nn.init.kaiming_normal_(module.weight)
    with torch.no_grad():
        module.weight.mul_(scale)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``; shape ``(B, num_feat, H, W)`` in and out."""

    def __init__(self, *, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


_RB = re.compile(r"^RB(\d+)$")
_BODY = re.compile(r"^body\.(\d+)$")


class MSRResNet(nn.Module):
    """Modified SRResNet (no BN), layer-for-layer compatible with BasicSR's ``MSRResNet``.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: feature channels of the trunk.
        num_block: number of residual blocks in ``body``.
        upscale: 2, 3 or 4. x4 uses two (conv, PixelShuffle(2)) stages ``upconv1``/``upconv2``;
            x2 and x3 use one ``upconv1`` with ``PixelShuffle(upscale)``.

    ``forward``: ``(B, num_in_ch, H, W)`` float in ``[0, 1]`` ->
    ``(B, num_out_ch, upscale*H, upscale*W)``, same dtype and device.
    The default x4 model (64 features, 16 blocks) has 1,517,571 parameters.
    """

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 16,
        upscale: int = 4,
    ) -> None:
        super().__init__()
        if upscale not in (2, 3, 4):
            raise ValueError(f"upscale must be 2, 3 or 4, got {upscale}")
        if num_block < 1:
            raise ValueError(f"num_block must be >= 1, got {num_block}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block
        self.upscale = upscale

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat=num_feat) for _ in range(num_block)])
        if upscale == 4:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module, 0.1)

    def _upsample(self, feat: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.pixel_shuffle(self.upconv1(feat)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_in_ch, H, W)`` in ``[0, 1]`` -> ``(B, num_out_ch, upscale*H, upscale*W)``."""
        feat = self.lrelu(self.conv_first(x))
        feat = self.body(feat)
        out = self.conv_last(self.lrelu(self.conv_hr(self._upsample(feat))))
        base = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return out + base

    def forward_features(self, x: torch.Tensor, layer: str = "conv_last_input") -> torch.Tensor:
        """Feature map of one named layer, computing only what it needs.

        Args:
            x: ``(B, num_in_ch, H, W)`` float in ``[0, 1]``.
            layer: one of

                * ``"conv_last_input"`` (default): input of ``conv_last``, i.e. the output of
                  ``lrelu(conv_hr(...))``: ``(B, num_feat, upscale*H, upscale*W)``, unbounded
                  (LeakyReLU with slope 0.1, so negative values are scaled by 0.1);
                * ``"conv_first"``: ``lrelu(conv_first(x))``, ``(B, num_feat, H, W)``;
                * ``"body.{i}"`` (0-based) or ``"RB{i}"`` (1-based; ``RB{num_block}`` is the last
                  block ``body.{num_block-1}``): output of that residual block,
                  ``(B, num_feat, H, W)``, unbounded.

        Returns:
            the feature tensor, same dtype and device as ``x``.

        Raises:
            ValueError: unknown layer name or block index out of range.
        """
        block = self._block_index(layer)
        feat = self.lrelu(self.conv_first(x))
        if layer == "conv_first":
            return feat
        if block is not None:
            for i in range(block + 1):
                feat = self.body[i](feat)
            return feat
        # conv_last_input
        feat = self.body(feat)
        return self.lrelu(self.conv_hr(self._upsample(feat)))

    def forward_layers(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Feature maps of several named layers (as :meth:`forward_features` names them) from one
        pass that stops at the deepest one asked for: ``{layer: tensor}``."""
        blocks = {layer: self._block_index(layer) for layer in layers}
        deepest = (
            self.num_block
            if "conv_last_input" in layers
            else max((b for b in blocks.values() if b is not None), default=-1)
        )
        out = {}
        feat = self.lrelu(self.conv_first(x))
        if "conv_first" in blocks:
            out["conv_first"] = feat
        for i in range(min(deepest + 1, self.num_block)):
            feat = self.body[i](feat)
            for layer, block in blocks.items():
                if block == i:
                    out[layer] = feat
        if "conv_last_input" in blocks:
            out["conv_last_input"] = self.lrelu(self.conv_hr(self._upsample(feat)))
        return out

    def _block_index(self, layer: str) -> int | None:
        """0-based block index for ``body.{i}`` / ``RB{i}``; ``None`` for the other layers."""
        if layer in ("conv_last_input", "conv_first"):
            return None
        m = _RB.match(layer)
        if m:
            index = int(m.group(1)) - 1
        else:
            m = _BODY.match(layer)
            if not m:
                raise ValueError(
                    f"unknown layer {layer!r}; expected 'conv_last_input', 'conv_first', "
                    f"'body.<0..{self.num_block - 1}>' or 'RB<1..{self.num_block}>'"
                )
            index = int(m.group(1))
        if not 0 <= index < self.num_block:
            raise ValueError(f"layer {layer!r} out of range: the network has {self.num_block} residual blocks")
        return index
