"""Fast mode: a cascade whose last stage is the exact OS2D head.

1. **Coarse score**, for every class entry at every location of every pyramid level: the class
   feature map average-pooled to a 5 x 5 *template* (each template cell = 3 x 3 class cells), matched
   with the scene features average-pooled over 3 x 3 cells by one dilated convolution -- the
   identity-transform (sliding-window) score on a coarser grid, at 1/9 of its cost and without any
   correlation map. Templates are stored with the class features (``templates`` extra).
2. **Candidates**: per class entry, its best coarse-score locations over all levels, after an NMS of
   IoU ``cascade.candidate_nms`` between their anchors: ``cascade.candidates`` of them, fewer when
   ``K x candidates`` exceeds ``cascade.max_windows`` (never fewer than one per entry). With
   ``cascade.shortlist > 0`` only the entries of the classes with the best coarse peaks go on.
3. **Exact head** at every location within ``cascade.radius`` of each candidate
   (:meth:`os2d.model.head.OS2DHead.at_locations`: TransformNet on windows, scores resampled from the
   scene features), i.e. exactly the dense head's outputs there.

Every class gets its own candidates: a class is never dropped because another class scores higher
somewhere (the coarse scores of different classes are not comparable). With no cut-off (enough
candidates, ``candidate_nms=1``, ``radius=0``) the result equals exact mode. Memory: one chunk of
coarse scores (``COARSE_CHUNK`` entries) and the candidates, whatever the catalog size.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F

from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, level_candidates, reduce_per_class
from os2d.inference.scene import Scene
from os2d.inference.settings import CascadeSettings
from os2d.ops.boxes import anchor_boxes, nms_per_class
from os2d.ops.features import l2_normalize

#: Side of the coarse templates (cells) and of the class cells each template cell averages.
TEMPLATE = 5
COARSE_CELL = 3
#: Class entries per coarse convolution.
COARSE_CHUNK = 256


def class_templates(features: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, C, g, g]`` class features -> ``Tensor[K, C, 5, 5]`` L2-normalised coarse templates."""
    return l2_normalize(F.adaptive_avg_pool2d(features, TEMPLATE), dim=1, eps=1e-12)


def coarse_scores(fm: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """The coarse identity score of ``Tensor[k, C, 5, 5]`` templates at every location of ``Tensor[1, C, H, W]``.

    Returns ``Tensor[k, H, W]``: the mean over the 5 x 5 template cells of the cosine between the cell
    and the scene's mean feature over the matching 3 x 3 cells around the location.
    """
    pooled = l2_normalize(F.avg_pool2d(fm, COARSE_CELL, stride=1, padding=COARSE_CELL // 2, count_include_pad=False),
                          dim=1, eps=1e-12)
    out = F.conv2d(pooled, templates.to(fm.dtype), dilation=COARSE_CELL, padding=(TEMPLATE // 2) * COARSE_CELL)
    return out[0] / (TEMPLATE * TEMPLATE)
    # [k, H, W]


def _templates(bank: ClassBank, entries: torch.Tensor) -> torch.Tensor:
    if "templates" in bank.extras:
        return bank.extras["templates"][entries]
    return class_templates(bank.entry_features(entries))


def coarse_candidates(scene: Scene, bank: ClassBank, cfg: CascadeSettings, *, stride: int, anchor: float,
                      per_entry: int) -> Dict[str, torch.Tensor]:
    """Stages 1-2: per entry, its ``per_entry`` best coarse locations over all levels.

    Returns ``{"entry", "level", "row", "col", "score"}`` tensors of equal length.
    """
    k = bank.num_entries
    pool: Dict[str, List[torch.Tensor]] = {name: [] for name in ("entry", "level", "row", "col", "score", "box")}
    for level in range(len(scene)):
        fm = scene.features(level)
        height, width = fm.shape[-2:]
        top = min(per_entry * 4, height * width)
        sx, sy = scene.levels[level].scale
        for start in range(0, k, COARSE_CHUNK):
            entries = torch.arange(start, min(k, start + COARSE_CHUNK))
            values, flat = coarse_scores(fm, _templates(bank, entries)).reshape(len(entries), -1).topk(top, dim=1)
            rows, cols = flat // width, flat % width
            centers = torch.stack([cols, rows], -1).reshape(-1, 2).float()
            pool["box"].append(anchor_boxes(centers, stride=stride, size=anchor) * torch.tensor([sx, sy, sx, sy]))
            pool["entry"].append(entries.repeat_interleave(top))
            pool["level"].append(torch.full((len(entries) * top,), level, dtype=torch.int64))
            pool["row"].append(rows.reshape(-1)), pool["col"].append(cols.reshape(-1))
            pool["score"].append(values.reshape(-1))
    cat = {name: torch.cat(parts) for name, parts in pool.items()}
    keep = nms_per_class(cat["box"], cat["score"], cat["entry"], iou=cfg.candidate_nms)
    ranks = _rank_within(cat["entry"][keep])
    keep = keep[ranks < per_entry]
    return {name: cat[name][keep] for name in ("entry", "level", "row", "col", "score")}


def _rank_within(groups: torch.Tensor) -> torch.Tensor:
    """Position of each item among the items of its group, in the given order."""
    order = torch.sort(groups, stable=True)
    starts = torch.searchsorted(order.values, order.values, right=False)
    ranks = torch.empty_like(groups)
    ranks[order.indices] = torch.arange(groups.numel()) - starts
    return ranks


def _shortlisted(bank: ClassBank, picks: Dict[str, torch.Tensor], shortlist: int) -> Dict[str, torch.Tensor]:
    """Only the candidates of the ``shortlist`` classes with the best coarse peaks (0: all)."""
    if shortlist <= 0 or shortlist >= len(bank):
        return picks
    labels = bank.entry_labels[picks["entry"]]
    best = torch.full((len(bank),), -3.0).scatter_reduce(0, labels, picks["score"], reduce="amax")
    chosen = torch.zeros(len(bank), dtype=torch.bool)
    chosen[torch.argsort(best, descending=True)[:shortlist]] = True
    keep = chosen[labels]
    return {name: v[keep] for name, v in picks.items()}


@torch.no_grad()
def cascade_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    """Candidates of the fast mode (per-class NMS applied), see the module docstring."""
    cfg, settings = detector.settings.cascade, detector.settings
    head, stride = detector.model.head, detector.model.backbone.stride
    per_entry = max(1, min(cfg.candidates, cfg.max_windows // max(1, bank.num_entries)))
    picks = coarse_candidates(scene, bank, cfg, stride=stride, anchor=head.anchor_size, per_entry=per_entry)
    picks = _shortlisted(bank, picks, cfg.shortlist)
    threshold = detector.raw_thresholds(bank)
    used, local = picks["entry"].unique(return_inverse=True)
    features = bank.entry_features(used)  # read once (catalogs read class files on demand)
    # [u, C, g, g]
    parts = []
    for level in picks["level"].unique().tolist():
        sel = picks["level"] == level
        centers = torch.stack([local[sel], picks["row"][sel], picks["col"][sel]], -1)
        out = head.at_locations(scene.features(level), features, centers, radius=cfg.radius)
        parts.append(level_candidates(
            scores=out.scores, boxes=out.boxes, corners=out.corners,
            centers=torch.stack([out.index[:, 2], out.index[:, 1]], -1).float(), entries=used[out.index[:, 0]],
            level=level, level_size=scene.levels[level].size, scale=scene.levels[level].scale, stride=stride,
            anchor_size=head.anchor_size, score_threshold=threshold))
    return reduce_per_class(Candidates.cat(parts), bank.entry_labels, settings)
