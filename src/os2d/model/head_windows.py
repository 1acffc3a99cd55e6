"""The OS2D head at chosen locations only, from the scene features (no correlation map of the level).

Two facts make it exact and cheap:

* TransformNet's receptive field is ``2 * RECEPTIVE_HALF + 1`` = 15 correlation cells, so its output
  at a location needs the correlation only in a 15 x 15 window around it (plus ``r`` for the
  locations within ``r`` of a centre). The window's correlation is computed from a crop of the scene
  features; zero outside the map, and the intermediate layers masked where the dense network reads
  zero padding.
* The correlation is linear in the scene features, so resampling it bilinearly at a point equals the
  dot product of the class feature with the bilinearly resampled scene feature at that point (same
  border clamping). The scores therefore need the scene features at the transformed grid points only.

Windows are cut per centre or, when a map's centres cluster, one window covers them all (fewer cells).
Everything runs in chunks (``CHUNK`` windows / locations), so memory does not grow with the number of
candidates.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from os2d.model.transform_net import RECEPTIVE_HALF
from os2d.ops.grid import params_to_affine, points_to_feature_map, transform_points
from os2d.ops.resample import normalize_coords

CHUNK = 256


def class_columns(class_fm: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, C, g, g]`` -> ``Tensor[K, C, S]`` in the correlation's channel order (width-major)."""
    k, c, h, w = class_fm.shape
    return class_fm.transpose(2, 3).reshape(k, c, w * h)
    # [K, C, S]


def _crops(scene_fm: torch.Tensor, rows0: torch.Tensor, cols0: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scene-feature windows ``Tensor[M, C, height, width]`` starting at (rows0, cols0), zero outside the map."""
    q = max(height, width)
    padded = F.pad(scene_fm[0], (q, q, q, q))
    # [C, H+2q, W+2q]
    rows = (rows0[:, None] + q + torch.arange(height))[:, :, None]
    cols = (cols0[:, None] + q + torch.arange(width))[:, None, :]
    return padded[:, rows, cols].permute(1, 0, 2, 3)
    # [M, C, height, width]


def _inside(rows0: torch.Tensor, cols0: torch.Tensor, height: int, width: int, map_h: int, map_w: int,
            dtype) -> torch.Tensor:
    """``Tensor[M, 1, height, width]``: 1 where the window's cell lies inside the map."""
    rows = rows0[:, None] + torch.arange(height)
    cols = cols0[:, None] + torch.arange(width)
    ok = ((rows >= 0) & (rows < map_h))[:, :, None] & ((cols >= 0) & (cols < map_w))[:, None, :]
    return ok.to(dtype)[:, None]


def run_windows(head, scene_fm: torch.Tensor, class_fm: torch.Tensor, windows: torch.Tensor,
                size: Tuple[int, int], transform_dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Locations ``Tensor[L, 3]`` (entry, row, col) and their parameters ``Tensor[L, P]`` (the features'
    dtype) for windows of ``size = (oh, ow)`` output cells starting at ``windows[:, 1:]`` (``windows[:, 0]``:
    class entry); the correlation and TransformNet run in ``transform_dtype`` (autocast)."""
    oh, ow = size
    _, _, map_h, map_w = scene_fm.shape
    e, r0, c0 = windows[:, 0], windows[:, 1], windows[:, 2]
    dy, dx = torch.meshgrid(torch.arange(oh), torch.arange(ow), indexing="ij")
    index = torch.stack([e[:, None, None].expand(-1, oh, ow), r0[:, None, None] + dy, c0[:, None, None] + dx], -1)
    # [M, oh, ow, 3]
    if head.transform_net is None:
        params = head.identity.to(scene_fm.dtype).expand(windows.shape[0] * oh * ow, -1)
        return index.reshape(-1, 3), params
    q = RECEPTIVE_HALF
    crops = _crops(scene_fm, r0 - q, c0 - q, oh + 2 * q, ow + 2 * q)
    # [M, C, oh+2q, ow+2q]
    low = transform_dtype != scene_fm.dtype
    with torch.autocast(scene_fm.device.type, dtype=transform_dtype, enabled=low):
        corr = torch.einsum("mcs,mcij->msij", class_columns(class_fm[e]), crops)
        # [M, S, oh+2q, ow+2q]
        inside = [_inside(r0 - extra, c0 - extra, oh + 2 * extra, ow + 2 * extra, map_h, map_w, corr.dtype)
                  for extra in (4, 2)]
        params = head.transform_net.forward_windows(corr, inside).to(scene_fm.dtype)
    # [M, P, oh, ow]
    return index.reshape(-1, 3), params.permute(0, 2, 3, 1).reshape(-1, params.shape[1])


def sampled_scores(head, scene_fm: torch.Tensor, class_fm: torch.Tensor, index: torch.Tensor,
                   affine: torch.Tensor) -> torch.Tensor:
    """Pooled scores ``Tensor[L]`` at locations ``index`` (entry, row, col) with transforms ``Tensor[L, 2, 3]``."""
    _, _, map_h, map_w = scene_fm.shape
    centers = torch.stack([index[:, 2], index[:, 1]], -1).to(affine.dtype)
    points = points_to_feature_map(transform_points(affine, head.inner_grid.to(affine.dtype)), centers,
                                   half_extent=head.grid_size / 2)
    # [L, S', 2]
    grid = normalize_coords(points.to(scene_fm.dtype), height=map_h, width=map_w).reshape(1, -1, 1, 2)
    sampled = F.grid_sample(scene_fm, grid, mode="bilinear", padding_mode="border", align_corners=True)
    # [1, C, L*S', 1]
    sampled = sampled[0, :, :, 0].reshape(scene_fm.shape[1], index.shape[0], -1)
    # [C, L, S']
    used, local = index[:, 0].unique(return_inverse=True)
    columns = class_columns(class_fm[used]).index_select(2, head.inner_index)
    # [u, C, S']
    per_point = (columns[local] * sampled.transpose(0, 1)).sum(1)
    # [L, S']
    return per_point @ head.inner_weights.to(per_point.dtype)


def plan(centers: torch.Tensor, radius: int, shape: Tuple[int, int]) -> Tuple[torch.Tensor, List[tuple]]:
    """Per entry, one window over all its centres when cheaper than a (2r+1)^2 window per centre.

    Returns (square windows ``Tensor[M', 3]`` (entry, row0, col0), [rectangles (entry, r0, c0, r1, c1)]).
    Cost model: cells of TransformNet's first layer (4 beyond the outputs on each side).
    """
    squares, rects = [], []
    side = 2 * radius + 1
    for e in centers[:, 0].unique().tolist():
        mine = centers[centers[:, 0] == e]
        r0, c0 = max(0, int(mine[:, 1].min()) - radius), max(0, int(mine[:, 2].min()) - radius)
        r1 = min(int(shape[0]), int(mine[:, 1].max()) + radius + 1)
        c1 = min(int(shape[1]), int(mine[:, 2].max()) + radius + 1)
        if (r1 - r0 + 8) * (c1 - c0 + 8) < mine.shape[0] * (side + 8) ** 2:
            rects.append((e, r0, c0, r1, c1))
        else:
            squares.append(torch.stack([mine[:, 0], mine[:, 1] - radius, mine[:, 2] - radius], -1))
    return (torch.cat(squares) if squares else centers[:0]), rects


@torch.no_grad()
def head_at_locations(head, scene_fm: torch.Tensor, class_fm: torch.Tensor, centers: torch.Tensor, *,
                      radius: int = 0, transform_dtype: torch.dtype = torch.float32):
    """See :meth:`os2d.model.head.OS2DHead.at_locations`."""
    from os2d.model.head import LocationOutput, unique_rows

    _, _, map_h, map_w = scene_fm.shape
    if centers.numel() == 0:
        z = scene_fm.new_zeros
        return LocationOutput(index=torch.zeros(0, 3, dtype=torch.int64), scores=z(0), boxes=z(0, 4),
                              corners=z(0, 4, 2))
    squares, rects = plan(centers, radius, (map_h, map_w))
    parts = [run_windows(head, scene_fm, class_fm, squares[i:i + CHUNK], (2 * radius + 1,) * 2, transform_dtype)
             for i in range(0, squares.shape[0], CHUNK)]
    parts += [run_windows(head, scene_fm, class_fm, torch.tensor([[e, r0, c0]]), (r1 - r0, c1 - c0), transform_dtype)
              for e, r0, c0, r1, c1 in rects]
    index, params = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    keep = (index[:, 1] >= 0) & (index[:, 1] < map_h) & (index[:, 2] >= 0) & (index[:, 2] < map_w)
    index, params = index[keep], params[keep]
    index, first = unique_rows(index)
    affine = params_to_affine(params[first], variant=head.variant)
    # [L, 2, 3]
    scores = torch.cat([sampled_scores(head, scene_fm, class_fm, index[i:i + 4 * CHUNK], affine[i:i + 4 * CHUNK])
                        for i in range(0, index.shape[0], 4 * CHUNK)])
    centers_xy = torch.stack([index[:, 2], index[:, 1]], -1).to(affine.dtype)
    corners, boxes = head._corners_and_boxes(affine[None], centers_xy[None])
    return LocationOutput(index=index, scores=scores, boxes=boxes[0], corners=corners[0])
