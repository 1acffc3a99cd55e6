"""Fast mode: a cascade whose last stage is the exact OS2D head.

1. **Coarse score**, for every class entry at every location of every pyramid level: the class
   feature map average-pooled to a 5 x 5 *template* (each template cell = 3 x 3 class cells; stored
   with the class features, ``templates`` extra), whose inner 3 x 3 cells (class cells 3..11 of 15)
   are matched with the scene features average-pooled over 3 x 3 cells by one dilated convolution --
   the identity-transform (sliding-window) score on a coarser grid, without any correlation map. The
   outer ring of template cells is left out, as the exact head leaves out the grid's border: it holds
   the class image's own border, whose features (the backbone's padding, a packshot's white margin)
   match the scene's border and its plain areas rather than the object. Measured with the default
   model, class images not trimmed (the whole 5 x 5 template -> its inner 3 x 3): FlickrLogos
   val-new-cl fast mAP 32.5 -> 35.5, catalog scenes K = 10 21.7 -> 26.2; it costs where the object
   fills the photo (GroZi-120, docs/speed.md).
2. **Candidates**: per class entry, its best coarse locations over all levels, after an NMS of IoU
   ``cascade.candidate_nms`` between their anchors: ``cascade.candidates`` of them. When the catalog
   has more than ``cascade.max_windows // cascade.candidates`` entries, a **probe** comes first: each
   entry's ``cascade.probe`` best coarse locations get the exact head (radius 0), the entries are
   ranked by how far their best probe score lies above their own background tail (the ``q_hi`` of
   :mod:`os2d.inference.calibration`; the raw score where the bank has no calibration statistics),
   and only the best ``max_windows // candidates`` entries get their candidates. Every entry keeps
   its probe detections. With ``cascade.shortlist > 0`` only the entries of the classes with the
   best coarse peaks go on.
3. **Exact head** at every location within ``cascade.radius`` of each candidate
   (:meth:`os2d.model.head.OS2DHead.at_locations`: TransformNet on windows, scores resampled from the
   scene features), i.e. the dense head's outputs there. ``cascade.precision`` runs the windows'
   correlation and TransformNet (and the coarse convolution) in bfloat16 where the hardware
   multiplies it natively (``auto``: AMX or AVX-512 BF16): ~5x faster on CPUs with AMX, ~1.2x with
   AVX-512 BF16, scores within ~1e-2. ``cascade.backbone_precision`` does the same for the scene
   backbone (~2x faster scene features).
   Levels whose map has at most ``cascade.dense_locations`` locations skip stages 1-3 and get the
   dense exact head (as in exact mode) for every entry, when the catalog is within the budget (no
   probe): on a small map that costs less than the windows of one candidate and misses nothing.

Below the budget every class gets its own candidates: a class is never dropped because another class
scores higher somewhere (the coarse scores of different classes are not comparable). With no cut-off
(enough candidates, ``candidate_nms=1``, ``radius=0``, both precisions ``"float32"``) the result equals
exact mode. Memory: one chunk of coarse scores (``COARSE_CHUNK`` entries) and the candidates,
whatever the catalog size.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, above_threshold, level_candidates, reduce_per_class
from os2d.inference.exact import class_chunks, dense_candidates
from os2d.inference.scene import Scene
from os2d.inference.settings import CascadeSettings
from os2d.ops.boxes import anchor_boxes, nms_per_class
from os2d.ops.features import l2_normalize

#: Side of the stored coarse templates (cells), of the class cells each template cell averages, and of
#: the outer ring of template cells the coarse score leaves out.
TEMPLATE = 5
COARSE_CELL = 3
TEMPLATE_RING = 1
#: Class entries per coarse convolution.
COARSE_CHUNK = 256


def class_templates(features: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, C, g, g]`` class features -> ``Tensor[K, C, 5, 5]`` L2-normalised coarse templates."""
    return l2_normalize(F.adaptive_avg_pool2d(features, TEMPLATE), dim=1, eps=1e-12)


def pooled_scene(fm: torch.Tensor) -> torch.Tensor:
    """``Tensor[1, C, H, W]`` scene features -> their L2-normalised means over 3 x 3 cells (same shape)."""
    return l2_normalize(F.avg_pool2d(fm, COARSE_CELL, stride=1, padding=COARSE_CELL // 2, count_include_pad=False),
                        dim=1, eps=1e-12)


def coarse_scores(pooled: torch.Tensor, templates: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The coarse identity score of ``Tensor[k, C, 5, 5]`` templates at every location of the
    :func:`pooled_scene` features ``Tensor[1, C, H, W]``, computed in ``dtype``.

    Returns ``Tensor[k, H, W]`` float32: the mean over the inner 3 x 3 template cells (the outer ring
    is left out, see the module docstring) of the cosine between the cell and the scene's mean feature
    over the matching 3 x 3 cells around the location.
    """
    inner = templates[..., TEMPLATE_RING:-TEMPLATE_RING, TEMPLATE_RING:-TEMPLATE_RING]
    # [k, C, 3, 3]
    side = inner.shape[-1]
    out = F.conv2d(pooled.to(dtype), inner.to(dtype), dilation=COARSE_CELL, padding=(side // 2) * COARSE_CELL)
    return out[0].float() / (side * side)
    # [k, H, W]


def _templates(bank: ClassBank, entries: torch.Tensor) -> torch.Tensor:
    if "templates" in bank.extras:
        return bank.extras["templates"][entries]
    return class_templates(bank.entry_features(entries))


def coarse_candidates(scene: Scene, bank: ClassBank, cfg: CascadeSettings, *, stride: int, anchor: float,
                      per_entry: int, entries: Optional[torch.Tensor] = None, levels: Optional[List[int]] = None,
                      dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Stages 1-2: per entry (all, or the given ``entries``), its ``per_entry`` best coarse locations over
    all levels (or the given ``levels``; coarse scores computed in ``dtype``).

    Returns ``{"entry", "level", "row", "col", "score"}`` tensors of equal length.
    """
    entries = torch.arange(bank.num_entries) if entries is None else entries
    pool: Dict[str, List[torch.Tensor]] = {name: [] for name in ("entry", "level", "row", "col", "score", "box")}
    for level in (range(len(scene)) if levels is None else levels):
        fm = pooled_scene(scene.features(level))
        height, width = fm.shape[-2:]
        top = min(per_entry * 4, height * width)
        sx, sy = scene.levels[level].scale
        for start in range(0, entries.numel(), COARSE_CHUNK):
            chunk = entries[start:start + COARSE_CHUNK]
            scores = coarse_scores(fm, _templates(bank, chunk), dtype=dtype)
            values, flat = scores.reshape(len(chunk), -1).topk(top, dim=1)
            rows, cols = flat // width, flat % width
            centers = torch.stack([cols, rows], -1).reshape(-1, 2).float()
            pool["box"].append(anchor_boxes(centers, stride=stride, size=anchor) * torch.tensor([sx, sy, sx, sy]))
            pool["entry"].append(chunk.repeat_interleave(top))
            pool["level"].append(torch.full((len(chunk) * top,), level, dtype=torch.int64))
            pool["row"].append(rows.reshape(-1)), pool["col"].append(cols.reshape(-1))
            pool["score"].append(values.reshape(-1))
    if not pool["entry"]:
        return {name: torch.zeros(0, dtype=torch.float32 if name == "score" else torch.int64)
                for name in ("entry", "level", "row", "col", "score")}
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


def transform_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for a ``CascadeSettings`` precision (``precision``: the windows' TransformNet;
    ``backbone_precision``: the scene backbone) on ``device``."""
    if precision == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:
            native = device.type == "cpu" and _cpu_has_bf16()
        precision = "bfloat16" if native else "float32"
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def _cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively: AMX tiles (Intel) or AVX-512 BF16 (Intel, AMD Zen 4)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def exact_at(detector, scene: Scene, bank: ClassBank, picks: Dict[str, torch.Tensor], *, radius: int,
             threshold, dtype: torch.dtype = torch.float32) -> Candidates:
    """Stage 3: the exact head (TransformNet in ``dtype``) at every location within ``radius`` of the
    ``picks``; candidates scoring above ``threshold`` (a number or ``Tensor[K]`` raw thresholds), no NMS."""
    head, stride = detector.model.head, detector.model.backbone.stride
    used, local = picks["entry"].unique(return_inverse=True)
    features = bank.entry_features(used)  # read once (catalogs read class files on demand)
    # [u, C, g, g]
    parts = []
    for level in picks["level"].unique().tolist():
        sel = picks["level"] == level
        centers = torch.stack([local[sel], picks["row"][sel], picks["col"][sel]], -1)
        out = head.at_locations(scene.features(level), features, centers, radius=radius, transform_dtype=dtype)
        parts.append(level_candidates(
            scores=out.scores, boxes=out.boxes, corners=out.corners,
            centers=torch.stack([out.index[:, 2], out.index[:, 1]], -1).float(), entries=used[out.index[:, 0]],
            level=level, level_size=scene.levels[level].size, scale=scene.levels[level].scale, stride=stride,
            anchor_size=head.anchor_size, score_threshold=threshold))
    return Candidates.cat(parts)


def probe_ranking(detector, scene: Scene, bank: ClassBank, cfg: CascadeSettings, **coarse) -> tuple:
    """Stage 2b for big catalogs: each entry's ``cfg.probe`` best coarse locations scored by the exact
    head (radius 0). Returns (their candidates above the score threshold, ``Tensor[K]`` the entries
    ordered by their best margin above their background tail ``q_hi``, or by raw score without
    calibration statistics)."""
    picks = coarse_candidates(scene, bank, cfg, per_entry=cfg.probe, **coarse)
    probed = exact_at(detector, scene, bank, picks, radius=0, threshold=float("-inf"), dtype=coarse.get("dtype", torch.float32))
    margin = probed.scores
    if "calibration" in bank.extras:
        margin = probed.scores - bank.extras["calibration"][probed.entries, 1]
    best = torch.full((bank.num_entries,), -3.0).scatter_reduce(0, probed.entries, margin, reduce="amax")
    order = torch.argsort(best, descending=True, stable=True)
    keep = above_threshold(probed.scores, probed.entries, detector.candidate_thresholds(bank))
    return probed.select(keep.nonzero().squeeze(1)), order


@torch.no_grad()
def cascade_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    """Candidates of the fast mode (per-class NMS applied), see the module docstring."""
    cfg, settings = detector.settings.cascade, detector.settings
    coarse = {"stride": detector.model.backbone.stride, "anchor": detector.model.head.anchor_size,
              "dtype": transform_dtype(cfg.precision, detector.device)}
    full = max(1, cfg.max_windows // cfg.candidates)  # entries that get all their candidates
    parts, entries = [], None
    if bank.num_entries > full:
        probed, order = probe_ranking(detector, scene, bank, cfg, **coarse)
        parts.append(probed)
        entries = torch.sort(order[:full]).values
    small = [] if entries is not None else [  # not with the probe: its entries keep the windows' bounded cost
        lv for lv in range(len(scene)) if _locations(scene, lv) <= cfg.dense_locations]
    picks = coarse_candidates(scene, bank, cfg, per_entry=cfg.candidates, entries=entries,
                              levels=[lv for lv in range(len(scene)) if lv not in small], **coarse)
    picks = _shortlisted(bank, picks, cfg.shortlist)
    threshold = detector.candidate_thresholds(bank)
    if small:
        parts += [dense_candidates(detector, scene, bank, chunk, levels=small, threshold=threshold)
                  for chunk in class_chunks(bank, settings.class_batch)]
    if len(picks["entry"]):
        parts.append(exact_at(detector, scene, bank, picks, radius=cfg.radius, threshold=threshold,
                              dtype=coarse["dtype"]))
    return reduce_per_class(Candidates.cat(parts), bank.entry_labels, settings)


def _locations(scene: Scene, level: int) -> int:
    height, width = scene.features(level).shape[-2:]
    return int(height * width)
