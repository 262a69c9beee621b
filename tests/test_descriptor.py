"""Tests for grids.archs.MSRResNet and grids.descriptor (CPU, small networks, deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from grids.archs import MSRResNet
from grids.descriptor import load_descriptor, remap_state_dict, save_descriptor
from grids.io import sha256_file


def _tiny(upscale: int = 4, seed: int = 0) -> MSRResNet:
    torch.manual_seed(seed)
    model = MSRResNet(num_feat=4, num_block=2, upscale=upscale).eval()
    # Non-zero biases so the reference checks them too (the init sets them to zero).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model


def _input(h: int = 5, w: int = 7, b: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)


def _old_naming(state: dict) -> dict:
    """The ESRGAN / old BasicSR (mmsr) key naming."""
    out = {}
    for k, v in state.items():
        k = k.replace("body.", "recon_trunk.", 1) if k.startswith("body.") else k
        k = k.replace("conv_hr.", "HRconv.", 1) if k.startswith("conv_hr.") else k
        out[k] = v
    return out


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class _Payload:
    """An arbitrary Python object: weights_only=True must refuse to unpickle it."""

    def __init__(self) -> None:
        self.value = 42


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_output_shape(upscale):
    model = _tiny(upscale)
    x = _input(5, 7, b=3)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 3, 5 * upscale, 7 * upscale)
    assert y.dtype == torch.float32


def test_default_x4_shape_and_parameter_count():
    model = MSRResNet()
    # conv_first:  3*64*9 + 64                 =     1,792
    # body:        16 blocks * 2 * (64*64*9+64) = 1,181,696
    # upconv1:     64*256*9 + 256              =   147,712
    # upconv2:     64*256*9 + 256              =   147,712
    # conv_hr:     64*64*9 + 64                =    36,928
    # conv_last:   64*3*9 + 3                  =     1,731
    # total                                     = 1,517,571
    assert sum(p.numel() for p in model.parameters()) == 1_517_571
    with torch.no_grad():
        y = model(torch.rand(1, 3, 8, 6))
    assert y.shape == (1, 3, 32, 24)


def test_default_init_small_weights_zero_bias():
    torch.manual_seed(0)
    model = MSRResNet(num_feat=16, num_block=2)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
    # kaiming normal std for conv1 is sqrt(2 / (16*9)) = 0.118; scaled by 0.1 -> ~0.0118
    std = model.body[0].conv1.weight.std().item()
    assert 0.008 < std < 0.016


def test_bad_upscale_rejected():
    with pytest.raises(ValueError, match="upscale"):
        MSRResNet(upscale=8)


def _reference_forward(sd: dict, x: torch.Tensor, num_block: int, upscale: int) -> torch.Tensor:
    """MSRResNet written out with F.conv2d on the state dict tensors (does not call the module)."""

    def conv(t, name):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=1, padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.1)

    feat = lrelu(conv(x, "conv_first"))
    for i in range(num_block):
        feat = feat + conv(F.relu(conv(feat, f"body.{i}.conv1")), f"body.{i}.conv2")
    if upscale == 4:
        feat = lrelu(F.pixel_shuffle(conv(feat, "upconv1"), 2))
        feat = lrelu(F.pixel_shuffle(conv(feat, "upconv2"), 2))
    else:
        feat = lrelu(F.pixel_shuffle(conv(feat, "upconv1"), upscale))
    out = conv(lrelu(conv(feat, "conv_hr")), "conv_last")
    return out + F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_forward_matches_functional_reference(upscale):
    model = _tiny(upscale)
    x = _input()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        got = model(x)
        want = _reference_forward(sd, x, num_block=2, upscale=upscale)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _hook_capture(module: torch.nn.Module, x: torch.Tensor, model: MSRResNet, use_input: bool) -> torch.Tensor:
    captured = {}

    def hook(_mod, inputs, output):
        captured["t"] = (inputs[0] if use_input else output).detach().clone()

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured["t"]


def test_forward_features_conv_last_input_matches_hook():
    model = _tiny(4)
    x = _input()
    want = _hook_capture(model.conv_last, x, model, use_input=True)
    with torch.no_grad():
        got = model.forward_features(x)  # default layer
        got_named = model.forward_features(x, layer="conv_last_input")
    assert got.shape == (2, 4, 20, 28)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got_named, want, rtol=0, atol=0)


def test_forward_features_blocks_and_conv_first_match_hooks():
    model = _tiny(4)
    x = _input()
    with torch.no_grad():
        rb2 = model.forward_features(x, layer="RB2")
        body1 = model.forward_features(x, layer="body.1")
        rb1 = model.forward_features(x, layer="RB1")
        first = model.forward_features(x, layer="conv_first")
    assert rb2.shape == (2, 4, 5, 7)
    torch.testing.assert_close(rb2, _hook_capture(model.body[1], x, model, use_input=False), rtol=0, atol=0)
    torch.testing.assert_close(body1, rb2, rtol=0, atol=0)
    torch.testing.assert_close(rb1, _hook_capture(model.body[0], x, model, use_input=False), rtol=0, atol=0)
    # conv_first output after the in-place LeakyReLU = the input of body[0]
    torch.testing.assert_close(first, _hook_capture(model.body[0], x, model, use_input=True), rtol=0, atol=0)


@pytest.mark.parametrize("layer", ["RB0", "RB3", "body.2", "conv_hr", "nonsense"])
def test_forward_features_bad_layer(layer):
    model = _tiny(4)
    with pytest.raises(ValueError, match="layer"):
        model.forward_features(_input(), layer=layer)


# --------------------------------------------------------------------------- key remapping


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"params": s},
        lambda s: {"params_ema": s},
        lambda s: {"params": {k: torch.zeros_like(v) for k, v in s.items()}, "params_ema": s},
        lambda s: {"params": {f"module.{k}": v for k, v in s.items()}},
    ],
    ids=["bare", "params", "params_ema", "ema_preferred", "module_prefix"],
)
@pytest.mark.parametrize("old", [False, True], ids=["new_keys", "old_keys"])
def test_remap_round_trip(wrap, old, tmp_path):
    model = _tiny(4)
    state = model.state_dict()
    saved = _old_naming(state) if old else dict(state)
    if old:
        assert any(k.startswith("recon_trunk.") for k in saved) and "HRconv.weight" in saved
    ckpt = wrap(saved)
    _assert_same_state(remap_state_dict(ckpt), state)
    path = tmp_path / "w.pth"
    torch.save(ckpt, path)
    loaded = load_descriptor(path)
    assert not loaded.training
    assert (loaded.num_feat, loaded.num_block, loaded.upscale) == (4, 2, 4)
    _assert_same_state(loaded.state_dict(), state)


@pytest.mark.parametrize("upscale", [2, 3])
def test_load_infers_upscale_2_3(upscale, tmp_path):
    model = _tiny(upscale)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    loaded = load_descriptor(tmp_path / "w.pth")
    assert loaded.upscale == upscale and not hasattr(loaded, "upconv2")
    x = _input()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def _assert_refused(tmp_path: Path, saved: dict, match: str) -> None:
    """``saved`` written as a weights file: load_descriptor refuses it, naming what is wrong."""
    torch.save(saved, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=match):
        load_descriptor(tmp_path / "w.pth")


def test_missing_key_named(tmp_path):
    state = _tiny(4).state_dict()
    del state["body.1.conv2.weight"]
    _assert_refused(tmp_path, {"params": state}, r"missing keys \['body\.1\.conv2\.weight'\]")


def test_unexpected_key_named(tmp_path):
    state = _tiny(4).state_dict()
    state["extra_layer.weight"] = torch.zeros(1)
    _assert_refused(tmp_path, state, r"unexpected keys \['extra_layer\.weight'\]")


def test_shape_mismatch_named(tmp_path):
    state = _tiny(4).state_dict()
    state["conv_hr.bias"] = torch.zeros(5)
    _assert_refused(tmp_path, state, r"conv_hr\.bias")


def test_remap_rejects_non_tensor_entries():
    with pytest.raises(ValueError, match="not a state dict"):
        remap_state_dict({"conv_first.weight": [1, 2, 3]})


# --------------------------------------------------------------------------- save / load / hash


def test_save_load_round_trip(tmp_path):
    model = _tiny(4)
    path = tmp_path / "sub" / "descriptor.pth"
    save_descriptor(model, path, extra={"note": "test", "iter": 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["descriptor.pth"]  # no temp left over
    raw = torch.load(path, weights_only=True)
    assert raw["note"] == "test" and raw["iter"] == 3 and set(raw["params"]) == set(model.state_dict())
    loaded = load_descriptor(path)
    _assert_same_state(loaded.state_dict(), model.state_dict())
    x = _input()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # same content -> same bytes hash; sha256 is the hex digest of the file
    import hashlib

    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(sha256_file(path)) == 64


def test_save_rejects_params_in_extra(tmp_path):
    with pytest.raises(ValueError, match="params"):
        save_descriptor(_tiny(4), tmp_path / "w.pth", extra={"params": 1})


def test_pickled_object_refused(tmp_path):
    model = _tiny(4)
    path = tmp_path / "evil.pth"
    torch.save({"params": model.state_dict(), "payload": _Payload()}, path)
    with pytest.raises(ValueError, match=r"not a plain weights file") as info:
        load_descriptor(path)
    assert str(path) in str(info.value)


def test_whole_pickled_module_refused(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(_tiny(4), path)  # a full nn.Module pickle, not a state dict
    with pytest.raises(ValueError, match=r"not a plain weights file"):
        load_descriptor(path)


@pytest.mark.parametrize("data", [b"hello, not a checkpoint", b""], ids=["garbage", "empty"])
def test_non_torch_file_refused(data, tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not a readable weights file") as info:
        load_descriptor(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_descriptor(tmp_path / "nope.pth")
