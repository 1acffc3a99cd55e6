"""Tests of os2d.model.reference: key mapping, variant/arch inference, reading checkpoint files.

Numeric parity with the reference fixtures is tested elsewhere; here the checkpoints are
small files written by the tests (the reference layout is rebuilt by mapping keys back).
"""
from __future__ import annotations

import json
from typing import Dict

import pytest
import torch

from shared_data import shared_path
from os2d.model.checkpoint import build_model, load_reference_model
from os2d.model.config import ModelConfig
from os2d.model.reference import (is_reference_state, map_reference_state, read_reference_checkpoint,
                                  reference_variant_and_arch)



BACKBONE = "net_feature_maps."
SHARED = "net_label_features.net_class_features."
HEAD = "os2d_head_creator.aligner.parameter_regressor."
OURS_TO_REFERENCE_HEAD = {"conv1": "conv.0", "bn1": "conv.1", "conv2": "conv.3", "bn2": "conv.4", "conv3": "linear"}


def to_reference_layout(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our ``OS2DModel`` state dict -> the reference ``net`` layout (class branch shares the tensors)."""
    ref = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            rest = key[len("backbone."):]
            ref[BACKBONE + rest] = value
            ref[SHARED + rest] = value
        else:
            assert key.startswith("head.transform_net."), key
            module, param = key[len("head.transform_net."):].split(".")
            ref[HEAD + OURS_TO_REFERENCE_HEAD[module] + "." + param] = value
    return ref


def tiny_reference_state(num_params: int = 4, layer3_blocks: int = 6) -> Dict[str, torch.Tensor]:
    """Just enough keys for the inference functions (tensor sizes do not matter there)."""
    state = {BACKBONE + "conv1.weight": torch.zeros(1), SHARED + "conv1.weight": torch.zeros(1)}
    for block in range(layer3_blocks):
        state[BACKBONE + f"layer3.{block}.conv1.weight"] = torch.zeros(1)
        state[BACKBONE + f"layer3.{block}.bn1.running_mean"] = torch.zeros(1)
    state[HEAD + "conv.0.weight"] = torch.zeros(1)
    state[HEAD + "linear.weight"] = torch.zeros(num_params, 1, 1, 1)
    state[HEAD + "linear.bias"] = torch.zeros(num_params)
    return state


class _Payload:
    """An arbitrary class: unpickling it needs code execution, which weights_only refuses."""


@pytest.fixture(scope="module")
def model_v2():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet50", backbone_weights=None, variant="v2"))
    with torch.no_grad():  # a transform that is not the identity, so the head weights matter
        model.head.transform_net.conv3.weight.normal_(0.0, 0.01)
    return model


# --------------------------------------------------------------------------- variant / arch inference
@pytest.mark.parametrize("num_params,variant", [(4, "v1"), (6, "v2")])
@pytest.mark.parametrize("blocks,arch", [(6, "resnet50"), (23, "resnet101")])
def test_variant_and_arch_inference(num_params, variant, blocks, arch):
    assert reference_variant_and_arch(tiny_reference_state(num_params, blocks)) == (variant, arch)


def test_five_output_params_is_refused():
    with pytest.raises(ValueError, match="5 parameters"):
        reference_variant_and_arch(tiny_reference_state(num_params=5))


def test_missing_output_layer_is_refused():
    state = tiny_reference_state()
    del state[HEAD + "linear.weight"]
    with pytest.raises(ValueError, match="no TransformNet output layer"):
        reference_variant_and_arch(state)


def test_unknown_backbone_depth_is_refused():
    with pytest.raises(ValueError, match="4 blocks in layer3"):
        reference_variant_and_arch(tiny_reference_state(layer3_blocks=4))


def test_is_reference_state():
    assert is_reference_state(tiny_reference_state())
    assert not is_reference_state({BACKBONE + "conv1.weight": torch.zeros(1)})
    assert not is_reference_state({"backbone.conv1.weight": torch.zeros(1), "head.transform_net.conv1.weight": 0})


# ------------------------------------------------------------------------------------ key mapping
def test_map_reference_state_known_keys():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    state = {
        BACKBONE + "layer1.0.bn1.running_var": a,
        SHARED + "layer1.0.bn1.running_var": a,
        HEAD + "conv.0.weight": b,
        HEAD + "conv.1.num_batches_tracked": b,
        HEAD + "conv.3.bias": b,
        HEAD + "conv.4.running_mean": b,
        HEAD + "linear.weight": c,
    }
    mapped = map_reference_state(state)
    assert sorted(mapped) == sorted([
        "backbone.layer1.0.bn1.running_var", "head.transform_net.conv1.weight",
        "head.transform_net.bn1.num_batches_tracked", "head.transform_net.conv2.bias",
        "head.transform_net.bn2.running_mean", "head.transform_net.conv3.weight",
    ])
    assert mapped["backbone.layer1.0.bn1.running_var"] is a
    assert mapped["head.transform_net.conv3.weight"] is c


def test_map_reference_state_unexpected_keys():
    with pytest.raises(ValueError, match="conv.2.weight"):
        map_reference_state({HEAD + "conv.2.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="optimizer.state"):
        map_reference_state({"optimizer.state": torch.zeros(1)})


def test_mapping_back_covers_every_model_key(model_v2):
    ours = model_v2.state_dict()
    ref = to_reference_layout(ours)
    mapped = map_reference_state(ref)
    assert set(mapped) == set(ours)
    assert all(mapped[k] is ours[k] for k in ours)
    assert reference_variant_and_arch(ref) == ("v2", "resnet50")


def test_reference_layout_matches_fixture_key_counts(model_v2):
    """The rebuilt layout has the reference's 532 keys and per-prefix sizes (fixture config.json)."""
    config = json.loads(shared_path("fixtures", "reference", "v2", "config.json").read_text())
    ref = to_reference_layout(model_v2.state_dict())
    assert len(ref) == config["state_dict_num_keys"] == 532
    for prefix, expected in config["state_dict_prefixes"].items():
        keys = [k for k in ref if k.startswith(prefix + ".")]
        assert len(keys) == expected["num_entries"], prefix
        assert sum(ref[k].numel() for k in keys) == expected["numel_incl_buffers"], prefix


# ---------------------------------------------------------------------------------- reading files
def test_read_reference_checkpoint_net_or_bare(tmp_path):
    state = tiny_reference_state()
    torch.save({"net": state, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "wrapped.pth")
    torch.save(state, tmp_path / "bare.pth")
    for name in ("wrapped.pth", "bare.pth"):
        loaded = read_reference_checkpoint(tmp_path / name)
        assert set(loaded) == set(state)


def test_read_reference_checkpoint_truncated(tmp_path):
    path = tmp_path / "full.pth"
    torch.save({"net": tiny_reference_state()}, path)
    data = path.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        read_reference_checkpoint(tmp_path / "truncated.pth")


def test_read_reference_checkpoint_garbage_and_pickled_objects(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt, truncated"):
        read_reference_checkpoint(tmp_path / "garbage.pth")
    # arbitrary pickled objects are refused (weights_only=True)
    torch.save({"net": tiny_reference_state(), "obj": _Payload()}, tmp_path / "object.pth")
    with pytest.raises(ValueError, match="is not a plain tensor checkpoint and was not loaded") as info:
        read_reference_checkpoint(tmp_path / "object.pth")
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)  # no advice wall


def test_read_reference_checkpoint_not_os2d(tmp_path):
    torch.save({"net": {"fc.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not an OS2D reference checkpoint"):
        read_reference_checkpoint(tmp_path / "other.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not an OS2D reference checkpoint"):
        read_reference_checkpoint(tmp_path / "list.pth")


def test_load_reference_model_round_trip(tmp_path, model_v2):
    """Our weights written in the reference layout load back into an identical model."""
    path = tmp_path / "ref_v2.pth"
    torch.save({"net": to_reference_layout(model_v2.state_dict())}, path)
    loaded, config = load_reference_model(path)
    assert (config.backbone, config.variant, config.backbone_weights) == ("resnet50", "v2", None)
    assert "ref_v2.pth" in config.description
    g = torch.Generator().manual_seed(1)
    scene, cls = torch.randn(1, 3, 64, 64, generator=g), torch.randn(3, 48, 48, generator=g)
    with torch.no_grad():
        expected, got = model_v2(scene, [cls]), loaded(scene, [cls])
    assert torch.equal(expected.scores, got.scores)
    assert torch.equal(expected.boxes, got.boxes)


def test_load_reference_model_shape_mismatch(tmp_path, model_v2):
    state = to_reference_layout(model_v2.state_dict())
    state[HEAD + "conv.0.bias"] = torch.zeros(7)
    torch.save({"net": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit the model.*conv1.bias"):
        load_reference_model(tmp_path / "bad.pth")
