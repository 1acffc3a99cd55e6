"""ResNet-50/101 cut after block 3 (stride 16, 1024 channels), torchvision layout."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torchvision.models import resnet50, resnet101

from os2d.backbones.base import Backbone
from os2d.backbones.torch_files import load_tensor_file
from os2d.errors import InputNotFoundError, InvalidInputError

logger = logging.getLogger(__name__)

_BUILDERS = {"resnet50": resnet50, "resnet101": resnet101}
_KEEP = ("conv1", "bn1", "layer1", "layer2", "layer3")


class ResNetBackbone(Backbone):
    """torchvision ResNet ``conv1 .. layer3``; ``Tensor[B, 3, Hi, Wi]`` -> ``Tensor[B, 1024, H, W]``."""

    out_channels = 1024
    stride = 16

    def __init__(self, *, arch: str = "resnet50", frozen_bn: bool = True) -> None:
        super().__init__(frozen_bn=frozen_bn)
        if arch not in _BUILDERS:
            raise InvalidInputError(f"unknown ResNet architecture {arch!r}; expected one of {sorted(_BUILDERS)}")
        self.arch = arch
        full = _BUILDERS[arch](weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer3(self.layer2(self.layer1(x)))


def torchvision_state_to_backbone(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keep the ``conv1 .. layer3`` entries of a torchvision ResNet state dict (drops layer4/fc)."""
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in _KEEP}


def load_resnet_weights(backbone: ResNetBackbone, weights: Union[str, Path]) -> None:
    """Load a torchvision-layout ResNet checkpoint (a state dict, possibly under ``state_dict``)."""
    path = Path(weights)
    if not path.is_file():
        raise InputNotFoundError(f"ResNet weights file not found: {path}")
    state = load_tensor_file(path, what="ResNet weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InvalidInputError(f"ResNet weights {path} do not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    kept = torchvision_state_to_backbone(state)
    own = backbone.state_dict()
    problems = []
    missing = sorted(set(own) - set(kept))
    if missing:
        problems.append(f"missing {missing[:5]}" + (f" ({len(missing)} in all)" if len(missing) > 5 else ""))
    unexpected = sorted(set(kept) - set(own))
    if unexpected:
        problems.append(f"unexpected {unexpected[:5]}")
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in kept.items()
             if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    if wrong:
        problems.append(f"wrong shape {wrong[:3]}")
    if problems:
        raise InvalidInputError(f"ResNet weights {path} do not match {backbone.arch}: {'; '.join(problems)}")
    backbone.load_state_dict(kept, strict=True)


def build_resnet(arch: str = "resnet50", *, weights: Optional[Union[str, Path]] = None,
                 frozen_bn: bool = True) -> ResNetBackbone:
    """ResNet backbone; ``weights`` is a file path, ``"imagenet"`` (torchvision download) or None."""
    backbone = ResNetBackbone(arch=arch, frozen_bn=frozen_bn)
    if weights is None:
        return backbone
    if str(weights) == "imagenet":
        from torchvision.models import ResNet50_Weights, ResNet101_Weights

        enum = ResNet50_Weights.IMAGENET1K_V1 if arch == "resnet50" else ResNet101_Weights.IMAGENET1K_V1
        logger.info("downloading torchvision ImageNet weights for %s", arch)
        state = enum.get_state_dict(progress=False)
        backbone.load_state_dict(torchvision_state_to_backbone(state))
        return backbone
    load_resnet_weights(backbone, weights)
    return backbone
