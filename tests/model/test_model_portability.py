"""Issue 11 regressions for saved models: portable folders, weights that must match the declared
architecture, precise mismatch messages, malicious weight files, the packaged default model."""
from __future__ import annotations

import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from os2d import zoo
from os2d.backbones import build_backbone
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, build_model, load_own_model, save_model
from os2d.model.config import ModelConfig


class _Touch:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _outputs(model):
    g = torch.Generator().manual_seed(0)
    scene, classes = torch.randn(1, 3, 64, 64, generator=g), [torch.randn(3, 48, 48, generator=g)]
    with torch.no_grad():
        return model(scene, classes).scores


def _rewrite_config(folder: pathlib.Path, **changes) -> None:
    blob = json.loads((folder / CONFIG_FILE).read_text())
    blob["model"].update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(blob))


@pytest.fixture(scope="module")
def resnet_weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50_backbone.pth"
    torch.manual_seed(5)
    torch.save(build_backbone("resnet50").state_dict(), path)
    return path


def test_model_with_a_weights_file_loads_without_the_file(tmp_path, resnet_weights_file):
    weights = tmp_path / "w.pth"
    weights.write_bytes(resnet_weights_file.read_bytes())
    config = ModelConfig(backbone="resnet50", backbone_weights=str(weights), variant="v2")
    model = build_model(config)
    folder = save_model(model, config, tmp_path / "saved")
    weights.unlink()  # "another machine": the file is gone
    loaded, loaded_config = load_own_model(folder)
    assert loaded_config.backbone_weights is None  # marked: nothing external is needed
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_older_folder_naming_a_missing_file_loads_when_every_tensor_is_stored(tmp_path):
    config = ModelConfig(backbone="resnet50", backbone_weights=None, variant="v1")
    model = build_model(config)
    folder = save_model(model, config, tmp_path / "saved")
    _rewrite_config(folder, backbone_weights="/nowhere/weights.pth")
    loaded, _ = load_own_model(folder)
    assert torch.equal(_outputs(model), _outputs(loaded))


def test_imagenet_resnet_save_and_load_never_download(tmp_path, monkeypatch):
    from torchvision.models import _api

    def no_download(*args, **kwargs):
        raise AssertionError("torchvision download attempted")

    monkeypatch.setattr(_api.WeightsEnum, "get_state_dict", no_download)
    model = build_model(ModelConfig(backbone="resnet50", backbone_weights=None))
    folder = save_model(model, ModelConfig(backbone="resnet50", backbone_weights="imagenet"), tmp_path / "m")
    loaded, config = load_own_model(folder)
    assert config.backbone_weights is None and torch.equal(_outputs(model), _outputs(loaded))


def test_config_declaring_another_backbone_than_the_weights_is_refused(tmp_path):
    config = ModelConfig()  # efficientnet-lite0, package weights
    model = build_model(config)
    with torch.no_grad():
        model.backbone.stages[4][0].expand.conv.weight.mul_(1.01)  # a fine-tuned last stage
    folder = save_model(model, config, tmp_path / "lite0")
    _rewrite_config(folder, backbone="efficientnet-lite1")
    with pytest.raises(InvalidInputError, match=r"saved for backbone='efficientnet-lite0' but .*config.json "
                                                r"says 'efficientnet-lite1'"):
        load_own_model(folder)
    # without the recorded config, the recorded backbone size still tells them apart
    lite0_count = sum(1 for k in model.state_dict() if k.startswith("backbone."))
    state = load_file(str(folder / WEIGHTS_FILE))
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"os2d_backbone_tensors": str(lite0_count)})
    with pytest.raises(InvalidInputError, match=f"saved with a backbone of {lite0_count} tensors, but "
                                                f"efficientnet-lite1 as declared in .*config.json has"):
        load_own_model(folder)


def test_grid_size_mismatch_names_only_what_differs(tmp_path):
    config = ModelConfig(backbone="resnet50", backbone_weights=None)
    folder = save_model(build_model(config), config, tmp_path / "m")
    _rewrite_config(folder, grid_size=9)
    with pytest.raises(InvalidInputError) as info:
        load_own_model(folder)
    message = str(info.value)
    assert "grid_size=15 but" in message and "says 9" in message
    assert "wrong shape head.transform_net.conv1.weight: file (128, 225, 7, 7) vs model (128, 81, 7, 7)" in message
    assert "missing []" not in message and "unexpected []" not in message


def test_weights_file_uses_the_config_beside_it_and_says_where_it_looked(tmp_path):
    config = ModelConfig(backbone="resnet50", backbone_weights=None)
    folder = save_model(build_model(config), config, tmp_path / "m")
    _rewrite_config(folder, score_threshold=0.77)
    _, loaded = load_own_model(folder / WEIGHTS_FILE)
    assert loaded.score_threshold == 0.77
    bare = tmp_path / "bare" / WEIGHTS_FILE
    bare.parent.mkdir()
    save_file({"head.x": torch.zeros(1)}, str(bare))
    with pytest.raises(InvalidInputError, match=r"carries no os2d config and there is no config.json beside it "
                                                r"\(.*bare/config.json does not exist\)"):
        load_own_model(bare)


@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "resnet50"])
def test_malicious_backbone_weights_are_refused_in_one_line(tmp_path, backbone):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"stem.conv.weight": _Touch(marker)}, evil)
    with pytest.raises(InvalidInputError) as info:
        build_model(ModelConfig(backbone=backbone, backbone_weights=str(evil)))
    assert "is not a plain tensor checkpoint and was not loaded" in str(info.value)
    assert "\n" not in str(info.value) and not marker.exists()


def test_model_config_types_are_checked(tmp_path):
    config = ModelConfig(backbone="resnet50", backbone_weights=None)
    folder = save_model(build_model(config), config, tmp_path / "m")
    _rewrite_config(folder, grid_size="large")
    with pytest.raises(InvalidInputError, match=r"config.json: model.grid_size='large'"):
        load_own_model(folder)
    _rewrite_config(folder, grid_size=15, pyramid=[])
    with pytest.raises(InvalidInputError, match=r"config.json: pyramid=\[\] must be a non-empty list"):
        load_own_model(folder)


def test_missing_packaged_default_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "packaged_model_dir", lambda name: tmp_path / "gone" / name)
    with pytest.raises(InputNotFoundError, match="packaged default model is missing"):
        zoo.load_model("default")
