"""Building models, and reading/writing checkpoints (own format and the reference's)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from os2d.backbones import build_backbone
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write, atomic_write_text
from os2d.model.config import ModelConfig
from os2d.model.head import OS2DHead
from os2d.model.os2d import OS2DModel
from os2d.model.reference import (
    map_reference_state,
    read_reference_checkpoint,
    reference_variant_and_arch,
)
from os2d.model.transform_net import TransformNet

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
_META_KEY = "os2d_config"


def build_model(config: ModelConfig, *, load_backbone_weights: bool = True, seed: int = 0) -> OS2DModel:
    """A model from its config; backbone weights from ``config.backbone_weights`` when asked.

    The TransformNet is initialised from ``seed`` (its last layer to the identity transform).
    """
    weights = config.backbone_weights if load_backbone_weights else None
    backbone = build_backbone(config.backbone, weights=weights)
    transform_net = None
    if config.use_transform:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transform_net = TransformNet(in_channels=config.grid_size ** 2, variant=config.variant)
    head = OS2DHead(transform_net=transform_net, variant=config.variant, grid_size=config.grid_size,
                    pool_border=config.pool_border, stride=backbone.stride)
    return OS2DModel(backbone=backbone, head=head).eval()


def load_reference_model(path: Union[str, Path]) -> Tuple[OS2DModel, ModelConfig]:
    """A model from an original-implementation checkpoint (``{"net": state_dict, ...}``)."""
    state = read_reference_checkpoint(Path(path))
    variant, arch = reference_variant_and_arch(state)
    config = ModelConfig(backbone=arch, backbone_weights=None, variant=variant,
                         description=f"reference checkpoint {Path(path).name} ({arch}, {variant.upper()})")
    model = build_model(config, load_backbone_weights=False)
    _load_strict(model, map_reference_state(state), source=str(path))
    return model, config


def _load_strict(model: OS2DModel, state: Dict[str, torch.Tensor], *, source: str, partial: bool = False) -> None:
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    missing = [] if partial else sorted(set(expected) - set(state))
    bad_shape = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if unexpected or missing or bad_shape:
        raise InvalidInputError(
            f"checkpoint {source} does not fit the model: missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shape {bad_shape[:4]}"
        )
    model.load_state_dict(state, strict=not partial)


def save_model(model: OS2DModel, config: ModelConfig, directory: Union[str, Path], *,
               only_changed_backbone: bool = True) -> Path:
    """Write ``directory/config.json`` and ``directory/weights.safetensors`` (atomically).

    With ``only_changed_backbone`` and backbone weights that come from an installed package,
    backbone tensors equal to the packaged ones are not stored (the file stays small).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if only_changed_backbone and config.backbone_weights in ("package", "imagenet"):
        reference = build_backbone(config.backbone, weights=config.backbone_weights).state_dict()
        state = {k: v for k, v in state.items()
                 if not (k.startswith("backbone.") and torch.equal(v, reference[k[len("backbone."):]]))}
    meta = json.dumps(config.to_dict())
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={_META_KEY: meta}))
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
    return directory


def load_own_model(path: Union[str, Path]) -> Tuple[OS2DModel, ModelConfig]:
    """A model saved by :func:`save_model`: a directory, its ``config.json`` or its ``.safetensors``."""
    path = Path(path)
    weights_path = path / WEIGHTS_FILE if path.is_dir() else path.with_name(WEIGHTS_FILE) if path.suffix == ".json" else path
    if not weights_path.is_file():
        raise InputNotFoundError(f"model weights not found: {weights_path}")
    config = _read_config(path, weights_path)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read model weights {weights_path}: corrupt or truncated file ({err})") from err
    model = build_model(config, load_backbone_weights=config.backbone_weights is not None)
    partial = config.backbone_weights is not None
    if partial and any(k.startswith("head.") is False and not k.startswith("backbone.") for k in state):
        raise InvalidInputError(f"unexpected entries in {weights_path}")
    _load_strict(model, state, source=str(weights_path), partial=partial)
    if partial:
        head_keys = {k for k in model.state_dict() if k.startswith("head.")}
        if not head_keys <= set(state):
            raise InvalidInputError(f"model weights {weights_path} miss head tensors {sorted(head_keys - set(state))[:4]}")
    return model.eval(), config


def _read_config(path: Path, weights_path: Path) -> ModelConfig:
    config_path = path / CONFIG_FILE if path.is_dir() else path if path.suffix == ".json" else None
    if config_path is not None and config_path.is_file():
        try:
            blob = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"model config {config_path} is not valid JSON ({err})") from err
        return ModelConfig.from_dict(blob, source=str(config_path))
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read model weights {weights_path}: corrupt or truncated file ({err})") from err
    if _META_KEY not in meta:
        raise InvalidInputError(f"{weights_path} carries no os2d config and no {CONFIG_FILE} is beside it")
    return ModelConfig.from_dict(json.loads(meta[_META_KEY]), source=str(weights_path))
