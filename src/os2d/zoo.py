"""Built-in models and resolving ``--model`` values (a name or a checkpoint path)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Tuple, Union

from os2d.errors import InputNotFoundError, InvalidInputError
from os2d.model.checkpoint import build_model, load_own_model, load_reference_model
from os2d.model.config import ModelConfig
from os2d.model.os2d import OS2DModel

BUILTIN_MODELS = ("default", "untrained")
_REFERENCE_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")


def untrained_config() -> ModelConfig:
    """EfficientNet-Lite0 (ImageNet, from the pip package) + identity-initialised V1 TransformNet."""
    return ModelConfig(
        backbone="efficientnet-lite0", backbone_weights="package", variant="v1", score_threshold=0.2,
        description="untrained: EfficientNet-Lite0 ImageNet backbone, identity-initialised V1 TransformNet",
    )


def packaged_model_dir(name: str) -> Path:
    """Folder of a model shipped inside the package (may not exist)."""
    return Path(str(resources.files("os2d"))) / "assets" / "models" / name


def load_model(name_or_path: Union[str, Path] = "default") -> Tuple[OS2DModel, ModelConfig]:
    """Resolve a built-in name (``default``, ``untrained``) or a checkpoint path to a model.

    Paths: a folder written by :func:`os2d.model.checkpoint.save_model`, its ``config.json`` or
    ``.safetensors`` file, or an original-implementation checkpoint (``.pth``).
    """
    text = str(name_or_path)
    if not text.strip():
        raise InvalidInputError(f"no model given (empty name); built-in models are {list(BUILTIN_MODELS)}, "
                                f"or give a checkpoint path")
    if text == "untrained":
        return build_model(untrained_config()), untrained_config()
    if text == "default":
        folder = packaged_model_dir("default")
        if not (folder / "config.json").is_file() or not (folder / "weights.safetensors").is_file():
            raise InputNotFoundError(
                f"the packaged default model is missing from this installation ({folder} has no "
                f"config.json and weights.safetensors): reinstall os2d, or pass --model untrained or a "
                f"model folder")
        return load_own_model(folder)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix in (".safetensors", ".json"):
            return load_own_model(path)
        if path.suffix in _REFERENCE_SUFFIXES:
            return load_reference_model(path)
        raise InvalidInputError(f"unrecognised model file {path}: expected a model folder, .safetensors, .json or .pth")
    if any(sep in text for sep in ("/", "\\")) or path.suffix:
        raise InputNotFoundError(f"model file not found: {path}")
    raise InvalidInputError(f"unknown model {text!r}; built-in models are {list(BUILTIN_MODELS)}, or give a checkpoint path")
