"""Published weights: every released form of a state dict loads into our architectures with the
same outputs, a file that does not fit is one line, and a x4 network meets same-size inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grids.archs import ARCHS, FromLowResolution, RRDBNet, size_multiple
from grids.checkpoint import import_weights, load_model, published_state_dict, write_safetensors
from grids.config import ConfigError, validate_config

SMALL = {
    "srresnet": {"num_feat": 8, "num_block": 1},
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 1, 1]},
    "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 8},
}
FORMS = {
    "bare": lambda sd, other: sd,
    "basicsr_ema": lambda sd, other: {"params_ema": sd, "params": other},  # the averaged weights win
    "official_params": lambda sd, other: {"params": sd},  # what the official Restormer files hold
    "data_parallel": lambda sd, other: {f"module.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_released_form_gives_identical_outputs(tmp_path, arch, form):
    torch.manual_seed(1)
    reference = ARCHS[arch](**SMALL[arch]).eval()
    other = ARCHS[arch](**SMALL[arch]).state_dict()
    torch.save(FORMS[form](reference.state_dict(), other), tmp_path / "released.pth")
    import_weights(tmp_path / "released.pth", arch, SMALL[arch], "pub", tmp_path / "model.pth")
    model, state = load_model(tmp_path / "model.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert state["group"] == "pub" and len(json.loads(state["published"])["sha256"]) == 64


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_published_safetensors_weights_give_the_outputs_of_the_pth(tmp_path, arch):
    """A released .safetensors file (tensors only, BasicSR key names) imports like the .pth."""
    torch.manual_seed(2)
    reference = ARCHS[arch](**SMALL[arch]).eval()
    torch.save({"params": reference.state_dict()}, tmp_path / "released.pth")
    write_safetensors(tmp_path / "released.safetensors", reference.state_dict(), {})
    for suffix in (".pth", ".safetensors"):
        import_weights(tmp_path / f"released{suffix}", arch, SMALL[arch], "pub", tmp_path / f"model{suffix}.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        outputs = [load_model(tmp_path / f"model{suffix}.pth")[0](x) for suffix in (".pth", ".safetensors")]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], reference(x))


def test_a_broken_safetensors_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match=r"w\.safetensors: not a loadable GRIDS checkpoint"):
        load_model(tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.safetensors")


def test_weights_that_do_not_fit_are_one_line_naming_the_keys(tmp_path):
    torch.save({"params": RRDBNet(num_feat=8, num_block=2, num_grow_ch=8).state_dict()}, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=r"weights do not fit rrdbnet .*unexpected keys \['body\.1\."):
        import_weights(tmp_path / "w.pth", "rrdbnet", SMALL["rrdbnet"], "pub", tmp_path / "model.pth")
    result = subprocess.run(
        [sys.executable, "-m", "grids.checkpoint", "import", "--weights", str(tmp_path / "w.pth"), "--arch", "srresnet",
         "--group", "pub", "--out", str(tmp_path / "model.pth")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "missing keys [" in line and "unexpected keys [" in line and "(+" in line  # the first few of each
    assert not (tmp_path / "model.pth").exists()


def test_not_a_state_dict_says_what_it_holds(tmp_path):
    with pytest.raises(ValueError, match=r"not a state dict nor a BasicSR-style file \(a dict with keys \['epoch'"):
        published_state_dict({"epoch": 3, "net": "x"}, tmp_path / "x.pth")


def test_a_x4_network_restores_at_the_input_size(tmp_path):
    torch.manual_seed(2)
    net = RRDBNet(scale=4, **SMALL["rrdbnet"]).eval()
    torch.save({"params_ema": net.state_dict()}, tmp_path / "x4.pth")
    import_weights(tmp_path / "x4.pth", "rrdbnet", {"scale": 4, **SMALL["rrdbnet"]}, "x4", tmp_path / "model.pth")
    model, _ = load_model(tmp_path / "model.pth")
    assert isinstance(model, FromLowResolution) and size_multiple(model) == 4
    x = torch.rand(1, 3, 32, 24)
    with torch.no_grad():
        low = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True)
        assert model(x).shape == x.shape and torch.equal(model(x), net(low))


def published_config(tmp_path: Path, entry: dict) -> dict:
    return {"seed": 0, "images": {"photos": ["chelsea"]}, "degradations": {"jpeg": {}}, "baselines": {"pub": entry}}


def test_a_published_baseline_is_checked_with_the_config(tmp_path):
    torch.save(RRDBNet(scale=4).state_dict(), tmp_path / "w.pth")
    config = validate_config(
        published_config(tmp_path, {"weights": "w.pth", "arch": "rrdbnet", "arch_kwargs": {"scale": 4}}), tmp_path
    )
    assert config["baselines"]["pub"] == {"weights": "w.pth", "arch": "rrdbnet", "arch_kwargs": {"scale": 4}}
    with pytest.raises(ConfigError, match=r"baselines.pub.weights: file gone.pth not found"):
        validate_config(published_config(tmp_path, {"weights": "gone.pth", "arch": "rrdbnet"}), tmp_path)
    with pytest.raises(ConfigError, match=r"baselines.pub: published weights are evaluated, not trained, so \['lr'\]"):
        validate_config(published_config(tmp_path, {"weights": "w.pth", "arch": "rrdbnet", "lr": 1e-4}), tmp_path)


def test_a_baseline_cannot_take_a_table1_column_name_nor_train_a_x4_network(tmp_path):
    with pytest.raises(ConfigError, match=r"baselines.grids: the name is taken by Table 1's own column psnr_grids"):
        validate_config(published_config(tmp_path, {"arch": "rrdbnet"}) | {"baselines": {"grids": {}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"baselines.pub.arch_kwargs: a trained rrdbnet .* needs scale: 1"):
        validate_config(published_config(tmp_path, {"arch": "rrdbnet", "arch_kwargs": {"scale": 4}}), tmp_path)
    assert validate_config(published_config(tmp_path, {"arch": "rrdbnet"}), tmp_path)["baselines"]["pub"]
