"""The full OS2D network: Siamese backbone + OS2D head."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from os2d.backbones.base import Backbone
from os2d.errors import InvalidInputError
from os2d.model.head import HeadOutput, OS2DHead
from os2d.ops.features import l2_normalize, resize_class_features


class OS2DModel(nn.Module):
    """Backbone shared by scene and class images, followed by the OS2D head.

    Args:
        backbone: feature extractor with stride 16.
        head: the OS2D head (its ``grid_size`` sets the class feature size).
        feature_eps: epsilon of the per-location feature L2 normalisation.
    """

    def __init__(self, *, backbone: Backbone, head: OS2DHead, feature_eps: float = 1e-5) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_eps = feature_eps

    def scene_features(self, images: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` normalised pixels -> ``Tensor[B, C, H, W]`` L2-normalised."""
        return l2_normalize(self.backbone(images), dim=1, eps=self.feature_eps)

    def raw_class_features(self, images: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Backbone features of each class image ``Tensor[3, h_i, w_i]`` -> ``Tensor[C, hc_i, wc_i]``."""
        return [self.backbone(img.unsqueeze(0))[0] for img in images]

    def class_features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class images -> ``Tensor[K, C, g, g]``: resampled to g x g, then L2-normalised."""
        if len(images) == 0:
            raise InvalidInputError("no class images given")
        resized = [resize_class_features(fm.unsqueeze(0), size=self.head.grid_size) for fm in self.raw_class_features(images)]
        return l2_normalize(torch.cat(resized, 0), dim=1, eps=self.feature_eps)
        # [K, C, g, g]

    def forward(self, scene_images: torch.Tensor, class_images: Sequence[torch.Tensor], *,
                detached_scores: bool = False) -> HeadOutput:
        """Scenes ``Tensor[B, 3, Hi, Wi]`` and K class images -> :class:`HeadOutput`."""
        return self.head(self.scene_features(scene_images), self.class_features(class_images),
                         detached_scores=detached_scores)
