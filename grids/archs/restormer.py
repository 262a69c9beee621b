"""Restormer: an efficient transformer for high-resolution image restoration.

Reference:

* S. W. Zamir, A. Arora, S. Khan, M. Hayat, F. S. Khan and M.-H. Yang, "Restormer: Efficient
  Transformer for High-Resolution Image Restoration", CVPR 2022
  (https://github.com/swz30/Restormer).

A 4-level U-Net of transformer blocks, each made of a multi-Dconv head transposed attention
(MDTA, attention across channels) and a gated-Dconv feed-forward network (GDFN). The
parameter names are those of the official implementation, so its published weights load
strictly::

    patch_embed.proj
    encoder_level1 -> down1_2 -> encoder_level2 -> down2_3 -> encoder_level3 -> down3_4 -> latent
    up4_3 (+ enc3) -> reduce_chan_level3 -> decoder_level3
    up3_2 (+ enc2) -> reduce_chan_level2 -> decoder_level2
    up2_1 (+ enc1) -> decoder_level1 -> refinement -> output (+ input)

Input: float tensor ``(B, inp_channels, H, W)``, values in ``[0, 1]``; **H and W must be
multiples of 8** (three 2x downsamplings). Output: ``(B, out_channels, H, W)``, same dtype and
device; not clamped.

Padding note (``pad_to_multiple``): the network does not pad; callers with arbitrary sizes
pad to a multiple of 8 and crop back, as the official test scripts do, e.g.::

    h, w = x.shape[-2:]
    x = F.pad(x, (0, (8 - w % 8) % 8, 0, (8 - h % 8) % 8), mode="reflect")
    y = model(x)[..., :h, :w]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Restormer", "TransformerBlock", "LayerNorm", "Attention", "FeedForward"]

_MULTIPLE = 8  # 2 ** (number of downsamplings)


class _WithBiasLayerNorm(nn.Module):
    """Layer norm over the last dim: ``(x - mean) / sqrt(var + 1e-5) * weight + bias``."""

    def __init__(self, normalized_shape: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(sigma + 1e-5) * self.weight + self.bias


class _BiasFreeLayerNorm(nn.Module):
    """The official 'BiasFree' norm: ``x / sqrt(var + 1e-5) * weight`` (x is *not* centred)."""

    def __init__(self, normalized_shape: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(sigma + 1e-5) * self.weight


class LayerNorm(nn.Module):
    """Per-pixel layer norm over channels of a ``(B, C, H, W)`` map (shape kept).

    Args:
        dim: number of channels C.
        LayerNorm_type: ``'WithBias'`` (weight and bias, like ``F.layer_norm`` with eps 1e-5)
            or ``'BiasFree'`` (weight only; divides by the standard deviation without centring,
            as in the official code).
    """

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias") -> None:  # noqa: N803 (official name)
        super().__init__()
        if LayerNorm_type == "WithBias":
            self.body: nn.Module = _WithBiasLayerNorm(dim)
        elif LayerNorm_type == "BiasFree":
            self.body = _BiasFreeLayerNorm(dim)
        else:
            raise ValueError(f"LayerNorm_type must be 'WithBias' or 'BiasFree', got {LayerNorm_type!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H, W, C): the same statistics as the official (B, HW, C) layout.
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA); ``(B, dim, H, W)`` in and out.

    q, k, v come from a 1x1 conv and a depthwise 3x3 conv; per head, the attention map is
    ``softmax(normalize(q) @ normalize(k)^T * temperature)`` of size ``(C/heads, C/heads)``,
    i.e. across channels, so the cost is linear in H*W.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, stride=1, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = q.reshape(b, self.num_heads, c // self.num_heads, h * w)
        k = k.reshape(b, self.num_heads, c // self.num_heads, h * w)
        v = v.reshape(b, self.num_heads, c // self.num_heads, h * w)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        attn = attn.softmax(dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.project_out(out)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN); ``(B, dim, H, W)`` in and out.

    ``hidden = int(dim * ffn_expansion_factor)``; ``project_in`` (1x1, dim -> 2*hidden),
    depthwise 3x3 ``dwconv``, split into x1, x2, ``gelu(x1) * x2``, ``project_out`` (1x1).
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            hidden * 2, hidden * 2, kernel_size=3, stride=1, padding=1, groups=hidden * 2, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """``x = x + attn(norm1(x)); x = x + ffn(norm2(x))``; ``(B, dim, H, W)`` in and out."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,  # noqa: N803 (official name)
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class _OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding (``proj``, no bias)."""

    def __init__(self, in_c: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _Downsample(nn.Module):
    """``(B, n, H, W)`` -> ``(B, 2n, H/2, W/2)``: conv to n/2 channels, PixelUnshuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Upsample(nn.Module):
    """``(B, n, H, W)`` -> ``(B, n/2, 2H, 2W)``: conv to 2n channels, PixelShuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Restormer (official layer names; no dual-pixel variant).

    Args:
        inp_channels: input channels.
        out_channels: output channels; must equal ``inp_channels`` (global residual).
        dim: channels of level 1 (levels 2, 3 and the latent use 2x, 4x, 8x); must be even.
        num_blocks: transformer blocks of levels 1..4 (encoder i and decoder i share the count;
            level 4 is the latent).
        num_refinement_blocks: blocks of the full-resolution ``refinement`` stage.
        heads: attention heads of levels 1..4; ``dim * 2**i`` must be divisible by ``heads[i]``.
        ffn_expansion_factor: GDFN hidden width factor (hidden = ``int(c * factor)``).
        bias: bias of the attention and feed-forward convs and of ``reduce_chan_level*``
            (the patch embedding, down/upsampling and ``output`` convs never have one).
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'``.

    ``forward``: ``(B, inp_channels, H, W)`` float in ``[0, 1]``, H and W multiples of 8 ->
    ``(B, out_channels, H, W)``, same dtype and device (``output(...) + input``).
    Raises ``ValueError`` when H or W is not a multiple of 8 (pad first, see the module note).

    The default model (dim 48, blocks (4, 6, 6, 8), 4 refinement blocks, heads (1, 2, 4, 8),
    factor 2.66, no bias, WithBias norm) has 26,126,644 parameters (26.1M). PyTorch's default
    initialisation, as in the official code.
    """

    size_multiple = 8  # three 2x downsamplings

    def __init__(
        self,
        *,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 (official name)
    ) -> None:
        super().__init__()
        if inp_channels != out_channels:
            raise ValueError(
                f"out_channels ({out_channels}) must equal inp_channels ({inp_channels}) for the global residual"
            )
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"num_blocks and heads need 4 entries, got {tuple(num_blocks)} and {tuple(heads)}")
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.inp_channels = inp_channels
        self.out_channels = out_channels
        self.dim = dim

        def stage(channels: int, level: int, n: int) -> nn.Sequential:
            return nn.Sequential(
                *[
                    TransformerBlock(channels, heads[level], ffn_expansion_factor, bias, LayerNorm_type)
                    for _ in range(n)
                ]
            )

        self.patch_embed = _OverlapPatchEmbed(inp_channels, dim)

        self.encoder_level1 = stage(dim, 0, num_blocks[0])
        self.down1_2 = _Downsample(dim)
        self.encoder_level2 = stage(dim * 2, 1, num_blocks[1])
        self.down2_3 = _Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, 2, num_blocks[2])
        self.down3_4 = _Downsample(dim * 4)
        self.latent = stage(dim * 8, 3, num_blocks[3])

        self.up4_3 = _Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dim * 4, 2, num_blocks[2])
        self.up3_2 = _Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dim * 2, 1, num_blocks[1])
        self.up2_1 = _Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, 0, num_blocks[0])

        self.refinement = stage(dim * 2, 0, num_refinement_blocks)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        """``(B, inp_channels, H, W)`` in ``[0, 1]`` (H, W multiples of 8) -> same shape."""
        h, w = inp_img.shape[-2:]
        if h % _MULTIPLE or w % _MULTIPLE:
            raise ValueError(
                f"Restormer needs H and W to be multiples of {_MULTIPLE}, got {h}x{w}; "
                f"pad the input (e.g. reflect) to a multiple of {_MULTIPLE} and crop the output"
            )
        enc1 = self.encoder_level1(self.patch_embed(inp_img))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self.decoder_level3(dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self.decoder_level2(dec2)
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self.refinement(dec1)
        return self.output(dec1) + inp_img
