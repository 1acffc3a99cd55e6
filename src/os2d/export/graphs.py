"""Export-friendly views of an :class:`~os2d.model.os2d.OS2DModel`: the three graphs ``os2d export`` writes.

Each module shares the model's weights (no copy) and computes the same function as the model's
own methods, written so that ``torch.export`` keeps every size symbolic:

* the backbone itself, then :class:`Embedding` -- :meth:`OS2DModel.embed_scene` (scene features) or
  :meth:`OS2DModel.embed_class` (class features);
* :class:`HeadGraph` -- :meth:`OS2DHead.forward` (scores, boxes, corners).

The head is restated from the public steps of :mod:`os2d.ops` because
:func:`os2d.ops.resample.normalize_coords` builds its scale with ``Tensor.new_tensor`` from the
map size, which the exporter records as a constant of the example size: the exported graph would
then sample wrong points at every other size. :func:`normalized_grid` divides by the symbolic size
instead (same formula, same float32 rounding). The tests check all three graphs against the model.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from os2d.model.head import OS2DHead
from os2d.model.os2d import OS2DModel
from os2d.ops.boxes import corners_to_boxes
from os2d.ops.correlation import correlate
from os2d.ops.grid import (
    corner_points,
    location_centers,
    params_to_affine,
    points_to_feature_map,
    points_to_image,
    transform_points,
)


class Embedding(nn.Module):
    """Backbone output ``Tensor[1, C, H, W]`` -> scene features (:meth:`OS2DModel.embed_scene`, same shape)
    or class features ``Tensor[1, C, g, g]`` (:meth:`OS2DModel.embed_class`).

    The exported feature graphs are the backbone followed by one of these.
    """

    def __init__(self, model: OS2DModel, *, kind: str) -> None:
        super().__init__()
        if kind not in ("scene", "class"):
            raise ValueError(f"kind must be 'scene' or 'class', got {kind!r}")
        self.model = model
        self.kind = kind

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.model.embed_scene(raw) if self.kind == "scene" else self.model.embed_class(raw)


class HeadGraph(nn.Module):
    """Scene features ``Tensor[B, C, H, W]`` and class features ``Tensor[K, C, g, g]`` -> dense head outputs.

    Returns ``(scores, boxes, corners)``: ``Tensor[B, K, H, W]``, ``Tensor[B, K, H, W, 4]`` (xyxy,
    network-input pixels, not clipped) and ``Tensor[B, K, H, W, 4, 2]`` (TL, TR, BL, BR), equal to the
    fields of :meth:`OS2DHead.forward`'s :class:`~os2d.model.head.HeadOutput`.
    """

    def __init__(self, head: OS2DHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, scene_fm: torch.Tensor, class_fm: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        head = self.head
        b, _, height, width = scene_fm.shape
        k = class_fm.shape[0]
        corr = correlate(scene_fm, class_fm).reshape(b * k, -1, height, width)
        # [B*K, S, H, W]
        params = self._params(corr)
        # [B*K, P, H, W]
        affine = params_to_affine(params.permute(0, 2, 3, 1).reshape(b * k, height * width, -1),
                                  variant=head.variant)
        # [B*K, H*W, 2, 3]
        centers = location_centers(height, width, dtype=affine.dtype, device=affine.device).reshape(1, -1, 2)
        # [1, H*W, 2]
        scores = self._scores(corr, affine, centers)
        # [B*K, H*W]
        local = transform_points(affine, corner_points(dtype=affine.dtype, device=affine.device))
        # [B*K, H*W, 4, 2]
        corners = points_to_image(local, centers, half_extent_px=head.anchor_size / 2, stride=head.stride)
        boxes = corners_to_boxes(corners)
        # [B*K, H*W, 4]
        return (scores.reshape(b, k, height, width),
                boxes.reshape(b, k, height, width, 4),
                corners.reshape(b, k, height, width, 4, 2))

    def _params(self, corr: torch.Tensor) -> torch.Tensor:
        """``Tensor[N, S, H, W]`` -> transform parameters ``Tensor[N, P, H, W]`` (identity without a TransformNet)."""
        if self.head.transform_net is not None:
            return self.head.transform_net(corr)
        n, _, height, width = corr.shape
        return self.head.identity.to(corr.dtype).view(1, -1, 1, 1).expand(n, -1, height, width)

    def _scores(self, corr: torch.Tensor, affine: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Pooled correlations resampled at the transformed inner grid points: ``Tensor[N, L]``."""
        head = self.head
        n, _, height, width = corr.shape
        points = transform_points(affine, head.inner_grid.to(affine.dtype))
        # [N, L, S', 2]
        points_fm = points_to_feature_map(points, centers, half_extent=head.grid_size / 2)
        inner = corr.index_select(1, head.inner_index)
        # [N, S', H, W]
        s, locations = inner.shape[1], points_fm.shape[1]
        grid = normalized_grid(points_fm, height=height, width=width).permute(0, 2, 1, 3)
        # [N, S', L, 2]
        sampled = F.grid_sample(inner.reshape(n * s, 1, height, width), grid.reshape(n * s, 1, locations, 2),
                                mode="bilinear", padding_mode="border", align_corners=True)
        # [N*S', 1, 1, L]
        sampled = sampled.reshape(n, s, locations)
        # [N, S', L]
        return (sampled * head.inner_weights.to(sampled.dtype)[None, :, None]).sum(1)


def normalized_grid(points_fm: torch.Tensor, *, height, width) -> torch.Tensor:
    """Feature-map (x, y) ``Tensor[..., 2]`` -> ``[-1, 1]`` (align_corners=True), clamped to the map.

    :func:`os2d.ops.resample.normalize_coords` with the scale kept symbolic in ``height`` and ``width``.
    """
    x = points_fm[..., 0] * (2.0 / torch.sym_max(width - 1, 1)) - 1.0
    y = points_fm[..., 1] * (2.0 / torch.sym_max(height - 1, 1)) - 1.0
    return torch.stack([x, y], -1).clamp(-1.0, 1.0)
