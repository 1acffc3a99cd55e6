"""Loading checkpoints of the original authors' implementation (aosokin/os2d)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch

from os2d.backbones.torch_files import load_tensor_file
from os2d.errors import InvalidInputError

_BACKBONE_PREFIX = "net_feature_maps."
_SHARED_PREFIX = "net_label_features.net_class_features."
_HEAD_PREFIX = "os2d_head_creator.aligner.parameter_regressor."
_HEAD_KEYS = {"conv.0": "conv1", "conv.1": "bn1", "conv.3": "conv2", "conv.4": "bn2", "linear": "conv3"}


def is_reference_state(state: Dict[str, torch.Tensor]) -> bool:
    """True when ``state`` looks like the reference model's ``net`` state dict."""
    return any(k.startswith(_BACKBONE_PREFIX) for k in state) and any(k.startswith(_HEAD_PREFIX) for k in state)


def reference_variant_and_arch(state: Dict[str, torch.Tensor]) -> Tuple[str, str]:
    """Infer ``("v1"|"v2", "resnet50"|"resnet101")`` from a reference state dict."""
    weight = state.get(_HEAD_PREFIX + "linear.weight")
    if weight is None:
        raise InvalidInputError("reference checkpoint has no TransformNet output layer (parameter_regressor.linear)")
    num_params = weight.shape[0]
    variants = {4: "v1", 6: "v2"}
    if num_params not in variants:
        raise InvalidInputError(f"reference TransformNet outputs {num_params} parameters; expected 4 (V1) or 6 (V2)")
    blocks = {k.split(".")[2] for k in state if k.startswith(_BACKBONE_PREFIX + "layer3.")}
    archs = {6: "resnet50", 23: "resnet101"}
    if len(blocks) not in archs:
        raise InvalidInputError(f"reference backbone has {len(blocks)} blocks in layer3; expected 6 (ResNet-50) or 23 (ResNet-101)")
    return variants[num_params], archs[len(blocks)]


def map_reference_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename reference keys to this package's ``OS2DModel`` keys (shared class branch dropped)."""
    mapped: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_SHARED_PREFIX):
            continue  # the same tensors as the scene branch (merged branch parameters)
        if key.startswith(_BACKBONE_PREFIX):
            mapped["backbone." + key[len(_BACKBONE_PREFIX):]] = value
        elif key.startswith(_HEAD_PREFIX):
            rest = key[len(_HEAD_PREFIX):]
            module, _, param = rest.rpartition(".")
            if module not in _HEAD_KEYS:
                raise InvalidInputError(f"unexpected TransformNet key in reference checkpoint: {key}")
            mapped[f"head.transform_net.{_HEAD_KEYS[module]}.{param}"] = value
        else:
            raise InvalidInputError(f"unexpected key in reference checkpoint: {key}")
    return mapped


def read_reference_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    """Read the ``net`` state dict of a reference checkpoint with ``weights_only=True`` (a file
    that needs more than tensors and plain containers is refused unread, in one line)."""
    blob = load_tensor_file(path, what="checkpoint")
    state = blob.get("net", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) \
            or not is_reference_state(state):
        raise InvalidInputError(f"{path} is not an OS2D reference checkpoint (no 'net' state dict with OS2D keys)")
    return state
