"""The ncnn RRDBNet converter on a tiny network written by the test in ncnn's own format."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from grids.archs import RRDBNet
from grids.ncnn import FP16_TAG, convert_rrdb, rrdb_names

KWARGS = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 2, "num_grow_ch": 4}


def write_ncnn(model: RRDBNet, param, binary, fp16: bool = True) -> None:
    """The model as Real-ESRGAN's ncnn export lays it out: convolutions in module order (with the
    graph's other layers between them, which hold no weights), weights tagged, biases float32."""
    lines, blobs, data = [], 0, bytearray()
    state = model.state_dict()
    names = rrdb_names(KWARGS["num_block"])
    lines.append("Input input.1 0 1 data")
    for k, name in enumerate(names):
        w, b = state[f"{name}.weight"].numpy(), state[f"{name}.bias"].numpy()
        act = (
            " 9=2 -23310=1,2.000000e-01"
            if "conv5" not in name and name not in ("conv_first", "conv_body", "conv_last")
            else ""
        )
        lines.append(f"Convolution Conv_{k} 1 1 b{blobs} b{blobs + 1} 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}{act}")
        blobs += 1
        if name in ("conv_body",):
            lines.append(f"BinaryOp Add_{k} 2 1 b0 b{blobs} b{blobs + 1}")
            blobs += 1
        if name in ("conv_body", "conv_up1"):
            lines.append(f"Interp Resize_{k} 1 1 b{blobs} b{blobs + 1} 0=1 1=2.000000e+00 2=2.000000e+00")
            blobs += 1
        if fp16:
            raw = w.astype("<f2").tobytes()
            data += np.uint32(FP16_TAG).tobytes() + raw + b"\0" * ((-len(raw)) % 4)
        else:
            data += np.uint32(0).tobytes() + w.astype("<f4").tobytes()
        data += b.astype("<f4").tobytes()
    param.write_text(f"7767517\n{len(lines)} {blobs + 1}\n" + "\n".join(lines) + "\n")
    binary.write_bytes(bytes(data))


@pytest.fixture
def tiny(tmp_path):
    torch.manual_seed(0)
    model = RRDBNet(**KWARGS).eval()
    with torch.no_grad():  # BasicSR's init scales weights by 0.1: make them O(1) to exercise fp16
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    return model, tmp_path / "tiny.param", tmp_path / "tiny.bin"


@pytest.mark.parametrize("fp16", [True, False])
def test_round_trip(tiny, fp16):
    model, param, binary = tiny
    write_ncnn(model, param, binary, fp16)
    state, kwargs = convert_rrdb(param, binary)
    assert kwargs == KWARGS
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        stored = value.half().float() if fp16 and key.endswith("weight") else value  # biases stay float32
        assert torch.equal(state[key], stored), key
    converted = RRDBNet(**kwargs).eval()
    converted.load_state_dict(state, strict=True)
    reference = RRDBNet(**KWARGS).eval()
    reference.load_state_dict(
        {k: (v.half().float() if fp16 and k.endswith("weight") else v) for k, v in expected.items()}
    )
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(converted(x), reference(x))


def test_the_whole_file_must_be_consumed(tiny):
    model, param, binary = tiny
    write_ncnn(model, param, binary)
    data = binary.read_bytes()
    binary.write_bytes(data + b"\0" * 8)
    with pytest.raises(ValueError, match="8 bytes left after the last layer"):
        convert_rrdb(param, binary)
    binary.write_bytes(data[:-10])
    with pytest.raises(ValueError, match="ends inside"):
        convert_rrdb(param, binary)


def test_not_an_rrdbnet(tiny, tmp_path):
    model, param, binary = tiny
    write_ncnn(model, param, binary)
    lines = param.read_text().splitlines()
    param.write_text("\n".join(line for line in lines if "Conv_3 " not in line) + "\n")
    with pytest.raises(ValueError, match="convolutions is not an RRDBNet"):
        convert_rrdb(param, binary)
    (tmp_path / "x.param").write_text("not ncnn\n")
    with pytest.raises(ValueError, match="not an ncnn .param file"):
        convert_rrdb(tmp_path / "x.param", binary)


def test_cli_writes_a_loadable_basicsr_style_file(tiny, tmp_path):
    model, param, binary = tiny
    write_ncnn(model, param, binary)
    out = tmp_path / "w.pth"
    result = subprocess.run(
        [sys.executable, "-m", "grids.cli", "import-ncnn-rrdb", str(param), str(binary), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["parameters"] == sum(p.numel() for p in model.parameters())
    saved = torch.load(out, weights_only=True)
    assert saved["arch"] == "rrdbnet" and json.loads(saved["arch_kwargs"]) == KWARGS
    again = subprocess.run(
        [sys.executable, "-m", "grids.cli", "import-ncnn-rrdb", str(param), str(binary), "-o", str(binary)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "is the input file" in again.stderr
