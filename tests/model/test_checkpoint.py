"""Tests of os2d.model.checkpoint (build/save/load), os2d.model.config, and os2d.zoo name resolution."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from safetensors.torch import save_file

from os2d.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, build_model, load_own_model, save_model
from os2d.model.config import FORMAT_NAME, FORMAT_VERSION, ModelConfig
from os2d.zoo import load_model



RESNET_V2 = ModelConfig(backbone="resnet50", backbone_weights=None, variant="v2", description="test model")


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, 64, 64, generator=g), [torch.randn(3, 48, 48, generator=g),
                                                     torch.randn(3, 32, 64, generator=g)]


def _assert_same_state(a, b):
    """Identical tensors under identical names (then the outputs are identical too)."""
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def _outputs(model):
    scene, classes = _inputs()
    with torch.no_grad():
        return model(scene, classes)


def _assert_same_outputs(a, b, out_a=None):
    out_a, out_b = _outputs(a) if out_a is None else out_a, _outputs(b)
    assert torch.equal(out_a.scores, out_b.scores)
    assert torch.equal(out_a.boxes, out_b.boxes)
    assert torch.equal(out_a.params, out_b.params)


@pytest.fixture(scope="module")
def model_v2():
    model = build_model(RESNET_V2)
    with torch.no_grad():  # make the saved weights differ from anything a fresh build gives
        model.head.transform_net.conv3.weight.normal_(0.0, 0.01)
        model.backbone.bn1.running_mean.add_(0.5)
    return model


@pytest.fixture(scope="module")
def outputs_v2(model_v2):
    return _outputs(model_v2)


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory, model_v2):
    return save_model(model_v2, RESNET_V2, tmp_path_factory.mktemp("saved") / "model")


# ------------------------------------------------------------------------------------------ build
def test_build_model_random_resnet(model_v2, outputs_v2):
    assert model_v2.head.transform_net is not None and model_v2.head.variant == "v2"
    assert not model_v2.training
    out = outputs_v2
    # 64 px scene -> 4x4 feature map (stride 16), two class entries
    assert out.scores.shape == (1, 2, 4, 4) and out.params.shape == (1, 2, 6, 4, 4)
    assert torch.all(out.scores.abs() <= 1 + 1e-5)


def test_build_model_seeded_transform_net_and_rng_untouched():
    from os2d.backbones import build_backbone

    config = ModelConfig(backbone="resnet50", backbone_weights=None, variant="v1", grid_size=5)
    a, b, c = build_model(config, seed=7), build_model(config, seed=7), build_model(config, seed=8)
    assert a.head.transform_net.conv1.in_channels == 25
    assert torch.equal(a.head.transform_net.conv1.weight, b.head.transform_net.conv1.weight)
    assert not torch.equal(a.head.transform_net.conv1.weight, c.head.transform_net.conv1.weight)
    # identity-initialised last layer
    assert torch.all(a.head.transform_net.conv3.weight == 0)
    assert torch.equal(a.head.transform_net.conv3.bias, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # the seeded TransformNet does not consume the global RNG: only the backbone init does
    torch.manual_seed(123)
    build_backbone("resnet50")
    after_backbone = torch.rand(3)
    torch.manual_seed(123)
    build_model(config, seed=7)
    assert torch.equal(torch.rand(3), after_backbone)


def test_build_model_without_transform():
    model = build_model(ModelConfig(backbone="resnet50", backbone_weights=None, use_transform=False))
    assert model.head.transform_net is None
    assert not any(k.startswith("head.") for k in model.state_dict())


def test_build_model_unknown_backbone():
    with pytest.raises(ValueError, match="'resnet18'"):
        build_model(ModelConfig(backbone="resnet18", backbone_weights=None))
    with pytest.raises(ValueError, match="resnet50 has no pip-packaged weights"):
        build_model(ModelConfig(backbone="resnet50", backbone_weights="package"))


def test_class_features_need_images(model_v2):
    with pytest.raises(ValueError, match="no class images given"):
        model_v2.class_features([])


# ------------------------------------------------------------------------------------- round trip
def test_save_writes_config_and_weights(saved_dir):
    assert sorted(p.name for p in saved_dir.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    blob = json.loads((saved_dir / CONFIG_FILE).read_text())
    assert blob["format"] == FORMAT_NAME and blob["format_version"] == FORMAT_VERSION
    assert blob["model"]["variant"] == "v2" and blob["model"]["backbone"] == "resnet50"


def test_save_load_round_trip_identical_outputs(saved_dir, model_v2, outputs_v2):
    loaded, config = load_own_model(saved_dir)
    assert config == RESNET_V2
    assert not loaded.training
    _assert_same_outputs(model_v2, loaded, outputs_v2)


@pytest.mark.parametrize("which", ["config", "weights"])
def test_load_from_config_or_weights_file(saved_dir, model_v2, which):
    loaded, config = load_own_model(saved_dir / (CONFIG_FILE if which == "config" else WEIGHTS_FILE))
    assert config == RESNET_V2
    _assert_same_state(model_v2, loaded)


def test_load_weights_alone_uses_embedded_config(tmp_path, saved_dir, model_v2):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((saved_dir / WEIGHTS_FILE).read_bytes())
    loaded, config = load_own_model(lone)
    assert config == RESNET_V2
    _assert_same_state(model_v2, loaded)


def test_zoo_resolves_saved_folder_and_files(saved_dir, model_v2):
    for path in (saved_dir, str(saved_dir / WEIGHTS_FILE), saved_dir / CONFIG_FILE):
        loaded, config = load_model(path)
        assert config == RESNET_V2
        _assert_same_state(model_v2, loaded)


def test_round_trip_without_transform(tmp_path):
    config = ModelConfig(backbone="resnet50", backbone_weights=None, use_transform=False)
    model = build_model(config)
    loaded, loaded_config = load_own_model(save_model(model, config, tmp_path / "sw"))
    assert loaded.head.transform_net is None and loaded_config == config
    _assert_same_outputs(model, loaded)


@pytest.mark.skipif(importlib.util.find_spec("os2d.backbones.efficientnet_lite") is None,
                    reason="EfficientNet-Lite backbone module (os2d.backbones.efficientnet_lite) not available yet")
def test_round_trip_stores_only_changed_packaged_backbone_tensors(tmp_path):
    config = ModelConfig(backbone="efficientnet-lite0", backbone_weights="package", variant="v1")
    try:
        model = build_model(config)
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"EfficientNet-Lite package weights not available: {err}")
    changed_key = next(k for k, v in model.state_dict().items() if k.startswith("backbone.") and v.is_floating_point())
    with torch.no_grad():
        model.state_dict()[changed_key].add_(0.25)
        model.head.transform_net.conv3.weight.normal_(0.0, 0.01)
    folder = save_model(model, config, tmp_path / "lite")
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
        stored = set(handle.keys())
    assert [k for k in stored if k.startswith("backbone.")] == [changed_key]
    assert {k for k in model.state_dict() if k.startswith("head.")} <= stored
    loaded, _ = load_own_model(folder)
    _assert_same_outputs(model, loaded)
    # a partial file must still hold every head tensor
    head_less = {k: v.contiguous() for k, v in model.state_dict().items() if k == changed_key}
    save_file(head_less, str(tmp_path / WEIGHTS_FILE), metadata={"os2d_config": json.dumps(config.to_dict())})
    with pytest.raises(ValueError, match="miss head tensors"):
        load_own_model(tmp_path / WEIGHTS_FILE)
    # ... and nothing but backbone/head tensors
    odd = {"extra.tensor": torch.zeros(1)}
    save_file(odd, str(tmp_path / "odd.safetensors"), metadata={"os2d_config": json.dumps(config.to_dict())})
    with pytest.raises(ValueError, match="unexpected entries"):
        load_own_model(tmp_path / "odd.safetensors")


# ----------------------------------------------------------------------------------- error paths
def _copy_saved(saved_dir, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        (folder / name).write_bytes((saved_dir / name).read_bytes())
    return folder


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load_own_model(tmp_path / "nothing.safetensors")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load_own_model(tmp_path / "empty_dir")


def test_truncated_safetensors(tmp_path, saved_dir):
    folder = _copy_saved(saved_dir, tmp_path)
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_own_model(folder)  # config.json read first, then the weights fail
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_own_model(folder / WEIGHTS_FILE)  # the embedded config cannot be read


def test_corrupt_safetensors_header(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_own_model(path)


def test_safetensors_without_config(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    save_file({"head.transform_net.conv1.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="carries no os2d config"):
        load_own_model(path)


def test_config_format_version_mismatch(tmp_path, saved_dir):
    folder = _copy_saved(saved_dir, tmp_path)
    blob = json.loads((folder / CONFIG_FILE).read_text())
    blob["format_version"] = FORMAT_VERSION + 1
    (folder / CONFIG_FILE).write_text(json.dumps(blob))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        load_own_model(folder)


def test_config_unknown_keys(tmp_path, saved_dir):
    folder = _copy_saved(saved_dir, tmp_path)
    blob = json.loads((folder / CONFIG_FILE).read_text())
    blob["model"]["dropout"] = 0.5
    (folder / CONFIG_FILE).write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="unknown model settings \\['dropout'\\]"):
        load_own_model(folder)


def test_config_invalid_json(tmp_path, saved_dir):
    folder = _copy_saved(saved_dir, tmp_path)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_own_model(folder)


def test_weights_do_not_fit_config(tmp_path, saved_dir):
    folder = _copy_saved(saved_dir, tmp_path)
    blob = json.loads((folder / CONFIG_FILE).read_text())
    blob["model"]["variant"] = "v1"  # V2 weights (6 params) into a V1 model (4 params)
    (folder / CONFIG_FILE).write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="does not fit the model.*conv3"):
        load_own_model(folder)


def test_model_config_dict_round_trip_and_errors():
    config = ModelConfig(backbone="resnet101", variant="v2", pyramid=[1.0, 2.0], score_threshold=0.1)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="not an os2d model config"):
        ModelConfig.from_dict({"model": {}})
    with pytest.raises(ValueError, match="not an os2d model config"):
        ModelConfig.from_dict([1, 2])
    with pytest.raises(ValueError, match="format version None"):
        ModelConfig.from_dict({"format": FORMAT_NAME, "model": {}})
    with pytest.raises(ValueError, match="no \"model\" section"):
        ModelConfig.from_dict({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model": 3})


# ------------------------------------------------------------------------------------ zoo errors
def test_zoo_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'bestmodel'.*default"):
        load_model("bestmodel")


def test_zoo_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model("checkpoint_v9.pth")


def test_zoo_unrecognised_file_suffix(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unrecognised model file"):
        load_model(path)


def test_zoo_truncated_reference_checkpoint(tmp_path):
    full = tmp_path / "small.pth"
    torch.save({"net": {"net_feature_maps.conv1.weight": torch.zeros(64, 3, 7, 7)}}, full)
    data = full.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        load_model(tmp_path / "truncated.pth")
