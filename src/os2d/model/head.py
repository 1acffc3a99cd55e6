"""The OS2D head: correlation -> transforms -> resampled, pooled scores and boxes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from os2d.model.transform_net import TransformNet
from os2d.ops.boxes import corners_to_boxes
from os2d.ops.correlation import correlate
from os2d.ops.grid import (
    base_grid,
    corner_points,
    identity_params,
    local_to_feature_map,
    local_to_image,
    params_to_affine,
    transform_points,
)
from os2d.ops.resample import pool_mask, pool_scores, resample_correlation


@dataclass
class HeadOutput:
    """What the head computes for B scenes and K classes.

    Attributes:
        scores: ``Tensor[B, K, H, W]`` recognition scores in [-1, 1].
        boxes: ``Tensor[B, K, H, W, 4]`` xyxy in network-input pixels (not clipped).
        corners: ``Tensor[B, K, H, W, 4, 2]`` transformed grid corners (TL, TR, BL, BR), pixels.
        params: ``Tensor[B, K, P, H, W]`` raw transform parameters.
        scores_detached: ``Tensor[B, K, H, W]`` scores computed with a detached transformation
            (training: used for negatives so that TransformNet learns from positives only).
    """

    scores: torch.Tensor
    boxes: torch.Tensor
    corners: torch.Tensor
    params: torch.Tensor
    scores_detached: Optional[torch.Tensor] = None


class OS2DHead(nn.Module):
    """Matches scene features with 15x15 class features at every location.

    Args:
        transform_net: the TransformNet, or ``None`` for the identity transform (the
            "sliding window, square" baseline).
        variant: ``"v1"`` or ``"v2"`` (how the transform parameters are interpreted).
        grid_size: g, side of the class feature grid (15).
        pool_border: grid points ignored at each side when pooling (2).
        stride: backbone stride in pixels (16); anchors are ``stride * grid_size`` pixels wide.
        sample_dtype: dtype of the correlation resampling (float64 reproduces the reference).
    """

    def __init__(self, *, transform_net: Optional[TransformNet], variant: str = "v1", grid_size: int = 15,
                 pool_border: int = 2, stride: int = 16, sample_dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.transform_net = transform_net
        self.variant = variant
        self.grid_size = grid_size
        self.pool_border = pool_border
        self.stride = stride
        self.sample_dtype = sample_dtype
        self.register_buffer("identity", identity_params(variant), persistent=False)

    @property
    def anchor_size(self) -> float:
        return float(self.stride * self.grid_size)

    def forward(self, scene_fm: torch.Tensor, class_fm: torch.Tensor, *, detached_scores: bool = False) -> HeadOutput:
        """Apply the head.

        Args:
            scene_fm: ``Tensor[B, C, H, W]`` L2-normalised scene features.
            class_fm: ``Tensor[K, C, g, g]`` L2-normalised class features.
            detached_scores: also compute scores with the transform detached from the graph.
        """
        b, _, height, width = scene_fm.shape
        k = class_fm.shape[0]
        corr = correlate(scene_fm, class_fm).reshape(b * k, -1, height, width)
        # [B*K, g*g, H, W]
        params = self._params(corr)
        # [B*K, P, H, W]
        affine = params_to_affine(params.permute(0, 2, 3, 1), variant=self.variant)
        # [B*K, H, W, 2, 3]
        scores = self._scores(corr, affine)
        detached = self._scores(corr, affine.detach()) if detached_scores else None
        corners_local = transform_points(affine, corner_points(dtype=affine.dtype, device=affine.device))
        # [B*K, H, W, 4, 2]
        corners = local_to_image(corners_local, half_extent_px=self.anchor_size / 2, stride=self.stride)
        boxes = corners_to_boxes(corners)
        # [B*K, H, W, 4]
        return HeadOutput(
            scores=scores.reshape(b, k, height, width),
            boxes=boxes.reshape(b, k, height, width, 4),
            corners=corners.reshape(b, k, height, width, 4, 2),
            params=params.reshape(b, k, -1, height, width),
            scores_detached=None if detached is None else detached.reshape(b, k, height, width),
        )

    def _params(self, corr: torch.Tensor) -> torch.Tensor:
        """Transform parameters per location: ``Tensor[N, S, H, W]`` -> ``Tensor[N, P, H, W]``."""
        if self.transform_net is None:
            n, _, height, width = corr.shape
            return self.identity.to(corr.dtype).view(1, -1, 1, 1).expand(n, -1, height, width)
        return self.transform_net(corr)

    def _scores(self, corr: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
        """Pooled resampled correlations: ``Tensor[N, S, H, W]``, ``Tensor[N, H, W, 2, 3]`` -> ``Tensor[N, H, W]``."""
        grid = base_grid(self.grid_size, dtype=affine.dtype, device=affine.device)
        points = transform_points(affine, grid)
        # [N, H, W, g*g, 2]
        points_fm = local_to_feature_map(points, half_extent=self.grid_size / 2)
        sampled = resample_correlation(corr.to(self.sample_dtype), points_fm.to(self.sample_dtype))
        # [N, g*g, H, W]
        weights = pool_mask(self.grid_size, self.pool_border, dtype=self.sample_dtype, device=corr.device)
        return pool_scores(sampled, weights).to(corr.dtype)
