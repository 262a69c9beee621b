"""Tests for grids.archs SRResNet, Restormer and RRDBNet (CPU, tiny networks, deterministic).

Default-size models are built on the ``meta`` device (no memory, no init cost) to check
parameter counts and the official state-dict key names.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grids.archs import MSRResNet, Restormer, RRDBNet, SRResNet
from grids.archs.restormer import Attention, LayerNorm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs run fastest single-threaded, and do not fight other jobs for the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(cls, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cls(**kwargs)


def _input(b: int = 2, c: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _tiny_srresnet() -> SRResNet:
    torch.manual_seed(0)
    return SRResNet(num_feat=8, num_block=2)


def _tiny_restormer(**kwargs) -> Restormer:
    torch.manual_seed(0)
    return Restormer(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8), **kwargs)


def _tiny_rrdbnet(scale: int = 1) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("make", "scale"),
    [
        (_tiny_srresnet, 1),
        (_tiny_restormer, 1),
        (lambda: _tiny_restormer(LayerNorm_type="BiasFree", bias=True), 1),
        (lambda: _tiny_rrdbnet(1), 1),
        (lambda: _tiny_rrdbnet(2), 2),
        (lambda: _tiny_rrdbnet(4), 4),
    ],
)
def test_output_shape_and_dtype(make, scale):
    model = make().eval()
    x = _input(h=16, w=24)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 16 * scale, 24 * scale)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_srresnet_any_size_and_global_residual():
    model = _tiny_srresnet().eval()
    x = _input(h=5, w=7)
    with torch.no_grad():
        assert model(x).shape == x.shape
        nn.init.zeros_(model.conv_last.weight)
        torch.testing.assert_close(model(x), x)


def test_restormer_global_residual():
    model = _tiny_restormer().eval()
    x = _input()
    with torch.no_grad():
        nn.init.zeros_(model.output.weight)
        torch.testing.assert_close(model(x), x)


# ---------------------------------------------------------------- parameter counts


def test_default_parameter_counts():
    assert _count(_meta(SRResNet)) == 1_222_147
    assert _count(_meta(SRResNet)) == _count(_meta(MSRResNet)) - 2 * 147_712

    n = _count(_meta(Restormer))
    assert n == 26_126_644
    assert round(n / 1e6, 1) == 26.1
    assert _count(_meta(Restormer, LayerNorm_type="BiasFree")) == 26_126_644 - 14_976  # no norm biases

    assert _count(_meta(RRDBNet)) == 16_723_907
    assert _count(_meta(RRDBNet, scale=2)) == 16_703_171
    assert _count(_meta(RRDBNet, scale=4)) == 16_697_987  # the ESRGAN / RealESRGAN x4 count


# ---------------------------------------------------------------- official key names


def _assert_shapes(model: nn.Module, expected: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Each of ``expected``'s state-dict keys is in ``model``'s, with that shape; all its shapes."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    return shapes


def test_srresnet_keys_load_msrresnet_trunk():
    msr = MSRResNet(num_feat=8, num_block=2)
    state = {k: v for k, v in msr.state_dict().items() if not k.startswith("upconv")}
    model = SRResNet(num_feat=8, num_block=2)
    model.load_state_dict(state, strict=True)
    assert "body.1.conv2.weight" in state


def test_restormer_keys_and_shapes():
    expected = {
        "patch_embed.proj.weight": (48, 3, 3, 3),
        "encoder_level1.0.norm1.body.weight": (48,),
        "encoder_level1.0.norm1.body.bias": (48,),
        "encoder_level1.0.attn.temperature": (1, 1, 1),
        "encoder_level1.0.attn.qkv.weight": (144, 48, 1, 1),
        "encoder_level1.0.attn.qkv_dwconv.weight": (144, 1, 3, 3),
        "encoder_level1.0.attn.project_out.weight": (48, 48, 1, 1),
        "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
        "encoder_level1.0.ffn.dwconv.weight": (254, 1, 3, 3),
        "encoder_level1.0.ffn.project_out.weight": (48, 127, 1, 1),
        "encoder_level1.3.norm2.body.weight": (48,),
        "down1_2.body.0.weight": (24, 48, 3, 3),
        "encoder_level2.5.attn.temperature": (2, 1, 1),
        "down3_4.body.0.weight": (96, 192, 3, 3),
        "latent.7.attn.temperature": (8, 1, 1),
        "up4_3.body.0.weight": (768, 384, 3, 3),
        "reduce_chan_level3.weight": (192, 384, 1, 1),
        "decoder_level3.5.ffn.project_out.weight": (192, 510, 1, 1),
        "reduce_chan_level2.weight": (96, 192, 1, 1),
        "up2_1.body.0.weight": (192, 96, 3, 3),
        "decoder_level1.3.attn.qkv.weight": (288, 96, 1, 1),
        "refinement.3.norm2.body.bias": (96,),
        "output.weight": (3, 96, 3, 3),
    }
    shapes = _assert_shapes(_meta(Restormer), expected)
    # bias=False (default): only the norms carry biases.
    assert all(".norm" in k for k in shapes if k.endswith(".bias"))
    assert "reduce_chan_level3.bias" not in shapes
    assert not any(k.endswith("norm1.body.bias") for k in _meta(Restormer, LayerNorm_type="BiasFree").state_dict())


def test_rrdbnet_keys_and_shapes():
    expected = {
        "conv_first.weight": (64, 48, 3, 3),
        "body.0.rdb1.conv1.weight": (32, 64, 3, 3),
        "body.0.rdb2.conv4.weight": (32, 160, 3, 3),
        "body.22.rdb3.conv5.weight": (64, 192, 3, 3),
        "body.22.rdb3.conv5.bias": (64,),
        "conv_body.weight": (64, 64, 3, 3),
        "conv_up1.weight": (64, 64, 3, 3),
        "conv_up2.weight": (64, 64, 3, 3),
        "conv_hr.weight": (64, 64, 3, 3),
        "conv_last.weight": (3, 64, 3, 3),
    }
    shapes = _assert_shapes(_meta(RRDBNet), expected)
    assert "body.23.rdb1.conv1.weight" not in shapes
    assert _meta(RRDBNet, scale=2).state_dict()["conv_first.weight"].shape == (64, 12, 3, 3)
    assert _meta(RRDBNet, scale=4).state_dict()["conv_first.weight"].shape == (64, 3, 3, 3)


def test_pixel_unshuffle_matches_basicsr_layout():
    x = _input(b=1, h=8, w=12)
    b, c, h, w = x.shape
    r = 4
    ref = x.view(b, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4).reshape(b, c * r * r, h // r, w // r)
    torch.testing.assert_close(F.pixel_unshuffle(x, r), ref)


# ---------------------------------------------------------------- Restormer components


def test_layernorm_withbias_equals_torch_layer_norm():
    torch.manual_seed(0)
    norm = LayerNorm(6, "WithBias")
    with torch.no_grad():
        norm.body.weight.normal_()
        norm.body.bias.normal_()
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.body.weight, norm.body.bias, eps=1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), ref)


def test_layernorm_biasfree_official_formula():
    torch.manual_seed(0)
    norm = LayerNorm(6, "BiasFree")
    with torch.no_grad():
        norm.body.weight.normal_()
    x = torch.randn(2, 6, 5, 7) + 1
    var = x.var(dim=1, keepdim=True, unbiased=False)
    ref = x / torch.sqrt(var + 1e-5) * norm.body.weight.view(1, 6, 1, 1)
    torch.testing.assert_close(norm(x), ref)
    with pytest.raises(ValueError, match="LayerNorm_type"):
        LayerNorm(6, "Nope")


def test_mdta_equals_reference():
    torch.manual_seed(0)
    dim, heads = 6, 2
    attn = Attention(dim, heads, bias=True)
    with torch.no_grad():
        attn.temperature.uniform_(0.5, 2.0)
    x = torch.randn(2, dim, 3, 5)
    b, c, h, w = x.shape

    qkv = F.conv2d(x, attn.qkv.weight, attn.qkv.bias)
    qkv = F.conv2d(qkv, attn.qkv_dwconv.weight, attn.qkv_dwconv.bias, padding=1, groups=3 * dim)
    d = dim // heads
    out = torch.empty(b, dim, h * w)
    for n in range(b):
        for i in range(heads):
            q = qkv[n, i * d : (i + 1) * d].reshape(d, h * w)
            k = qkv[n, dim + i * d : dim + (i + 1) * d].reshape(d, h * w)
            v = qkv[n, 2 * dim + i * d : 2 * dim + (i + 1) * d].reshape(d, h * w)
            q = q / q.norm(dim=1, keepdim=True)
            k = k / k.norm(dim=1, keepdim=True)
            logits = (q @ k.T) * attn.temperature[i, 0, 0]
            weights = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
            out[n, i * d : (i + 1) * d] = weights @ v
    ref = F.conv2d(out.reshape(b, dim, h, w), attn.project_out.weight, attn.project_out.bias)
    torch.testing.assert_close(attn(x), ref)


# ---------------------------------------------------------------- errors


def test_bad_input_size_raises():
    with torch.no_grad():
        with pytest.raises(ValueError, match="multiples of 8"):
            _tiny_restormer()(_input(h=12, w=16))
        with pytest.raises(ValueError, match="multiples of 4"):
            _tiny_rrdbnet(1)(_input(h=8, w=6))
        with pytest.raises(ValueError, match="multiples of 2"):
            _tiny_rrdbnet(2)(_input(h=7, w=8))
    with pytest.raises(ValueError):
        RRDBNet(scale=3)
    with pytest.raises(ValueError):
        SRResNet(num_in_ch=3, num_out_ch=1)
    with pytest.raises(ValueError):
        Restormer(inp_channels=1, out_channels=3)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize(
    "make", [_tiny_srresnet, _tiny_restormer, _tiny_rrdbnet], ids=["srresnet", "restormer", "rrdbnet"]
)
def test_loss_falls(make):
    model = make().train()
    clean = _input(h=16, w=16, seed=2)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = F.l1_loss(model(noisy), clean)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_config_knows_each_backbones_arguments():
    """grids.config checks arch_kwargs without importing torch, from its own list: keep it exact."""
    import inspect

    from grids.archs import ARCHS
    from grids.config import ARCH_PARAMETERS

    assert ARCH_PARAMETERS == {name: list(inspect.signature(cls).parameters) for name, cls in ARCHS.items()}
