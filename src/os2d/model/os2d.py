"""The full OS2D network: Siamese backbone + OS2D head, with one forward path per step.

* :meth:`OS2DModel.embed_scene` / :meth:`OS2DModel.embed_class` turn backbone outputs into the
  features the head matches (L2 normalisation; class maps resampled to g x g first);
* :meth:`OS2DModel.scene_features` / :meth:`OS2DModel.class_features` run the backbone and embed;
* :meth:`OS2DModel.forward` = head(scene_features, class_features).

The detector (exact and fast modes) and the trainer call these same methods; the trainer only
chooses which backbone parts run with gradients, and the detector may run an inference-optimised
copy of the backbone (:func:`os2d.model.fuse.inference_backbone`).
"""
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

    def embed_scene(self, raw: torch.Tensor) -> torch.Tensor:
        """Backbone output ``Tensor[B, C, H, W]`` -> L2-normalised scene features, same shape."""
        return l2_normalize(raw, dim=1, eps=self.feature_eps)

    def embed_class(self, raw: torch.Tensor) -> torch.Tensor:
        """Backbone output of class images ``Tensor[K, C, hc, wc]`` -> ``Tensor[K, C, g, g]``."""
        return l2_normalize(resize_class_features(raw, size=self.head.grid_size), dim=1, eps=self.feature_eps)

    def scene_features(self, images: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` normalised pixels -> ``Tensor[B, C, H, W]`` L2-normalised."""
        return self.embed_scene(self.backbone(images))

    def raw_class_features(self, images: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Backbone features of each class image ``Tensor[3, h_i, w_i]`` -> ``Tensor[C, hc_i, wc_i]``."""
        return [self.backbone(img.unsqueeze(0))[0] for img in images]

    def class_features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class images (each ``Tensor[3, h_i, w_i]``) -> ``Tensor[K, C, g, g]``."""
        if len(images) == 0:
            raise InvalidInputError("no class images given")
        return torch.cat([self.embed_class(fm.unsqueeze(0)) for fm in self.raw_class_features(images)], 0)
        # [K, C, g, g]

    def forward(self, scene_images: torch.Tensor, class_images: Sequence[torch.Tensor], *,
                detached_scores: bool = False) -> HeadOutput:
        """Scenes ``Tensor[B, 3, Hi, Wi]`` and K class images -> :class:`HeadOutput`."""
        return self.head(self.scene_features(scene_images), self.class_features(class_images),
                         detached_scores=detached_scores)
